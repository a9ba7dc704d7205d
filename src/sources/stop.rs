//! Why a source stopped, as a type: the complete/incomplete decision of a run's
//! outputs rests on it, so it is never inferred from an error message or a bool.
//!
//! Three flags can stop a source: the user's (SIGINT, SIGTERM, `--duration`), the
//! stream's own (removed through the control API or SIGHUP) and the pipeline's
//! abort, raised when a later stage failed or panicked and will take
//! no more frames. A queue whose batcher hung up means the same as the abort.

use std::sync::atomic::{AtomicBool, Ordering};

/// How a source ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnd {
    /// The input ended: end of file, or a live stream that ended.
    EndOfStream,
    /// The user asked the run, or this stream, to stop.
    UserStop,
    /// Downstream stopped taking frames (a later stage failed): what was decoded
    /// is not all the input had.
    DownstreamGone,
}

impl SourceEnd {
    /// Whether this end leaves the stream's outputs complete (given that every
    /// later stage processed what it was sent).
    pub fn is_complete(self) -> bool {
        matches!(self, Self::EndOfStream | Self::UserStop)
    }
}

/// The flags a source watches.
#[derive(Debug, Clone, Copy)]
pub struct StopFlags<'a> {
    /// Raised by the user.
    pub user: &'a AtomicBool,
    /// Raised when this one stream is removed from the run.
    pub removed: &'a AtomicBool,
    /// Raised by the pipeline when a later stage failed.
    pub abort: &'a AtomicBool,
}

impl StopFlags<'_> {
    /// Why to stop now, if either flag is raised (an abort wins: the outputs cannot
    /// be complete then, whatever the user asked).
    pub fn raised(&self) -> Option<SourceEnd> {
        if self.abort.load(Ordering::Relaxed) {
            Some(SourceEnd::DownstreamGone)
        } else if self.user.load(Ordering::Relaxed) || self.removed.load(Ordering::Relaxed) {
            Some(SourceEnd::UserStop)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_wins_over_a_user_stop() {
        let (user, abort) = (AtomicBool::new(false), AtomicBool::new(false));
        let removed = AtomicBool::new(false);
        let flags = StopFlags {
            user: &user,
            removed: &removed,
            abort: &abort,
        };
        removed.store(true, Ordering::Relaxed);
        assert_eq!(
            flags.raised(),
            Some(SourceEnd::UserStop),
            "a removed stream stops as the user asked"
        );
        removed.store(false, Ordering::Relaxed);
        assert_eq!(flags.raised(), None);
        user.store(true, Ordering::Relaxed);
        assert_eq!(flags.raised(), Some(SourceEnd::UserStop));
        abort.store(true, Ordering::Relaxed);
        assert_eq!(flags.raised(), Some(SourceEnd::DownstreamGone));
        assert!(SourceEnd::UserStop.is_complete() && SourceEnd::EndOfStream.is_complete());
        assert!(!SourceEnd::DownstreamGone.is_complete());
    }
}
