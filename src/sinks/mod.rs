//! Sinks: what happens to a frame after inference. [`overlay`] draws the boxes,
//! [`encoder`] turns frames into an H.264 MP4 through an appsrc, [`metadata`] writes
//! one JSON line per frame. Every file is written under a temporary name and moved
//! to its final name only when it is complete ([`staging`]). [`harvest`] saves the
//! frames the detector is unsure of, with pre-labels, for retraining.

pub mod encoder;
pub mod harvest;
pub mod live_out;
pub mod metadata;
pub mod mqtt;
pub mod nats;
pub mod overlay;
pub mod spool;
pub mod staging;

use std::path::PathBuf;

/// Errors from writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the video encoder: {0}")]
    EncoderSetup(String),
    #[error("cannot open the display: {0}")]
    Display(String),
    #[error("video encoding failed for {path}: {message}")]
    Encode { path: PathBuf, message: String },
}
