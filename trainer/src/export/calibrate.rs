//! Activation ranges for the int8 export, measured by running the trained network on
//! training images exactly as the device preprocesses them.

use std::collections::BTreeMap;

use anyhow::Result;
use burn::tensor::{Device, Tensor};

use crate::data::dataset::Sample;
use crate::data::images::{self, LoadedImage};
use crate::export::onnx::int8::{ActivationRanges, Calibrator, RangeMethod};
use crate::model::alexnet::AlexNet;

/// How the int8 activation ranges are measured.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Training images measured on, taken in turn from each training patient.
    pub images: usize,
    pub method: RangeMethod,
}

/// Images per forward pass: conv1's output for 8 images is 6 MB.
const BATCH: usize = 8;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 activations")
}

/// Ranges of the input and of every convolution's ReLU output over `images`.
pub fn calibrate(
    model: &AlexNet,
    images: &[&LoadedImage],
    method: RangeMethod,
    device: &Device,
) -> Result<ActivationRanges> {
    let mut calibrator = Calibrator::default();
    for chunk in images.chunks(BATCH) {
        let views: Vec<_> = chunk.iter().map(|i| &i.eval_view).collect();
        let x = images::batch_tensor(&views, device);
        let input = values(x.clone());
        let convs: Vec<Vec<f32>> = model.activations(x).into_iter().map(values).collect();
        calibrator.observe(chunk.len(), &input, &convs);
    }
    calibrator.ranges(method)
}

/// Up to `n` images taken in turn from each patient (patients and images in name order), so
/// that no single slide's stain sets the ranges and the choice is the same on every run.
pub fn spread_over_patients<'a>(images: &[&'a LoadedImage], n: usize) -> Vec<&'a LoadedImage> {
    let mut by_patient: BTreeMap<&str, Vec<&LoadedImage>> = BTreeMap::new();
    for &i in images {
        by_patient.entry(&i.sample.patient).or_default().push(i);
    }
    for list in by_patient.values_mut() {
        list.sort_by(|a, b| a.sample.path.cmp(&b.sample.path));
    }
    let mut queues: Vec<_> = by_patient.into_values().map(|v| v.into_iter()).collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let before = out.len();
        for q in queues.iter_mut() {
            if out.len() == n {
                break;
            }
            out.extend(q.next());
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// The patients of `samples`, for the card.
pub fn patients_of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<String> {
    let mut p: Vec<String> = samples.into_iter().map(|s| s.patient.clone()).collect();
    p.sort();
    p.dedup();
    p
}
