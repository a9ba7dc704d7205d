//! Configuration read from files: the model manifest (TOML beside the ONNX file) and
//! declarative pipeline files (`pipelines/*.toml`).

pub mod defaults;
mod manifest;
pub mod pipeline;
pub mod rules;

pub use manifest::{ChannelOrder, InputSpec, Manifest, ManifestError, OutputSpec};
pub use pipeline::{FileLayer, Layers, Origin, PipelineConfig, PipelineConfigError};
