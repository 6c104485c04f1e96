//! `eval`: an exported model scored through the edge's runner on a BreakHis folder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;

use histoscreen_edge::card::ModelCard;
use histoscreen_edge::colour::Shift;
use histoscreen_edge::fsutil::write_atomic;

use crate::commands::{DataSource, UsageError};
use crate::data::dataset::Sample;
use crate::eval::colour_shift::colour_shift_table;
use crate::eval::score::load_model;
use crate::eval::seen::{evaluate_split, trained_patients, EvalReport, PatientSplit};

/// What `eval` is asked to score.
#[derive(Debug, Clone)]
pub struct EvalJob {
    /// Exported model, its card beside it.
    pub model: PathBuf,
    pub data: DataSource,
    /// One CSV row per image goes here.
    pub per_image: Option<PathBuf>,
    /// Score data of trained-on patients only rather than refuse it.
    pub allow_seen: bool,
    /// `all` or a comma list of colour-shift names to score the images under as well.
    pub colour_shifts: Option<String>,
}

/// The shifts a `--colour-shift` value names: `all` or a comma list.
pub fn parse_shifts(spec: &str) -> Result<Vec<Shift>> {
    if spec.trim() == "all" {
        return Ok(Shift::all().to_vec());
    }
    spec.split(',')
        .map(|name| {
            name.parse::<Shift>()
                .map_err(|e| UsageError(format!("--colour-shift: {e}")).into())
        })
        .collect()
}

/// Prints the report as JSON on stdout.
pub fn run(job: &EvalJob) -> Result<i32> {
    let report = eval_command(job)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// `eval`: headline figures from the patients the model never trained on, the trained-on
/// ones apart under `seen_in_training`; data of trained-on patients only is refused unless
/// `--allow-seen`.
pub fn eval_command(job: &EvalJob) -> Result<EvalReport> {
    let shifts = job.colour_shifts.as_deref().map(parse_shifts).transpose()?;
    let model = load_model(&job.model)?;
    let ds = job.data.scan()?;
    let samples: Vec<&Sample> = ds.samples.iter().collect();
    let trained = trained_patients(model.card());
    let split = PatientSplit::new(&samples, trained.as_ref());
    check_seen(job, &split)?;
    let mut report = evaluate_split(&model, &split);
    if let Some(shifts) = &shifts {
        // Unseen patients when there are any: a robustness figure on training patients would
        // flatter the model as much as its accuracy there does.
        let scored = match (&report.unseen, &report.seen_in_training) {
            (Some(f), _) => Some((&split.unseen, f, "patients the model was not trained on")),
            (None, Some(s)) => Some((
                &split.seen,
                &s.figures,
                "patients the model was trained on (--allow-seen)",
            )),
            (None, None) => None,
        };
        // The unshifted row is the figures just computed, not a second pass over the images.
        if let Some((samples, figures, who)) = scored {
            let table = colour_shift_table(&model, samples, &figures.metrics, shifts, who);
            eprint!("{}", table.markdown());
            report.colour_shift = Some(table);
        }
    }
    report.rejected.extend(ds.rejected.iter().cloned());
    for r in &report.rejected {
        tracing::warn!("not evaluated {}: {}", r.path.display(), r.reason);
    }
    if let Some(path) = &job.per_image {
        let mut csv =
            String::from("path,patient,class,subtype,magnification,p_malignant,seen_in_training\n");
        for (r, seen) in &report.results {
            csv.push_str(&format!(
                "{},{},{},{},{},{:.6},{}\n",
                r.path,
                r.patient,
                r.class,
                r.subtype,
                r.magnification,
                r.p_malignant,
                seen.as_str()
            ));
        }
        write_atomic(path, csv.as_bytes())?;
    }
    Ok(report)
}

/// At most `n` patient ids, for a one-line message.
fn some_ids(ids: &BTreeSet<String>, n: usize) -> String {
    let mut shown: Vec<&str> = ids.iter().take(n).map(String::as_str).collect();
    if ids.len() > n {
        shown.push("...");
    }
    shown.join(", ")
}

/// Warns when trained-on patients are in the data (or when the card cannot tell), and
/// refuses data of trained-on patients only unless `--allow-seen`.
fn check_seen(job: &EvalJob, split: &PatientSplit<'_>) -> Result<()> {
    let card = ModelCard::card_path_for(&job.model);
    if !split.known {
        tracing::warn!(
            "{}: the card records no training patients (written before histoscreen-train listed them): cannot tell seen from unseen patients, so these figures may include patients the model was trained on",
            card.display()
        );
        return Ok(());
    }
    let seen = split.seen_patients();
    if seen.is_empty() {
        return Ok(());
    }
    let unseen = split.unseen_patients().len();
    if unseen == 0 && !job.allow_seen {
        let data = job.data.dir();
        return Err(UsageError(format!(
            "{}: all {} patients were trained on (per {}), so its figures would measure memory, not screening: give data of other patients, or --allow-seen to score them anyway",
            data.display(),
            seen.len(),
            card.display()
        ))
        .into());
    }
    tracing::warn!(
        "{} of {} patients were trained on ({}): their figures are under seen_in_training, the headline figures are from the {unseen} unseen patients only",
        seen.len(),
        seen.len() + unseen,
        some_ids(&seen, 5)
    );
    Ok(())
}
