//! Sources: GStreamer decode branches that end in an appsink and hand out
//! [`crate::pipeline::Frame`]s. So far: files and URIs through `uridecodebin`.

mod decode;

pub use decode::{SourceError, SourceInfo, SourceStats, VideoSource, input_uri};
