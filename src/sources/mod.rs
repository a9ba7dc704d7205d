//! Sources: GStreamer decode branches that end in an appsink and hand out
//! [`crate::frame::Frame`]s into a per-stream queue. [`spec`] says what an
//! `--input` is, [`decode`] runs one pipeline, [`supervisor`] keeps a source alive
//! across failures, [`queue`] applies the per-stream full-policy.

pub mod clock;
pub mod decode;
pub mod queue;
pub mod spec;
pub mod stop;
pub mod supervisor;

pub use clock::StreamClock;
pub use decode::{SourceError, SourceInfo, VideoSource, read_frames};
pub use queue::StreamQueue;
pub use spec::{RtspOptions, RtspTransport, SourceKind, SourceSpec, SpecError};
pub use stop::{SourceEnd, StopFlags};
pub use supervisor::{ReconnectPolicy, run_source};
