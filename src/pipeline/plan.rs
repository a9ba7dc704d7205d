//! A run's settings, validated once. [`RunPlan::build`] takes the layered settings
//! ([`Layers`]: defaults, pipeline file, flags given) and the model's manifest, and
//! checks every field of the effective configuration in one place, whichever layer
//! it came from. An error names the key and where its value came from: the flag
//! (`--batch 0: …`) or the file and line (`pipeline file p.toml, line 6: [batching]
//! size = 0: …`). Nothing starts before the plan is whole.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::choice::Choice;
use crate::config::pipeline::{MqttSection, OutputsSection};
use crate::config::{Layers, Manifest, Origin, PipelineConfig, defaults};
use crate::control::{ApiSettings, RuleSet, is_loopback};
use crate::fleet::FleetSettings;
use crate::infer::{Device, Precision, RuntimeOptions};
use crate::model::classes::ClassFilter;
use crate::sinks::mqtt::MqttSettings;
use crate::sinks::nats::NatsSinkSettings;
use crate::sources::{ReconnectPolicy, RtspOptions, RtspTransport, SourceSpec, SpecError};
use crate::track::{TrackerKind, TrackerSettings};

use super::PostOptions;

/// Everything one `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The inputs; a source's position is its stream id.
    pub sources: Vec<SourceSpec>,
    /// RTSP client settings.
    pub rtsp: RtspOptions,
    /// Reconnection and stall settings for network sources.
    pub reconnect: ReconnectPolicy,
    /// Per stream: the annotated MP4 to write, if any.
    pub videos: Vec<Option<PathBuf>>,
    /// JSON Lines metadata for all streams, if any.
    pub metadata: Option<PathBuf>,
    /// Serve annotated streams over RTSP on this `ADDRESS:PORT`.
    pub rtsp_out: Option<String>,
    /// Show each annotated stream in a window.
    pub display: bool,
    /// Serve Prometheus metrics on this `ADDRESS:PORT`.
    pub metrics: Option<String>,
    /// Publish each frame's metadata to this MQTT broker.
    pub mqtt: Option<MqttSettings>,
    /// Hard frames saved for retraining.
    pub harvest: Option<crate::sinks::harvest::HarvestSettings>,
    /// A fleet worker: its cameras come from NATS.
    pub fleet: Option<crate::fleet::FleetSettings>,
    /// Publish fleet cameras' metadata and events to JetStream (workers).
    pub nats: Option<crate::sinks::nats::NatsSinkSettings>,
    /// The model manifest, and its name for the metrics' build info.
    pub model_path: PathBuf,
    pub model_name: String,
    /// Where and how ONNX Runtime runs, and which library it is.
    pub runtime: RuntimeOptions,
    pub ort_lib: Option<PathBuf>,
    /// Frames per inference call.
    pub batch: usize,
    /// How long a partial batch may wait for more frames; `None` waits for a full one.
    pub batch_timeout: Option<Duration>,
    /// Decoding, thresholds and class filter.
    pub post: PostOptions,
    /// The tracker of every stream.
    pub tracking: TrackerSettings,
    /// Counting lines and zones, checked against the streams and classes.
    pub rules: crate::analytics::Rules,
    /// Stop after this long, as SIGINT would.
    pub duration: Option<Duration>,
    /// The MP4 pattern of a stream added while the run goes on (`{name}`,
    /// `{stream}`); `None` when the run writes no video.
    pub video_pattern: Option<String>,
    /// The HTTP control API, if served. With it the run goes on until stopped.
    pub api: Option<ApiSettings>,
    /// Most streams open at once.
    pub max_streams: usize,
    /// The class filter as given (a model switched in is checked against it).
    pub classes_spec: String,
    /// Lines and zones as given (the control API edits these).
    pub rule_configs: RuleSet,
    /// Measurement only (`bench`'s zero-cost-detector pass): the inference stage
    /// passes every frame on with no detections instead of running the model, so
    /// the run shows what the rest of the pipeline can do. Never set by `run`.
    pub skip_inference: bool,
}

/// Why a run's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Setting(Box<SettingError>),
    #[error(transparent)]
    Input(#[from] SpecError),
    #[error(transparent)]
    Rules(#[from] crate::analytics::RuleError),
    #[error("{0}")]
    Invalid(String),
}

/// One bad value, with its key and origin. `why` is a predicate (`must be from 1
/// to 64`, `is not one of …`), so the message reads `KEY VALUE WHY`.
#[derive(Debug)]
pub struct SettingError {
    pub origin: Origin,
    /// `[section] key`, or a top-level key.
    pub key: String,
    pub value: String,
    pub why: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, value, why) = (&self.key, &self.value, &self.why);
        match &self.origin {
            Origin::Flag(flag) => write!(f, "{flag} {value} {why}"),
            Origin::File { path, line } => {
                write!(f, "pipeline file {}", path.display())?;
                if let Some(line) = line {
                    write!(f, ", line {line}")?;
                }
                write!(f, ": {key} {value} {why}")
            }
            Origin::Default => write!(f, "{key} {value} {why}"),
        }
    }
}

/// Video file extensions a folder input expands to.
const VIDEO_EXTENSIONS: [&str; 11] = [
    "mp4", "mkv", "avi", "webm", "mov", "m4v", "ts", "mpg", "mpeg", "flv", "ogv",
];

/// Names bad values after the layer they came from.
struct Check<'a> {
    layers: &'a Layers,
}

impl Check<'_> {
    fn fail(&self, key: &[&str], value: impl fmt::Display, why: impl Into<String>) -> PlanError {
        let shown = match key {
            [name] => name.to_string(),
            [section, name] => format!("[{section}] {name}"),
            _ => key.join("."),
        };
        PlanError::Setting(Box::new(SettingError {
            origin: self.layers.origin(key),
            key: shown,
            value: crate::redact::text(&value.to_string()),
            why: why.into(),
        }))
    }

    /// A value the defaults always fill.
    fn need<T>(&self, key: &[&str], value: Option<T>) -> Result<T, PlanError> {
        value.ok_or_else(|| self.fail(key, "", "needs a value (it has no default)"))
    }

    /// A value that must pass `ok`.
    fn valid<T: fmt::Display + Copy>(
        &self,
        key: &[&str],
        value: Option<T>,
        ok: impl Fn(T) -> bool,
        why: &str,
    ) -> Result<T, PlanError> {
        let v = self.need(key, value)?;
        if ok(v) {
            Ok(v)
        } else {
            Err(self.fail(key, v, why))
        }
    }

    /// An optional value that, when given, must pass `ok`.
    fn valid_opt<T: fmt::Display + Copy>(
        &self,
        key: &[&str],
        value: Option<T>,
        ok: impl Fn(T) -> bool,
        why: &str,
    ) -> Result<Option<T>, PlanError> {
        value
            .map(|v| self.valid(key, Some(v), &ok, why))
            .transpose()
    }

    fn choice<T: Choice>(&self, key: &[&str], value: Option<&String>) -> Result<T, PlanError> {
        let name = self.need(key, value)?;
        T::parse(name).map_err(|_| {
            self.fail(
                key,
                format!("{name:?}"),
                format!("is not one of {}", T::names()),
            )
        })
    }
}

fn seconds(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl RunPlan {
    /// Whether streams come and go while the run goes on (the control API or a
    /// fleet): the run then starts with no input, waits until stopped, and a
    /// failed stream does not fail it.
    pub fn steered(&self) -> bool {
        self.api.is_some() || self.fleet.is_some()
    }

    /// Validates the layered settings against the model's manifest.
    pub fn build(layers: &Layers, manifest: &Manifest) -> Result<Self, PlanError> {
        let c = layers.effective();
        let check = Check { layers };
        let (api, sources, max_streams) = streams_and_api(&check, &c)?;
        let (fleet, nats) = fleet_settings(&check, &c, max_streams)?;
        let steered = api.is_some() || fleet.is_some();
        let post = post_options(&check, &c, manifest)?;
        let many = sources.len() > 1 || steered;
        let (videos, metadata, video_pattern) = output_files(&check, &c.outputs, &sources, many)?;
        let (batch, batch_timeout) = batching(&check, &c, &sources, steered)?;
        let tracking = tracker(&check, &c, post.conf)?;
        let rules = crate::analytics::Rules::validate(
            &c.lines,
            &c.zones,
            sources.len() as u32,
            &post.labels,
            &post.classes,
        )?;
        if tracking.kind == TrackerKind::None && !rules.is_empty() {
            return Err(PlanError::Invalid(
                "lines and zones count tracks: they need a tracker (not --tracker none)".into(),
            ));
        }
        let device: Device = check.choice(&["model", "device"], c.model.device.as_ref())?;
        let precision: Precision =
            check.choice(&["model", "precision"], c.model.precision.as_ref())?;
        let threads = check.valid(
            &["model", "threads"],
            c.model.threads,
            |t| t <= 1024,
            "must be at most 1024 (0: one per core)",
        )?;
        let duration = check.valid_opt(
            &["duration_s"],
            c.duration_s,
            seconds,
            "must be a number of seconds, 0 or more",
        )?;
        let o = &c.outputs;
        Ok(RunPlan {
            rtsp: rtsp_options(&check, &c)?,
            reconnect: reconnect_policy(&check, &c)?,
            videos,
            metadata,
            rtsp_out: o.rtsp.as_deref().map(loopback_unless_given),
            display: o.display.unwrap_or(false),
            metrics: o.metrics.as_deref().map(loopback_unless_given),
            mqtt: c
                .mqtt
                .as_ref()
                .map(|m| mqtt_settings(&check, m))
                .transpose()?,
            harvest: harvest_settings(&check, &c, post.conf)?,
            fleet,
            nats,
            model_path: check.need(&["model", "path"], c.model.path.clone())?,
            model_name: manifest.name.clone(),
            runtime: RuntimeOptions {
                device,
                precision,
                threads,
            },
            ort_lib: c.model.ort_lib.clone(),
            batch,
            batch_timeout,
            post,
            tracking,
            rules,
            duration: duration.map(Duration::from_secs_f64),
            skip_inference: false,
            sources,
            video_pattern,
            api,
            max_streams,
            classes_spec: c.model.classes.clone().unwrap_or_default(),
            rule_configs: rule_set(&c),
        })
    }
}

/// The lines and zones of a pipeline file, as written.
fn rule_set(c: &PipelineConfig) -> RuleSet {
    RuleSet {
        lines: c.lines.clone(),
        zones: c.zones.clone(),
    }
}

/// The control API, the inputs (none needed with the API, none allowed for a
/// fleet worker) and the stream limit they must fit in.
fn streams_and_api(
    check: &Check<'_>,
    c: &PipelineConfig,
) -> Result<(Option<ApiSettings>, Vec<SourceSpec>, usize), PlanError> {
    let api = api_settings(check, c)?;
    let sources = sources(check, &c.inputs, api.is_some() || c.fleet.is_some())?;
    if c.fleet.is_some() && !sources.is_empty() {
        return Err(check.fail(
            &["inputs"],
            format!("{:?}", c.inputs),
            "must be empty for a fleet worker: its cameras come from the pedvision_cameras bucket",
        ));
    }
    let max_streams = check.valid(
        &["api", "max_streams"],
        c.api.max_streams,
        |n| (1..=1024).contains(&n),
        "must be from 1 to 1024",
    )?;
    if sources.len() > max_streams {
        return Err(check.fail(
            &["api", "max_streams"],
            max_streams,
            format!("is fewer than the {} inputs", sources.len()),
        ));
    }
    Ok((api, sources, max_streams))
}

/// `[fleet]`: the worker's NATS servers, id, capacity and leases, and its
/// JetStream sink.
#[allow(clippy::type_complexity)]
fn fleet_settings(
    check: &Check<'_>,
    c: &PipelineConfig,
    max_streams: usize,
) -> Result<(Option<FleetSettings>, Option<NatsSinkSettings>), PlanError> {
    let Some(f) = &c.fleet else {
        return Ok((None, None));
    };
    let spec = check.need(&["fleet", "nats"], f.nats.as_ref())?;
    let servers = crate::fleet::parse_servers(spec).map_err(|e| {
        check.fail(
            &["fleet", "nats"],
            crate::redact::url(spec),
            format!("is not usable: {e}"),
        )
    })?;
    let worker_id = f.worker_id.clone().unwrap_or_else(crate::fleet::host_id);
    if !crate::fleet::valid_id(&worker_id) {
        return Err(check.fail(
            &["fleet", "worker_id"],
            &worker_id,
            "must be 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    let capacity = check.valid(
        &["fleet", "capacity"],
        f.capacity.or(Some(max_streams)),
        |n| (1..=max_streams).contains(&n),
        &format!("must be from 1 to the stream limit ({max_streams})"),
    )?;
    let ttl = check.valid(
        &["fleet", "lease_ttl_s"],
        f.lease_ttl_s,
        |t| t.is_finite() && (3.0..=3600.0).contains(&t),
        "must be from 3 to 3600 s",
    )?;
    let replicas = check.valid(
        &["fleet", "replicas"],
        f.replicas,
        |r| (1..=5).contains(&r),
        "must be from 1 to 5",
    )?;
    let drain = check.valid(
        &["fleet", "drain_timeout_s"],
        f.drain_timeout_s,
        |s| seconds(s) && s <= 3600.0,
        "must be from 0 to 3600 s",
    )?;
    let spool_mb = check.valid(
        &["fleet", "spool_max_mb"],
        f.spool_max_mb,
        |m| (1..=1 << 20).contains(&m),
        "must be from 1 to 1048576 (1 TiB)",
    )?;
    let spool = check.need(&["fleet", "spool_dir"], f.spool_dir.clone())?;
    let spool_dir = PathBuf::from(spool.to_string_lossy().replace("{worker}", &worker_id));
    let nats = NatsSinkSettings {
        servers: servers.clone(),
        creds: f.creds.clone(),
        subject_prefix: crate::fleet::SUBJECT_PREFIX.into(),
        spool_dir,
        spool_max_bytes: spool_mb * 1024 * 1024,
        drain_timeout: Duration::from_secs_f64(drain),
    };
    let fleet = FleetSettings {
        servers,
        creds: f.creds.clone(),
        worker_id,
        capacity,
        rebalance: f.rebalance.unwrap_or(false),
        lease_ttl: Duration::from_secs_f64(ttl),
        replicas,
    };
    Ok((Some(fleet), Some(nats)))
}

/// `[api]`: the address (loopback unless one is given) and the token a
/// non-loopback address needs.
fn api_settings(check: &Check<'_>, c: &PipelineConfig) -> Result<Option<ApiSettings>, PlanError> {
    let Some(bind) = c.api.bind.as_deref() else {
        return Ok(None);
    };
    let bind = loopback_unless_given(bind);
    if bind
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(check.fail(&["api", "bind"], &bind, "must be [ADDRESS:]PORT"));
    }
    let token_env = c.api.token_env.clone().filter(|t| !t.is_empty());
    if token_env.is_none() && !is_loopback(&bind) {
        return Err(check.fail(
            &["api", "bind"],
            &bind,
            "is not a loopback address: it needs a bearer token (--api-token-env NAME, the environment variable that holds it)",
        ));
    }
    Ok(Some(ApiSettings { bind, token_env }))
}

/// The inputs, folders expanded, parsed into sources (ids in order). None is
/// allowed when the control API will add them.
fn sources(check: &Check<'_>, inputs: &[String], api: bool) -> Result<Vec<SourceSpec>, PlanError> {
    let inputs = expand_folders(inputs)?;
    if inputs.is_empty() && !api {
        return Err(check.fail(&["inputs"], "[]", "must name at least one input"));
    }
    Ok(inputs
        .iter()
        .enumerate()
        .map(|(i, input)| SourceSpec::parse(i as u32, input))
        .collect::<Result<Vec<_>, _>>()?)
}

/// `[batching]`: the batch size, and how long a partial batch may wait (by
/// default, full batches for files and a short wait when any input is live).
fn batching(
    check: &Check<'_>,
    c: &PipelineConfig,
    sources: &[SourceSpec],
    api: bool,
) -> Result<(usize, Option<Duration>), PlanError> {
    let batch = check.valid(
        &["batching", "size"],
        c.batching.size,
        |b| (1..=defaults::MAX_BATCH).contains(&b),
        &format!("must be from 1 to {}", defaults::MAX_BATCH),
    )?;
    let timeout_ms = check.valid_opt(
        &["batching", "timeout_ms"],
        c.batching.timeout_ms,
        |t| t <= 60_000,
        "must be at most 60000 ms",
    )?;
    // Under the control API a live stream may join at any time.
    let any_live = api || sources.iter().any(SourceSpec::is_live);
    let timeout = timeout_ms
        .or(any_live.then_some(defaults::LIVE_BATCH_TIMEOUT_MS))
        .map(Duration::from_millis);
    Ok((batch.into(), timeout))
}

/// Thresholds, classes and the detection cap, with the model's input and labels.
fn post_options(
    check: &Check<'_>,
    c: &PipelineConfig,
    manifest: &Manifest,
) -> Result<PostOptions, PlanError> {
    let m = &c.model;
    let conf = check.valid(
        &["model", "conf"],
        m.conf,
        |v| v > 0.0 && v < 1.0,
        "must be between 0 and 1 (exclusive)",
    )?;
    let iou = check.valid(
        &["model", "iou"],
        m.iou,
        |v| v > 0.0 && v <= 1.0,
        "must be in (0, 1]",
    )?;
    let max_detections = check.valid(
        &["model", "max_detections"],
        m.max_detections,
        |n| (1..=10_000).contains(&n),
        "must be from 1 to 10000",
    )?;
    let classes_spec = check.need(&["model", "classes"], m.classes.as_ref())?;
    let classes = ClassFilter::parse(classes_spec, &manifest.labels).map_err(|e| {
        check.fail(
            &["model", "classes"],
            format!("{classes_spec:?}"),
            format!("is not usable: {e}"),
        )
    })?;
    Ok(PostOptions {
        input: manifest.input.clone(),
        layout: manifest.layout(),
        labels: manifest.labels.clone(),
        classes,
        conf,
        iou,
        max_detections,
    })
}

/// Per stream: the MP4 to write; the metadata file; the MP4 pattern of streams
/// added later. `many`: several streams (or some may be added).
#[allow(clippy::type_complexity)]
fn output_files(
    check: &Check<'_>,
    o: &OutputsSection,
    sources: &[SourceSpec],
    many: bool,
) -> Result<(Vec<Option<PathBuf>>, Option<PathBuf>, Option<String>), PlanError> {
    let mut video_pattern = None;
    let videos = if o.no_video.unwrap_or(false) {
        vec![None; sources.len()]
    } else {
        let default = if many {
            "out/{stream}-{name}.mp4"
        } else {
            "out/{name}.mp4"
        };
        let pattern = o.video.as_deref().unwrap_or(default);
        if many && !pattern.contains("{stream}") {
            return Err(check.fail(
                &["outputs", "video"],
                format!("{pattern:?}"),
                "must contain {stream} when there are several inputs (or the control API may add some)",
            ));
        }
        video_pattern = Some(pattern.to_string());
        sources.iter().map(|s| Some(expand(pattern, s))).collect()
    };
    let metadata = match (o.no_metadata.unwrap_or(false), &o.metadata) {
        (true, _) => None,
        (false, Some(path)) => Some(metadata_file(check, path, sources, many)?),
        (false, None) => Some(match (many, sources.first()) {
            (false, Some(only)) => expand("out/{name}.jsonl", only),
            _ => Path::new("out").join("metadata.jsonl"),
        }),
    };
    if metadata.is_some() && videos.iter().any(|v| v.is_some() && *v == metadata) {
        return Err(PlanError::Invalid(
            "--output and --metadata name the same file".into(),
        ));
    }
    Ok((videos, metadata, video_pattern))
}

/// The metadata file asked for: `{name}` and `{stream}` expand for a single stream;
/// with several (or an API that may add some) it is one file for all, so a pattern
/// is an error rather than a file literally named `{name}.jsonl`.
fn metadata_file(
    check: &Check<'_>,
    path: &Path,
    sources: &[SourceSpec],
    many: bool,
) -> Result<PathBuf, PlanError> {
    let text = path.to_string_lossy();
    if !text.contains("{name}") && !text.contains("{stream}") {
        return Ok(path.to_path_buf());
    }
    match (many, sources.first()) {
        (false, Some(only)) => Ok(expand(&text, only)),
        _ => Err(check.fail(
            &["outputs", "metadata"],
            format!("{text:?}"),
            "is one file for every stream: it cannot contain {name} or {stream} when there are several inputs (or the control API may add some)",
        )),
    }
}

/// `[rtsp]`.
fn rtsp_options(check: &Check<'_>, c: &PipelineConfig) -> Result<RtspOptions, PlanError> {
    let r = &c.rtsp;
    Ok(RtspOptions {
        latency_ms: check.valid(
            &["rtsp", "latency_ms"],
            r.latency_ms,
            |v| v <= 60_000,
            "must be at most 60000 ms",
        )?,
        transport: check.choice::<RtspTransport>(&["rtsp", "transport"], r.transport.as_ref())?,
        udp_timeout_ms: check.valid(
            &["rtsp", "udp_timeout_ms"],
            r.udp_timeout_ms,
            |v| (1..=600_000).contains(&v),
            "must be from 1 to 600000 ms",
        )?,
    })
}

/// `[reconnect]`.
fn reconnect_policy(check: &Check<'_>, c: &PipelineConfig) -> Result<ReconnectPolicy, PlanError> {
    let r = &c.reconnect;
    let initial = check.valid(
        &["reconnect", "delay_ms"],
        r.delay_ms,
        |v| (1..=3_600_000).contains(&v),
        "must be from 1 to 3600000 ms",
    )?;
    let max = check.valid(
        &["reconnect", "max_delay_s"],
        r.max_delay_s,
        |v| (1..=86_400).contains(&v),
        "must be from 1 to 86400 s",
    )?;
    let stall = check.valid(
        &["reconnect", "stall_timeout_s"],
        r.stall_timeout_s,
        |v| v.is_finite() && v > 0.0 && v <= 86_400.0,
        "must be a positive number of seconds",
    )?;
    Ok(ReconnectPolicy {
        initial: Duration::from_millis(initial),
        max: Duration::from_secs(max),
        attempts: check.need(&["reconnect", "attempts"], r.attempts)?,
        stall: Duration::from_secs_f64(stall),
    })
}

/// `[tracking]`, for a run that reports detections from `conf`: tracks start from
/// any detection the run reports.
fn tracker(check: &Check<'_>, c: &PipelineConfig, conf: f32) -> Result<TrackerSettings, PlanError> {
    let t = &c.tracking;
    let low = check.valid(
        &["tracking", "low_score"],
        t.low_score,
        |v| v > 0.0 && v < 1.0,
        "must be between 0 and 1 (exclusive)",
    )?;
    Ok(TrackerSettings {
        kind: check.need(&["tracking", "tracker"], t.tracker)?,
        high: conf,
        low,
        new_track: conf,
        buffer_s: check.valid(
            &["tracking", "buffer_s"],
            t.buffer_s,
            |v| seconds(v) && v <= 3600.0,
            "must be from 0 to 3600 seconds",
        )?,
        min_hits: check.valid(
            &["tracking", "min_hits"],
            t.min_hits,
            |v| (1..=100).contains(&v),
            "must be from 1 to 100",
        )?,
        ..TrackerSettings::default()
    })
}

/// `[harvest]`: where hard frames go, how many, and what counts as unsure.
fn harvest_settings(
    check: &Check<'_>,
    c: &PipelineConfig,
    conf: f32,
) -> Result<Option<crate::sinks::harvest::HarvestSettings>, PlanError> {
    let h = &c.harvest;
    let Some(dir) = h.dir.clone() else {
        return Ok(None);
    };
    let per_minute = check.valid(
        &["harvest", "rate_per_min"],
        h.rate_per_min,
        |v| v > 0.0 && v <= 600.0,
        "must be more than 0 and at most 600 frames a minute",
    )?;
    let unsure_below = check.valid(
        &["harvest", "unsure_below"],
        h.unsure_below,
        |v| v > conf && v <= 1.0,
        &format!("must be above the detection threshold ({conf}) and at most 1: only detections above it are reported"),
    )?;
    Ok(Some(crate::sinks::harvest::HarvestSettings {
        dir,
        per_minute,
        unsure_below,
    }))
}

/// `[mqtt]`: the broker, the topics, the credentials and the spool.
fn mqtt_settings(check: &Check<'_>, m: &MqttSection) -> Result<MqttSettings, PlanError> {
    let url = check.need(&["mqtt", "url"], m.url.as_ref())?;
    let (host, port, tls) = MqttSettings::parse_url(url)
        .map_err(|e| check.fail(&["mqtt", "url"], url, format!("is not usable: {e}")))?;
    let prefix = check.need(&["mqtt", "topic_prefix"], m.topic_prefix.as_ref())?;
    if prefix.is_empty() || prefix.contains(['#', '+']) {
        return Err(check.fail(
            &["mqtt", "topic_prefix"],
            format!("{prefix:?}"),
            "must be a non-empty topic without wildcards",
        ));
    }
    let drain = check.valid(
        &["mqtt", "drain_timeout_s"],
        m.drain_timeout_s,
        |v| seconds(v) && v <= 86_400.0,
        "must be a number of seconds",
    )?;
    let spool_mb = check.valid(
        &["mqtt", "spool_max_mb"],
        m.spool_max_mb,
        |v| (1..=1 << 20).contains(&v),
        "must be from 1 to 1048576 MiB",
    )?;
    let password = match &m.password_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            check.fail(
                &["mqtt", "password_env"],
                var,
                format!("is not usable: environment variable {var} is not set"),
            )
        })?),
        None => None,
    };
    if !tls && (m.tls_ca.is_some() || m.tls_cert.is_some()) {
        return Err(check.fail(
            &["mqtt", "url"],
            url,
            "must be an mqtts:// URL to use the TLS options",
        ));
    }
    if m.tls_cert.is_some() != m.tls_key.is_some() {
        return Err(check.fail(
            &["mqtt", "tls_cert"],
            "",
            "and tls_key go together: give both or neither",
        ));
    }
    let host_name = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    Ok(MqttSettings {
        host,
        port,
        tls,
        topic_prefix: prefix.trim_end_matches('/').to_string(),
        client_id: m
            .client_id
            .clone()
            .unwrap_or_else(|| format!("pedvision-{host_name}")),
        username: m.username.clone(),
        password,
        tls_ca: m.tls_ca.clone(),
        tls_client: m.tls_cert.clone().zip(m.tls_key.clone()),
        spool_dir: check.need(&["mqtt", "spool_dir"], m.spool_dir.clone())?,
        spool_max_bytes: spool_mb * 1024 * 1024,
        drain_timeout: Duration::from_secs_f64(drain),
        keep_alive: Duration::from_secs(15),
    })
}

/// The inputs with each folder replaced by its video files, in name order.
fn expand_folders(inputs: &[String]) -> Result<Vec<String>, PlanError> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if !path.is_dir() {
            out.push(input.clone());
            continue;
        }
        let mut files: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| PlanError::Invalid(format!("cannot list folder {input}: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PlanError::Invalid(format!(
                "folder {input} has no video files ({})",
                VIDEO_EXTENSIONS.join(", ")
            )));
        }
        out.extend(files);
    }
    Ok(out)
}

/// Expands an output pattern for one stream.
pub fn expand(pattern: &str, spec: &SourceSpec) -> PathBuf {
    PathBuf::from(
        pattern
            .replace("{name}", &spec.stem())
            .replace("{stream}", &spec.id.to_string()),
    )
}

/// `PORT` -> `127.0.0.1:PORT`; `ADDRESS:PORT` as given.
fn loopback_unless_given(bind: &str) -> String {
    if bind.contains(':') {
        bind.to_string()
    } else {
        format!("127.0.0.1:{bind}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/nanodet-g.toml"
        )))
        .unwrap()
    }

    fn layers(flags: PipelineConfig, names: &[(&str, &str)]) -> Layers {
        let base = PipelineConfig {
            inputs: vec!["test:ball".into()],
            model: crate::config::pipeline::ModelSection {
                path: Some("m.toml".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Layers {
            base,
            file: None,
            flags,
            flag_names: names
                .iter()
                .map(|(k, f)| (k.to_string(), f.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_make_a_whole_plan() {
        let plan = RunPlan::build(&layers(PipelineConfig::default(), &[]), &manifest()).unwrap();
        assert_eq!(plan.batch, 1);
        assert_eq!(plan.post.max_detections, defaults::MAX_DETECTIONS);
        assert_eq!(plan.reconnect, ReconnectPolicy::default());
        assert_eq!(
            plan.batch_timeout,
            Some(Duration::from_millis(defaults::LIVE_BATCH_TIMEOUT_MS)),
            "a live input gets the live batch timeout"
        );
        assert_eq!(plan.videos, [Some(PathBuf::from("out/test-ball.mp4"))]);
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        let mut flags = PipelineConfig::default();
        flags.reconnect.stall_timeout_s = Some(-1.0);
        let l = layers(flags, &[("reconnect.stall_timeout_s", "--stall-timeout")]);
        let err = RunPlan::build(&l, &manifest()).unwrap_err().to_string();
        assert_eq!(
            err,
            "--stall-timeout -1 must be a positive number of seconds"
        );
        let mut flags = PipelineConfig::default();
        flags.batching.size = Some(0);
        let err = RunPlan::build(&layers(flags, &[]), &manifest())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "[batching] size 0 must be from 1 to 64");
    }

    #[test]
    fn a_metadata_pattern_expands_for_one_stream_and_is_refused_for_several() {
        let mut flags = PipelineConfig::default();
        flags.outputs.metadata = Some("m/{name}-{stream}.jsonl".into());
        let plan = RunPlan::build(&layers(flags.clone(), &[]), &manifest()).unwrap();
        assert_eq!(plan.metadata, Some(PathBuf::from("m/test-ball-0.jsonl")));
        flags.inputs = vec!["test:ball".into(), "test:smpte".into()];
        flags.outputs.video = Some("out/{stream}.mp4".into());
        let err = RunPlan::build(
            &layers(flags, &[("outputs.metadata", "--metadata")]),
            &manifest(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--metadata \"m/{name}-{stream}.jsonl\" is one file"),
            "{err}"
        );
    }

    #[test]
    fn output_patterns_expand_per_stream() {
        let spec = SourceSpec::parse(3, "rtsp://u:p@cam.local/live/front").unwrap();
        assert_eq!(
            expand("out/{stream}-{name}.mp4", &spec),
            Path::new("out/3-front.mp4")
        );
        let test = SourceSpec::parse(0, "test:ball").unwrap();
        assert_eq!(
            expand("clips/{name}.mp4", &test),
            Path::new("clips/test-ball.mp4")
        );
    }
}
