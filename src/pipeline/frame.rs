//! The units that travel between stages: a decoded [`Frame`], then the same frame
//! with its network input ([`Prepared`]), then with its raw outputs ([`Inferred`]).

use crate::infer::FrameOutputs;

/// One decoded video frame, packed RGB (no row padding).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which input this frame came from (0 for the first `--input`).
    pub stream_id: u32,
    /// 0-based index within its stream, without gaps.
    pub index: u64,
    /// Presentation timestamp in nanoseconds, as the decoder gave it.
    pub pts_ns: Option<u64>,
    /// Frame duration in nanoseconds, when known.
    pub duration_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    /// `width · height · 3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
}

/// A frame and its network input (`3·H·W` floats).
#[derive(Debug)]
pub struct Prepared {
    pub frame: Frame,
    pub input: Vec<f32>,
}

/// A frame and the detector's raw outputs for it.
#[derive(Debug)]
pub struct Inferred {
    pub frame: Frame,
    pub outputs: FrameOutputs,
}
