//! pedvision: real-time pedestrian detection for video.
//!
//! The data flows one way, and the modules follow it:
//!
//! ```text
//! sources (GStreamer decode -> appsink) --Frame--> infer::preprocess --Prepared-->
//!   infer (batch, ONNX Runtime) --Inferred--> model (DFL decode, NMS) + sinks::overlay
//!   --> sinks::encoder (appsrc -> H.264 -> MP4)  and  sinks::metadata (JSON Lines)
//! ```
//!
//! Each arrow is a bounded crossbeam channel; each stage runs on its own named thread
//! and owns what it works on (the inference stage owns the `ort::Session`). A stage
//! ends when its input channel closes and closes its output by dropping the sender, so
//! shutdown drains in order by construction. [`pipeline`] wires the stages; [`config`]
//! holds the model manifest; [`cli`] (in the binary's edge) turns flags into a plan.

pub mod analytics;
pub mod api;
pub mod choice;
pub mod config;
pub mod control;
pub mod error;
pub mod fleet;
pub mod frame;
pub mod infer;
pub mod model;
pub mod pipeline;
pub mod redact;
pub mod resources;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod track;

pub use error::{Error, Result};
pub mod train;
