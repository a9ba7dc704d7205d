//! The MQTT metadata sink: each frame's JSON record to `PREFIX/STREAM` at QoS 1,
//! through the disk [`Spool`], so nothing is lost while the broker is down or slow.
//!
//! Threads and ownership:
//! - the pipeline's post stage sends `(stream, JSON)` into a bounded channel;
//! - the **sink thread** owns the spool: it appends every message to it, publishes
//!   from it in order with at most `WINDOW` unacknowledged, and moves the spool's
//!   acknowledgement forward on each PUBACK;
//! - the **connection thread** owns rumqttc's event loop: it connects (with
//!   backoff), forwards events to the sink thread tagged with a connection
//!   generation, and builds a fresh client for each new connection.
//!
//! Delivery is **at least once, in order per stream**: after a disconnect the sink
//! rewinds to the first unacknowledged message and publishes again from there, so a
//! message whose PUBACK was lost arrives twice, but no message is skipped and the
//! first copies arrive in spool order. Retained `online` is published to
//! `PREFIX/status` on connect; the last will (and a clean stop) set it `offline`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, unbounded};
use rumqttc::{
    Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};

use super::SinkError;
use super::spool::{Message, Spool};
use crate::telemetry::MqttMetrics;

/// Unacknowledged publishes allowed at once.
const WINDOW: usize = 64;
/// Largest MQTT packet sent or accepted. A message that would not fit is refused
/// when it is queued (and counted): queued, it would fail on the wire, reconnect
/// and fail again, holding up everything behind it forever.
const MAX_PACKET: usize = 1 << 20;
/// A PUBLISH's bytes besides topic and payload: fixed header (at most 5), topic
/// length (2), packet id (2).
const PUBLISH_OVERHEAD: usize = 9;

/// Validated MQTT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub topic_prefix: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub drain_timeout: Duration,
    pub keep_alive: Duration,
}

impl MqttSettings {
    /// Parses `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` into host, port and TLS.
    pub fn parse_url(url: &str) -> Result<(String, u16, bool), String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an mqtt:// or mqtts:// URL"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!(
                "{url:?}: expected mqtt[s]://HOST[:PORT] (credentials go in username/password_env)"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = port
                    .parse()
                    .map_err(|_| format!("{url:?}: port {port:?} is not a number"))?;
                Ok((host.trim_matches(['[', ']']).to_string(), port, tls))
            }
            _ => Ok((rest.to_string(), default_port, tls)),
        }
    }

    /// The status topic.
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.topic_prefix)
    }

    fn options(&self) -> Result<MqttOptions, SinkError> {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(true);
        o.set_inflight(WINDOW as u16 + 4);
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_last_will(LastWill::new(
            self.status_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &self.username {
            o.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        if self.tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|source| SinkError::Io {
                    path: p.clone(),
                    source,
                })
            };
            let transport = match &self.tls_ca {
                Some(ca) => Transport::tls_with_config(TlsConfiguration::Simple {
                    ca: read(ca)?,
                    alpn: None,
                    client_auth: match &self.tls_client {
                        Some((cert, key)) => Some((read(cert)?, read(key)?)),
                        None => None,
                    },
                }),
                None => Transport::tls_with_default_config(),
            };
            o.set_transport(transport);
        }
        Ok(o)
    }
}

/// What the sink did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MqttReport {
    /// Messages handed to the sink in this run.
    pub queued: u64,
    /// Messages the broker acknowledged in this run (including ones recovered
    /// from the spool of an earlier run).
    pub acknowledged: u64,
    /// Messages still in the spool at the end (delivered by the next run).
    pub left_in_spool: u64,
    /// Messages dropped because the spool was full.
    pub dropped: u64,
    /// Messages refused because they were larger than an MQTT packet may be.
    pub too_large: u64,
    /// Undelivered messages found in the spool at the start.
    pub recovered: u64,
    pub connections: u64,
}

/// The running sink: send records with [`MqttSink::send`], end with [`MqttSink::finish`].
pub struct MqttSink {
    tx: Option<Sender<(Topic, Vec<u8>)>>,
    thread: Option<JoinHandle<Result<MqttReport, SinkError>>>,
}

/// Where a message goes under the topic prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    /// `PREFIX/STREAM`: frame records.
    Frames(u32),
    /// `PREFIX/STREAM/events`: line and zone events.
    Events(u32),
}

enum ConnEvent {
    /// A new client for connection `generation` (not yet connected).
    Client(u64, Client),
    Event(u64, Event),
    Down(u64, String),
}

impl MqttSink {
    /// Opens the spool and starts the sink; the broker may be down (the spool holds
    /// what comes meanwhile).
    pub fn start(settings: MqttSettings, metrics: MqttMetrics) -> Result<Self, SinkError> {
        let spool = Spool::open(&settings.spool_dir, settings.spool_max_bytes)?;
        if spool.recovered() > 0 {
            tracing::info!(
                messages = spool.recovered(),
                "MQTT spool holds undelivered messages from an earlier run; sending them first"
            );
        }
        let options = settings.options()?;
        let (tx, rx) = bounded(1024);
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || sink_thread(settings, options, spool, rx, metrics))
            .map_err(|source| SinkError::Io {
                path: PathBuf::from("mqtt thread"),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one frame's record for `stream` (`PREFIX/STREAM`).
    pub fn send(&self, stream: u32, payload: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((Topic::Frames(stream), payload));
        }
    }

    /// Queues one event of `stream` (`PREFIX/STREAM/events`), through the same
    /// spool and with the same guarantees as frame records.
    pub fn send_event(&self, stream: u32, payload: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((Topic::Events(stream), payload));
        }
    }

    /// Ends the input, delivers what it can within the drain timeout, and reports.
    pub fn finish(mut self) -> Result<MqttReport, SinkError> {
        self.tx.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(SinkError::Io {
                path: PathBuf::from("mqtt thread"),
                source: std::io::Error::other("the MQTT sink panicked"),
            }),
            None => Ok(MqttReport::default()),
        }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs rumqttc connections one after another until `stop`, with backoff.
fn connection_thread(options: MqttOptions, events: Sender<ConnEvent>, stop: Arc<AtomicBool>) {
    let mut generation = 0u64;
    let mut delay = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        generation += 1;
        let (client, mut connection) = Client::new(options.clone(), WINDOW * 2);
        if events.send(ConnEvent::Client(generation, client)).is_err() {
            return;
        }
        let mut connected = false;
        for event in connection.iter() {
            match event {
                Ok(e) => {
                    if matches!(e, Event::Incoming(Packet::ConnAck(_))) {
                        connected = true;
                        delay = Duration::from_millis(200);
                    }
                    let done = matches!(e, Event::Outgoing(Outgoing::Disconnect));
                    if events.send(ConnEvent::Event(generation, e)).is_err() || done {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(ConnEvent::Down(generation, e.to_string()));
                    break;
                }
            }
        }
        if !connected {
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The publishing state of the current connection.
struct Link {
    generation: u64,
    client: Client,
    connected: bool,
    /// Publishes requested, in order, not yet seen leaving: `Some(seq)` for spool
    /// messages, `None` for status messages.
    requested: VecDeque<Option<u64>>,
    /// Packet id -> spool sequence, for publishes on the wire.
    inflight: HashMap<u16, Option<u64>>,
}

/// How far the spool's acknowledgement moves: over the front of its queue while
/// the broker has acknowledged each message there (whatever gaps the sequence
/// numbers have). Returns the new acknowledgement and how many messages it covers.
fn acked_front(
    pending: &VecDeque<Message>,
    acked_above: &mut BTreeSet<u64>,
    acked: u64,
) -> (u64, u64) {
    let (mut through, mut count) = (acked, 0u64);
    for m in pending {
        if !acked_above.remove(&m.seq) {
            break;
        }
        (through, count) = (m.seq, count + 1);
    }
    (through, count)
}

/// The sink thread's state: the spool, the current connection, and where
/// publishing stands. One method per thing that can happen.
struct Publisher {
    settings: MqttSettings,
    spool: Spool,
    metrics: MqttMetrics,
    report: MqttReport,
    link: Option<Link>,
    /// The highest spool sequence number already published on this connection.
    /// Sequence numbers can have gaps (records cut after a crash), so the next one
    /// to send is found in the spool's queue, never computed.
    sent_through: u64,
    /// Acknowledged sequence numbers above the spool's acknowledgement that are
    /// not yet at the front of its queue.
    acked_above: BTreeSet<u64>,
    reported_drops: u64,
    last_down_log: Option<Instant>,
}

impl Publisher {
    fn broker(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// Appends one frame's message to the spool.
    fn queue(&mut self, to: Topic, payload: &[u8]) -> Result<(), SinkError> {
        let prefix = &self.settings.topic_prefix;
        let topic = match to {
            Topic::Frames(stream) => format!("{prefix}/{stream}"),
            Topic::Events(stream) => format!("{prefix}/{stream}/events"),
        };
        if topic.len() + payload.len() + PUBLISH_OVERHEAD > MAX_PACKET {
            self.report.too_large += 1;
            tracing::warn!(topic = %topic, bytes = payload.len(), max = MAX_PACKET,
                "MQTT message larger than a packet may be; not sent (it is in the metadata file)");
            return Ok(());
        }
        self.spool.push(&topic, payload)?;
        self.report.queued += 1;
        self.metrics.queued.inc();
        Ok(())
    }

    /// Starts over from the first unacknowledged message (new or lost connection).
    fn rewind(&mut self) {
        self.sent_through = self.spool.acked();
        self.acked_above.clear();
    }

    fn on_connection_event(&mut self, event: ConnEvent) -> Result<(), SinkError> {
        match event {
            ConnEvent::Client(generation, client) => {
                self.link = Some(Link {
                    generation,
                    client,
                    connected: false,
                    requested: VecDeque::new(),
                    inflight: HashMap::new(),
                });
            }
            ConnEvent::Event(generation, event) => self.on_mqtt_event(generation, event)?,
            ConnEvent::Down(generation, why) => {
                let Some(link) = self.link.take_if(|l| l.generation == generation) else {
                    return Ok(());
                };
                self.metrics.connected.set(0);
                self.rewind();
                let quiet = self
                    .last_down_log
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                if link.connected || !quiet {
                    self.last_down_log = Some(Instant::now());
                    tracing::warn!(broker = %self.broker(), error = %why, pending = self.spool.pending().len(), "MQTT broker unreachable; spooling to disk and retrying");
                }
            }
        }
        Ok(())
    }

    fn on_mqtt_event(&mut self, generation: u64, event: Event) -> Result<(), SinkError> {
        let Some(link) = self.link.as_mut().filter(|l| l.generation == generation) else {
            return Ok(());
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                link.connected = true;
                if link
                    .client
                    .try_publish(
                        self.settings.status_topic(),
                        QoS::AtLeastOnce,
                        true,
                        "online",
                    )
                    .is_ok()
                {
                    link.requested.push_back(None);
                }
                self.metrics.connected.set(1);
                self.report.connections += 1;
                tracing::info!(broker = %self.broker(), pending = self.spool.pending().len(), "MQTT connected");
                self.rewind();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let seq = link.requested.pop_front().flatten();
                link.inflight.insert(pkid, seq);
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(Some(seq)) = link.inflight.remove(&ack.pkid) {
                    self.acked_above.insert(seq);
                    let (through, count) = acked_front(
                        self.spool.pending(),
                        &mut self.acked_above,
                        self.spool.acked(),
                    );
                    self.report.acknowledged += count;
                    self.metrics.acknowledged.inc_by(count);
                    self.spool.ack_through(through)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Publishes in spool order while the window allows.
    fn publish_window(&mut self) {
        self.sent_through = self.sent_through.max(self.spool.acked());
        let Some(link) = self.link.as_mut().filter(|l| l.connected) else {
            return;
        };
        let pending = self.spool.pending();
        let mut next = pending.partition_point(|m| m.seq <= self.sent_through);
        while link.requested.len() + link.inflight.len() < WINDOW {
            let Some(m) = pending.get(next) else {
                break;
            };
            let sent = link.client.try_publish(
                m.topic.clone(),
                QoS::AtLeastOnce,
                false,
                m.payload.clone(),
            );
            if sent.is_err() {
                break;
            }
            link.requested.push_back(Some(m.seq));
            self.sent_through = m.seq;
            next += 1;
        }
    }

    /// Periodic upkeep: spool sync and the gauges.
    fn tick(&mut self) -> Result<(), SinkError> {
        self.spool.sync_if_due()?;
        self.metrics
            .spool_pending
            .set(self.spool.pending().len() as i64);
        let dropped = self.spool.dropped();
        self.metrics.dropped.inc_by(dropped - self.reported_drops);
        self.reported_drops = dropped;
        Ok(())
    }

    /// A clean stop: `offline` on the status topic (waiting briefly for it to
    /// leave), disconnect, final sync, report.
    fn finish(mut self, events: &Receiver<ConnEvent>) -> Result<MqttReport, SinkError> {
        if let Some(link) = self.link.as_mut().filter(|l| l.connected) {
            let _ = link.client.try_publish(
                self.settings.status_topic(),
                QoS::AtLeastOnce,
                true,
                "offline",
            );
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if let Ok(ConnEvent::Event(_, Event::Incoming(Packet::PubAck(_)))) =
                    events.recv_timeout(Duration::from_millis(50))
                {
                    break;
                }
            }
            let _ = link.client.disconnect();
        }
        self.metrics.connected.set(0);
        self.spool.sync()?;
        self.report.left_in_spool = self.spool.pending().len() as u64;
        self.report.dropped = self.spool.dropped();
        if self.report.left_in_spool > 0 {
            tracing::warn!(messages = self.report.left_in_spool, spool = %self.settings.spool_dir.display(), "MQTT messages not delivered yet; they stay in the spool for the next run");
        }
        Ok(self.report)
    }
}

fn sink_thread(
    settings: MqttSettings,
    options: MqttOptions,
    spool: Spool,
    mut rx: Receiver<(Topic, Vec<u8>)>,
    metrics: MqttMetrics,
) -> Result<MqttReport, SinkError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = unbounded();
    {
        let stop = stop.clone();
        // Not joined: it ends on its own once `events` is gone (its next send
        // fails), so a connect attempt to a dead broker does not hold up the end.
        std::thread::Builder::new()
            .name("mqtt-connection".into())
            .spawn(move || connection_thread(options, events_tx, stop))
            .map_err(|source| SinkError::Io {
                path: PathBuf::from("mqtt thread"),
                source,
            })?;
    }
    let drain_timeout = settings.drain_timeout;
    let mut p = Publisher {
        report: MqttReport {
            recovered: spool.recovered(),
            ..MqttReport::default()
        },
        sent_through: spool.acked(),
        settings,
        spool,
        metrics,
        link: None,
        acked_above: BTreeSet::new(),
        reported_drops: 0,
        last_down_log: None,
    };
    let mut drain_deadline: Option<Instant> = None;
    loop {
        // Done: input closed and everything delivered, or the drain time is up.
        if let Some(deadline) = drain_deadline
            && (p.spool.pending().is_empty() || Instant::now() >= deadline)
        {
            break;
        }
        select! {
            recv(rx) -> msg => match msg {
                Ok((topic, payload)) => p.queue(topic, &payload)?,
                Err(_) => {
                    drain_deadline = Some(Instant::now() + drain_timeout);
                    // A closed channel is always ready: stop listening to it.
                    rx = crossbeam_channel::never();
                }
            },
            recv(events) -> ev => match ev {
                Ok(event) => p.on_connection_event(event)?,
                Err(_) => break,
            },
            default(Duration::from_millis(200)) => {}
        }
        p.publish_window();
        p.tick()?;
    }
    let report = p.finish(&events);
    stop.store(true, Ordering::SeqCst);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            MqttSettings::parse_url("mqtt://127.0.0.1:1884"),
            Ok(("127.0.0.1".into(), 1884, false))
        );
        assert_eq!(
            MqttSettings::parse_url("mqtts://broker.local"),
            Ok(("broker.local".into(), 8883, true))
        );
        assert_eq!(
            MqttSettings::parse_url("mqtt://broker/"),
            Ok(("broker".into(), 1883, false))
        );
        assert!(MqttSettings::parse_url("http://x").is_err());
        assert!(
            MqttSettings::parse_url("mqtt://u:p@x")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(
            MqttSettings::parse_url("mqtt://x:abc")
                .unwrap_err()
                .contains("port")
        );
    }

    fn message(seq: u64) -> super::super::spool::Message {
        super::super::spool::Message {
            seq,
            topic: "t".into(),
            payload: vec![],
        }
    }

    #[test]
    fn acknowledgement_moves_over_gaps_in_the_sequence() {
        // Records 6 and 7 were cut from the spool after a crash.
        let pending: VecDeque<_> = [4, 5, 8, 9].into_iter().map(message).collect();
        let mut acked_above = BTreeSet::from([5, 8]);
        assert_eq!(
            acked_front(&pending, &mut acked_above, 3),
            (3, 0),
            "4 is still owed"
        );
        acked_above.insert(4);
        assert_eq!(
            acked_front(&pending, &mut acked_above, 3),
            (8, 3),
            "4, 5 and 8"
        );
        assert!(acked_above.is_empty());
    }

    #[test]
    fn a_message_larger_than_a_packet_is_refused_when_queued() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 24).unwrap();
        let (host, port, tls) = MqttSettings::parse_url("mqtt://127.0.0.1:1").unwrap();
        let settings = MqttSettings {
            host,
            port,
            tls,
            topic_prefix: "pv".into(),
            client_id: "test".into(),
            username: None,
            password: None,
            tls_ca: None,
            tls_client: None,
            spool_dir: dir.path().to_path_buf(),
            spool_max_bytes: 1 << 24,
            drain_timeout: Duration::ZERO,
            keep_alive: Duration::from_secs(5),
        };
        let mut p = Publisher {
            report: MqttReport::default(),
            sent_through: spool.acked(),
            settings,
            spool,
            metrics: MqttMetrics::default(),
            link: None,
            acked_above: BTreeSet::new(),
            reported_drops: 0,
            last_down_log: None,
        };
        p.queue(Topic::Frames(0), &vec![b'x'; MAX_PACKET]).unwrap();
        p.queue(Topic::Frames(0), b"{}").unwrap();
        assert_eq!(p.report.too_large, 1);
        assert_eq!(p.report.queued, 1);
        assert_eq!(p.spool.pending().len(), 1, "only the one that fits waits");
    }
}
