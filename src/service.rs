//! systemd's notify protocol, for `pedvision run` as a `Type=notify` unit
//! (`packaging/pedvision@.service`).
//!
//! One thread, started only when systemd set `NOTIFY_SOCKET`, reads the
//! [`Board`] the pipeline keeps and tells the service manager:
//! - `READY=1` once the run is ready by [`Board::ready`]: the model is loaded and
//!   no stream is still connecting (so `systemctl start` returns when detections
//!   can flow), with a `STATUS=` line while it waits and after;
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
    /// `stop` is the run's stop flag (SIGTERM sets it).
    pub fn start(board: Arc<Board>, stop: Arc<AtomicBool>) -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = sd_notify::watchdog_enabled();
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn({
                let done = done.clone();
                move || notify_loop(&board, &stop, &done, watchdog)
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

/// Sends `states`; the first failure is logged, the rest are not.
fn send(states: &[NotifyState], failed: &mut bool) {
    if let Err(e) = sd_notify::notify(states)
        && !*failed
    {
        *failed = true;
        tracing::warn!("cannot notify systemd: {e}");
    }
}

fn notify_loop(board: &Board, stop: &AtomicBool, done: &AtomicBool, watchdog: Option<Duration>) {
    let mut failed = false;
    let mut ready = false;
    let mut status = String::new();
    let mut gate = WatchdogGate::default();
    let ping_every = watchdog.map(|w| w / 2);
    let mut last_ping = Instant::now();
    let tick = ping_every.map_or(TICK, |p| p.min(TICK));
    while !done.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        let now = match board.ready() {
            Ok(()) => format!("running: {} stream(s)", board.streams().len()),
            Err(waiting) => format!("starting: {waiting}"),
        };
        if !ready && board.ready().is_ok() {
            ready = true;
            send(
                &[NotifyState::Ready, NotifyState::Status(&now)],
                &mut failed,
            );
            status = now;
        } else if now != status {
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
    fn nothing_running_is_not_a_stall() {
        let mut gate = WatchdogGate::default();
        assert!(gate.frames_flow(&[]));
        assert!(gate.frames_flow(&[]));
        assert!(gate.frames_flow(&[stream(StreamState::Reconnecting, 5)]));
        assert!(gate.frames_flow(&[stream(StreamState::Reconnecting, 5)]));
        assert!(gate.frames_flow(&[stream(StreamState::Ended, 5)]));
    }
}
