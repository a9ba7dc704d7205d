//! Keeps one source running for the life of a run: opens it, pumps it, and when a
//! live network source errors, stalls or ends unexpectedly, reconnects with
//! exponential backoff up to a cap (forever unless told otherwise), logging each
//! attempt with the stream id. Frame indices and timestamps ([`StreamClock`]) keep
//! increasing across reconnections.
//!
//! Only live inputs reconnect. A network URI that turns out not to be live (an MP4
//! over HTTP) is a recording: decoding it again from the start would repeat frames
//! under new indices, and a truncated one would loop forever, so a failure part-way
//! ends it as incomplete, like a truncated local file. Files and local live sources
//! (cameras, test patterns) run once.

use std::time::{Duration, Instant};

use super::clock::StreamClock;
use super::decode::{SourceError, VideoSource};
use super::queue::StreamQueue;
use super::spec::{RtspOptions, SourceSpec};
use super::stop::{SourceEnd, StopFlags};

/// Reconnection and stall settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay after a failure.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
    /// Attempts in a row before giving up; 0 = never give up.
    pub attempts: u32,
    /// A live source that gives no frame for this long has stalled.
    pub stall: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            attempts: 0,
            stall: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// Delay before attempt `n` (1-based): initial · 2^(n−1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs `spec` until it ends, fails for good, or a stop flag is raised. The
/// caller drops `queue` afterwards, which tells the batcher the stream is over.
pub fn run_source(
    spec: &SourceSpec,
    rtsp: &RtspOptions,
    policy: &ReconnectPolicy,
    queue: &mut StreamQueue,
    stop: StopFlags<'_>,
) -> Result<SourceEnd, SourceError> {
    let mut next_index = 0u64;
    let mut clock = StreamClock::default();
    if !spec.reconnects() {
        let source = VideoSource::open(spec, rtsp)?;
        let outcome = source.pump(queue, &mut next_index, &mut clock, stop, policy.stall);
        queue.metrics().up.set(0);
        return outcome;
    }
    let name = spec.name();
    let mut failures = 0u32;
    let mut ever_connected = false;
    loop {
        if let Some(end) = stop.raised() {
            return Ok(end);
        }
        let frames_before = next_index;
        // Unknown until it opens: an input that never opened may be live.
        let mut live = true;
        let outcome = VideoSource::open(spec, rtsp).and_then(|s| {
            live = s.is_live();
            queue.set_live(live);
            s.pump(queue, &mut next_index, &mut clock, stop, policy.stall)
        });
        queue.metrics().up.set(0);
        if next_index > frames_before {
            if ever_connected && failures > 0 {
                queue.metrics().reconnects.inc();
            }
            ever_connected = true;
            failures = 0;
        }
        let reason = match outcome {
            // A recording (an MP4 over HTTP, say) ends, or fails, once.
            Ok(end) if !live => return Ok(end),
            Err(e) if !live => return Err(e),
            Ok(SourceEnd::EndOfStream) => "the stream ended".to_string(),
            Ok(end) => return Ok(end),
            Err(e) => e.to_string(),
        };
        failures += 1;
        if policy.attempts > 0 && failures > policy.attempts {
            return Err(SourceError::GaveUp {
                input: name,
                attempts: policy.attempts,
                last: reason,
            });
        }
        let delay = policy.delay(failures);
        tracing::warn!(stream = spec.id, input = %name, attempt = failures, delay_ms = delay.as_millis() as u64,
            error = %reason, "source lost; reconnecting");
        sleep_unless_stopped(delay, stop);
    }
}

fn sleep_unless_stopped(delay: Duration, stop: StopFlags<'_>) {
    let until = Instant::now() + delay;
    while Instant::now() < until && stop.raised().is_none() {
        std::thread::sleep(
            Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = ReconnectPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            ..Default::default()
        };
        let delays: Vec<u64> = (1..=6).map(|n| p.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(p.delay(10_000), Duration::from_secs(4), "no overflow");
    }
}
