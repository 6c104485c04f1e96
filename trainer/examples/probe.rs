//! Linear probe on the frozen ImageNet conv features, with the trainer's own patient K-fold:
//! the baseline the issue quotes (about 0.78 balanced accuracy, 0.85 AUC), reproduced in-tree
//! so a head can be compared with it on the same folds.
//!
//!   cargo run --example probe -- [DATA] [WEIGHTS] [FOLDS] [SEED]
//!
//! `PROBE_GAP_ONLY=1` skips the slower probe on the 9216 flattened features.
//!
//! Features: centre-crop view (the device's input), pool5 flattened (9216) and global-average
//! pooled (256), each standardised on the training fold; L2-regularised logistic regression by
//! full-batch gradient descent.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::tensor::Tensor;
use histoscreen_train::data::dataset::{Class, Dataset};
use histoscreen_train::data::images::{self, batch_tensor};
use histoscreen_train::data::split;
use histoscreen_train::eval::metrics::{Metrics, Scored};
use histoscreen_train::model::alexnet::{AlexNet, Head};
use histoscreen_train::model::device::device;
use histoscreen_train::model::pretrained;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shared = histoscreen_train::data::settings::shared_dir();
    let data = args
        .first()
        .map(PathBuf::from)
        .unwrap_or(shared.join("data/breakhis"));
    let wfile = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or(shared.join("weights/alexnet-features-imagenet.safetensors"));
    let folds: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let seed: u64 = args.get(3).map_or(Ok(1), |s| s.parse())?;

    let ds = Dataset::scan(&data, &[])?;
    let (imgs, _) = images::load(&ds.samples);
    let device = device();
    let mut model = AlexNet::new(Head::Compact, &device);
    pretrained::load_pretrained(&mut model, &wfile)?;

    let mut flat: Vec<Vec<f32>> = Vec::new();
    let mut gap: Vec<Vec<f32>> = Vec::new();
    let mut gap345: Vec<Vec<f32>> = Vec::new();
    let mut gap_all: Vec<Vec<f32>> = Vec::new();
    for chunk in imgs.chunks(32) {
        let views: Vec<_> = chunk.iter().map(|x| &x.eval_view).collect();
        let levels: Vec<Vec<f32>> = model
            .pooled_levels(batch_tensor(&views, &device))
            .into_iter()
            .map(|t| t.into_data().try_to_vec::<f32>().expect("f32"))
            .collect();
        for i in 0..chunk.len() {
            let row = |l: &[usize]| -> Vec<f32> {
                l.iter()
                    .flat_map(|&k| {
                        let c = levels[k].len() / chunk.len();
                        levels[k][i * c..(i + 1) * c].to_vec()
                    })
                    .collect()
            };
            gap345.push(row(&[2, 3, 4]));
            gap_all.push(row(&[0, 1, 2, 3, 4]));
        }
        let f: Tensor<4> = model.forward_features(batch_tensor(&views, &device));
        let [n, c, h, w] = f.dims();
        let v: Vec<f32> = f.into_data().try_to_vec::<f32>().expect("f32");
        for i in 0..n {
            let x = &v[i * c * h * w..(i + 1) * c * h * w];
            flat.push(x.to_vec());
            gap.push(
                x.chunks(h * w)
                    .map(|p| p.iter().sum::<f32>() / (h * w) as f32)
                    .collect(),
            );
        }
    }
    let splits = split::kfold(&ds.patients(), folds, seed)?;
    let only_gap = std::env::var_os("PROBE_GAP_ONLY").is_some();
    for (name, feats) in [
        ("pool5 flat 9216", &flat),
        ("GAP 256", &gap),
        ("GAP conv3-5 896", &gap345),
        ("GAP conv1-5 1152", &gap_all),
    ] {
        if only_gap && name == "pool5 flat 9216" {
            continue;
        }
        for l2 in [1e-3f32, 1e-2, 1e-1] {
            let mut scored = Vec::new();
            let mut per_fold: Vec<Metrics> = Vec::new();
            for s in &splits {
                let test: BTreeSet<&str> = s.test.iter().map(String::as_str).collect();
                let (tr, te): (Vec<usize>, Vec<usize>) =
                    (0..imgs.len()).partition(|&i| !test.contains(imgs[i].sample.patient.as_str()));
                let y = |i: usize| (imgs[i].sample.class == Class::Malignant) as u8 as f32;
                let w = fit(feats, &tr, &y, l2);
                let fold: Vec<Scored> = te
                    .iter()
                    .map(|&i| Scored {
                        patient: imgs[i].sample.patient.clone(),
                        malignant: y(i) > 0.5,
                        p_malignant: w.predict(&feats[i]),
                    })
                    .collect();
                per_fold.push(Metrics::compute(&fold, 0.5));
                scored.extend(fold);
            }
            let m = Metrics::compute(&scored, 0.5);
            println!(
                "{name:16} l2 {l2:<6} {folds}-fold seed {seed}: balanced {:.3} AUC {:.3} patient-level {:.3}",
                m.balanced_accuracy,
                m.roc_auc.unwrap_or(f64::NAN),
                m.patient_accuracy
            );
            // The trainer's table reports the mean and sd over folds: the same here.
            let stat = |f: fn(&Metrics) -> f64| {
                let v: Vec<f64> = per_fold.iter().map(f).collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var =
                    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
                format!("{mean:.3} ± {:.3}", var.sqrt())
            };
            println!(
                "{:16} {:9} per-fold mean: balanced {} patient-level {} AUC {}",
                "",
                "",
                stat(|m| m.balanced_accuracy),
                stat(|m| m.patient_accuracy),
                stat(|m| m.roc_auc.unwrap_or(f64::NAN))
            );
        }
    }
    Ok(())
}

struct Probe {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    w: Vec<f32>,
    b: f32,
}

impl Probe {
    fn predict(&self, x: &[f32]) -> f32 {
        let z: f32 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .zip(&self.w)
            .map(|(((v, m), s), w)| (v - m) * s * w)
            .sum::<f32>()
            + self.b;
        1.0 / (1.0 + (-z).exp())
    }
}

/// Class-balanced, L2-regularised logistic regression, 300 full-batch gradient steps.
fn fit(feats: &[Vec<f32>], rows: &[usize], y: &dyn Fn(usize) -> f32, l2: f32) -> Probe {
    let d = feats[0].len();
    let n = rows.len() as f32;
    let mut mean = vec![0f32; d];
    for &i in rows {
        for (m, v) in mean.iter_mut().zip(&feats[i]) {
            *m += v / n;
        }
    }
    let mut var = vec![0f32; d];
    for &i in rows {
        for ((s, v), m) in var.iter_mut().zip(&feats[i]).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v.sqrt() + 1e-6)).collect();
    let xs: Vec<Vec<f32>> = rows
        .iter()
        .map(|&i| {
            feats[i]
                .iter()
                .zip(&mean)
                .zip(&inv_std)
                .map(|((v, m), s)| (v - m) * s)
                .collect()
        })
        .collect();
    let ys: Vec<f32> = rows.iter().map(|&i| y(i)).collect();
    let pos = ys.iter().sum::<f32>();
    let weight = |t: f32| {
        if t > 0.5 {
            n / (2.0 * pos)
        } else {
            n / (2.0 * (n - pos))
        }
    };
    let mut p = Probe {
        mean,
        inv_std,
        w: vec![0.0; d],
        b: 0.0,
    };
    // Gradient descent on the logistic loss is stable below 4 / (largest eigenvalue of X'X/n).
    let lr = 2.0 / top_eigenvalue(&xs, d);
    for _ in 0..300 {
        let mut gw = vec![0f32; d];
        let mut gb = 0f32;
        for (x, &t) in xs.iter().zip(&ys) {
            let z: f32 = x.iter().zip(&p.w).map(|(a, b)| a * b).sum::<f32>() + p.b;
            let e = (1.0 / (1.0 + (-z).exp()) - t) * weight(t) / n;
            for (g, a) in gw.iter_mut().zip(x) {
                *g += e * a;
            }
            gb += e;
        }
        for (w, g) in p.w.iter_mut().zip(&gw) {
            *w -= lr * (g + l2 * *w);
        }
        p.b -= lr * gb;
    }
    p
}

/// Power iteration on X'X/n.
fn top_eigenvalue(xs: &[Vec<f32>], d: usize) -> f32 {
    let mut v = vec![1.0 / (d as f32).sqrt(); d];
    let mut lambda = 1.0;
    for _ in 0..30 {
        let mut next = vec![0f32; d];
        for x in xs {
            let dot: f32 = x.iter().zip(&v).map(|(a, b)| a * b).sum();
            for (n, a) in next.iter_mut().zip(x) {
                *n += dot * a / xs.len() as f32;
            }
        }
        lambda = next.iter().map(|a| a * a).sum::<f32>().sqrt();
        v = next.iter().map(|a| a / lambda).collect();
    }
    lambda
}
