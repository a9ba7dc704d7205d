//! Declarative pipelines: `pedvision run --config pipelines/NAME.toml`.
//!
//! The file holds what the `run` flags hold, grouped: inputs, model and thresholds,
//! batching, outputs, the RTSP client, reconnection, the MQTT sink, the tracker,
//! and the counting lines and zones (`[[lines]]`, `[[zones]]`, see `rules`). Every field is
//! optional; a field left out takes the flag's default, and a flag given on the
//! command line overrides the file. Unknown keys are rejected with their name and
//! line. Relative paths in a file are relative to the file's folder.
//!
//! The same struct, fully filled in, is what `--print-config` prints: the effective
//! configuration of a run.
//!
//! This is the one settings model of `run`. A run's settings come in layers, each
//! a `PipelineConfig`: [`PipelineConfig::defaults`] (the one place defaults are
//! written, from the library types' own `Default`s and [`super::defaults`]), then
//! the pipeline file, then the flags actually given on the command line (the CLI
//! turns only those into a layer). [`Layers::effective`] stacks them, later layers
//! winning field by field; `pipeline::RunPlan::build` validates every field of the
//! result once, and [`Layers::origin`] names where a bad value came from: the flag,
//! or the file and line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::defaults;
use super::rules::{LineConfig, TrackingSection, ZoneConfig};
use crate::choice::Choice;

/// Why a pipeline file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PipelineConfigError {
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pipeline file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// A pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Inputs, one stream each, batched together: files, folders of videos,
    /// `rtsp://`, `http(s)://`, `camera:N` or `/dev/videoN`, `test:PATTERN`.
    pub inputs: Vec<String>,
    /// Stop after this many seconds (outputs are finalised).
    pub duration_s: Option<f64>,
    pub model: ModelSection,
    pub batching: BatchingSection,
    pub outputs: OutputsSection,
    pub rtsp: RtspSection,
    pub reconnect: ReconnectSection,
    /// Publish each frame's metadata to an MQTT broker.
    pub mqtt: Option<MqttSection>,
    /// The tracker.
    pub tracking: TrackingSection,
    /// Counting lines (`[[lines]]`).
    pub lines: Vec<LineConfig>,
    /// Zones (`[[zones]]`).
    pub zones: Vec<ZoneConfig>,
    /// The HTTP control API.
    pub api: ApiSection,
    /// Run as a fleet worker (`pedvision worker`): cameras come from NATS.
    pub fleet: Option<FleetSection>,
    /// Save the frames the detector is unsure of, with pre-labels, for retraining.
    pub harvest: HarvestSection,
}

/// `[harvest]`: hard frames saved for retraining (on when `dir` is set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HarvestSection {
    /// Folder of `images/`, `labels/` (KITTI pre-labels) and `harvest.jsonl`.
    pub dir: Option<PathBuf>,
    /// Most frames saved per stream per minute of the stream's time.
    pub rate_per_min: Option<f64>,
    /// A reported detection scoring below this makes its frame "unsure".
    pub unsure_below: Option<f32>,
}

/// `[fleet]`: this run is a worker of a fleet sharing cameras through NATS
/// JetStream (`pedvision worker` sets it from its flags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSection {
    /// NATS server URLs, comma-separated: `nats://HOST:4222[,nats://HOST2:4222]`.
    pub nats: Option<String>,
    /// A NATS `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// This worker's id, unique in the fleet (default: the host name).
    pub worker_id: Option<String>,
    /// Most cameras this worker runs (default: the stream limit).
    pub capacity: Option<usize>,
    /// Take cameras over from the most loaded workers, one at a time.
    pub rebalance: Option<bool>,
    /// Lease lifetime in s without renewal, used when the lease bucket is first
    /// created (an existing bucket's wins).
    pub lease_ttl_s: Option<f64>,
    /// Replicas of the buckets and the stream when first created (3 on a cluster).
    pub replicas: Option<usize>,
    /// Folder of the disk spool between the pipeline and JetStream (`{worker}` is
    /// replaced by the worker id).
    pub spool_dir: Option<PathBuf>,
    /// Spool size bound, in MiB.
    pub spool_max_mb: Option<u64>,
    /// How long a stopping worker keeps delivering its spool, in s.
    pub drain_timeout_s: Option<f64>,
}

impl FleetSection {
    /// The defaults of the fleet settings that have one.
    pub fn defaults() -> Self {
        Self {
            lease_ttl_s: Some(defaults::FLEET_LEASE_TTL_S),
            replicas: Some(defaults::FLEET_REPLICAS),
            spool_dir: Some(defaults::FLEET_SPOOL.into()),
            spool_max_mb: Some(defaults::MQTT_SPOOL_MAX_MB),
            drain_timeout_s: Some(defaults::MQTT_DRAIN_TIMEOUT_S),
            rebalance: Some(false),
            ..Default::default()
        }
    }
}

/// `[api]`: the HTTP control API (streams, model, lines and zones changed while
/// the run goes on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Serve the API on `[ADDRESS:]PORT` (a bare port binds to 127.0.0.1). With
    /// it, the run starts even with no input and goes on until it is stopped.
    pub bind: Option<String>,
    /// Name of the environment variable holding the bearer token that every
    /// request must carry; required when `bind` is not a loopback address.
    pub token_env: Option<String>,
    /// Most streams open at once (inputs and streams added while running).
    pub max_streams: Option<usize>,
}

/// `[model]`: the detector and its thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Model manifest (.toml) or .onnx file with its manifest beside it.
    pub path: Option<PathBuf>,
    /// Classes to keep: `person`, `all`, or labels such as `person,car`.
    pub classes: Option<String>,
    /// Minimum class score, in (0, 1).
    pub conf: Option<f32>,
    /// NMS IoU threshold, in (0, 1].
    pub iou: Option<f32>,
    /// Execution provider: `auto`, `cpu`, `openvino`, `cuda` or `tensorrt`.
    pub device: Option<String>,
    /// Arithmetic: `auto`, `fp32`, `bf16`, `fp16` or `int8`.
    pub precision: Option<String>,
    /// Inference threads (0: one per core).
    pub threads: Option<usize>,
    /// The ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
    /// Most detections kept per frame, best first (COCO's 100).
    pub max_detections: Option<usize>,
    /// Square network input size in pixels, instead of the manifest's (only for
    /// graphs that take any size, such as YOLOX-Nano's).
    pub input_size: Option<u32>,
    /// Test-time augmentation instead of the manifest's: `none` or `flip`.
    pub tta: Option<String>,
}

/// `[batching]`: frames per inference call and how long a partial batch waits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingSection {
    /// Frames per inference call (1 to 64).
    pub size: Option<u16>,
    /// Longest wait for a partial batch, in ms (default: full batches for files,
    /// 20 ms when any input is live).
    pub timeout_ms: Option<u64>,
}

/// `[outputs]`: annotated video, metadata file, re-stream, display, metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputsSection {
    /// Annotated MP4 per stream; `{name}` and `{stream}` are replaced.
    pub video: Option<String>,
    /// Write no annotated video.
    pub no_video: Option<bool>,
    /// JSON Lines metadata of all streams.
    pub metadata: Option<PathBuf>,
    /// Write no metadata file.
    pub no_metadata: Option<bool>,
    /// Serve each annotated stream at rtsp://ADDRESS:PORT/streamN (`PORT` alone
    /// binds to 127.0.0.1).
    pub rtsp: Option<String>,
    /// Show each annotated stream in a window.
    pub display: Option<bool>,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics.
    pub metrics: Option<String>,
}

/// `[rtsp]`: the RTSP client for `rtsp://` inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspSection {
    /// Jitter-buffer latency, in ms.
    pub latency_ms: Option<u32>,
    /// `auto` (UDP, then TCP), `tcp` or `udp`.
    pub transport: Option<String>,
    /// With `auto`: how long UDP may get nothing before TCP, in ms.
    pub udp_timeout_ms: Option<u32>,
}

/// `[reconnect]`: network sources that fail, stall or end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectSection {
    /// First delay, in ms; doubles per failed attempt.
    pub delay_ms: Option<u64>,
    /// Longest delay, in s.
    pub max_delay_s: Option<u64>,
    /// Failed attempts in a row before giving up (0: never).
    pub attempts: Option<u32>,
    /// No frame for this long means stalled, in s.
    pub stall_timeout_s: Option<f64>,
}

/// `[mqtt]`: the broker that gets each frame's metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883, TLS).
    pub url: Option<String>,
    /// Topics: `PREFIX/STREAM` per stream, `PREFIX/status` for online/offline.
    pub topic_prefix: Option<String>,
    /// Client id (default: pedvision-HOSTNAME).
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Name of the environment variable that holds the password (kept out of
    /// files and process lists).
    pub password_env: Option<String>,
    /// CA certificate (PEM) to trust for `mqtts://`; default: the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Folder of the disk spool that holds messages until the broker has them.
    pub spool_dir: Option<PathBuf>,
    /// Spool size bound, in MiB; past it the oldest messages are dropped (counted).
    pub spool_max_mb: Option<u64>,
    /// How long to keep trying to deliver the spool when the run ends, in s; what
    /// is left stays in the spool for the next run.
    pub drain_timeout_s: Option<f64>,
}

impl MqttSection {
    /// The defaults of the MQTT settings that have one.
    pub fn defaults() -> Self {
        Self {
            topic_prefix: Some(defaults::MQTT_TOPIC_PREFIX.into()),
            spool_dir: Some(defaults::MQTT_SPOOL.into()),
            spool_max_mb: Some(defaults::MQTT_SPOOL_MAX_MB),
            drain_timeout_s: Some(defaults::MQTT_DRAIN_TIMEOUT_S),
            ..Default::default()
        }
    }

    /// This section with `over`'s values on top.
    fn overlaid(&self, over: &Self) -> Self {
        overlay(self, over)
    }
}

/// A pipeline file as read: where it is, its text (for line numbers) and values.
#[derive(Debug, Clone)]
pub struct FileLayer {
    pub path: PathBuf,
    text: String,
    pub config: PipelineConfig,
}

/// The layers of a run's settings above the defaults.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// Defaults the program adds to the library's (the bundled model, the demo
    /// clip), below the file.
    pub base: PipelineConfig,
    /// The pipeline file, if `--config` was given.
    pub file: Option<FileLayer>,
    /// The flags given on the command line.
    pub flags: PipelineConfig,
    /// For each key the flags set (`"batching.size"`), the flag that set it.
    pub flag_names: Vec<(String, String)>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A command-line flag, e.g. `--batch`.
    Flag(String),
    /// A pipeline file, and the line of the key when it could be found.
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    Default,
}

impl Layers {
    /// Defaults, then the file, then the flags.
    pub fn effective(&self) -> PipelineConfig {
        let mut c = PipelineConfig::defaults().overlaid(&self.base);
        if let Some(f) = &self.file {
            c = c.overlaid(&f.config);
        }
        c = c.overlaid(&self.flags);
        if let Some(m) = &c.mqtt {
            c.mqtt = Some(MqttSection::defaults().overlaid(m));
        }
        if let Some(f) = &c.fleet {
            c.fleet = Some(overlay(&FleetSection::defaults(), f));
        }
        c
    }

    /// Where the value at `key` (`["batching", "size"]`) came from.
    pub fn origin(&self, key: &[&str]) -> Origin {
        let dotted = key.join(".");
        if let Some((_, flag)) = self.flag_names.iter().find(|(k, _)| *k == dotted) {
            return Origin::Flag(flag.clone());
        }
        match &self.file {
            Some(f) if is_set(&f.config, key) => Origin::File {
                path: f.path.clone(),
                line: line_of(&f.text, key),
            },
            _ => Origin::Default,
        }
    }
}

/// Whether `config` sets `key` (not null, not an empty list).
fn is_set(config: &PipelineConfig, key: &[&str]) -> bool {
    let Ok(mut v) = serde_json::to_value(config) else {
        return false;
    };
    for k in key {
        v = v.get(k).cloned().unwrap_or_default();
    }
    !(v.is_null() || v.as_array().is_some_and(Vec::is_empty))
}

/// The 1-based line of `key` in a pipeline file's text: `[section]` then `name =`
/// (top-level keys before any section).
fn line_of(text: &str, key: &[&str]) -> Option<usize> {
    let (section, name) = match key {
        [name] => (None, *name),
        [section, name] => (Some(*section), *name),
        _ => return None,
    };
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = Some(t.trim_matches(['[', ']', ' ']).to_string());
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        if k.trim().trim_matches('"') == name && current.as_deref() == section {
            return Some(i + 1);
        }
    }
    None
}

/// `over`'s values on top of `base`'s, field by field (through JSON, so one
/// merge serves every section).
fn overlay<T>(base: &T, over: &T) -> T
where
    T: Serialize + serde::de::DeserializeOwned + Clone,
{
    let (Ok(mut merged), Ok(top)) = (serde_json::to_value(base), serde_json::to_value(over)) else {
        return over.clone();
    };
    merge(&mut merged, &top);
    serde_json::from_value(merged).unwrap_or_else(|_| over.clone())
}

/// Deep merge of JSON values: `over`'s non-null values (and non-empty lists) win.
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    use serde_json::Value;
    match (base, over) {
        (_, Value::Null) => {}
        (_, Value::Array(a)) if a.is_empty() => {}
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl PipelineConfig {
    /// Every setting that has a default, filled in: the one place they are written
    /// (from the library types' `Default`s and [`super::defaults`]).
    pub fn defaults() -> Self {
        let rtsp = crate::sources::RtspOptions::default();
        let reconnect = crate::sources::ReconnectPolicy::default();
        let tracker = crate::track::TrackerSettings::default();
        Self {
            model: ModelSection {
                classes: Some(defaults::CLASSES.into()),
                conf: Some(defaults::CONF),
                iou: Some(defaults::IOU),
                device: Some(crate::infer::Device::default().name().into()),
                precision: Some(crate::infer::Precision::default().name().into()),
                threads: Some(0),
                max_detections: Some(defaults::MAX_DETECTIONS),
                ..Default::default()
            },
            batching: BatchingSection {
                size: Some(defaults::BATCH),
                timeout_ms: None,
            },
            outputs: OutputsSection {
                no_video: Some(false),
                no_metadata: Some(false),
                display: Some(false),
                ..Default::default()
            },
            rtsp: RtspSection {
                latency_ms: Some(rtsp.latency_ms),
                transport: Some(rtsp.transport.name().into()),
                udp_timeout_ms: Some(rtsp.udp_timeout_ms),
            },
            reconnect: ReconnectSection {
                delay_ms: Some(reconnect.initial.as_millis() as u64),
                max_delay_s: Some(reconnect.max.as_secs()),
                attempts: Some(reconnect.attempts),
                stall_timeout_s: Some(reconnect.stall.as_secs_f64()),
            },
            tracking: TrackingSection {
                tracker: Some(tracker.kind),
                buffer_s: Some(tracker.buffer_s),
                min_hits: Some(tracker.min_hits),
                low_score: Some(tracker.low),
            },
            harvest: HarvestSection {
                dir: None,
                rate_per_min: Some(defaults::HARVEST_PER_MINUTE),
                unsure_below: Some(defaults::HARVEST_UNSURE_BELOW),
            },
            api: ApiSection {
                max_streams: Some(defaults::MAX_STREAMS),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// This configuration with `over`'s values on top, field by field (lists such
    /// as `inputs` and `lines` are replaced whole when `over` has any).
    pub fn overlaid(&self, over: &Self) -> Self {
        overlay(self, over)
    }

    /// Reads and checks a pipeline file, resolving relative paths against its folder.
    pub fn load(path: &Path) -> Result<Self, PipelineConfigError> {
        Ok(Self::load_layer(path)?.config)
    }

    /// [`Self::load`], keeping the text for the line numbers of later errors.
    pub fn load_layer(path: &Path) -> Result<FileLayer, PipelineConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(FileLayer {
            path: path.to_path_buf(),
            text,
            config,
        })
    }

    /// Parses pipeline TOML; errors name the key and line, on one line.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PipelineConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().replace('\n', " ");
            PipelineConfigError::Parse {
                path: path.to_path_buf(),
                message: match line {
                    Some(l) => format!("line {l}: {message}"),
                    None => message,
                },
            }
        })
    }

    /// Makes relative paths relative to `dir` (the file's folder).
    fn resolve_paths(&mut self, dir: &Path) {
        let file_like =
            |s: &str| !s.contains("://") && !s.starts_with("camera:") && !s.starts_with("test:");
        for input in &mut self.inputs {
            if file_like(input) && Path::new(input.as_str()).is_relative() {
                *input = dir.join(input.as_str()).to_string_lossy().into_owned();
            }
        }
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(p) = p
                && p.is_relative()
            {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.model.path);
        fix(&mut self.model.ort_lib);
        fix(&mut self.outputs.metadata);
        if let Some(video) = &mut self.outputs.video
            && Path::new(video.as_str()).is_relative()
        {
            *video = dir.join(video.as_str()).to_string_lossy().into_owned();
        }
        if let Some(m) = &mut self.mqtt {
            fix(&mut m.tls_ca);
            fix(&mut m.tls_cert);
            fix(&mut m.tls_key);
            fix(&mut m.spool_dir);
        }
        if let Some(f) = &mut self.fleet {
            fix(&mut f.creds);
            fix(&mut f.spool_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = "inputs = [\"a.mp4\"]\n\n[model]\nconf = 0.4\nconfidence = 0.5\n";
        let err = PipelineConfig::parse(text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("confidence"), "{err}");
        let err = PipelineConfig::parse("[outputs]\nvideo = 3\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let text = "inputs = [\"clip.mp4\", \"rtsp://cam/live\", \"test:ball\", \"/abs.mp4\"]\n[outputs]\nvideo = \"out/{name}.mp4\"\n[mqtt]\nspool_dir = \"spool\"\n";
        let mut c = PipelineConfig::parse(text, Path::new("x")).unwrap();
        c.resolve_paths(Path::new("/etc/pv"));
        assert_eq!(
            c.inputs,
            [
                "/etc/pv/clip.mp4",
                "rtsp://cam/live",
                "test:ball",
                "/abs.mp4"
            ]
        );
        assert_eq!(c.outputs.video.as_deref(), Some("/etc/pv/out/{name}.mp4"));
        assert_eq!(
            c.mqtt.unwrap().spool_dir,
            Some(PathBuf::from("/etc/pv/spool"))
        );
    }

    #[test]
    fn later_layers_win_field_by_field_and_origins_are_named() {
        let text = "inputs = [\"a.mp4\"]\n[model]\nconf = 0.5\niou = 0.6\n\n[batching]\nsize = 4\n";
        let mut flags = PipelineConfig::default();
        flags.model.conf = Some(0.7);
        let layers = Layers {
            base: PipelineConfig::default(),
            file: Some(FileLayer {
                path: "p.toml".into(),
                text: text.into(),
                config: PipelineConfig::parse(text, Path::new("p.toml")).unwrap(),
            }),
            flags,
            flag_names: vec![("model.conf".into(), "--conf".into())],
        };
        let c = layers.effective();
        assert_eq!(c.model.conf, Some(0.7), "the flag wins");
        assert_eq!(c.model.iou, Some(0.6), "the file beats the default");
        assert_eq!(c.model.classes.as_deref(), Some(defaults::CLASSES));
        assert_eq!(c.inputs, ["a.mp4"]);
        assert_eq!(
            layers.origin(&["model", "conf"]),
            Origin::Flag("--conf".into())
        );
        let file = |line| Origin::File {
            path: "p.toml".into(),
            line: Some(line),
        };
        assert_eq!(layers.origin(&["model", "iou"]), file(4));
        assert_eq!(layers.origin(&["batching", "size"]), file(7));
        assert_eq!(layers.origin(&["inputs"]), file(1));
        assert_eq!(layers.origin(&["rtsp", "latency_ms"]), Origin::Default);
    }

    #[test]
    fn round_trips_through_toml() {
        let text = "inputs = [\"a.mp4\"]\n[model]\nconf = 0.5\n[mqtt]\nurl = \"mqtt://h\"\n[tracking]\ntracker = \"sort\"\n[[lines]]\nname = \"door\"\npoints = [[0.1, 0.5], [0.9, 0.5]]\ndirections = [\"in\", \"out\"]\n[[zones]]\nname = \"q\"\nstream = 0\npoints = [[0, 0], [10, 0], [10, 10]]\n";
        let c = PipelineConfig::parse(text, Path::new("x")).unwrap();
        let again = PipelineConfig::parse(&toml::to_string(&c).unwrap(), Path::new("x")).unwrap();
        assert_eq!(c, again);
    }

    proptest::proptest! {
        /// Any text, or an example pipeline with one line replaced: a config or an
        /// error naming a line, never a panic; and a parsed config survives the
        /// layering untouched.
        #[test]
        fn any_pipeline_text_parses_or_errs(text in "\\PC{0,300}", line in 0usize..30, with in "\\PC{0,40}") {
            let _ = PipelineConfig::parse(&text, Path::new("p.toml"));
            let example = include_str!("../../pipelines/door-counter.toml");
            let mutated: Vec<&str> = example
                .lines()
                .enumerate()
                .map(|(i, l)| if i == line { with.as_str() } else { l })
                .collect();
            let text = mutated.join("\n");
            if let Ok(c) = PipelineConfig::parse(&text, Path::new("p.toml")) {
                proptest::prop_assert_eq!(PipelineConfig::default().overlaid(&c), c.clone());
                let _ = line_of(&text, &["model", "conf"]);
            }
        }
    }
}
