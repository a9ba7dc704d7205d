//! Leases and heartbeats, the two values workers write, and the pure decisions a
//! worker takes on them: when to try for an orphaned camera, whom to hand a
//! camera to when rebalancing, how long a held lease may go unrenewed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The value of a camera's key in `pedvision_leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker that runs the camera.
    pub worker: String,
    /// When it took (or was handed) the lease, Unix ms.
    pub since_ms: u64,
    /// Written by another worker that handed the camera over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_by: Option<String>,
}

/// One camera in a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraBeat {
    pub camera: String,
    /// The worker's pipeline stream id (absent while it starts).
    pub stream: Option<u32>,
    /// `connecting`, `running`, `reconnecting`, `ended`, `failed` or `starting`.
    pub state: String,
    pub fps: f64,
    pub frames: u64,
    pub dropped: u64,
    /// Capture-to-metadata latency, median over the last 2 s (live streams).
    pub lag_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The value of a worker's key in `pedvision_workers`, rewritten every beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub worker: String,
    pub host: String,
    /// Random per process: tells a restarted worker from a second one with the
    /// same id.
    pub nonce: u64,
    /// The model's manifest name.
    pub model: String,
    pub capacity: usize,
    /// Started with `--rebalance`: loaded workers hand it cameras.
    pub rebalance: bool,
    pub cameras: Vec<CameraBeat>,
    /// When it was written, Unix ms.
    pub seen_ms: u64,
}

impl Beat {
    pub fn fps(&self) -> f64 {
        self.cameras.iter().map(|c| c.fps).sum()
    }
}

/// How long a worker with `load` cameras waits after it sees an orphan before
/// trying for it: the least loaded worker tries first and, since a lease is
/// taken by a create that only one worker can win, usually gets it.
pub fn claim_delay(load: usize) -> Duration {
    Duration::from_millis(150 * load.min(40) as u64)
}

/// How long after sending its last successful renewal a worker keeps running a
/// camera. The server stamps the renewal after it was sent, so the lease cannot
/// expire before send + TTL; the margin (a quarter of the TTL, at least 2 s)
/// covers the agent's 500 ms tick and the time a stream takes to stop. Long
/// enough to ride out a cluster's leader election with the default TTL.
pub fn hold_limit(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 4).max(Duration::from_secs(2)))
}

/// How often leases are renewed and heartbeats written: a third of the TTL, so
/// two renewals can fail before the hold limit.
pub fn renew_every(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(200))
}

/// Whom `me` (with `load` cameras) should hand one camera to now, if anyone:
/// a live `--rebalance` worker with spare capacity and at least two cameras fewer,
/// the least loaded first; only the most loaded worker hands over (ties broken by
/// id), so cameras move one at a time from the top.
pub fn handover_target(me: &str, load: usize, beats: &BTreeMap<String, Beat>) -> Option<String> {
    let load_of = |b: &Beat| {
        if b.worker == me {
            load
        } else {
            b.cameras.len()
        }
    };
    let top = beats
        .values()
        .map(|b| (load_of(b), std::cmp::Reverse(b.worker.as_str())))
        .max()?;
    if top.1.0 != me || load != top.0 {
        return None;
    }
    beats
        .values()
        .filter(|b| b.worker != me && b.rebalance)
        .filter(|b| b.cameras.len() < b.capacity && b.cameras.len() + 2 <= load)
        .min_by_key(|b| (b.cameras.len(), b.worker.clone()))
        .map(|b| b.worker.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(worker: &str, cameras: usize, rebalance: bool) -> Beat {
        Beat {
            worker: worker.into(),
            host: "h".into(),
            nonce: 1,
            model: "m".into(),
            capacity: 10,
            rebalance,
            cameras: (0..cameras)
                .map(|i| CameraBeat {
                    camera: format!("{worker}{i}"),
                    stream: Some(i as u32),
                    state: "running".into(),
                    fps: 1.0,
                    frames: 0,
                    dropped: 0,
                    lag_ms: None,
                    error: None,
                })
                .collect(),
            seen_ms: 0,
        }
    }

    fn fleet(list: &[(&str, usize, bool)]) -> BTreeMap<String, Beat> {
        list.iter()
            .map(|(w, n, r)| (w.to_string(), beat(w, *n, *r)))
            .collect()
    }

    #[test]
    fn only_the_most_loaded_worker_hands_over_and_only_to_a_rebalancing_one() {
        let f = fleet(&[("a", 3, false), ("b", 2, false), ("c", 0, true)]);
        assert_eq!(handover_target("a", 3, &f).as_deref(), Some("c"));
        assert_eq!(handover_target("b", 2, &f), None);
        let f = fleet(&[("a", 3, false), ("c", 0, false)]);
        assert_eq!(handover_target("a", 3, &f), None);
    }

    #[test]
    fn handing_over_stops_when_loads_are_within_one() {
        let f = fleet(&[("a", 2, false), ("b", 2, false), ("c", 1, true)]);
        assert_eq!(handover_target("a", 2, &f), None);
        assert_eq!(handover_target("b", 2, &f), None);
    }

    #[test]
    fn ties_at_the_top_are_broken_by_id() {
        let f = fleet(&[("a", 3, false), ("b", 3, false), ("c", 0, true)]);
        assert_eq!(handover_target("a", 3, &f).as_deref(), Some("c"));
        assert_eq!(handover_target("b", 3, &f), None);
    }

    #[test]
    fn a_full_worker_gets_nothing() {
        let mut f = fleet(&[("a", 5, false), ("c", 1, true)]);
        f.get_mut("c").unwrap().capacity = 1;
        assert_eq!(handover_target("a", 5, &f), None);
    }

    #[test]
    fn timings_keep_a_camera_stopped_before_its_lease_expires() {
        let ttl = Duration::from_secs(6);
        assert!(renew_every(ttl) * 2 < ttl);
        assert_eq!(hold_limit(ttl), Duration::from_secs(4));
        assert_eq!(
            hold_limit(Duration::from_secs(10)),
            Duration::from_millis(7500)
        );
        assert!(hold_limit(Duration::from_secs(3)) >= Duration::from_secs(1));
        assert!(claim_delay(0) < claim_delay(3));
    }
}
