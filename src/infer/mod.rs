//! Inference: finding and loading the ONNX Runtime library ([`runtime`]), turning
//! frames into the network's input tensor ([`preprocess`]), and running the detector
//! session on batches of frames ([`session`]).

pub mod preprocess;
pub mod runtime;
pub mod session;

pub use runtime::{Device, RuntimeError, RuntimeOptions};
pub use session::{Detector, FrameOutputs};
