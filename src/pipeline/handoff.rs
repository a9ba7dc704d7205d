//! The units the pipeline's stages hand each other after decoding: a batch of
//! frames with its network input ([`PreparedBatch`]), then each frame with its raw
//! outputs ([`Inferred`]).

use crate::frame::Frame;
use crate::infer::FrameOutputs;

/// A batch of frames (from any streams) and their network input, `[N, 3, H, W]`
/// floats back to back.
#[derive(Debug)]
pub struct PreparedBatch {
    pub frames: Vec<Frame>,
    pub tensor: Vec<f32>,
}

/// A frame and the detector's raw outputs for it.
#[derive(Debug)]
pub struct Inferred {
    pub frame: Frame,
    pub outputs: FrameOutputs,
}
