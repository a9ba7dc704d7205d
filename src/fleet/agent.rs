//! The worker's agent: keeps the worker's pipeline running exactly the cameras
//! whose leases it holds.
//!
//! It runs on its own thread with a one-thread tokio runtime and its own NATS
//! connection, and drives the pipeline through the same [`Control`] handle as the
//! HTTP API (blocking calls, made on tokio's blocking pool). One loop wakes on
//! every change in the three buckets and every 500 ms, and in this order:
//! 1. every `TTL/3`: renews each held lease (an update naming the revision it
//!    replaces) and writes the heartbeat;
//! 2. stops any camera whose lease went unrenewed for too long
//!    ([`super::lease::hold_limit`]: it is stopped before the lease can expire
//!    and another worker start it);
//! 3. stops cameras that were removed or lost, restarts changed or failed ones;
//! 4. starts cameras whose lease names it (handed over, or held before a restart);
//! 5. tries for orphans, the less loaded workers first ([`super::lease::claim_delay`]);
//! 6. hands one camera to a `--rebalance` worker when it is the most loaded.
//!
//! On stop it deletes its leases (revision-checked) and its heartbeat, so the
//! other workers take its cameras at once instead of after the TTL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use futures_util::StreamExt as _;

use super::camera::CameraSpec;
use super::lease::{
    Beat, CameraBeat, Lease, claim_delay, handover_target, hold_limit, renew_every,
};
use super::store::Stores;
use super::{FleetError, FleetSettings, now_ms};
use crate::control::{Control, ControlError, StreamState};

/// How often the loop looks at the state without a change to wake it.
const TICK: Duration = Duration::from_millis(500);
/// The longest a worker waits before trying for an orphan, however loaded.
const MAX_CLAIM_WAIT: Duration = Duration::from_secs(2);
/// A failed camera is started again after this long.
const RETRY_FAILED: Duration = Duration::from_secs(10);

/// A camera this worker holds the lease of.
struct Held {
    camera: String,
    revision: u64,
    since_ms: u64,
    renewed: Instant,
    /// Its pipeline stream, once started.
    stream: Option<u32>,
    spec: CameraSpec,
    started: Instant,
    error: Option<String>,
}

/// The running agent; [`AgentHandle::join`] waits for it to release its leases.
pub struct AgentHandle {
    thread: Option<JoinHandle<()>>,
}

impl AgentHandle {
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects, binds to the buckets (creating them on first use) and starts the
/// agent. Fails when NATS cannot be reached now or another live worker has the
/// same id; later outages are ridden out (the client reconnects).
pub fn start(
    settings: FleetSettings,
    control: Control,
    stop: Arc<AtomicBool>,
) -> Result<AgentHandle, FleetError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("fleet-agent".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(FleetError::js(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match Agent::connect(settings, control, stop).await {
                    Ok(agent) => {
                        let _ = ready_tx.send(Ok(()));
                        agent.run().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(FleetError::js)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(AgentHandle {
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(FleetError::JetStream(
            "the fleet agent did not start".into(),
        )),
    }
}

struct Agent {
    settings: FleetSettings,
    control: Control,
    stop: Arc<AtomicBool>,
    stores: Stores,
    nonce: u64,
    /// The host name, read once, for the heartbeat.
    host: String,
    cameras: BTreeMap<String, Result<CameraSpec, String>>,
    leases: BTreeMap<String, (Lease, u64)>,
    beats: BTreeMap<String, Beat>,
    /// When each worker's last heartbeat arrived (expiry leaves no marker in the
    /// workers bucket, so a dead worker's last beat is dropped by its age).
    beat_seen: BTreeMap<String, Instant>,
    held: BTreeMap<String, Held>,
    orphan_seen: BTreeMap<String, Instant>,
    /// Lease revisions this worker stopped running (never adopted again).
    released: BTreeMap<String, u64>,
    last_renew: Instant,
    /// The held set changed: write the heartbeat now, not at the next renewal.
    beat_due: bool,
    /// Each held camera's stream state in the last heartbeat (a change is
    /// written at once).
    beat_states: Vec<(String, Option<StreamState>)>,
    last_handover: Instant,
    last_error_log: Option<Instant>,
}

type Watch = kv::Watch;

impl Agent {
    async fn connect(
        settings: FleetSettings,
        control: Control,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, FleetError> {
        let name = format!("pedvision-worker-{}", settings.worker_id);
        let client = super::connect(&settings.servers, settings.creds.as_deref(), &name).await?;
        let stores = super::store::open(client, settings.lease_ttl, settings.replicas).await?;
        if stores.ttl != settings.lease_ttl {
            tracing::info!(
                ttl_s = stores.ttl.as_secs_f64(),
                "using the lease bucket's TTL"
            );
        }
        let agent = Self {
            nonce: rand::random(),
            host: super::host_id(),
            settings,
            control,
            stop,
            cameras: BTreeMap::new(),
            leases: BTreeMap::new(),
            beats: BTreeMap::new(),
            beat_seen: BTreeMap::new(),
            held: BTreeMap::new(),
            orphan_seen: BTreeMap::new(),
            released: BTreeMap::new(),
            last_renew: Instant::now(),
            beat_due: true,
            beat_states: Vec::new(),
            last_handover: Instant::now(),
            last_error_log: None,
            stores,
        };
        agent.check_id_free().await?;
        tracing::info!(worker = %agent.settings.worker_id, capacity = agent.settings.capacity,
            ttl_s = agent.stores.ttl.as_secs_f64(), "fleet worker joined");
        Ok(agent)
    }

    fn me(&self) -> &str {
        &self.settings.worker_id
    }

    /// Refuses to start when another live process beats under this worker id: a
    /// fresh heartbeat that is rewritten while we wait one beat.
    async fn check_id_free(&self) -> Result<(), FleetError> {
        let read = || async {
            self.stores
                .workers
                .entry(self.me())
                .await
                .ok()
                .flatten()
                .and_then(|e| serde_json::from_slice::<Beat>(&e.value).ok())
        };
        let Some(first) = read().await else {
            return Ok(());
        };
        let every = renew_every(self.stores.ttl);
        if now_ms().saturating_sub(first.seen_ms) > 2 * every.as_millis() as u64 {
            return Ok(());
        }
        tokio::time::sleep(every + Duration::from_millis(300)).await;
        match read().await {
            Some(b) if b.seen_ms != first.seen_ms => Err(FleetError::JetStream(format!(
                "worker id {:?} is in use by a live worker on {} (give each worker its own --worker-id)",
                self.me(),
                b.host
            ))),
            _ => Ok(()),
        }
    }

    async fn watches(&self) -> Option<(Watch, Watch, Watch)> {
        let s = &self.stores;
        // The last value of every key first (deletes included), then changes.
        match (
            s.cameras.watch_with_history(">").await,
            s.leases.watch_with_history(">").await,
            s.workers.watch_with_history(">").await,
        ) {
            (Ok(c), Ok(l), Ok(w)) => Some((c, l, w)),
            _ => None,
        }
    }

    async fn run(mut self) {
        let mut watches = None;
        let mut tick = tokio::time::interval(TICK);
        loop {
            if watches.is_none() {
                watches = self.watches().await;
            }
            let woke = match watches.as_mut() {
                Some((c, l, w)) => tokio::select! {
                    e = c.next() => Woke::from(0, e),
                    e = l.next() => Woke::from(1, e),
                    e = w.next() => Woke::from(2, e),
                    _ = tick.tick() => Woke::Tick,
                },
                None => {
                    tick.tick().await;
                    Woke::Tick
                }
            };
            match woke {
                Woke::Entry(which, entry) => self.on_entry(which, entry),
                Woke::Tick => {}
                // A watch broke (the connection was lost): start them again.
                Woke::Broken => watches = None,
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.step().await;
        }
        self.leave().await;
    }

    /// One change seen in a bucket.
    fn on_entry(&mut self, which: u8, e: kv::Entry) {
        let gone = matches!(e.operation, Operation::Delete | Operation::Purge);
        match which {
            0 if gone => {
                self.cameras.remove(&e.key);
            }
            0 => {
                let spec = CameraSpec::from_json(&e.key, &e.value).map_err(|e| e.to_string());
                if let Err(why) = &spec {
                    tracing::warn!(camera = %e.key, error = %why, "camera value refused");
                }
                self.cameras.insert(e.key, spec);
            }
            1 if gone => {
                self.leases.remove(&e.key);
            }
            1 => {
                if let Ok(lease) = serde_json::from_slice::<Lease>(&e.value) {
                    self.leases.insert(e.key, (lease, e.revision));
                }
            }
            2 if gone => {
                self.beats.remove(&e.key);
            }
            2 => {
                if let Ok(beat) = serde_json::from_slice::<Beat>(&e.value) {
                    self.beat_seen.insert(e.key.clone(), Instant::now());
                    self.beats.insert(e.key, beat);
                }
            }
            _ => {}
        }
    }

    async fn step(&mut self) {
        let stale = renew_every(self.stores.ttl) * 3;
        let beat_seen = &mut self.beat_seen;
        self.beats
            .retain(|w, _| beat_seen.get(w).is_some_and(|t| t.elapsed() < stale));
        beat_seen.retain(|_, t| t.elapsed() < stale);
        if self.last_renew.elapsed() >= renew_every(self.stores.ttl) {
            self.last_renew = Instant::now();
            self.renew().await;
            self.beat_due = true;
        }
        self.enforce_hold_limit().await;
        self.drop_removed_or_lost().await;
        self.restart_changed_or_failed().await;
        self.adopt().await;
        self.claim_orphans().await;
        self.hand_over().await;
        let states = self.states();
        if std::mem::take(&mut self.beat_due) || states != self.beat_states {
            self.beat_states = states;
            self.beat().await;
        }
    }

    /// Each held camera's stream state now.
    fn states(&self) -> Vec<(String, Option<StreamState>)> {
        let board = self.control.board();
        self.held
            .iter()
            .map(|(c, h)| {
                (
                    c.clone(),
                    h.stream.and_then(|id| board.stream(id)).map(|s| s.state),
                )
            })
            .collect()
    }

    fn log_error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if self
            .last_error_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            self.last_error_log = Some(Instant::now());
            tracing::warn!(error = %e, "{what}");
        }
    }

    fn lease_value(&self, since_ms: u64, handed_by: Option<String>, to: &str) -> bytes::Bytes {
        serde_json::to_vec(&Lease {
            worker: to.to_string(),
            since_ms,
            handed_by,
        })
        .unwrap_or_default()
        .into()
    }

    /// Renews every held lease at once (one slow answer must not hold up the
    /// others); a refused renewal means the lease is lost.
    async fn renew(&mut self) {
        let asks: Vec<_> = self
            .held
            .iter()
            .map(|(camera, h)| {
                let (leases, camera) = (self.stores.leases.clone(), camera.clone());
                let value = self.lease_value(h.since_ms, None, self.me());
                let revision = h.revision;
                async move {
                    let sent = Instant::now();
                    let result = leases.update(&camera, value, revision).await;
                    (camera, sent, result)
                }
            })
            .collect();
        for (camera, sent, result) in futures_util::future::join_all(asks).await {
            match result {
                Ok(revision) => {
                    if let Some(h) = self.held.get_mut(&camera) {
                        h.revision = revision;
                        h.renewed = sent;
                    }
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    self.on_revision_mismatch(&camera).await;
                }
                Err(e) => self.log_error("cannot renew a lease; retrying", &e),
            }
        }
    }

    /// A renewal named an old revision: ours after all (an earlier renewal went
    /// through but its answer was lost), or another worker's now.
    async fn on_revision_mismatch(&mut self, camera: &str) {
        let current = self.stores.leases.entry(camera).await;
        let mine = match &current {
            Ok(Some(e)) if matches!(e.operation, Operation::Put) => {
                serde_json::from_slice::<Lease>(&e.value)
                    .is_ok_and(|l| l.worker == self.settings.worker_id)
                    .then_some(e.revision)
            }
            Ok(_) => None,
            Err(_) => return,
        };
        match mine {
            Some(revision) => {
                if let Some(h) = self.held.get_mut(camera) {
                    h.revision = revision;
                }
            }
            None => {
                tracing::warn!(
                    camera,
                    "lease lost to another worker or expired; stopping the camera"
                );
                self.stop_camera(camera).await;
            }
        }
    }

    /// Stops cameras whose lease went unrenewed past the hold limit.
    async fn enforce_hold_limit(&mut self) {
        let limit = hold_limit(self.stores.ttl);
        let stale: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.renewed.elapsed() >= limit)
            .map(|(c, _)| c.clone())
            .collect();
        for camera in &stale {
            tracing::warn!(camera = %camera, unrenewed_s = limit.as_secs_f64(),
                "lease could not be renewed; stopping the camera before it can expire");
        }
        self.stop_cameras(&stale).await;
    }

    /// Stops a held camera's stream and forgets it (the lease is left alone).
    /// `None` when it was not held; `Some((held, stopped))` otherwise.
    async fn stop_camera(&mut self, camera: &str) -> Option<(Held, bool)> {
        self.stop_cameras(&[camera.to_string()]).await.pop()
    }

    /// Stops several held cameras at once (each stop waits for its outputs to be
    /// final; one after another they could outlast a lease). `stopped` is false
    /// when the pipeline did not confirm the stop.
    async fn stop_cameras(&mut self, cameras: &[String]) -> Vec<(Held, bool)> {
        let mut stopping = Vec::new();
        for camera in cameras {
            let Some(held) = self.held.remove(camera) else {
                continue;
            };
            self.beat_due = true;
            self.released.insert(camera.clone(), held.revision);
            let control = self.control.clone();
            let stream = held.stream;
            let (camera, stopped) = (camera.clone(), async move {
                let Some(id) = stream else { return Ok(()) };
                match tokio::task::spawn_blocking(move || control.remove_stream(id)).await {
                    Ok(Ok(())) | Ok(Err(ControlError::NoStream(_))) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            });
            stopping.push(async move { (camera, held, stopped.await) });
        }
        let mut out = Vec::new();
        for (camera, held, result) in futures_util::future::join_all(stopping).await {
            match &result {
                Ok(()) => tracing::info!(camera = %camera, stream = ?held.stream, "camera stopped"),
                Err(e) => {
                    tracing::error!(camera = %camera, error = %e, "camera could not be stopped")
                }
            }
            out.push((held, result.is_ok()));
        }
        out
    }

    /// Starts (or restarts) a held camera's stream.
    async fn start_stream(&mut self, camera: &str) {
        let Some(h) = self.held.get(camera) else {
            return;
        };
        let request = h.spec.request(camera);
        let control = self.control.clone();
        let result = tokio::task::spawn_blocking(move || control.add_stream(request)).await;
        let Some(h) = self.held.get_mut(camera) else {
            return;
        };
        h.started = Instant::now();
        match result {
            Ok(Ok(id)) => {
                h.stream = Some(id);
                h.error = None;
                tracing::info!(camera, stream = id, "camera started");
            }
            Ok(Err(e)) => {
                tracing::warn!(camera, error = %e, "camera could not start on this worker");
                h.stream = None;
                h.error = Some(e.to_string());
            }
            Err(e) => h.error = Some(e.to_string()),
        }
    }

    /// Takes camera `camera` at lease revision `revision` and starts it.
    /// `sent`: when the write that gave this worker the lease at `revision` was
    /// sent (the lease cannot expire before `sent` + TTL).
    async fn take(&mut self, camera: &str, lease: (u64, u64), sent: Instant, spec: CameraSpec) {
        let (revision, since_ms) = lease;
        self.held.insert(
            camera.to_string(),
            Held {
                camera: camera.to_string(),
                revision,
                since_ms,
                renewed: sent,
                stream: None,
                spec,
                started: Instant::now(),
                error: None,
            },
        );
        self.orphan_seen.remove(camera);
        self.beat_due = true;
        self.start_stream(camera).await;
    }

    /// Stops cameras removed from the bucket (and deletes their leases) and
    /// cameras whose lease now names another worker.
    async fn drop_removed_or_lost(&mut self) {
        let cameras: Vec<String> = self.held.keys().cloned().collect();
        for camera in cameras {
            let removed = !matches!(self.cameras.get(&camera), Some(Ok(_)));
            let lost = self.leases.get(&camera).is_some_and(|(l, rev)| {
                l.worker != self.settings.worker_id
                    && self.held.get(&camera).is_some_and(|h| *rev > h.revision)
            });
            if removed {
                if self.release(&camera).await {
                    tracing::info!(camera = %camera, "camera removed from the fleet");
                }
            } else if lost {
                tracing::warn!(camera = %camera, "lease now names another worker; stopping the camera");
                self.stop_camera(&camera).await;
            }
        }
    }

    /// Restarts cameras whose settings changed, and failed ones after a pause.
    async fn restart_changed_or_failed(&mut self) {
        let mut again = Vec::new();
        for (camera, h) in &mut self.held {
            let failed = h.stream.is_none_or(|id| {
                self.control
                    .board()
                    .stream(id)
                    .is_some_and(|s| matches!(s.state, StreamState::Failed | StreamState::Ended))
            });
            if let Some(Ok(spec)) = self.cameras.get(camera)
                && *spec != h.spec
            {
                h.spec = spec.clone();
                again.push(camera.clone());
            } else if failed && h.started.elapsed() >= RETRY_FAILED {
                again.push(camera.clone());
            }
        }
        for camera in again {
            if let Some(id) = self.held.get_mut(&camera).and_then(|h| h.stream.take()) {
                let control = self.control.clone();
                let _ = tokio::task::spawn_blocking(move || control.remove_stream(id)).await;
            }
            tracing::info!(camera = %camera, "restarting camera (changed or failed)");
            self.start_stream(&camera).await;
        }
    }

    fn runs_here(&self, spec: &CameraSpec) -> bool {
        match (&spec.model, self.control.board().model()) {
            (Some(wanted), Some(ours)) => *wanted == ours.name,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// Starts cameras another worker handed to this one. (A lease that names this
    /// worker id from before a restart is left to expire: a lease is only ever
    /// renewed by the process that took it.)
    async fn adopt(&mut self) {
        let mine: Vec<(String, u64, u64)> = self
            .leases
            .iter()
            .filter(|(c, (l, rev))| {
                l.worker == self.settings.worker_id
                    && l.handed_by.is_some()
                    && !self.held.contains_key(*c)
                    && self.released.get(*c).is_none_or(|r| rev > r)
            })
            .map(|(c, (l, rev))| (c.clone(), *rev, l.since_ms))
            .collect();
        for (camera, revision, since_ms) in mine {
            let Some(Ok(spec)) = self.cameras.get(&camera).cloned() else {
                continue;
            };
            if self.held.len() >= self.settings.capacity || !self.runs_here(&spec) {
                continue;
            }
            // The lease was written some time ago: renew it before starting, so
            // the hold clock starts at a write this worker made.
            let sent = Instant::now();
            let value = self.lease_value(since_ms, None, self.me());
            match self.stores.leases.update(&camera, value, revision).await {
                Ok(revision) => {
                    tracing::info!(camera = %camera, "camera handed to this worker; starting it");
                    self.take(&camera, (revision, since_ms), sent, spec).await;
                }
                Err(e) => self.log_error("cannot take a handed-over lease", &e),
            }
        }
    }

    /// The fewest cameras any other live worker of the same model runs.
    fn least_other_load(&self) -> usize {
        self.beats
            .values()
            .filter(|b| b.worker != self.settings.worker_id && b.cameras.len() < b.capacity)
            .map(|b| b.cameras.len())
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Tries for cameras without a lease, waiting longer the more this worker
    /// runs, so the least loaded usually wins.
    async fn claim_orphans(&mut self) {
        let orphans: Vec<(String, CameraSpec)> = self
            .cameras
            .iter()
            .filter(|(c, _)| !self.leases.contains_key(*c) && !self.held.contains_key(*c))
            .filter_map(|(c, s)| s.as_ref().ok().map(|s| (c.clone(), s.clone())))
            .filter(|(_, s)| self.runs_here(s))
            .collect();
        self.orphan_seen
            .retain(|c, _| orphans.iter().any(|(o, _)| o == c));
        let budget = Instant::now();
        for (camera, spec) in orphans {
            let load = self.held.len();
            // Keep the loop turning: renewals and the hold limit come first.
            if load >= self.settings.capacity
                || budget.elapsed() >= renew_every(self.stores.ttl) / 2
            {
                return;
            }
            let seen = *self
                .orphan_seen
                .entry(camera.clone())
                .or_insert_with(Instant::now);
            let behind = load.saturating_sub(self.least_other_load());
            let wait = (claim_delay(load) + Duration::from_secs(behind as u64)).min(MAX_CLAIM_WAIT);
            if seen.elapsed() < wait {
                continue;
            }
            let (since_ms, sent) = (now_ms(), Instant::now());
            let value = self.lease_value(since_ms, None, self.me());
            match self.stores.leases.create(&camera, value).await {
                Ok(revision) => {
                    tracing::info!(camera = %camera, load = load + 1, "lease taken");
                    self.take(&camera, (revision, since_ms), sent, spec).await;
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    self.orphan_seen.remove(&camera);
                }
                Err(e) => self.log_error("cannot take a lease", &e),
            }
        }
    }

    /// Hands one camera to a `--rebalance` worker, at most once per renewal
    /// period, when this worker is the most loaded.
    async fn hand_over(&mut self) {
        if self.last_handover.elapsed() < renew_every(self.stores.ttl) {
            return;
        }
        let Some(target) = handover_target(self.me(), self.held.len(), &self.beats) else {
            return;
        };
        let Some(camera) = self
            .held
            .iter()
            .max_by_key(|(_, h)| h.started)
            .map(|(c, _)| c.clone())
        else {
            return;
        };
        self.last_handover = Instant::now();
        let Some((h, stopped)) = self.stop_camera(&camera).await else {
            return;
        };
        if !stopped {
            return;
        }
        let value = self.lease_value(now_ms(), Some(self.me().to_string()), &target);
        match self.stores.leases.update(&camera, value, h.revision).await {
            Ok(_) => tracing::info!(camera = %camera, to = %target, "camera handed over"),
            Err(e) => self.log_error("cannot hand a camera over (its lease will expire)", &e),
        }
        // Count the move in the target's load until its next heartbeat says so.
        if let Some(b) = self.beats.get_mut(&target) {
            b.cameras.push(CameraBeat {
                camera,
                stream: None,
                state: "starting".into(),
                fps: 0.0,
                frames: 0,
                dropped: 0,
                lag_ms: None,
                error: None,
            });
        }
    }

    /// Writes this worker's heartbeat.
    async fn beat(&mut self) {
        let board = self.control.board();
        let cameras = self
            .held
            .iter()
            .map(|(camera, h)| {
                let status = h.stream.and_then(|id| board.stream(id));
                CameraBeat {
                    camera: camera.clone(),
                    stream: h.stream,
                    state: status.as_ref().map_or_else(
                        || {
                            if h.error.is_some() {
                                "failed".into()
                            } else {
                                "starting".into()
                            }
                        },
                        |s| format!("{:?}", s.state).to_lowercase(),
                    ),
                    fps: status.as_ref().map_or(0.0, |s| s.fps),
                    frames: status.as_ref().map_or(0, |s| s.frames),
                    dropped: status.as_ref().map_or(0, |s| s.dropped),
                    lag_ms: status
                        .as_ref()
                        .and_then(|s| s.latency.as_ref())
                        .map(|l| l.p50_ms),
                    error: h.error.clone().or_else(|| status.and_then(|s| s.error)),
                }
            })
            .collect();
        let beat = Beat {
            worker: self.settings.worker_id.clone(),
            host: self.host.clone(),
            nonce: self.nonce,
            model: board.model().map(|m| m.name).unwrap_or_default(),
            capacity: self.settings.capacity,
            rebalance: self.settings.rebalance,
            cameras,
            seen_ms: now_ms(),
        };
        let value = serde_json::to_vec(&beat).unwrap_or_default();
        if let Err(e) = self.stores.workers.put(self.me(), value.into()).await {
            self.log_error("cannot write the heartbeat", &e);
        }
    }

    /// Stops a held camera and deletes its lease (if still this worker's), so
    /// another worker can take it at once. Whether it was held.
    async fn release(&mut self, camera: &str) -> bool {
        let Some((h, stopped)) = self.stop_camera(camera).await else {
            return false;
        };
        // A stream that may still run keeps its lease until it expires.
        if stopped {
            let _ = self
                .stores
                .leases
                .delete_expect_revision(camera, Some(h.revision))
                .await;
        }
        true
    }

    /// Stops every camera, then deletes its leases and its heartbeat, so others
    /// take over at once.
    async fn leave(mut self) {
        let cameras: Vec<String> = self.held.keys().cloned().collect();
        for (h, stopped) in self.stop_cameras(&cameras).await {
            if stopped {
                let _ = self
                    .stores
                    .leases
                    .delete_expect_revision(&h.camera, Some(h.revision))
                    .await;
            }
        }
        let _ = self.stores.workers.delete(self.me()).await;
        tracing::info!(worker = %self.settings.worker_id, "fleet worker left; leases released");
    }
}

/// What woke the loop.
enum Woke {
    /// A change in bucket 0 (cameras), 1 (leases) or 2 (workers).
    Entry(u8, kv::Entry),
    Tick,
    Broken,
}

impl Woke {
    fn from<E>(which: u8, next: Option<Result<kv::Entry, E>>) -> Self {
        match next {
            Some(Ok(e)) => Self::Entry(which, e),
            _ => Self::Broken,
        }
    }
}
