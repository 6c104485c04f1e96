//! Training state on disk: an interrupted `train` (Ctrl-C, SIGTERM, a crash between batches)
//! continues with `--resume` exactly where it stopped, and `predict --checkpoint` looks at the
//! current best model without exporting it.
//!
//! `OUT/checkpoint/state.json` names every other file there and is replaced last (atomically),
//! so it is the commit point: the tensor files carry a step suffix and are never rewritten in
//! place, so a kill during a save leaves the previous state whole. Tensors are burnpack files,
//! which keep parameter ids, so the optimiser's momentum finds its parameters again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use histoscreen_edge::fsutil::write_atomic;
use histoscreen_edge::run::shutdown::StopFlag;

use crate::eval::metrics::Metrics;
use crate::eval::score::ImageResult;
use crate::fit::history::{EpochLog, FoldReport};
use crate::model::alexnet::{AlexNet, Head};
use crate::model::feature_norm::FeatureNorm;

pub const DIR_NAME: &str = "checkpoint";
const STATE: &str = "state.json";
const FORMAT_VERSION: u32 = 1;

/// A finished fold (or hold-out run), kept whole so a resumed run reports it unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    pub report: FoldReport,
    pub results: Vec<ImageResult>,
}

/// Where one run's training stands: `epoch` full epochs done, plus `batch` batches of the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub run: usize,
    pub epoch: usize,
    pub batch: usize,
    pub loss_sum: f64,
    pub correct: usize,
    pub history: Vec<EpochLog>,
    /// 1-based epoch and selection metrics of the best model so far.
    pub best: Option<(usize, Metrics)>,
    pub norm: Option<FeatureNorm>,
}

/// A saved [`RunState`] with the files holding its tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    #[serde(flatten)]
    pub state: RunState,
    /// File names of the training network, the optimiser and the best inference network.
    pub train_file: String,
    pub optim_file: String,
    pub best_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Hash of everything that decides the result (configuration, splits, image list): a
    /// resume with other arguments or other data would silently mix two experiments.
    pub fingerprint: String,
    pub head: Head,
    pub hidden: usize,
    pub completed: Vec<Completed>,
    pub current: Option<Progress>,
    /// Inference network `predict` uses: the newest run's best epoch.
    pub predict_file: Option<String>,
    pub finished: bool,
}

/// What a running `train` saves and resumes from.
pub struct Checkpointer {
    dir: PathBuf,
    state: State,
    stop: StopFlag,
    step: u64,
}

/// Ends a `train` that was asked to stop; the checkpoint holds everything up to that moment.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at run {run}, epoch {epoch}, batch {batch}: checkpoint saved in {}; rerun the same command with --resume to continue", dir.display())]
pub struct Interrupted {
    pub dir: PathBuf,
    pub run: usize,
    pub epoch: usize,
    pub batch: usize,
}

fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no checkpoint here", path.display()))?;
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a histoscreen checkpoint", path.display()))?;
    if state.format_version != FORMAT_VERSION {
        bail!(
            "{}: checkpoint format {} (this trainer reads {FORMAT_VERSION})",
            path.display(),
            state.format_version
        );
    }
    Ok(state)
}

/// The checkpoint folder for `path`: the folder itself, or `path/checkpoint` (a `train --out`).
pub fn locate(path: &Path) -> PathBuf {
    if path.join(STATE).is_file() {
        path.to_path_buf()
    } else {
        path.join(DIR_NAME)
    }
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot flush to disk", path.display()))
}

/// Loads the inference network a checkpoint would predict with.
pub fn load_predict_model(path: &Path, device: &burn::tensor::Device) -> Result<(AlexNet, State)> {
    let dir = locate(path);
    let state = read_state(&dir)?;
    let Some(name) = &state.predict_file else {
        bail!(
            "{}: no epoch has finished yet, so there is no model to predict with",
            dir.display()
        );
    };
    let mut model = AlexNet::with_hidden(state.head, state.hidden, device);
    load_module(&dir.join(name), &mut model)?;
    Ok((model, state))
}

fn load_module(path: &Path, model: &mut AlexNet) -> Result<()> {
    let mut store = BurnpackStore::from_file(path);
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{}: cannot read checkpoint tensors", path.display()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        bail!(
            "{}: checkpoint does not match the network ({} missing, {} errors)",
            path.display(),
            result.missing.len(),
            result.errors.len()
        );
    }
    Ok(())
}

impl Checkpointer {
    /// Opens `out/checkpoint`; with `resume` the saved state must exist and match
    /// `fingerprint`, without it any earlier state there is discarded.
    pub fn open(
        out: &Path,
        fingerprint: String,
        head: Head,
        hidden: usize,
        resume: bool,
        stop: StopFlag,
    ) -> Result<Self> {
        let dir = out.join(DIR_NAME);
        let state = if resume {
            let state = read_state(&dir).with_context(|| "nothing to resume".to_string())?;
            if state.fingerprint != fingerprint {
                bail!(
                    "{}: the checkpoint was written with other arguments or other data; rerun the interrupted command unchanged, or drop --resume to start over",
                    dir.join(STATE).display()
                );
            }
            if state.finished {
                bail!(
                    "{}: that training run already finished; nothing to resume",
                    dir.display()
                );
            }
            state
        } else {
            if dir.join(STATE).is_file() {
                tracing::warn!(
                    "{}: replacing the checkpoint of an earlier run (pass --resume to continue it instead)",
                    dir.display()
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
            State {
                format_version: FORMAT_VERSION,
                fingerprint,
                head,
                hidden,
                completed: vec![],
                current: None,
                predict_file: None,
                finished: false,
            }
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create checkpoint folder", dir.display()))?;
        Ok(Self {
            dir,
            state,
            stop,
            step: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.is_requested()
    }

    pub fn completed(&self, run: usize) -> Option<&Completed> {
        self.state.completed.get(run)
    }

    /// Saved progress of `run`, if the interrupted run was that one.
    pub fn progress(&self, run: usize) -> Option<&Progress> {
        self.state.current.as_ref().filter(|p| p.state.run == run)
    }

    pub fn load_module(&self, name: &str, model: &mut AlexNet) -> Result<()> {
        load_module(&self.dir.join(name), model)
    }

    pub fn load_optim(&self, name: &str, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(name);
        optim
            .load(&path)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("{}: cannot read optimiser state", path.display()))
    }

    fn fresh_name(&mut self, run: usize, kind: &str) -> String {
        self.step += 1;
        format!("run{run}-{kind}-{}-{}.bpk", std::process::id(), self.step)
    }

    fn save_module(&self, name: &str, model: &AlexNet) -> Result<()> {
        let path = self.dir.join(name);
        let mut store = BurnpackStore::from_file(&path).overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{}: cannot write checkpoint", path.display()))?;
        sync(&path)
    }

    /// Saves one run's state. `best` is the best inference network when it changed since the
    /// last save of this run; otherwise the file saved then stays in use.
    pub fn save(
        &mut self,
        state: RunState,
        model: &AlexNet,
        optim: &ModuleOptimizer,
        best: Option<&AlexNet>,
    ) -> Result<()> {
        let run = state.run;
        let train_file = self.fresh_name(run, "train");
        self.save_module(&train_file, model)?;
        let optim_file = self.fresh_name(run, "optim");
        let optim_path = self.dir.join(&optim_file);
        optim
            .save(&optim_path)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("{}: cannot write optimiser state", optim_path.display()))?;
        sync(&optim_path)?;
        let best_file = match best {
            Some(best) => {
                let name = self.fresh_name(run, "best");
                self.save_module(&name, best)?;
                Some(name)
            }
            None => self.progress(run).and_then(|p| p.best_file.clone()),
        };
        self.state.predict_file = best_file.clone();
        self.state.current = Some(Progress {
            state,
            train_file,
            optim_file,
            best_file,
        });
        self.commit()
    }

    /// Records a finished run; its training files are no longer needed.
    pub fn complete_run(&mut self, completed: Completed) -> Result<()> {
        self.state.completed.push(completed);
        self.state.current = None;
        self.commit()
    }

    /// Marks the whole command done; the last best network stays for `predict`.
    pub fn finish(&mut self) -> Result<()> {
        self.state.finished = true;
        self.state.current = None;
        self.commit()
    }

    fn commit(&mut self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state)?;
        write_atomic(&self.dir.join(STATE), &bytes)?;
        // Only now are older tensor files unreferenced.
        let keep: BTreeSet<&str> = self
            .state
            .current
            .iter()
            .flat_map(|p| {
                [Some(p.train_file.as_str()), Some(p.optim_file.as_str())]
                    .into_iter()
                    .chain([p.best_file.as_deref()])
            })
            .chain([self.state.predict_file.as_deref()])
            .flatten()
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".bpk") && !keep.contains(name.as_ref()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}
