//! The run-time control surface of a running pipeline: what the HTTP API and
//! SIGHUP may ask of it ([`Command`]) and what they may read ([`Board`]).
//!
//! ```text
//! HTTP API ─┐                       ┌─▶ sources (spawned / stopped)
//!  SIGHUP  ─┴─▶ Control ─Command─▶ controller ─┼─▶ batcher (new queues)
//!               (clone per caller)   (pipeline) ├─▶ post (new outputs, rules)
//!                  ▲                            └─▶ infer (a second model, switched
//!                  └──────── Board ◀── stages        in between two batches)
//! ```
//!
//! A [`Control`] is cheap to clone and blocks its caller until the pipeline has
//! answered (never longer than its timeout), so callers on an async runtime run it
//! on a blocking thread. The [`Board`] is what callers read without asking the
//! pipeline: per stream its name, metric handles and how its source ended; the
//! model that is live. This module knows nothing of HTTP or of the stages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::config::rules::{LineConfig, ZoneConfig};
use crate::telemetry::StreamMetrics;

/// Where and how the HTTP control API is served (validated).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    /// `ADDRESS:PORT`.
    pub bind: String,
    /// The environment variable that holds the bearer token, if one is required.
    pub token_env: Option<String>,
}

/// Whether `bind` (`ADDRESS:PORT`) listens on loopback only.
pub fn is_loopback(bind: &str) -> bool {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A stream to add to a running pipeline: the per-stream options of a pipeline
/// file. What is left out takes the run's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// The input, as `--input` takes it: a file, `rtsp://…`, `http(s)://…`,
    /// `camera:N`, `/dev/videoN` or `test:PATTERN`.
    pub input: String,
    /// Its annotated MP4 (`{name}` and `{stream}` are replaced). Default: the run's
    /// video pattern, or none when the run writes no video.
    #[serde(default)]
    pub output: Option<String>,
    /// Write no annotated video for this stream, whatever the run does.
    #[serde(default)]
    pub no_video: bool,
    /// Counting lines of this stream (their `stream` is set to the new id).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<LineConfig>,
    /// Zones of this stream (their `stream` is set to the new id).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub zones: Vec<ZoneConfig>,
    /// The fleet camera id (set by a worker, not by API clients): the stream's
    /// JetStream subjects end in it.
    #[serde(skip)]
    pub camera: Option<String>,
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Opening; no frame yet.
    Connecting,
    /// Delivering frames.
    Running,
    /// Lost after delivering frames; trying again.
    Reconnecting,
    /// Its input ended, or it was stopped; its outputs are final.
    Ended,
    /// Its source failed for good.
    Failed,
}

/// One stream, as `GET /streams` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StreamStatus {
    pub id: u32,
    /// The input, credentials hidden.
    pub input: String,
    pub state: StreamState,
    /// Frames processed (through inference to the outputs).
    pub frames: u64,
    /// Frames dropped because the pipeline was behind (live sources).
    pub dropped: u64,
    pub reconnects: u64,
    /// Frames per second processed over the last second or so.
    pub fps: f64,
    /// Live streams: capture-to-metadata latency over the last two seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyWindow>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Latency percentiles over one short window, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LatencyWindow {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The model that processes the frames now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelStatus {
    /// The manifest's `name` (the `model` field of every frame record).
    pub name: String,
    /// The manifest it was loaded from.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// How many times a model was switched in during this run.
    pub swaps: u64,
}

/// How a source ended, as the board keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceOutcome {
    /// Ended by end of stream or a stop: its outputs can be complete.
    Complete,
    /// Stopped because a later stage failed.
    Aborted,
    /// Failed, with the error's text.
    Failed(String),
}

/// What the board knows of one stream.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The input, credentials hidden.
    pub name: String,
    pub metrics: StreamMetrics,
    /// Set by the source's thread as it returns, before its queue closes.
    pub outcome: Arc<Mutex<Option<SourceOutcome>>>,
    /// Set by the post stage every latency window (live streams).
    pub latency: Arc<Mutex<Option<LatencyWindow>>>,
}

impl StreamEntry {
    fn status(&self, id: u32) -> StreamStatus {
        let m = &self.metrics;
        let outcome = lock(&self.outcome).clone();
        let (state, error) = match outcome {
            Some(SourceOutcome::Complete | SourceOutcome::Aborted) => (StreamState::Ended, None),
            Some(SourceOutcome::Failed(e)) => (StreamState::Failed, Some(e)),
            None if m.up.get() > 0 => (StreamState::Running, None),
            None if m.received.get() > 0 => (StreamState::Reconnecting, None),
            None => (StreamState::Connecting, None),
        };
        StreamStatus {
            id,
            input: self.name.clone(),
            state,
            frames: m.processed.get(),
            dropped: m.dropped.get(),
            reconnects: m.reconnects.get(),
            fps: m.fps.get(),
            latency: *lock(&self.latency),
            error,
        }
    }
}

/// What callers read without asking the pipeline.
#[derive(Debug, Default)]
pub struct Board {
    streams: Mutex<BTreeMap<u32, StreamEntry>>,
    model: Mutex<Option<ModelStatus>>,
}

/// A poisoned lock still holds usable data here (plain values, no invariants
/// across fields), so a panic elsewhere never takes the API down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Board {
    pub fn insert(&self, id: u32, entry: StreamEntry) {
        lock(&self.streams).insert(id, entry);
    }

    pub fn remove(&self, id: u32) -> Option<StreamEntry> {
        lock(&self.streams).remove(&id)
    }

    pub fn entry(&self, id: u32) -> Option<StreamEntry> {
        lock(&self.streams).get(&id).cloned()
    }

    /// Every stream, by id.
    pub fn streams(&self) -> Vec<StreamStatus> {
        lock(&self.streams)
            .iter()
            .map(|(id, e)| e.status(*id))
            .collect()
    }

    pub fn stream(&self, id: u32) -> Option<StreamStatus> {
        lock(&self.streams).get(&id).map(|e| e.status(id))
    }

    pub fn set_model(&self, model: ModelStatus) {
        *lock(&self.model) = Some(model);
    }

    pub fn model(&self) -> Option<ModelStatus> {
        lock(&self.model).clone()
    }

    /// Whether the run is ready: the model is loaded and no stream is still
    /// connecting, reconnecting or failed. `Err` says what is not ready.
    pub fn ready(&self) -> Result<(), String> {
        if self.model().is_none() {
            return Err("the model is loading".into());
        }
        let waiting: Vec<String> = self
            .streams()
            .into_iter()
            .filter(|s| !matches!(s.state, StreamState::Running | StreamState::Ended))
            .map(|s| format!("stream {} is {}", s.id, state_name(s.state)))
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        }
    }
}

fn state_name(state: StreamState) -> &'static str {
    match state {
        StreamState::Connecting => "connecting",
        StreamState::Running => "running",
        StreamState::Reconnecting => "reconnecting",
        StreamState::Ended => "ended",
        StreamState::Failed => "failed",
    }
}

/// Why a request was refused. Each kind maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    /// The request itself is wrong (an input that does not parse, a bad rule,
    /// an unwritable output).
    #[error("{0}")]
    Invalid(String),
    #[error("no stream {0}")]
    NoStream(u32),
    #[error("no {kind} named {name:?}")]
    NoRule { kind: &'static str, name: String },
    /// The request conflicts with the run's state (the stream limit, an output
    /// another stream writes, a rule name in use).
    #[error("{0}")]
    Conflict(String),
    /// A model that cannot replace the live one; the live one keeps running.
    #[error("{0}")]
    Model(String),
    /// The run is stopping or has stopped.
    #[error("the run is stopping")]
    Stopping,
    #[error("the pipeline did not answer within {0} s")]
    Timeout(u64),
    /// The pipeline could not do what it should have been able to (a thread
    /// that could not start).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A one-shot answer from the pipeline.
pub type Reply<T> = Sender<Result<T, ControlError>>;

/// The line and zone rules of a run, as given (pipeline-file form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSet {
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<LineConfig>,
    #[schema(value_type = Vec<Object>)]
    pub zones: Vec<ZoneConfig>,
}

/// What a caller asks of the running pipeline.
pub enum Command {
    AddStream(StreamRequest, Reply<u32>),
    /// Stops a stream and finalises its outputs; answered once they are final.
    RemoveStream(u32, Reply<()>),
    /// Loads a model beside the live one and switches it in between two batches;
    /// answered once it is live.
    SwapModel(PathBuf, Reply<ModelStatus>),
    /// Changes the lines and zones (counts of rules that stay the same go on).
    EditRules(RuleEdit, Reply<()>),
    Rules(Reply<RuleSet>),
}

/// A change to a run's lines and zones.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEdit {
    AddLine(LineConfig),
    AddZone(ZoneConfig),
    RemoveLine(String),
    RemoveZone(String),
    /// Every line and zone at once (SIGHUP).
    Replace(RuleSet),
}

/// How long a caller waits for each kind of answer. Removing a stream waits for
/// its MP4 to be finalised; a model load can take a while on a slow device.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const MODEL_TIMEOUT: Duration = Duration::from_secs(300);

/// A handle on a running pipeline.
#[derive(Clone)]
pub struct Control {
    tx: Sender<Command>,
    board: Arc<Board>,
}

impl Control {
    pub fn new(tx: Sender<Command>, board: Arc<Board>) -> Self {
        Self { tx, board }
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
        timeout: Duration,
    ) -> Result<T, ControlError> {
        let (reply, answer) = bounded(1);
        self.tx
            .send(make(reply))
            .map_err(|_| ControlError::Stopping)?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(ControlError::Timeout(timeout.as_secs()))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ControlError::Stopping),
        }
    }

    /// Adds a stream; its id.
    pub fn add_stream(&self, request: StreamRequest) -> Result<u32, ControlError> {
        self.ask(|r| Command::AddStream(request, r), ANSWER_TIMEOUT)
    }

    /// Stops a stream; returns once its outputs are final.
    pub fn remove_stream(&self, id: u32) -> Result<(), ControlError> {
        self.ask(|r| Command::RemoveStream(id, r), ANSWER_TIMEOUT)
    }

    /// Switches in the model of manifest `path`.
    pub fn swap_model(&self, path: PathBuf) -> Result<ModelStatus, ControlError> {
        self.ask(|r| Command::SwapModel(path, r), MODEL_TIMEOUT)
    }

    pub fn rules(&self) -> Result<RuleSet, ControlError> {
        self.ask(Command::Rules, ANSWER_TIMEOUT)
    }

    pub fn edit_rules(&self, edit: RuleEdit) -> Result<(), ControlError> {
        self.ask(|r| Command::EditRules(edit, r), ANSWER_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_state_follows_its_counters_and_outcome() {
        let board = Board::default();
        let entry = StreamEntry {
            name: "test:ball".into(),
            metrics: StreamMetrics::default(),
            outcome: Arc::default(),
            latency: Arc::default(),
        };
        board.insert(3, entry.clone());
        assert_eq!(board.stream(3).unwrap().state, StreamState::Connecting);
        entry.metrics.up.set(1);
        entry.metrics.received.inc();
        assert_eq!(board.stream(3).unwrap().state, StreamState::Running);
        entry.metrics.up.set(0);
        assert_eq!(board.stream(3).unwrap().state, StreamState::Reconnecting);
        *lock(&entry.outcome) = Some(SourceOutcome::Failed("gave up".into()));
        let s = board.stream(3).unwrap();
        assert_eq!(
            (s.state, s.error.as_deref()),
            (StreamState::Failed, Some("gave up"))
        );
        assert!(board.stream(4).is_none());
    }

    #[test]
    fn ready_needs_the_model_and_every_stream_up() {
        let board = Board::default();
        assert!(board.ready().unwrap_err().contains("model"));
        board.set_model(ModelStatus {
            name: "m".into(),
            path: "m.toml".into(),
            swaps: 0,
        });
        assert_eq!(board.ready(), Ok(()));
        let entry = StreamEntry {
            name: "x".into(),
            metrics: StreamMetrics::default(),
            outcome: Arc::default(),
            latency: Arc::default(),
        };
        board.insert(0, entry.clone());
        assert_eq!(board.ready().unwrap_err(), "stream 0 is connecting");
        entry.metrics.up.set(1);
        assert_eq!(board.ready(), Ok(()));
        *lock(&entry.outcome) = Some(SourceOutcome::Complete);
        entry.metrics.up.set(0);
        assert_eq!(board.ready(), Ok(()));
    }

    #[test]
    fn loopback_addresses_are_told_apart() {
        for bind in [
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:80",
            "127.3.2.1:9",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(is_loopback(bind), "{bind}");
        }
        for bind in [
            "0.0.0.0:8080",
            "192.168.1.4:80",
            "[::]:80",
            "example.org:80",
        ] {
            assert!(!is_loopback(bind), "{bind}");
        }
    }

    #[test]
    fn a_caller_is_told_when_the_pipeline_is_gone() {
        let (tx, rx) = bounded(1);
        let control = Control::new(tx, Arc::default());
        drop(rx);
        assert_eq!(control.remove_stream(1), Err(ControlError::Stopping));
    }
}
