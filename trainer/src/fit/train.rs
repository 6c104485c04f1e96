//! The training loop: SGD with momentum on the seed recipe, best epoch chosen on a selection
//! set of patients that the final figures never use.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::data::images::{batch_tensor, LoadedImage};
use crate::eval::metrics::{Metrics, Scored};
use crate::fit::checkpoint::{Checkpointer, Interrupted, RunState};
use crate::fit::config::TrainConfig;
use crate::fit::history::EpochLog;
use crate::model::alexnet::{AlexNet, Head, FEATURE_CHANNELS};
use crate::model::device::device;
use crate::model::feature_bank::FeatureBank;
use crate::model::feature_norm::FeatureNorm;
use crate::model::infer::{malignant_probs, predict};
use crate::model::pretrained::{load_pretrained, LoadReport};

/// Tiles of each image per training step when the head trains on stored tile features.
pub const TILES_PER_STEP: usize = 4;

pub struct Fitted {
    /// Inference copy (no autodiff) of the chosen epoch's network.
    pub model: AlexNet,
    /// 1-based; the last epoch when there is no selection set.
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    pub pretrained: Option<LoadReport>,
}

/// Weighted cross-entropy; `weights[class]` rebalances benign against malignant.
fn loss_fn(logits: Tensor<2>, labels: &[usize], weights: [f32; 2]) -> Tensor<1> {
    let n = labels.len();
    let mut target = vec![0f32; n * 2];
    let mut total = 0f32;
    for (i, &y) in labels.iter().enumerate() {
        target[i * 2 + y] = weights[y];
        total += weights[y];
    }
    let target = Tensor::<2>::from_data(TensorData::new(target, [n, 2]), &logits.device());
    (log_softmax(logits, 1) * target)
        .sum()
        .neg()
        .div_scalar(total)
}

fn class_weights(train: &[&LoadedImage], enabled: bool) -> [f32; 2] {
    let mut counts = [0usize; 2];
    for x in train {
        counts[x.sample.class.index()] += 1;
    }
    if !enabled || counts[0] == 0 || counts[1] == 0 {
        return [1.0, 1.0];
    }
    let n = (counts[0] + counts[1]) as f32;
    [n / (2.0 * counts[0] as f32), n / (2.0 * counts[1] as f32)]
}

/// Chooses epochs by selection AUC, then balanced accuracy: both are robust on the handful of
/// selection patients a small data set leaves.
fn better(a: &Metrics, b: &Metrics) -> bool {
    let key = |m: &Metrics| (m.roc_auc.unwrap_or(0.5), m.balanced_accuracy);
    key(a) > key(b)
}

/// One run's checkpointing: where to save, and which run of the command this is.
pub struct Checkpointing<'a> {
    pub checkpointer: &'a mut Checkpointer,
    pub run: usize,
}

/// The epoch's own random stream, so a resumed run replays the same order and augmentations
/// from any epoch without the state of the epochs before it.
fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn progress_bar(show: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} images  {per_sec}  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_prefix(format!("{}/{}", epoch + 1, epochs));
    b
}

/// Mean negative log-likelihood and metrics of malignant probabilities `p` on `select`.
fn select_metrics(select: &[&LoadedImage], p: &[f32]) -> (f64, Metrics) {
    let scored: Vec<Scored> = select
        .iter()
        .zip(p)
        .map(|(x, &p)| Scored {
            patient: x.sample.patient.clone(),
            malignant: x.sample.class.index() == 1,
            p_malignant: p,
        })
        .collect();
    let nll = scored
        .iter()
        .map(|s| {
            -((if s.malignant {
                s.p_malignant
            } else {
                1.0 - s.p_malignant
            })
            .max(1e-7) as f64)
                .ln()
        })
        .sum::<f64>()
        / scored.len() as f64;
    (nll, Metrics::compute(&scored, 0.5))
}

/// Logits of one batch through the trunk, augmenting the images on the fly.
#[allow(clippy::too_many_arguments)]
fn trunk_logits(
    model: &AlexNet,
    cfg: &TrainConfig,
    train: &[&LoadedImage],
    chunk: &[usize],
    seeds: &[u64],
    norm: &Option<FeatureNorm>,
    frozen: usize,
    ad: &Device,
) -> Tensor<2> {
    let augment = cfg.augmentation();
    let views: Vec<image::RgbImage> = chunk
        .par_iter()
        .zip(seeds)
        .map(|(&i, &seed)| {
            if cfg.augment {
                augment.apply(&train[i].field_view, &mut StdRng::seed_from_u64(seed))
            } else {
                train[i].eval_view.clone()
            }
        })
        .collect();
    let refs: Vec<&image::RgbImage> = views.iter().collect();
    let x = batch_tensor(&refs, ad);
    match (norm, frozen == 5) {
        // Run a frozen trunk without autodiff bookkeeping at all.
        (Some(norm), true) => {
            let f = model.valid().forward_features(x.inner());
            model.forward_compact(norm.apply(AlexNet::pool_features(f)).autodiff())
        }
        (Some(norm), false) => {
            model.forward_compact(norm.apply(AlexNet::pool_features(model.forward_features(x))))
        }
        (None, true) => {
            let f = model.valid().forward_features(x.inner());
            model.forward_head(f.autodiff())
        }
        (None, false) => model.forward(x),
    }
}

/// Trains one run. `bank` (pooled features cached with the frozen trunk) is used when
/// [`TrainConfig::stores_features`]; otherwise images go through the trunk each step.
pub fn fit(
    cfg: &TrainConfig,
    train: &[&LoadedImage],
    select: &[&LoadedImage],
    progress: bool,
    bank: Option<&FeatureBank>,
    mut checkpointing: Option<Checkpointing<'_>>,
) -> Result<Fitted> {
    if train.is_empty() {
        bail!("no training images");
    }
    if cfg.batch == 0 || cfg.epochs == 0 {
        bail!("--batch and --epochs must be at least 1");
    }
    let device = device();
    // Initialisation of the fresh layers is then the same on every run with this seed.
    device.seed(cfg.seed);
    let ad = device.clone().autodiff();
    let mut model = AlexNet::with_hidden(cfg.head, cfg.hidden, &ad);
    let pretrained = match &cfg.pretrained {
        Some(path) => {
            let report = load_pretrained(&mut model, path)?;
            tracing::info!("{}", report.describe());
            Some(report)
        }
        None => None,
    };
    let saved = checkpointing
        .as_ref()
        .and_then(|c| c.checkpointer.progress(c.run).cloned());
    if let (Some(c), Some(p)) = (&checkpointing, &saved) {
        c.checkpointer.load_module(&p.train_file, &mut model)?;
        tracing::info!(
            "resuming run {} at epoch {}, batch {}",
            p.state.run + 1,
            p.state.epoch + 1,
            p.state.batch
        );
    }
    // Frozen convolutions need neither gradients nor optimiser state.
    let frozen = cfg.freeze.frozen_convs();
    model.features = model
        .features
        .into_iter()
        .enumerate()
        .map(|(i, conv)| if i < frozen { conv.freeze() } else { conv })
        .collect();

    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: cfg.momentum,
            // burn damps momentum by 0.1 by default; the seed recipe (PyTorch) does not.
            dampening: 0.0,
            nesterov: false,
        }))
        .with_weight_decay(
            (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32)),
        )
        .init();
    if let (Some(c), Some(p)) = (&checkpointing, &saved) {
        optim = c.checkpointer.load_optim(&p.optim_file, optim)?;
    }

    let bank = bank.filter(|_| cfg.stores_features());
    // Measured once on the starting trunk; with fine-tuned convolutions it is simply a fixed
    // affine map in front of the head.
    let norm = match (&saved, bank) {
        (Some(p), _) => p.state.norm.clone(),
        (None, Some(bank)) => Some(FeatureNorm::from_rows(
            &train
                .iter()
                .flat_map(|x| bank.centre(x).chunks(FEATURE_CHANNELS))
                .collect::<Vec<_>>(),
        )),
        (None, None) => (model.head() == Head::Compact).then(|| {
            let views: Vec<&image::RgbImage> = train.iter().map(|x| &x.eval_view).collect();
            FeatureNorm::measure(&model.valid(), &views, cfg.batch, &device)
        }),
    };
    let inference = |model: &AlexNet| match &norm {
        Some(norm) => norm.fold_into(model.valid()),
        None => model.valid(),
    };
    let select_probs = |valid: &AlexNet| -> Vec<f32> {
        match bank {
            // The image's score is the mean over its whole field's tiles, as on the device.
            Some(bank) => select
                .iter()
                .map(|x| {
                    let tiles = bank.centre(x).chunks(FEATURE_CHANNELS);
                    let p =
                        malignant_probs(valid.forward_compact(FeatureBank::tensor(tiles, &device)));
                    p.iter().sum::<f32>() / p.len().max(1) as f32
                })
                .collect(),
            None => {
                let views: Vec<&image::RgbImage> = select.iter().map(|x| &x.eval_view).collect();
                predict(valid, &views, cfg.batch, &device)
            }
        }
    };

    let weights = class_weights(train, cfg.class_weighting);
    let (first_epoch, mut skip_batches, mut loss_sum, mut correct, mut history) = match &saved {
        Some(p) => (
            p.state.epoch,
            p.state.batch,
            p.state.loss_sum,
            p.state.correct,
            p.state.history.clone(),
        ),
        None => (0, 0, 0.0, 0, Vec::new()),
    };
    let mut best: Option<(usize, Metrics, AlexNet)> = None;
    if let (Some(c), Some(p)) = (&checkpointing, &saved) {
        if let (Some((epoch, metrics)), Some(file)) = (&p.state.best, &p.best_file) {
            let mut b = AlexNet::with_hidden(cfg.head, cfg.hidden, &device);
            c.checkpointer.load_module(file, &mut b)?;
            best = Some((*epoch, metrics.clone(), b));
        }
    }
    let snapshot = |epoch: usize,
                    batch: usize,
                    loss_sum: f64,
                    correct: usize,
                    history: &[EpochLog],
                    best: &Option<(usize, Metrics, AlexNet)>,
                    run: usize| RunState {
        run,
        epoch,
        batch,
        loss_sum,
        correct,
        history: history.to_vec(),
        best: best.as_ref().map(|(e, m, _)| (*e, m.clone())),
        norm: norm.clone(),
    };

    // Rows per image in a step: accuracy is counted per row.
    let per_image = if bank.is_some() { TILES_PER_STEP } else { 1 };
    for epoch in first_epoch..cfg.epochs {
        let started = Instant::now();
        let lr = cfg.lr_at(epoch);
        let mut rng = epoch_rng(cfg.seed, epoch);
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let seeds: Vec<u64> = order.iter().map(|_| rng.random()).collect();
        let bar = progress_bar(progress && bank.is_none(), train.len(), epoch, cfg.epochs);
        bar.inc((skip_batches * cfg.batch).min(train.len()) as u64);
        let batches = order.chunks(cfg.batch).zip(seeds.chunks(cfg.batch));
        for (b, (chunk, seeds)) in batches.enumerate().skip(skip_batches) {
            if let Some(c) = checkpointing.as_mut() {
                if c.checkpointer.stop_requested() {
                    bar.finish_and_clear();
                    let p = snapshot(epoch, b, loss_sum, correct, &history, &best, c.run);
                    let run = c.run;
                    c.checkpointer.save(p, &model, &optim, None)?;
                    return Err(Interrupted {
                        dir: c.checkpointer.dir().to_path_buf(),
                        run: run + 1,
                        epoch: epoch + 1,
                        batch: b,
                    }
                    .into());
                }
            }
            let labels: Vec<usize> = chunk
                .iter()
                .flat_map(|&i| std::iter::repeat_n(train[i].sample.class.index(), per_image))
                .collect();
            // Dropout draws from the device's generator: reseeding per batch keeps a resumed
            // run's masks those of an uninterrupted one.
            device.seed(epoch_rng(cfg.seed ^ b as u64, epoch).random());
            let logits = match (bank, &norm) {
                (Some(bank), Some(norm)) => {
                    // A few tiles of one view of each image, drawn by the image's seed.
                    let rows = chunk.iter().zip(seeds).flat_map(|(&i, &seed)| {
                        let tiles = if cfg.augment {
                            bank.augmented(train[i], (seed % bank.views() as u64) as usize)
                        } else {
                            bank.centre(train[i])
                        };
                        let n = tiles.len() / FEATURE_CHANNELS;
                        let mut rng = StdRng::seed_from_u64(seed);
                        (0..TILES_PER_STEP).map(move |_| {
                            let t = rng.random_range(0..n);
                            &tiles[t * FEATURE_CHANNELS..(t + 1) * FEATURE_CHANNELS]
                        })
                    });
                    let x = FeatureBank::tensor(rows, &device);
                    model.forward_compact(norm.apply(x).autodiff())
                }
                _ => trunk_logits(&model, cfg, train, chunk, seeds, &norm, frozen, &ad),
            };
            let preds: Vec<f32> = logits
                .clone()
                .inner()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 logits");
            correct += preds
                .chunks(2)
                .zip(&labels)
                .filter(|(p, &y)| ((p[1] > p[0]) as usize) == y)
                .count();
            let loss = loss_fn(logits, &labels, weights);
            let loss_value: f32 = loss.clone().inner().into_scalar();
            if !loss_value.is_finite() {
                bail!(
                    "training diverged at epoch {} (loss {loss_value}); lower --lr",
                    epoch + 1
                );
            }
            loss_sum += loss_value as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            bar.inc(chunk.len() as u64);
            bar.set_message(format!("loss {:.4}", loss_sum / bar.position() as f64));
        }
        bar.finish_and_clear();
        skip_batches = 0;

        let valid = inference(&model);
        let (select_loss, select_metrics) = if select.is_empty() {
            (None, None)
        } else {
            let (nll, m) = select_metrics(select, &select_probs(&valid));
            (Some(nll), Some(m))
        };
        let log = EpochLog {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: correct as f64 / (train.len() * per_image) as f64,
            select_loss,
            select: select_metrics.clone(),
            seconds: started.elapsed().as_secs_f64(),
        };
        (loss_sum, correct) = (0.0, 0);
        tracing::info!(
            "epoch {}/{}: lr {:.5} train loss {:.4} acc {:.3}{} ({:.1} s)",
            log.epoch,
            cfg.epochs,
            lr,
            log.train_loss,
            log.train_accuracy,
            match &log.select {
                Some(m) => format!(
                    " | selection loss {:.4} bal.acc {:.3} AUC {:.3}",
                    select_loss.unwrap_or(f64::NAN),
                    m.balanced_accuracy,
                    m.roc_auc.unwrap_or(f64::NAN)
                ),
                None => String::new(),
            },
            log.seconds
        );
        history.push(log);
        let improved = match &select_metrics {
            Some(m) => best.as_ref().is_none_or(|(_, b, _)| better(m, b)),
            None => true,
        };
        if improved {
            best = Some((epoch + 1, select_metrics.unwrap_or_default(), valid));
        }
        if let Some(c) = checkpointing.as_mut() {
            let p = snapshot(epoch + 1, 0, 0.0, 0, &history, &best, c.run);
            let new_best = improved.then(|| &best.as_ref().expect("just set").2);
            c.checkpointer.save(p, &model, &optim, new_best)?;
        }
    }
    let (best_epoch, _, model) = best.expect("at least one epoch ran");
    Ok(Fitted {
        model,
        best_epoch,
        history,
        pretrained,
    })
}
