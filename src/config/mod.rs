//! Configuration read from files: the model manifest (TOML beside the ONNX file).
//! Defaults live here and nowhere else.

mod manifest;

pub use manifest::{ChannelOrder, InputSpec, Manifest, ManifestError, OutputSpec};
