//! Patient-disjoint splits, stratified by class and seeded.
//!
//! BreakHis has dozens of near-identical images per patient: an image-level split would put
//! the same tissue on both sides and report memorisation as accuracy.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::data::dataset::{Class, Sample};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<String>,
    pub test: Vec<String>,
}

impl Split {
    pub fn select<'a>(&self, samples: &'a [Sample]) -> (Vec<&'a Sample>, Vec<&'a Sample>) {
        let test: BTreeSet<&str> = self.test.iter().map(String::as_str).collect();
        samples
            .iter()
            .partition(|s| !test.contains(s.patient.as_str()))
    }
}

fn shuffled_by_class(patients: &BTreeMap<&str, Class>, seed: u64) -> [Vec<String>; 2] {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: [Vec<String>; 2] = Default::default();
    for (p, c) in patients {
        by_class[c.index()].push(p.to_string());
    }
    for list in &mut by_class {
        list.shuffle(&mut rng);
    }
    by_class
}

/// Holds out `fraction` of each class's patients (at least one when the class has two or more).
pub fn holdout(patients: &BTreeMap<&str, Class>, fraction: f64, seed: u64) -> Result<Split> {
    if !(0.0..1.0).contains(&fraction) {
        bail!("--val-fraction must be in [0, 1), got {fraction}");
    }
    let mut split = Split {
        train: vec![],
        test: vec![],
    };
    for (class, list) in shuffled_by_class(patients, seed).into_iter().enumerate() {
        let n = list.len();
        let mut k = (n as f64 * fraction).round() as usize;
        if fraction > 0.0 && k == 0 && n >= 2 {
            k = 1;
        }
        if fraction > 0.0 && k >= n {
            bail!(
                "only {n} {} patient(s): too few to hold out {fraction} of them",
                crate::data::dataset::CLASSES[class]
            );
        }
        split.test.extend_from_slice(&list[..k]);
        split.train.extend_from_slice(&list[k..]);
    }
    split.train.sort();
    split.test.sort();
    Ok(split)
}

/// K folds over patients; each class is dealt round-robin so every fold gets both classes
/// whenever each class has at least K patients.
pub fn kfold(patients: &BTreeMap<&str, Class>, k: usize, seed: u64) -> Result<Vec<Split>> {
    if k < 2 {
        bail!("--folds must be at least 2, got {k}");
    }
    let by_class = shuffled_by_class(patients, seed);
    for (class, list) in by_class.iter().enumerate() {
        if list.len() < k {
            bail!(
                "--folds {k}: only {} {} patient(s), need at least {k}",
                list.len(),
                crate::data::dataset::CLASSES[class]
            );
        }
    }
    let mut folds: Vec<Vec<String>> = vec![vec![]; k];
    let mut next = 0;
    for list in by_class {
        for p in list {
            folds[next % k].push(p);
            next += 1;
        }
    }
    let all: Vec<String> = patients.keys().map(|p| p.to_string()).collect();
    Ok(folds
        .into_iter()
        .map(|mut test| {
            test.sort();
            let train = all.iter().filter(|p| !test.contains(p)).cloned().collect();
            Split { train, test }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patients() -> BTreeMap<&'static str, Class> {
        let mut m = BTreeMap::new();
        for p in ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"] {
            m.insert(p, Class::Benign);
        }
        for i in 0..15 {
            m.insert(
                Box::leak(format!("m{i}").into_boxed_str()) as &str,
                Class::Malignant,
            );
        }
        m
    }

    fn disjoint(s: &Split) -> bool {
        s.train.iter().all(|p| !s.test.contains(p))
    }

    #[test]
    fn holdout_is_patient_disjoint_stratified_and_seeded() {
        let ps = patients();
        let s = holdout(&ps, 0.3, 7).unwrap();
        assert!(disjoint(&s));
        assert_eq!(s.train.len() + s.test.len(), ps.len());
        let test_benign = s.test.iter().filter(|p| p.starts_with('b')).count();
        assert_eq!((test_benign, s.test.len() - test_benign), (3, 5));
        assert_eq!(s, holdout(&ps, 0.3, 7).unwrap());
        assert_ne!(s, holdout(&ps, 0.3, 8).unwrap());
    }

    #[test]
    fn kfold_covers_every_patient_once_and_never_both_sides() {
        let ps = patients();
        let folds = kfold(&ps, 5, 1).unwrap();
        let mut seen = BTreeSet::new();
        for f in &folds {
            assert!(disjoint(f));
            assert_eq!(f.train.len() + f.test.len(), ps.len());
            assert!(
                f.test.iter().any(|p| p.starts_with('b'))
                    && f.test.iter().any(|p| p.starts_with('m'))
            );
            for p in &f.test {
                assert!(seen.insert(p.clone()), "{p} tested twice");
            }
        }
        assert_eq!(seen.len(), ps.len());
    }

    #[test]
    fn too_few_patients_is_an_error() {
        let mut ps = BTreeMap::new();
        ps.insert("b1", Class::Benign);
        ps.insert("m1", Class::Malignant);
        assert!(kfold(&ps, 3, 0)
            .unwrap_err()
            .to_string()
            .contains("need at least 3"));
    }
}
