//! One stream's timeline, kept across reconnections by the supervisor.
//!
//! - Files: a frame's `pts_ns` is its buffer's running time in its segment
//!   (`segment.to_running_time(pts)`, which is the raw PTS for an ordinary file and
//!   the right value after a seek or for HLS), as the decoder gives it.
//! - Live sources: `pts_ns` is the time since the stream's first captured frame,
//!   taken from the capture wall-clock time (`captured_unix_ns`). A reconnection
//!   therefore continues the timeline, with the outage as a gap, instead of
//!   starting over at 0; frames dropped under load leave gaps too. Values are made
//!   strictly increasing (a wall clock can step back), by 1 ns where needed.

/// The timeline of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamClock {
    /// Capture time of the stream's first live frame.
    origin_unix_ns: Option<u64>,
    /// The last live timestamp given.
    last_ns: Option<u64>,
}

impl StreamClock {
    /// The `pts_ns` of a frame: from its capture time when it has one (live), else
    /// its running time.
    pub fn stamp(&mut self, captured_unix_ns: Option<u64>, running_ns: Option<u64>) -> Option<u64> {
        let Some(captured) = captured_unix_ns else {
            return running_ns;
        };
        let origin = *self.origin_unix_ns.get_or_insert(captured);
        let since = captured.saturating_sub(origin);
        let ns = match self.last_ns {
            Some(last) if since <= last => last + 1,
            _ => since,
        };
        self.last_ns = Some(ns);
        Some(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_time_runs_on_across_a_reconnection_and_never_steps_back() {
        let mut c = StreamClock::default();
        let t0 = 1_700_000_000_000_000_000u64;
        // First connection: running time 0, 100 ms, 200 ms.
        let first: Vec<_> = (0..3)
            .map(|i| c.stamp(Some(t0 + i * 100_000_000), Some(i * 100_000_000)))
            .collect();
        assert_eq!(first, [Some(0), Some(100_000_000), Some(200_000_000)]);
        // Reconnected 2 s later: the decoder's running time starts over at 0.
        let after = c.stamp(Some(t0 + 2_200_000_000), Some(0));
        assert_eq!(
            after,
            Some(2_200_000_000),
            "the outage is a gap, not a restart"
        );
        // A wall clock that steps back still gives increasing times.
        assert_eq!(
            c.stamp(Some(t0 + 1_000_000_000), Some(0)),
            Some(2_200_000_001)
        );
    }

    #[test]
    fn files_keep_their_running_time() {
        let mut c = StreamClock::default();
        assert_eq!(c.stamp(None, Some(40_000_000)), Some(40_000_000));
        assert_eq!(c.stamp(None, None), None);
    }
}
