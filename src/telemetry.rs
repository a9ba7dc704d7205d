//! Run metrics in Prometheus text format, and the HTTP endpoint that serves them.
//!
//! [`Metrics`] owns one registry (prometheus-client). The stages hold cheap handles
//! (atomic counters, gauges, histograms) and update them where the event happens;
//! a scrape only reads. [`MetricsServer`] answers `GET /metrics` on its own thread
//! (tiny_http) and binds to loopback unless told otherwise.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Labels of per-stream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The stream id (position among the inputs).
    pub stream: String,
    /// The input, credentials redacted.
    pub input: String,
}

type HistogramFamily = Family<StreamLabels, Histogram, fn() -> Histogram>;

/// Labels of line-crossing counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LineLabels {
    pub stream: String,
    pub line: String,
    pub direction: String,
    pub class: String,
}

/// Labels of zone series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    pub stream: String,
    pub zone: String,
    pub class: String,
}

fn dwell_histogram() -> Histogram {
    // 0.5 s to about 68 min.
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// Handles of the tracking and analytics metrics (shared by every stream; each
/// series is labelled with its stream).
#[derive(Debug, Clone)]
pub struct PeopleMetrics {
    /// Line crossings, per stream, line, direction and class.
    pub line_crossings: Family<LineLabels, Counter>,
    /// Tracks inside each zone now.
    pub zone_occupancy: Family<ZoneLabels, Gauge>,
    /// Seconds a track stayed in a zone, observed when it leaves.
    pub zone_dwell: Family<ZoneLabels, Histogram, fn() -> Histogram>,
    /// Confirmed tracks alive (tracked or briefly lost), per stream.
    pub tracks_live: Family<StreamLabels, Gauge>,
}

impl PeopleMetrics {
    /// Adds the families to `registry` (prefixed `pedvision_` by it).
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "line_crossings",
            "Tracks that crossed a line, per stream, line, direction and class",
            self.line_crossings.clone(),
        );
        registry.register(
            "zone_occupancy",
            "Tracks inside a zone now, per stream, zone and class",
            self.zone_occupancy.clone(),
        );
        registry.register(
            "zone_dwell_seconds",
            "Time tracks stayed in a zone, observed as they leave",
            self.zone_dwell.clone(),
        );
        registry.register(
            "tracks_live",
            "Confirmed tracks alive (seen or briefly lost), per stream",
            self.tracks_live.clone(),
        );
    }
}

impl Default for PeopleMetrics {
    fn default() -> Self {
        Self {
            line_crossings: Family::default(),
            zone_occupancy: Family::default(),
            zone_dwell: Family::new_with_constructor(dwell_histogram),
            tracks_live: Family::default(),
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Every metric of a run.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Family<StreamLabels, Counter>,
    processed: Family<StreamLabels, Counter>,
    dropped: Family<StreamLabels, Counter>,
    reconnects: Family<StreamLabels, Counter>,
    up: Family<StreamLabels, Gauge>,
    expected: Family<StreamLabels, Gauge>,
    queue_depth: Family<StreamLabels, Gauge>,
    fps: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    latency: HistogramFamily,
    /// Seconds per inference call.
    pub inference_seconds: Histogram,
    /// Frames per inference call.
    pub batch_size: Histogram,
    /// The MQTT sink's handles.
    pub mqtt: MqttMetrics,
    /// Tracking and line/zone analytics.
    pub people: PeopleMetrics,
}

/// Handles of the MQTT sink's metrics (registered always, moving only with `--mqtt`).
#[derive(Debug, Clone, Default)]
pub struct MqttMetrics {
    /// Messages handed to the sink.
    pub queued: Counter,
    /// Messages the broker acknowledged.
    pub acknowledged: Counter,
    /// Messages dropped because the spool was full.
    pub dropped: Counter,
    /// Messages in the spool not yet acknowledged.
    pub spool_pending: Gauge,
    /// 1 while connected to the broker.
    pub connected: Gauge,
}

impl MqttMetrics {
    /// Registers the MQTT sink's families.
    fn register(&self, registry: &mut Registry) {
        let m = self;
        for (name, help, counter) in [
            (
                "mqtt_messages_queued",
                "Frame messages handed to the MQTT sink",
                &m.queued,
            ),
            (
                "mqtt_messages_acknowledged",
                "Frame messages the MQTT broker acknowledged",
                &m.acknowledged,
            ),
            (
                "mqtt_messages_dropped",
                "Frame messages dropped because the MQTT spool was full",
                &m.dropped,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "mqtt_spool_pending",
            "Frame messages in the MQTT spool not yet acknowledged",
            m.spool_pending.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the MQTT broker",
            m.connected.clone(),
        );
    }
}

/// One stream's handles.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// Frames decoded and queued.
    pub received: Counter,
    /// Frames through inference to the outputs.
    pub processed: Counter,
    /// Frames dropped because the pipeline was behind (live sources).
    pub dropped: Counter,
    /// Successful reconnections after a failure.
    pub reconnects: Counter,
    /// 1 while the source delivers frames, 0 while it is down or reconnecting.
    pub up: Gauge,
    /// Frames a file input should hold (0 for live sources and unknown lengths).
    pub frames_expected: Gauge,
    /// Frames waiting in the stream's queue.
    pub queue_depth: Gauge,
    /// Frames per second processed over the last second or so.
    pub fps: Gauge<f64, AtomicU64>,
    /// Capture-to-metadata latency of live frames, in seconds.
    pub latency: Histogram,
    /// This stream's `stream` label value, for the people metrics.
    pub stream_label: String,
    /// Confirmed tracks alive in this stream.
    pub tracks_live: Gauge,
    /// The run's tracking and analytics families.
    pub people: PeopleMetrics,
}

impl Default for StreamMetrics {
    /// Handles that belong to no registry (for tools and tests).
    fn default() -> Self {
        Self {
            received: Counter::default(),
            processed: Counter::default(),
            dropped: Counter::default(),
            reconnects: Counter::default(),
            up: Gauge::default(),
            frames_expected: Gauge::default(),
            queue_depth: Gauge::default(),
            fps: Gauge::default(),
            latency: latency_histogram(),
            stream_label: String::new(),
            tracks_live: Gauge::default(),
            people: PeopleMetrics::default(),
        }
    }
}

impl Metrics {
    /// A registry for a run of `model`.
    pub fn new(model: &str) -> Self {
        let mut registry = Registry::with_prefix("pedvision");
        let metrics = Self {
            received: Family::default(),
            processed: Family::default(),
            dropped: Family::default(),
            reconnects: Family::default(),
            up: Family::default(),
            expected: Family::default(),
            queue_depth: Family::default(),
            fps: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            inference_seconds: latency_histogram(),
            batch_size: Histogram::new(linear_buckets(1.0, 1.0, 16)),
            mqtt: MqttMetrics::default(),
            people: PeopleMetrics::default(),
            registry: Registry::default(),
        };
        metrics.register_pipeline(&mut registry);
        metrics.people.register(&mut registry);
        metrics.mqtt.register(&mut registry);
        registry.register(
            "build",
            "pedvision version and the model in use",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("model", model.to_string()),
            ]),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Registers the per-stream families and the inference ones.
    fn register_pipeline(&self, registry: &mut Registry) {
        registry.register(
            "frames_received",
            "Frames decoded and queued, per stream",
            self.received.clone(),
        );
        registry.register(
            "frames_processed",
            "Frames through inference to the outputs, per stream",
            self.processed.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames dropped because the pipeline was behind, per stream",
            self.dropped.clone(),
        );
        registry.register(
            "reconnects",
            "Successful reconnections after a failure, per stream",
            self.reconnects.clone(),
        );
        registry.register(
            "source_up",
            "1 while the source delivers frames, 0 while it is down",
            self.up.clone(),
        );
        registry.register(
            "frames_expected",
            "Frames a file input should hold (0: live or unknown)",
            self.expected.clone(),
        );
        registry.register(
            "queue_depth",
            "Frames waiting in the stream's queue",
            self.queue_depth.clone(),
        );
        registry.register(
            "stream_fps",
            "Frames per second processed, per stream",
            self.fps.clone(),
        );
        registry.register(
            "end_to_end_latency_seconds",
            "Capture-to-metadata latency of live frames",
            self.latency.clone(),
        );
        registry.register(
            "inference_seconds",
            "Time per inference call",
            self.inference_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Frames per inference call",
            self.batch_size.clone(),
        );
    }

    /// The handles of one stream.
    pub fn stream(&self, id: u32, input: &str) -> StreamMetrics {
        let labels = StreamLabels {
            stream: id.to_string(),
            input: input.to_string(),
        };
        StreamMetrics {
            received: self.received.get_or_create(&labels).clone(),
            processed: self.processed.get_or_create(&labels).clone(),
            dropped: self.dropped.get_or_create(&labels).clone(),
            reconnects: self.reconnects.get_or_create(&labels).clone(),
            up: self.up.get_or_create(&labels).clone(),
            frames_expected: self.expected.get_or_create(&labels).clone(),
            queue_depth: self.queue_depth.get_or_create(&labels).clone(),
            fps: self.fps.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            stream_label: id.to_string(),
            tracks_live: self.people.tracks_live.get_or_create(&labels).clone(),
            people: self.people.clone(),
        }
    }

    /// Drops a removed stream's series, so a run whose streams come and go does
    /// not grow without bound.
    pub fn forget_stream(&self, id: u32, input: &str) {
        let labels = StreamLabels {
            stream: id.to_string(),
            input: input.to_string(),
        };
        self.received.remove(&labels);
        self.processed.remove(&labels);
        self.dropped.remove(&labels);
        self.reconnects.remove(&labels);
        self.up.remove(&labels);
        self.expected.remove(&labels);
        self.queue_depth.remove(&labels);
        self.fps.remove(&labels);
        self.latency.remove(&labels);
        self.people.tracks_live.remove(&labels);
    }

    /// Everything, in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {bind}: {message}")]
pub struct MetricsError {
    bind: String,
    message: String,
}

/// The HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `metrics` at `http://BIND/metrics` (any path answers the same).
    pub fn start(bind: &str, metrics: Arc<Metrics>) -> Result<Self, MetricsError> {
        let server = tiny_http::Server::http(bind).map_err(|e| MetricsError {
            bind: bind.to_string(),
            message: e.to_string(),
        })?;
        let address = server.server_addr().to_string();
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("a valid static header");
                    let response =
                        tiny_http::Response::from_string(metrics.encode()).with_header(header);
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| MetricsError {
                bind: bind.to_string(),
                message: e.to_string(),
            })?;
        tracing::info!(address = %address, "metrics at http://{address}/metrics");
        Ok(Self {
            server,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_counters_appear_with_their_labels() {
        let m = Metrics::new("nanodet-g");
        let s = m.stream(1, "rtsp://***@cam/live");
        s.received.inc_by(5);
        s.dropped.inc();
        m.batch_size.observe(4.0);
        let text = m.encode();
        assert!(
            text.contains(
                r#"pedvision_frames_received_total{stream="1",input="rtsp://***@cam/live"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"pedvision_frames_dropped_total{stream="1",input="rtsp://***@cam/live"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("pedvision_batch_size_count 1"), "{text}");
        let zone = ZoneLabels {
            stream: "1".into(),
            zone: "queue".into(),
            class: "person".into(),
        };
        s.people.zone_dwell.get_or_create(&zone).observe(3.0);
        s.people
            .line_crossings
            .get_or_create(&LineLabels {
                stream: "1".into(),
                line: "door".into(),
                direction: "in".into(),
                class: "person".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains(
                r#"pedvision_line_crossings_total{stream="1",line="door",direction="in",class="person"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"pedvision_zone_dwell_seconds_count{stream="1",zone="queue",class="person"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"pedvision_build_info{version="#)
                && text.contains(r#"model="nanodet-g""#),
            "{text}"
        );
    }
}
