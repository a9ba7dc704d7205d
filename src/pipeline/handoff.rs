//! The units the pipeline's stages hand each other after decoding: a batch of
//! frames with its network input ([`PreparedBatch`]), then each frame with its raw
//! outputs and the model that made them ([`Inferred`]), with the end of each
//! stream travelling behind its last frame ([`ToPost::Ended`]).

use std::sync::Arc;

use super::stages::PostOptions;
use crate::frame::Frame;
use crate::infer::{Detector, FrameOutputs};

/// A batch of frames (from any streams) and their network input, `[N, 3, H, W]`
/// floats back to back; and the streams that ended before it was cut.
#[derive(Debug)]
pub struct PreparedBatch {
    pub frames: Vec<Frame>,
    pub tensor: Vec<f32>,
    pub ended: Vec<u32>,
}

/// The model that processed a frame: its name (the record's `model` field) and
/// how its outputs become detections.
#[derive(Debug)]
pub struct ModelInUse {
    pub name: String,
    pub decode: PostOptions,
}

/// A frame and the detector's raw outputs for it.
#[derive(Debug)]
pub struct Inferred {
    pub frame: Frame,
    pub outputs: FrameOutputs,
    pub model: Arc<ModelInUse>,
}

/// What the post stage receives, in order.
#[derive(Debug)]
pub enum ToPost {
    Frame(Inferred),
    /// Every frame of this stream has come before: its outputs can be finalised.
    Ended(u32),
}

/// A model for the inference stage to switch to between two batches. The stage
/// answers on `done` with the detector it let go (dropped by the sender, off the
/// inference thread), once every later batch goes to the new one.
pub struct ModelSwap {
    pub detector: Detector,
    pub model: Arc<ModelInUse>,
    pub done: crossbeam_channel::Sender<Option<Detector>>,
}
