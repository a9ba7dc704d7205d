//! Inference: where it runs and in which arithmetic ([`device`], [`cpu_features`]),
//! finding and loading the ONNX Runtime library ([`runtime`]), turning
//! frames into the network's input tensor ([`preprocess`]), and running the detector
//! session on batches of frames ([`session`]).

pub mod cpu_features;
pub mod device;
pub mod preprocess;
pub mod runtime;
pub mod session;

pub use cpu_features::CpuFeatures;
pub use device::{Device, Precision};
pub use runtime::{RuntimeError, RuntimeOptions};
pub use session::{Detector, FrameOutputs};
