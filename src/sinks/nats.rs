//! The NATS JetStream metadata sink: each frame's record to `pedvision.meta.CAMERA`
//! and each event to `pedvision.events.CAMERA`, acknowledged by JetStream, through
//! the same disk [`Spool`] as MQTT, so nothing is lost while NATS is unreachable.
//!
//! Threads and ownership:
//! - the pipeline's post stage sends `(camera, message id, kind, JSON)` into a
//!   bounded channel ([`NatsSink::send`]);
//! - the **sink thread** runs a one-thread tokio runtime with its own NATS
//!   connection. It owns the spool: it appends every message, publishes from the
//!   spool in order with at most `WINDOW` awaiting their acknowledgement, and moves
//!   the spool's acknowledgement forward as JetStream acknowledges each one.
//!
//! Every message carries a `Nats-Msg-Id` (the record's `run_id.stream.seq`, which
//! is in its payload too), so a resend after a lost acknowledgement, a reconnect or
//! a restart from the spool is dropped by the stream's de-duplication window
//! instead of stored twice. The spool keeps the subject and the message id
//! together in its topic field, as `SUBJECT MSGID` (a NATS subject holds no space).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::future::IntoFuture as _;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, message::PublishMessage};

use super::SinkError;
use super::spool::Spool;

/// Publishes awaiting their acknowledgement at once.
const WINDOW: usize = 128;
/// Largest message sent before the server says its own `max_payload`: NATS's
/// default (1 MiB).
const MAX_PAYLOAD: usize = 1 << 20;
/// Room left in `max_payload` for the headers (the message id).
const HEADER_ROOM: usize = 1024;

/// Validated settings of the JetStream sink.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSinkSettings {
    /// Server URLs (`nats://HOST:PORT`); the client also learns the cluster's others.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub creds: Option<PathBuf>,
    /// The first token of every subject (`pedvision`).
    pub subject_prefix: String,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// How long the end of a run waits for acknowledgements before leaving the
    /// rest in the spool for the next start.
    pub drain_timeout: Duration,
}

/// What the sink did, for the run's summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NatsReport {
    pub queued: u64,
    pub acknowledged: u64,
    /// Acknowledged as duplicates: JetStream already had them (resends).
    pub duplicates: u64,
    pub left_in_spool: u64,
    pub dropped: u64,
    pub too_large: u64,
    pub recovered: u64,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A frame's record: `PREFIX.meta.CAMERA`.
    Meta,
    /// A line or zone event: `PREFIX.events.CAMERA`.
    Event,
}

struct Outgoing {
    camera: String,
    id: String,
    kind: Kind,
    payload: Vec<u8>,
}

/// The running sink: send with [`NatsSink::send`], end with [`NatsSink::finish`].
pub struct NatsSink {
    tx: Option<tokio::sync::mpsc::Sender<Outgoing>>,
    thread: Option<JoinHandle<Result<NatsReport, SinkError>>>,
}

fn thread_error(what: &str) -> SinkError {
    SinkError::Io {
        path: PathBuf::from("nats thread"),
        source: std::io::Error::other(what.to_string()),
    }
}

impl NatsSink {
    /// Opens the spool and starts the sink; NATS may be down (the spool holds what
    /// comes meanwhile).
    pub fn start(settings: NatsSinkSettings) -> Result<Self, SinkError> {
        let spool = Spool::open(&settings.spool_dir, settings.spool_max_bytes)?;
        if spool.recovered() > 0 {
            tracing::info!(
                messages = spool.recovered(),
                "NATS spool holds unacknowledged messages from an earlier run; sending them first"
            );
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let thread = std::thread::Builder::new()
            .name("nats-sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| SinkError::Io {
                        path: PathBuf::from("nats runtime"),
                        source,
                    })?;
                runtime.block_on(Publisher::new(settings, spool).run(rx))
            })
            .map_err(|source| SinkError::Io {
                path: PathBuf::from("nats thread"),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one message of `camera`; `id` is its de-duplication id. Blocks while
    /// the sink's queue is full (the spool is behind it, so this is brief).
    pub fn send(&self, camera: &str, id: String, kind: Kind, payload: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.blocking_send(Outgoing {
                camera: camera.to_string(),
                id,
                kind,
                payload,
            });
        }
    }

    /// Ends the input, delivers what it can within the drain timeout, and reports.
    pub fn finish(mut self) -> Result<NatsReport, SinkError> {
        self.tx.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(thread_error("the NATS sink panicked")),
            None => Ok(NatsReport::default()),
        }
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Splits a spool topic `SUBJECT MSGID` in two.
fn split_topic(topic: &str) -> (&str, &str) {
    topic.split_once(' ').unwrap_or((topic, ""))
}

/// The sink thread's state.
struct Publisher {
    settings: NatsSinkSettings,
    spool: Spool,
    report: NatsReport,
    js: Option<jetstream::Context>,
    /// Published, acknowledgement awaited, in spool order.
    inflight: VecDeque<(u64, PublishAckFuture)>,
    /// The highest spool sequence number published on this connection.
    sent_through: u64,
    /// The largest payload the server takes, less room for headers.
    max_payload: usize,
    /// The pipeline may still send (its side of the channel is open).
    open: bool,
    last_down_log: Option<Instant>,
}

impl Publisher {
    fn new(settings: NatsSinkSettings, spool: Spool) -> Self {
        let report = NatsReport {
            recovered: spool.recovered(),
            ..Default::default()
        };
        let sent_through = spool.acked();
        Self {
            settings,
            spool,
            report,
            js: None,
            inflight: VecDeque::new(),
            sent_through,
            max_payload: MAX_PAYLOAD - HEADER_ROOM,
            open: true,
            last_down_log: None,
        }
    }

    async fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    ) -> Result<NatsReport, SinkError> {
        let mut draining_since: Option<Instant> = None;
        loop {
            while let Ok(m) = rx.try_recv() {
                self.queue(m)?;
            }
            if self.js.is_none() && !self.connect().await {
                self.idle(&mut rx, Duration::from_millis(500)).await?;
            }
            let published = self.publish_window().await;
            if !published || !self.await_front(&mut rx).await? {
                self.rewind();
                self.idle(&mut rx, Duration::from_millis(500)).await?;
            }
            self.spool.sync_if_due()?;
            let idle = self.inflight.is_empty() && self.unsent() == 0;
            if self.open && idle {
                match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(Some(m)) => self.queue(m)?,
                    Ok(None) => self.open = false,
                    Err(_) => {}
                }
            }
            if !self.open {
                let since = *draining_since.get_or_insert_with(Instant::now);
                if idle || since.elapsed() >= self.settings.drain_timeout {
                    break;
                }
            }
        }
        self.spool.sync()?;
        self.report.left_in_spool = self.spool.pending().len() as u64;
        self.report.dropped = self.spool.dropped();
        if self.report.left_in_spool > 0 {
            tracing::warn!(
                messages = self.report.left_in_spool,
                spool = %self.settings.spool_dir.display(),
                "NATS did not acknowledge every message in time; they stay in the spool for the next start"
            );
        }
        Ok(self.report)
    }

    /// Waits `pause`, still taking the pipeline's messages into the spool (so
    /// the post stage never waits on an outage).
    async fn idle(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Outgoing>,
        pause: Duration,
    ) -> Result<(), SinkError> {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                m = rx.recv(), if self.open => match m {
                    Some(m) => self.queue(m)?,
                    None => self.open = false,
                },
            }
        }
    }

    /// Appends one message to the spool.
    fn queue(&mut self, m: Outgoing) -> Result<(), SinkError> {
        let kind = match m.kind {
            Kind::Meta => "meta",
            Kind::Event => "events",
        };
        let subject = format!("{}.{kind}.{}", self.settings.subject_prefix, m.camera);
        if m.payload.len() + subject.len() > self.max_payload {
            self.report.too_large += 1;
            tracing::warn!(subject = %subject, bytes = m.payload.len(),
                "NATS message larger than max_payload; not sent (it is in the metadata file)");
            return Ok(());
        }
        self.spool
            .push(&format!("{subject} {}", m.id), &m.payload)?;
        self.report.queued += 1;
        Ok(())
    }

    /// Spool messages not yet published on this connection.
    fn unsent(&self) -> usize {
        let through = self.sent_through;
        self.spool
            .pending()
            .iter()
            .rev()
            .take_while(|m| m.seq > through)
            .count()
    }

    /// Connects (the client reconnects on its own afterwards). Whether it did.
    async fn connect(&mut self) -> bool {
        let servers = &self.settings.servers;
        let creds = self.settings.creds.as_deref();
        match crate::fleet::connect(servers, creds, "pedvision-sink").await {
            Ok(client) => {
                tracing::info!(pending = self.spool.pending().len(), "NATS sink connected");
                let server = client.server_info().max_payload;
                if server > HEADER_ROOM {
                    self.max_payload = server - HEADER_ROOM;
                }
                self.js = Some(jetstream::new(client));
                self.rewind();
                true
            }
            Err(e) => {
                self.log_down(&e.to_string());
                false
            }
        }
    }

    fn log_down(&mut self, why: &str) {
        let quiet = self
            .last_down_log
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !quiet {
            self.last_down_log = Some(Instant::now());
            tracing::warn!(error = %why, pending = self.spool.pending().len(),
                "NATS unreachable; spooling to disk and retrying");
        }
    }

    /// Publishes spool messages after `sent_through` while the window has room.
    /// False when publishing failed (the caller pauses and rewinds).
    async fn publish_window(&mut self) -> bool {
        let Some(js) = self.js.clone() else {
            return true;
        };
        while self.inflight.len() < WINDOW {
            let through = self.sent_through;
            let Some(m) = self.spool.pending().iter().find(|m| m.seq > through) else {
                return true;
            };
            let (seq, (subject, id)) = (m.seq, split_topic(&m.topic));
            let message = PublishMessage::build()
                .payload(m.payload.clone().into())
                .message_id(id);
            match js.send_publish(subject.to_string(), message).await {
                Ok(ack) => {
                    self.inflight.push_back((seq, ack));
                    self.sent_through = seq;
                }
                // Never accepted however often it is tried: skip it (the next
                // acknowledgement moves the spool past it).
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    self.report.too_large += 1;
                    self.sent_through = seq;
                    tracing::warn!(
                        subject,
                        "NATS refused a message as too large; not sent (it is in the metadata file)"
                    );
                }
                Err(e) => {
                    self.log_down(&e.to_string());
                    return false;
                }
            }
        }
        true
    }

    /// Waits for the oldest publish's acknowledgement, taking the pipeline's
    /// messages into the spool meanwhile, and moves the spool's forward. False
    /// when it failed (the caller rewinds and retries).
    async fn await_front(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Outgoing>,
    ) -> Result<bool, SinkError> {
        let Some((seq, ack)) = self.inflight.pop_front() else {
            return Ok(true);
        };
        let mut ack = std::pin::pin!(ack.into_future());
        let result = loop {
            tokio::select! {
                result = &mut ack => break result,
                m = rx.recv(), if self.open => match m {
                    Some(m) => self.queue(m)?,
                    None => self.open = false,
                },
            }
        };
        Ok(match result {
            Ok(ack) => {
                if ack.duplicate {
                    self.report.duplicates += 1;
                }
                self.report.acknowledged += 1;
                if let Err(e) = self.spool.ack_through(seq) {
                    tracing::warn!(error = %e, "cannot record a NATS acknowledgement in the spool");
                }
                true
            }
            Err(e) => {
                self.log_down(&e.to_string());
                false
            }
        })
    }

    /// Starts over from the first unacknowledged message (a failed publish or a
    /// new connection); JetStream drops the repeats by their message id.
    fn rewind(&mut self) {
        self.inflight.clear();
        self.sent_through = self.spool.acked();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_topic_splits_into_subject_and_message_id() {
        assert_eq!(
            split_topic("pedvision.meta.cam1 0123abcd.4.17"),
            ("pedvision.meta.cam1", "0123abcd.4.17")
        );
        assert_eq!(split_topic("only"), ("only", ""));
    }
}
