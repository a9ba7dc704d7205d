//! systemd's notify protocol, for `pedvision run` as a `Type=notify` unit
//! (`packaging/pedvision@.service`).
//!
//! One thread, started only when systemd set `NOTIFY_SOCKET`, reads the
//! [`Board`] the pipeline keeps and tells the service manager:
//! - `READY=1` once the model is loaded, the run's streams are registered and
//!   every one is up ([`Board::ready`]), so `systemctl start` returns when
//!   detections can flow; or, after [`READY_GRACE`], with the streams still
//!   connecting named in `STATUS=`: one dead camera must not keep the others from
//!   starting (a unit that never becomes ready is killed and restarted in a loop);
//! - `WATCHDOG=1` every half `WatchdogSec=` while frames flow: only when the
//!   processed-frame count moved since the last ping, or when no stream is running
//!   (an idle API run, or cameras reconnecting, which the sources handle). A
//!   pipeline whose sources deliver but whose frames stop being processed stops
//!   the pings, and systemd restarts it;
//! - `STOPPING=1` when the run is asked to stop, so the unit's `TimeoutStopSec=`
//!   covers finalising the outputs.
//!
//! Failing to reach the socket is logged once and never stops the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::control::{Board, StreamState, StreamStatus};

/// How often the thread looks at the board when no watchdog asks for more.
const TICK: Duration = Duration::from_millis(200);
/// How long READY waits for slow streams once the model is loaded (well inside
/// the unit's `TimeoutStartSec=`).
pub const READY_GRACE: Duration = Duration::from_secs(60);

/// Whether READY may be sent: the model is loaded and `expected` streams are
/// registered, and they are all up or `grace_over`. `Err` says what is missing.
pub fn ready(board: &Board, expected: usize, grace_over: bool) -> Result<(), String> {
    let registered = board.streams().len();
    if board.model().is_none() {
        return Err("the model is loading".into());
    }
    if registered < expected {
        return Err(format!("{registered} of {expected} streams started"));
    }
    match board.ready() {
        Err(waiting) if !grace_over => Err(waiting),
        _ => Ok(()),
    }
}

/// Decides when the watchdog may be fed: only while frames flow.
#[derive(Debug, Default)]
pub struct WatchdogGate {
    last_processed: Option<u64>,
}

impl WatchdogGate {
    /// Whether this ping shows a live pipeline: the processed count moved since
    /// the last call, or nothing is supposed to flow (no stream running).
    pub fn frames_flow(&mut self, streams: &[StreamStatus]) -> bool {
        let processed: u64 = streams.iter().map(|s| s.frames).sum();
        let running = streams.iter().any(|s| s.state == StreamState::Running);
        let moved = self.last_processed.is_none_or(|last| processed > last);
        self.last_processed = Some(processed);
        moved || !running
    }
}

/// The notify thread; stopped and joined on drop.
pub struct Notifier {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the thread when systemd expects notifications (`NOTIFY_SOCKET` set);
    /// `streams` is how many the run starts with, `stop` its stop flag (SIGTERM
    /// sets it).
    pub fn start(board: Arc<Board>, streams: usize, stop: Arc<AtomicBool>) -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = sd_notify::watchdog_enabled();
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn({
                let done = done.clone();
                move || notify_loop(&board, streams, &stop, &done, watchdog)
            })
            .map_err(|e| tracing::warn!("cannot start the systemd notify thread: {e}"))
            .ok()?;
        tracing::debug!(?watchdog, "notifying systemd");
        Some(Self {
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `STATUS=` of a ready run: the streams, and those not up.
fn running_status(board: &Board) -> String {
    let n = board.streams().len();
    match board.ready() {
        Ok(()) => format!("running: {n} stream(s)"),
        Err(waiting) => format!("running: {n} stream(s); {waiting}"),
    }
}

/// Sends `states`; the first failure is logged, the rest are not.
fn send(states: &[NotifyState], failed: &mut bool) {
    if let Err(e) = sd_notify::notify(states)
        && !*failed
    {
        *failed = true;
        tracing::warn!("cannot notify systemd: {e}");
    }
}

fn notify_loop(
    board: &Board,
    streams: usize,
    stop: &AtomicBool,
    done: &AtomicBool,
    watchdog: Option<Duration>,
) {
    let started = Instant::now();
    let mut failed = false;
    let mut ready = false;
    let mut status = String::new();
    let mut gate = WatchdogGate::default();
    let ping_every = watchdog.map(|w| w / 2);
    let mut last_ping = Instant::now();
    let tick = ping_every.map_or(TICK, |p| p.min(TICK));
    while !done.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        let grace_over = started.elapsed() >= READY_GRACE;
        let now = if ready {
            running_status(board)
        } else {
            match self::ready(board, streams, grace_over) {
                Ok(()) => {
                    ready = true;
                    let now = running_status(board);
                    send(
                        &[NotifyState::Ready, NotifyState::Status(&now)],
                        &mut failed,
                    );
                    status = now.clone();
                    now
                }
                Err(waiting) => format!("starting: {waiting}"),
            }
        };
        if now != status {
            send(&[NotifyState::Status(&now)], &mut failed);
            status = now;
        }
        if let Some(every) = ping_every
            && last_ping.elapsed() >= every
        {
            last_ping = Instant::now();
            if gate.frames_flow(&board.streams()) {
                send(&[NotifyState::Watchdog], &mut failed);
            } else {
                tracing::warn!(
                    "no frame processed for {every:?} while a stream runs: not feeding the watchdog"
                );
            }
        }
        std::thread::sleep(tick);
    }
    // The run was asked to stop, or ended: it finalises its outputs now.
    send(
        &[NotifyState::Stopping, NotifyState::Status("stopping")],
        &mut failed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(state: StreamState, frames: u64) -> StreamStatus {
        StreamStatus {
            id: 0,
            input: "test".into(),
            state,
            frames,
            dropped: 0,
            reconnects: 0,
            fps: 0.0,
            latency: None,
            error: None,
        }
    }

    #[test]
    fn the_watchdog_is_fed_only_while_frames_flow() {
        let mut gate = WatchdogGate::default();
        assert!(gate.frames_flow(&[stream(StreamState::Running, 10)]));
        assert!(gate.frames_flow(&[stream(StreamState::Running, 11)]));
        // Running, but the count stands still: the pipeline is stalled.
        assert!(!gate.frames_flow(&[stream(StreamState::Running, 11)]));
        assert!(!gate.frames_flow(&[stream(StreamState::Running, 11)]));
        assert!(gate.frames_flow(&[stream(StreamState::Running, 12)]));
    }

    #[test]
    fn ready_needs_the_model_and_every_expected_stream() {
        use crate::control::ModelStatus;
        let board = Board::default();
        assert_eq!(ready(&board, 0, false).unwrap_err(), "the model is loading");
        board.set_model(ModelStatus {
            name: "m".into(),
            path: "m.toml".into(),
            swaps: 0,
        });
        // The model is in, the streams are not registered yet.
        assert_eq!(
            ready(&board, 1, false).unwrap_err(),
            "0 of 1 streams started"
        );
        assert_eq!(
            ready(&board, 1, true).unwrap_err(),
            "0 of 1 streams started"
        );
        // An API run with no input is ready with the model alone.
        assert_eq!(ready(&board, 0, false), Ok(()));
    }

    #[test]
    fn nothing_running_is_not_a_stall() {
        let mut gate = WatchdogGate::default();
        assert!(gate.frames_flow(&[]));
        assert!(gate.frames_flow(&[]));
        assert!(gate.frames_flow(&[stream(StreamState::Reconnecting, 5)]));
        assert!(gate.frames_flow(&[stream(StreamState::Reconnecting, 5)]));
        assert!(gate.frames_flow(&[stream(StreamState::Ended, 5)]));
    }
}
