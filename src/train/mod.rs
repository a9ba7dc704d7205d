//! Transfer learning and evaluation: `pedvision retrain` and `pedvision eval`.
//!
//! ```text
//! dataset (KITTI | COCO | VOC | YOLO) --Sample--> images (decode, resize, normalise)
//!   --> features (frozen graph through ONNX Runtime, batched, run once: per level the
//!       F-channel feature at every cell + the frozen box logits) --FeatureSet-->
//!   assign (per-cell class + IoU quality targets) --> head (per-level linear class
//!   head, quality focal loss, AdamW, early stopping on validation AP; with
//!   `--train-layers head` also trunk: a copy of the 3×3 head convolution for the
//!   trained classes, by default as a low-rank update of it, its convolution
//!   through trunk_session's ONNX Runtime model on every cell, or, between
//!   refreshes, on the cells hard_cells picks)
//!   --> graph (ONNX surgery: the new 1×1 head, and any convolution copies beside
//!       the originals, into the untouched frozen graph)
//!   --> export (model + manifest + report, written atomically)
//! eval: dataset --> infer::Detector (the same session `run` uses) --> metrics (AP, MR⁻²)
//! ```
//!
//! The retrain orchestrator ([`retrain`]) owns the feature cache (in memory) and the
//! head; nothing here touches the video pipeline except through the model files it
//! writes, which `pedvision run --model` reads like any other.

pub mod assign;
pub mod augment;
pub mod dataset;
pub mod eval;
pub mod features;
pub mod graph;
pub mod hard_cells;
pub mod head;
pub mod images;
pub mod metrics;
pub mod report;
pub mod retrain;
pub mod synth;
pub mod trunk;
pub mod trunk_session;

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

/// An output folder written as `OUT.partial/` and renamed to `OUT` by
/// [`StagedDir::commit`]; dropped uncommitted (an error part-way), it is removed,
/// so `OUT` exists only when complete and nothing half-written is left behind.
pub struct StagedDir {
    out: std::path::PathBuf,
    staging: std::path::PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Refuses an `out` that exists; starts an empty staging folder beside it.
    pub fn create(out: &std::path::Path) -> Result<Self, TrainError> {
        if out.exists() {
            return Err(TrainError::Invalid(format!(
                "{} already exists; remove it or choose another --out",
                out.display()
            )));
        }
        let mut staging = out.as_os_str().to_owned();
        staging.push(".partial");
        let staging = std::path::PathBuf::from(staging);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|source| TrainError::Write {
            path: staging.clone(),
            source,
        })?;
        Ok(Self {
            out: out.to_path_buf(),
            staging,
            committed: false,
        })
    }

    /// Where to write meanwhile.
    pub fn path(&self) -> &std::path::Path {
        &self.staging
    }

    /// Gives the folder its final name.
    pub fn commit(mut self) -> Result<(), TrainError> {
        std::fs::rename(&self.staging, &self.out).map_err(|source| TrainError::Write {
            path: self.out.clone(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}
