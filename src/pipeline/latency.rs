//! Capture-to-metadata latency of one live stream, for the run's summary: an HDR
//! histogram (3 significant digits, 1 µs to 1 h) instead of a list of every frame's
//! latency, so a stream that runs for weeks keeps a few kilobytes, not a growing
//! vector. Prometheus gets the same values through its own buckets.
//!
//! [`RecentLatency`] keeps the same percentiles over short consecutive windows
//! for the control API (`GET /streams/{id}`): what the latency is now, not
//! since the start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::control::{LatencyWindow, lock};

/// Longest latency recorded as itself, in µs (one hour); longer ones saturate.
const MAX_US: u64 = 3_600_000_000;

/// Latency percentiles of one stream.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    us: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            us: Histogram::new_with_bounds(1, MAX_US, 3)
                .expect("1 µs to 1 h at 3 digits is a valid histogram"),
        }
    }
}

impl LatencyHistogram {
    /// Records one frame's latency.
    pub fn record_ms(&mut self, ms: f64) {
        let us = (ms * 1e3).round().clamp(1.0, MAX_US as f64) as u64;
        self.us.saturating_record(us);
    }

    /// The `p`th percentile in ms (within 0.1%), or `None` before any record.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        (!self.us.is_empty()).then(|| self.us.value_at_quantile(p / 100.0) as f64 / 1e3)
    }
}

/// How long each window of [`RecentLatency`] lasts.
pub const WINDOW: Duration = Duration::from_secs(2);

/// Latency over the last completed window, published where the control board
/// reads it.
#[derive(Debug)]
pub struct RecentLatency {
    current: LatencyHistogram,
    started: Instant,
    published: Arc<Mutex<Option<LatencyWindow>>>,
}

impl RecentLatency {
    pub fn new(published: Arc<Mutex<Option<LatencyWindow>>>) -> Self {
        Self {
            current: LatencyHistogram::default(),
            started: Instant::now(),
            published,
        }
    }

    /// Where the last window is published.
    pub fn shared(&self) -> Arc<Mutex<Option<LatencyWindow>>> {
        self.published.clone()
    }

    /// Records one frame's latency; publishes the window when it is over.
    pub fn record_ms(&mut self, ms: f64) {
        self.current.record_ms(ms);
        if self.started.elapsed() >= WINDOW {
            let window = LatencyWindow {
                p50_ms: self.current.percentile_ms(50.0).unwrap_or(ms),
                p99_ms: self.current.percentile_ms(99.0).unwrap_or(ms),
                max_ms: self.current.percentile_ms(100.0).unwrap_or(ms),
            };
            *lock(&self.published) = Some(window);
            self.current = LatencyHistogram::default();
            self.started = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_a_sorted_list_within_the_precision() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile_ms(50.0), None);
        let values: Vec<f64> = (1..=1000).map(|i| i as f64 * 0.731).collect();
        for v in &values {
            h.record_ms(*v);
        }
        for (p, exact) in [(50.0, values[499]), (99.0, values[989])] {
            let got = h.percentile_ms(p).unwrap();
            assert!(
                (got - exact).abs() <= exact * 1e-3 + 1e-3,
                "p{p}: {got} vs {exact}"
            );
        }
        h.record_ms(1e12);
        assert!(
            h.percentile_ms(100.0).unwrap() >= 3.5e6,
            "huge values saturate"
        );
    }
}
