//! `run --config FILE` and `run --print-config`: a pipeline file's values fill in
//! every `run` option not given on the command line (flags win), and the effective
//! options print back as a pipeline file.
//!
//! "Given on the command line" is clap's `ValueSource::CommandLine`; clap's own
//! defaults stay the defaults, so a field left out of the file changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ArgMatches;
use clap::ValueEnum;
use clap::parser::ValueSource;
use pedvision::config::PipelineConfig;
use pedvision::config::pipeline::{
    BatchingSection, ModelSection, MqttSection, OutputsSection, ReconnectSection, RtspSection,
};
use pedvision::config::rules::TrackingSection;
use pedvision::sinks::mqtt::MqttSettings;

use super::run::RunArgs;

/// MQTT options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// Publish each frame's metadata to this broker: mqtt://HOST[:PORT] or
    /// mqtts://HOST[:PORT] (TLS). QoS 1, at least once, in order per stream; kept in
    /// a disk spool while the broker is away.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Topic prefix: frames go to PREFIX/STREAM, retained online/offline to
    /// PREFIX/status.
    #[arg(long, default_value = "pedvision", value_name = "PREFIX")]
    pub mqtt_topic_prefix: String,

    /// MQTT client id. Default: pedvision-HOSTNAME.
    #[arg(long, value_name = "ID")]
    pub mqtt_client_id: Option<String>,

    /// MQTT user name.
    #[arg(long, value_name = "NAME")]
    pub mqtt_username: Option<String>,

    /// Environment variable holding the MQTT password (never on the command line).
    #[arg(long, value_name = "VAR")]
    pub mqtt_password_env: Option<String>,

    /// CA certificate (PEM) for mqtts://. Default: the system's trusted roots.
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mqtts:// brokers that ask for one.
    #[arg(long, value_name = "FILE", requires = "mqtt_tls_key")]
    pub mqtt_tls_cert: Option<PathBuf>,

    /// Client private key (PEM), with --mqtt-tls-cert.
    #[arg(long, value_name = "FILE", requires = "mqtt_tls_cert")]
    pub mqtt_tls_key: Option<PathBuf>,

    /// Disk spool: messages wait here until the broker acknowledges them, across
    /// broker outages and restarts of pedvision.
    #[arg(long, default_value = "out/mqtt-spool", value_name = "DIR")]
    pub mqtt_spool: PathBuf,

    /// Spool bound in MiB; past it the oldest messages are dropped (and counted).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub mqtt_spool_max_mb: u64,

    /// At the end of a run, how long to keep delivering the spool, in s; what is
    /// left is sent by the next run.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub mqtt_drain_timeout: f64,
}

impl MqttArgs {
    /// Validated settings, or `None` without `--mqtt`.
    pub fn settings(&self) -> anyhow::Result<Option<MqttSettings>> {
        let Some(url) = &self.mqtt else {
            return Ok(None);
        };
        let (host, port, tls) =
            MqttSettings::parse_url(url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        anyhow::ensure!(
            !self.mqtt_topic_prefix.is_empty() && !self.mqtt_topic_prefix.contains(['#', '+']),
            "--mqtt-topic-prefix {:?} must be a non-empty topic without wildcards",
            self.mqtt_topic_prefix
        );
        anyhow::ensure!(
            self.mqtt_drain_timeout.is_finite() && self.mqtt_drain_timeout >= 0.0,
            "--mqtt-drain-timeout must be a number of seconds"
        );
        let password = match &self.mqtt_password_env {
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("--mqtt-password-env: environment variable {var} is not set")
            })?),
            None => None,
        };
        anyhow::ensure!(
            tls || (self.mqtt_tls_ca.is_none() && self.mqtt_tls_cert.is_none()),
            "--mqtt-tls-* options need an mqtts:// URL"
        );
        let host_name = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Ok(Some(MqttSettings {
            host,
            port,
            tls,
            topic_prefix: self.mqtt_topic_prefix.trim_end_matches('/').to_string(),
            client_id: self.mqtt_client_id.clone().unwrap_or_else(|| {
                format!(
                    "pedvision-{}",
                    if host_name.is_empty() {
                        "host"
                    } else {
                        &host_name
                    }
                )
            }),
            username: self.mqtt_username.clone(),
            password,
            tls_ca: self.mqtt_tls_ca.clone(),
            tls_client: self.mqtt_tls_cert.clone().zip(self.mqtt_tls_key.clone()),
            spool_dir: self.mqtt_spool.clone(),
            spool_max_bytes: self.mqtt_spool_max_mb.max(1) * 1024 * 1024,
            drain_timeout: Duration::from_secs_f64(self.mqtt_drain_timeout),
            keep_alive: Duration::from_secs(15),
        }))
    }
}

/// Whether option `id` was given on the command line (or by its environment variable).
pub(super) fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Parses a `ValueEnum` from a file value, naming the key and the choices.
pub(super) fn choice<T: ValueEnum>(key: &str, value: &str) -> anyhow::Result<T> {
    T::from_str(value, true).map_err(|_| {
        let choices: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        anyhow::anyhow!("{key} {value:?} is not one of {}", choices.join(", "))
    })
}

/// Sets `$target` to the file's `$value` unless option `$id` was on the command line
/// (`m` is the ArgMatches in scope).
macro_rules! fill {
    ($m:expr, $target:expr, $id:literal, $value:expr) => {
        if !given($m, $id) {
            if let Some(v) = $value {
                $target = v;
            }
        }
    };
}

/// Fills every option of `args` that the command line did not give from `file`.
pub fn apply(args: &mut RunArgs, file: &PipelineConfig, m: &ArgMatches) -> anyhow::Result<()> {
    if !given(m, "input") && !file.inputs.is_empty() {
        args.input = file.inputs.clone();
    }
    apply_model(args, file, m)?;
    apply_outputs(args, file, m);
    apply_network(args, file, m)?;
    apply_tracking(args, file, m);
    if let Some(q) = &file.mqtt {
        apply_mqtt(&mut args.mqtt, q, m);
    }
    Ok(())
}

/// `duration_s`, `[model]` and `[batching]`.
fn apply_model(args: &mut RunArgs, file: &PipelineConfig, m: &ArgMatches) -> anyhow::Result<()> {
    fill!(m, args.duration, "duration", file.duration_s.map(Some));
    let d = &mut args.detector;
    let fm = &file.model;
    fill!(m, d.model, "model", fm.path.clone());
    fill!(m, d.classes, "classes", fm.classes.clone());
    fill!(m, d.conf, "conf", fm.conf);
    fill!(m, d.iou, "iou", fm.iou);
    fill!(m, d.runtime.threads, "threads", fm.threads);
    fill!(
        m,
        d.runtime.ort_lib,
        "ort_lib",
        fm.ort_lib.clone().map(Some)
    );
    if let Some(device) = &fm.device {
        fill!(
            m,
            d.runtime.device,
            "device",
            Some(choice("[model] device", device)?)
        );
    }
    fill!(m, d.batch, "batch", file.batching.size);
    fill!(
        m,
        args.batch_timeout,
        "batch_timeout",
        file.batching.timeout_ms.map(Some)
    );
    Ok(())
}

/// `[outputs]`.
fn apply_outputs(args: &mut RunArgs, file: &PipelineConfig, m: &ArgMatches) {
    let o = &file.outputs;
    fill!(m, args.output, "output", o.video.clone().map(Some));
    // A file's `no_video` does not silence a video the command line asks for.
    if !given(m, "output") {
        fill!(m, args.no_video, "no_video", o.no_video);
    }
    fill!(m, args.metadata, "metadata", o.metadata.clone().map(Some));
    if !given(m, "metadata") {
        fill!(m, args.no_metadata, "no_metadata", o.no_metadata);
    }
    fill!(m, args.rtsp_out, "rtsp_out", o.rtsp.clone().map(Some));
    fill!(m, args.display, "display", o.display);
    fill!(m, args.metrics, "metrics", o.metrics.clone().map(Some));
}

/// `[rtsp]` and `[reconnect]`.
fn apply_network(args: &mut RunArgs, file: &PipelineConfig, m: &ArgMatches) -> anyhow::Result<()> {
    fill!(m, args.rtsp_latency, "rtsp_latency", file.rtsp.latency_ms);
    if let Some(t) = &file.rtsp.transport {
        fill!(
            m,
            args.rtsp_transport,
            "rtsp_transport",
            Some(choice("[rtsp] transport", t)?)
        );
    }
    fill!(
        m,
        args.rtsp_udp_timeout,
        "rtsp_udp_timeout",
        file.rtsp.udp_timeout_ms
    );
    let r = &file.reconnect;
    fill!(m, args.reconnect_delay, "reconnect_delay", r.delay_ms);
    fill!(
        m,
        args.reconnect_max_delay,
        "reconnect_max_delay",
        r.max_delay_s
    );
    fill!(m, args.reconnect_attempts, "reconnect_attempts", r.attempts);
    fill!(m, args.stall_timeout, "stall_timeout", r.stall_timeout_s);
    Ok(())
}

/// `[tracking]`, `[[lines]]` and `[[zones]]` (the file's lines and zones are used
/// when no `--line`/`--zone` is given).
fn apply_tracking(args: &mut RunArgs, file: &PipelineConfig, m: &ArgMatches) {
    let t = &mut args.tracking;
    let ft = &file.tracking;
    fill!(m, t.tracker, "tracker", ft.tracker);
    fill!(m, t.life.track_buffer, "track_buffer", ft.buffer_s);
    fill!(m, t.life.track_min_hits, "track_min_hits", ft.min_hits);
    fill!(m, t.track_low, "track_low", ft.low_score);
    t.file_lines = file.lines.clone();
    t.file_zones = file.zones.clone();
}

/// `[mqtt]`.
fn apply_mqtt(a: &mut MqttArgs, q: &MqttSection, m: &ArgMatches) {
    fill!(m, a.mqtt, "mqtt", q.url.clone().map(Some));
    fill!(
        m,
        a.mqtt_topic_prefix,
        "mqtt_topic_prefix",
        q.topic_prefix.clone()
    );
    fill!(
        m,
        a.mqtt_client_id,
        "mqtt_client_id",
        q.client_id.clone().map(Some)
    );
    fill!(
        m,
        a.mqtt_username,
        "mqtt_username",
        q.username.clone().map(Some)
    );
    fill!(
        m,
        a.mqtt_password_env,
        "mqtt_password_env",
        q.password_env.clone().map(Some)
    );
    fill!(m, a.mqtt_tls_ca, "mqtt_tls_ca", q.tls_ca.clone().map(Some));
    fill!(
        m,
        a.mqtt_tls_cert,
        "mqtt_tls_cert",
        q.tls_cert.clone().map(Some)
    );
    fill!(
        m,
        a.mqtt_tls_key,
        "mqtt_tls_key",
        q.tls_key.clone().map(Some)
    );
    fill!(m, a.mqtt_spool, "mqtt_spool", q.spool_dir.clone());
    fill!(m, a.mqtt_spool_max_mb, "mqtt_spool_max_mb", q.spool_max_mb);
    fill!(
        m,
        a.mqtt_drain_timeout,
        "mqtt_drain_timeout",
        q.drain_timeout_s
    );
}

/// The effective options as a pipeline file (every field filled in).
pub fn effective(args: &RunArgs, inputs: &[String]) -> anyhow::Result<PipelineConfig> {
    let d = &args.detector;
    let t = &args.tracking;
    let a = &args.mqtt;
    Ok(PipelineConfig {
        inputs: inputs.to_vec(),
        duration_s: args.duration,
        model: ModelSection {
            path: Some(d.model.clone()),
            classes: Some(d.classes.clone()),
            conf: Some(d.conf),
            iou: Some(d.iou),
            device: Some(d.runtime.device.to_string()),
            threads: Some(d.runtime.threads),
            ort_lib: d.runtime.ort_lib.clone(),
        },
        batching: BatchingSection {
            size: Some(d.batch),
            timeout_ms: args.batch_timeout,
        },
        outputs: OutputsSection {
            video: args.output.clone(),
            no_video: Some(args.no_video),
            metadata: args.metadata.clone(),
            no_metadata: Some(args.no_metadata),
            rtsp: args.rtsp_out.clone(),
            display: Some(args.display),
            metrics: args.metrics.clone(),
        },
        rtsp: RtspSection {
            latency_ms: Some(args.rtsp_latency),
            transport: args
                .rtsp_transport
                .to_possible_value()
                .map(|v| v.get_name().to_string()),
            udp_timeout_ms: Some(args.rtsp_udp_timeout),
        },
        reconnect: ReconnectSection {
            delay_ms: Some(args.reconnect_delay),
            max_delay_s: Some(args.reconnect_max_delay),
            attempts: Some(args.reconnect_attempts),
            stall_timeout_s: Some(args.stall_timeout),
        },
        mqtt: a.mqtt.as_ref().map(|url| MqttSection {
            url: Some(pedvision::redact::url(url)),
            topic_prefix: Some(a.mqtt_topic_prefix.clone()),
            client_id: a.mqtt_client_id.clone(),
            username: a.mqtt_username.clone(),
            password_env: a.mqtt_password_env.clone(),
            tls_ca: a.mqtt_tls_ca.clone(),
            tls_cert: a.mqtt_tls_cert.clone(),
            tls_key: a.mqtt_tls_key.clone(),
            spool_dir: Some(a.mqtt_spool.clone()),
            spool_max_mb: Some(a.mqtt_spool_max_mb),
            drain_timeout_s: Some(a.mqtt_drain_timeout),
        }),
        tracking: TrackingSection {
            tracker: Some(t.tracker),
            buffer_s: Some(t.life.track_buffer),
            min_hits: Some(t.life.track_min_hits),
            low_score: Some(t.track_low),
        },
        lines: t.lines()?,
        zones: t.zones()?,
    })
}

/// Reads `--config` and applies it.
pub fn load_and_apply(args: &mut RunArgs, m: &ArgMatches) -> anyhow::Result<()> {
    if let Some(path) = args.config.clone() {
        let file = PipelineConfig::load(&path)?;
        apply(args, &file, m).with_context(|| format!("pipeline file {}", path.display()))?;
    }
    Ok(())
}
