//! `eval`: a model on a labelled data set, through the same detector session and
//! decode that `run` uses, scored with COCO AP and, for `person`, MR⁻².
//!
//! Detections are kept down to score 0.01 so the precision-recall curves are
//! complete; boxes are compared in source pixels. Classes of the data set that the
//! model does not have are listed apart and left out of the overall means.

use std::path::PathBuf;

use super::TrainError;
use super::dataset::Dataset;
use super::head::{EVAL_CONF, EVAL_NMS_IOU};
use super::metrics::{self, ImageEval};
use crate::config::Manifest;
use crate::infer::{Detector, RuntimeOptions};
use crate::model::classes::ClassFilter;

/// Per class figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassResult {
    pub label: String,
    pub boxes: usize,
    pub detections: usize,
    pub ap50: Option<f32>,
    pub ap50_95: Option<f32>,
    /// Log-average miss rate, for `person` only.
    pub mr2: Option<f32>,
}

/// The evaluation (also written as JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: PathBuf,
    pub images: usize,
    pub skipped: usize,
    pub classes: Vec<ClassResult>,
    /// Means over the classes with boxes in the data.
    pub ap50: Option<f32>,
    pub ap50_95: Option<f32>,
    /// Classes in the data that the model does not detect.
    pub not_in_model: Vec<String>,
}

/// Runs `manifest`'s model over every image of `dataset`, `batch` at a time.
pub fn evaluate(
    dataset: &Dataset,
    manifest: &Manifest,
    runtime: &RuntimeOptions,
    batch: usize,
    progress: impl FnMut(usize),
) -> Result<EvalReport, TrainError> {
    let images = detect_all(dataset, manifest, runtime, batch, progress)?;
    let counts = dataset.label_counts();
    let classes = score_classes(&images, manifest, &counts);
    let mean = |f: fn(&ClassResult) -> Option<f32>| {
        let v: Vec<f32> = classes.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
    };
    Ok(EvalReport {
        model: manifest.name.clone(),
        data: dataset.path.clone(),
        images: images.len(),
        skipped: dataset.skipped.len(),
        ap50: mean(|c| c.ap50),
        ap50_95: mean(|c| c.ap50_95),
        not_in_model: counts
            .keys()
            .filter(|l| !manifest.labels.contains(l))
            .cloned()
            .collect(),
        classes,
    })
}

/// The model's detections and the ground truth of every image (labels the model
/// lacks are left out of the truth).
fn detect_all(
    dataset: &Dataset,
    manifest: &Manifest,
    runtime: &RuntimeOptions,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<ImageEval>, TrainError> {
    let mut detector = Detector::load(manifest, runtime)?;
    let layout = manifest.layout();
    let mut images = Vec::with_capacity(dataset.samples.len());
    let mut tensor = Vec::new();
    for chunk in dataset.samples.chunks(batch.max(1)) {
        let paths: Vec<&std::path::Path> = chunk.iter().map(|s| s.image.as_path()).collect();
        let (view, sizes) = super::images::load_batch(&paths, &manifest.input, &mut tensor)?;
        let outputs = detector.run(view)?;
        for ((sample, out), size) in chunk.iter().zip(&outputs).zip(sizes) {
            let (direct, mirrored) = (out.views(), out.mirrored_views());
            let dets = crate::model::detect(
                &layout,
                crate::model::FrameTensors {
                    direct: &direct,
                    mirrored: &mirrored,
                },
                EVAL_CONF,
                &ClassFilter::All,
                (EVAL_NMS_IOU, crate::model::COCO_MAX_DETECTIONS),
                size,
            );
            images.push(ImageEval {
                detections: dets.iter().map(|d| (d.class_id, d.score, d.bbox)).collect(),
                truth: sample
                    .annotations
                    .iter()
                    .filter_map(|a| {
                        manifest
                            .labels
                            .iter()
                            .position(|l| *l == a.label)
                            .map(|c| (c, a.bbox))
                    })
                    .collect(),
                ignore: sample.ignore.clone(),
            });
        }
        progress(images.len());
    }
    Ok(images)
}

/// AP, AP@[.5:.95] and (for people) the log-average miss rate of every model
/// class that the data has.
fn score_classes(
    images: &[ImageEval],
    manifest: &Manifest,
    counts: &std::collections::BTreeMap<String, usize>,
) -> Vec<ClassResult> {
    let mut classes = Vec::new();
    for (id, label) in manifest.labels.iter().enumerate() {
        let Some(&boxes) = counts.get(label) else {
            continue;
        };
        let (ap50, ap) =
            metrics::coco_ap(images, id).map_or((None, None), |(a, b)| (Some(a), Some(b)));
        classes.push(ClassResult {
            label: label.clone(),
            boxes,
            detections: images
                .iter()
                .map(|i| i.detections.iter().filter(|d| d.0 == id).count())
                .sum(),
            ap50,
            ap50_95: ap,
            mr2: (label == "person")
                .then(|| metrics::log_average_miss_rate(images, id))
                .flatten(),
        });
    }
    classes
}
