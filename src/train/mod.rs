//! Transfer learning and evaluation: `pedvision retrain` and `pedvision eval`.
//!
//! ```text
//! dataset (KITTI | COCO | VOC | YOLO) --Sample--> images (decode, resize, normalise)
//!   --> features (frozen graph through ONNX Runtime, batched, run once: per level the
//!       F-channel feature at every cell + the frozen box logits) --FeatureSet-->
//!   assign (per-cell class + IoU quality targets) --> head (per-level linear class
//!   head, quality focal loss, AdamW, early stopping on validation AP)
//!   --> graph (ONNX surgery: the new 1×1 head into the untouched frozen graph)
//!   --> export (model + manifest + report, written atomically)
//! eval: dataset --> infer::Detector (the same session `run` uses) --> metrics (AP, MR⁻²)
//! ```
//!
//! The retrain orchestrator ([`retrain`]) owns the feature cache (in memory) and the
//! head; nothing here touches the video pipeline except through the model files it
//! writes, which `pedvision run --model` reads like any other.

pub mod assign;
pub mod dataset;
pub mod eval;
pub mod features;
pub mod graph;
pub mod head;
pub mod images;
pub mod metrics;
pub mod report;
pub mod retrain;
pub mod synth;

/// Everything that can stop a retrain, an evaluation or a data-set generation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    #[error(transparent)]
    Runtime(#[from] crate::infer::RuntimeError),
    #[error(transparent)]
    Manifest(#[from] crate::config::ManifestError),
    #[error("{path}: {reason}")]
    Image {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
