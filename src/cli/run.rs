//! `pedvision run`: flags -> a validated [`RunPlan`] -> the pipeline -> a summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use pedvision::api::ApiServer;
use pedvision::choice::Choice;
use pedvision::config::pipeline::ModelSection;
use pedvision::config::{Layers, Manifest, PipelineConfig, defaults};
use pedvision::control::{Board, Control};
use pedvision::infer::{Detector, runtime};
use pedvision::model::flip::Tta;
use pedvision::pipeline::{self, RunPlan, RunReport};
use pedvision::redact;
use pedvision::sources::{ReconnectPolicy, RtspOptions, RtspTransport};
use pedvision::telemetry::Metrics;

use super::common::{DetectorArgs, demo_clip, model_path, with_input_size, with_tta};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A pipeline file (TOML, see pipelines/): its values fill in every option not
    /// given on the command line; flags win. Relative paths in it are relative to it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (file + flags + defaults) as a pipeline
    /// file and exit without running.
    #[arg(long)]
    pub print_config: bool,

    /// An input; repeat for several streams, batched together. A video file (MP4,
    /// MKV, WebM, AVI, ...) or file:// URI, rtsp://[user:pass@]host/path, an
    /// http(s):// stream or HLS playlist, a camera (/dev/videoN or camera:N), or a
    /// live test pattern (test:[PATTERN][?width=W&height=H&fps=F]). Default: the
    /// bundled demo clip.
    #[arg(long, short, value_name = "INPUT")]
    pub input: Vec<String>,

    /// Annotated video to write per stream (H.264 in MP4). `{name}` is the input's
    /// name and `{stream}` its stream id. Default: out/{name}.mp4 for one input,
    /// out/{stream}-{name}.mp4 for several.
    #[arg(long, short, value_name = "PATTERN")]
    pub output: Option<String>,

    /// Do not write annotated videos.
    #[arg(long, conflicts_with = "output")]
    pub no_video: bool,

    /// Per-frame detections of all streams as JSON Lines. Default: out/{name}.jsonl
    /// for one input, out/metadata.jsonl for several. `{name}` and `{stream}`
    /// expand when there is one input; with several it is one file, without them.
    #[arg(long, short, value_name = "FILE")]
    pub metadata: Option<PathBuf>,

    /// Do not write metadata.
    #[arg(long, conflicts_with = "metadata")]
    pub no_metadata: bool,

    /// Serve each annotated stream over RTSP at rtsp://ADDRESS:PORT/streamN. A bare
    /// port binds to 127.0.0.1 (loopback only); give 0.0.0.0:PORT to serve others.
    #[arg(long, value_name = "[ADDRESS:]PORT")]
    pub rtsp_out: Option<String>,

    /// Show each annotated stream in a window (needs a display).
    #[arg(long)]
    pub display: bool,

    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics. A bare port binds
    /// to 127.0.0.1 (loopback only).
    #[arg(long, value_name = "[ADDRESS:]PORT")]
    pub metrics: Option<String>,

    /// Save the frames the detector is unsure of into DIR, for retraining: JPEG
    /// images, the model's detections as KITTI pre-labels (correct them, then
    /// `pedvision retrain --data DIR`), and harvest.jsonl (why each was chosen).
    /// A frame is chosen when a detection scores below --harvest-below, appears
    /// for one frame only, or a tracked person goes undetected for a frame.
    #[arg(long, value_name = "DIR")]
    pub harvest: Option<PathBuf>,

    /// With --harvest: most frames saved per stream per minute of the stream's
    /// time (near-identical frames are skipped too).
    #[arg(long, value_name = "N", default_value_t = defaults::HARVEST_PER_MINUTE, requires = "harvest")]
    pub harvest_rate: f64,

    /// With --harvest: a reported detection scoring below this makes its frame
    /// "unsure" (must be above --conf).
    #[arg(long, value_name = "SCORE", default_value_t = defaults::HARVEST_UNSURE_BELOW, requires = "harvest")]
    pub harvest_below: f32,

    /// Longest wait, in ms, for a partial batch to fill (counted from its first
    /// frame). Default: wait for a full batch when every input is a file, 20 ms when
    /// any input is live.
    #[arg(long, value_name = "MS")]
    pub batch_timeout: Option<u64>,

    /// RTSP jitter-buffer latency, in ms.
    #[arg(long, default_value_t = RtspOptions::default().latency_ms, value_name = "MS")]
    pub rtsp_latency: u32,

    /// RTSP transport: auto (UDP, then TCP when UDP gets nothing), tcp or udp.
    #[arg(long, value_parser = super::choice::<RtspTransport>(), default_value_t = RtspTransport::Auto)]
    pub rtsp_transport: RtspTransport,

    /// With --rtsp-transport auto: how long UDP may get nothing before TCP, in ms.
    #[arg(long, default_value_t = RtspOptions::default().udp_timeout_ms, value_name = "MS")]
    pub rtsp_udp_timeout: u32,

    /// First reconnection delay for network sources, in ms; it doubles per failed
    /// attempt up to --reconnect-max-delay.
    #[arg(long, default_value_t = ReconnectPolicy::default().initial.as_millis() as u64, value_name = "MS")]
    pub reconnect_delay: u64,

    /// Longest delay between reconnection attempts, in seconds.
    #[arg(long, default_value_t = ReconnectPolicy::default().max.as_secs(), value_name = "S")]
    pub reconnect_max_delay: u64,

    /// Failed attempts in a row before a network source gives up (0: never).
    #[arg(long, default_value_t = ReconnectPolicy::default().attempts, value_name = "N")]
    pub reconnect_attempts: u32,

    /// A live source with no frame for this long has stalled and reconnects, in s.
    #[arg(long, default_value_t = ReconnectPolicy::default().stall.as_secs_f64(), value_name = "S")]
    pub stall_timeout: f64,

    /// Stop after this many seconds, as SIGINT would (outputs are finalised).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,

    /// Serve the HTTP control API at http://ADDRESS:PORT/: add and remove streams,
    /// switch the model, list, add and remove lines and zones while the run goes
    /// on; /healthz, /readyz, /metrics and /openapi.json too. A bare port binds to
    /// 127.0.0.1; any other address needs --api-token-env. With --api the run
    /// starts even without an input and goes on until stopped (SIGINT, SIGTERM,
    /// --duration).
    #[arg(long, value_name = "[ADDRESS:]PORT")]
    pub api: Option<String>,

    /// The environment variable that holds the control API's bearer token
    /// (clients send `Authorization: Bearer TOKEN`). Required when --api binds a
    /// non-loopback address.
    #[arg(long, value_name = "NAME")]
    pub api_token_env: Option<String>,

    /// Most streams open at once, inputs and streams added through the API.
    #[arg(long, value_name = "N")]
    pub max_streams: Option<usize>,

    #[command(flatten)]
    pub detector: DetectorArgs,

    #[command(flatten)]
    pub tracking: super::tracking::TrackingArgs,

    #[command(flatten)]
    pub mqtt: super::mqtt::MqttArgs,
}

/// Whether option `id` was given on the command line (or by its environment variable).
pub(super) fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The flags given, as a layer of the settings model. `$key` is the field path in
/// [`PipelineConfig`] (it also names the key in errors), `$id` clap's id, `$flag`
/// the flag as the user types it.
macro_rules! layer {
    ($m:expr, $layer:expr, $names:expr; $($key:ident).+ <- $id:literal $flag:literal = $value:expr) => {
        if given($m, $id) {
            $layer.$($key).+ = Some($value);
            $names.push((stringify!($($key).+).replace(' ', ""), $flag.to_string()));
        }
    };
}

impl RunArgs {
    /// The settings' layers: the program's defaults, the pipeline file and the
    /// flags actually given (the one mapping from flags to the settings model).
    pub fn layers(&self, m: &ArgMatches) -> anyhow::Result<Layers> {
        let mut l = PipelineConfig::default();
        let mut names: Vec<(String, String)> = Vec::new();
        if given(m, "input") {
            l.inputs = self.input.clone();
        }
        layer!(m, l, names; duration_s <- "duration" "--duration" = self.duration.unwrap_or_default());
        layer!(m, l, names; api.bind <- "api" "--api" = self.api.clone().unwrap_or_default());
        layer!(m, l, names; api.token_env <- "api_token_env" "--api-token-env" = self.api_token_env.clone().unwrap_or_default());
        layer!(m, l, names; api.max_streams <- "max_streams" "--max-streams" = self.max_streams.unwrap_or_default());
        self.model_layer(m, &mut l, &mut names);
        self.output_layer(m, &mut l, &mut names);
        self.network_layer(m, &mut l, &mut names);
        let t = &self.tracking;
        layer!(m, l, names; tracking.tracker <- "tracker" "--tracker" = t.tracker);
        layer!(m, l, names; tracking.buffer_s <- "track_buffer" "--track-buffer" = t.life.track_buffer);
        layer!(m, l, names; tracking.min_hits <- "track_min_hits" "--track-min-hits" = t.life.track_min_hits);
        layer!(m, l, names; tracking.low_score <- "track_low" "--track-low" = t.track_low);
        l.lines = t.lines()?;
        l.zones = t.zones()?;
        if given(m, "mqtt") {
            l.mqtt = Some(self.mqtt.layer(m, &mut names));
        }
        let file = self
            .config
            .as_deref()
            .map(PipelineConfig::load_layer)
            .transpose()?;
        // Under the control API (or as a fleet worker) a run with no input starts
        // idle, waiting for one.
        let api = l.api.bind.is_some()
            || file
                .as_ref()
                .is_some_and(|f| f.config.api.bind.is_some() || f.config.fleet.is_some());
        // The demo clip and the bundled model are found at run time, and only
        // looked for when neither the flags nor the file name their own.
        let set_by = |of: fn(&PipelineConfig) -> bool| {
            of(&l) || file.as_ref().is_some_and(|f| of(&f.config))
        };
        let base = PipelineConfig {
            inputs: if api || set_by(|c| !c.inputs.is_empty()) {
                Vec::new()
            } else {
                vec![demo_clip()?]
            },
            model: ModelSection {
                path: if set_by(|c| c.model.path.is_some()) {
                    None
                } else {
                    Some(model_path(None)?)
                },
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(Layers {
            base,
            file,
            flags: l,
            flag_names: names,
        })
    }

    /// `[model]` and `[batching]` flags.
    fn model_layer(
        &self,
        m: &ArgMatches,
        l: &mut PipelineConfig,
        names: &mut Vec<(String, String)>,
    ) {
        let d = &self.detector;
        layer!(m, l, names; model.path <- "model" "--model" = d.model.clone().unwrap_or_default());
        layer!(m, l, names; model.classes <- "classes" "--classes" = d.classes.clone());
        layer!(m, l, names; model.conf <- "conf" "--conf" = d.conf);
        layer!(m, l, names; model.iou <- "iou" "--iou" = d.iou);
        layer!(m, l, names; model.max_detections <- "max_detections" "--max-detections" = d.max_detections);
        layer!(m, l, names; model.input_size <- "input_size" "--input-size" = d.input_size.unwrap_or_default());
        layer!(m, l, names; model.tta <- "tta" "--tta" = d.tta.map_or(String::new(), |t| t.name().to_string()));
        layer!(m, l, names; model.device <- "device" "--device" = d.runtime.device.name().to_string());
        layer!(m, l, names; model.precision <- "precision" "--precision" = d.runtime.precision.name().to_string());
        layer!(m, l, names; model.threads <- "threads" "--threads" = d.runtime.threads);
        layer!(m, l, names; model.ort_lib <- "ort_lib" "--ort-lib" = d.runtime.ort_lib.clone().unwrap_or_default());
        layer!(m, l, names; batching.size <- "batch" "--batch" = d.batch);
        layer!(m, l, names; batching.timeout_ms <- "batch_timeout" "--batch-timeout" = self.batch_timeout.unwrap_or_default());
    }

    /// `[outputs]` flags. `--output` also turns off a file's `no_video`, and
    /// `--metadata` its `no_metadata`.
    fn output_layer(
        &self,
        m: &ArgMatches,
        l: &mut PipelineConfig,
        names: &mut Vec<(String, String)>,
    ) {
        layer!(m, l, names; outputs.video <- "output" "--output" = self.output.clone().unwrap_or_default());
        layer!(m, l, names; outputs.no_video <- "output" "--output" = false);
        layer!(m, l, names; outputs.no_video <- "no_video" "--no-video" = self.no_video);
        layer!(m, l, names; outputs.metadata <- "metadata" "--metadata" = self.metadata.clone().unwrap_or_default());
        layer!(m, l, names; outputs.no_metadata <- "metadata" "--metadata" = false);
        layer!(m, l, names; outputs.no_metadata <- "no_metadata" "--no-metadata" = self.no_metadata);
        layer!(m, l, names; outputs.rtsp <- "rtsp_out" "--rtsp-out" = self.rtsp_out.clone().unwrap_or_default());
        layer!(m, l, names; outputs.display <- "display" "--display" = self.display);
        layer!(m, l, names; outputs.metrics <- "metrics" "--metrics" = self.metrics.clone().unwrap_or_default());
        layer!(m, l, names; harvest.dir <- "harvest" "--harvest" = self.harvest.clone().unwrap_or_default());
        layer!(m, l, names; harvest.rate_per_min <- "harvest_rate" "--harvest-rate" = self.harvest_rate);
        layer!(m, l, names; harvest.unsure_below <- "harvest_below" "--harvest-below" = self.harvest_below);
    }

    /// `[rtsp]` and `[reconnect]` flags.
    fn network_layer(
        &self,
        m: &ArgMatches,
        l: &mut PipelineConfig,
        names: &mut Vec<(String, String)>,
    ) {
        layer!(m, l, names; rtsp.latency_ms <- "rtsp_latency" "--rtsp-latency" = self.rtsp_latency);
        layer!(m, l, names; rtsp.transport <- "rtsp_transport" "--rtsp-transport" = self.rtsp_transport.name().to_string());
        layer!(m, l, names; rtsp.udp_timeout_ms <- "rtsp_udp_timeout" "--rtsp-udp-timeout" = self.rtsp_udp_timeout);
        layer!(m, l, names; reconnect.delay_ms <- "reconnect_delay" "--reconnect-delay" = self.reconnect_delay);
        layer!(m, l, names; reconnect.max_delay_s <- "reconnect_max_delay" "--reconnect-max-delay" = self.reconnect_max_delay);
        layer!(m, l, names; reconnect.attempts <- "reconnect_attempts" "--reconnect-attempts" = self.reconnect_attempts);
        layer!(m, l, names; reconnect.stall_timeout_s <- "stall_timeout" "--stall-timeout" = self.stall_timeout);
    }
}

/// Raises `stop` on SIGINT or SIGTERM, and on SIGHUP (a closed terminal) when
/// `hangup_stops`; a second signal exits at once. With a pipeline file SIGHUP
/// re-reads it instead (see [`super::reload`]).
fn install_stop_handler(stop: Arc<AtomicBool>, hangup_stops: bool) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut wanted = vec![SIGINT, SIGTERM];
    if hangup_stops {
        wanted.push(SIGHUP);
    }
    let mut signals = match signal_hook::iterator::Signals::new(wanted) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGINT/SIGTERM handler");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if stop.swap(true, Ordering::SeqCst) {
                    eprintln!("error: interrupted twice; exiting without finalising outputs");
                    std::process::exit(130);
                }
                eprintln!(
                    "stopping: finishing queued frames and closing outputs (interrupt again to abort)"
                );
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the signal thread");
    }
}

pub fn execute(args: RunArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let layers = args.layers(matches)?;
    execute_layers(&args, layers)
}

/// `--print-config`: the effective settings as TOML, credentials hidden.
fn print_effective_config(args: &RunArgs, layers: &Layers) -> anyhow::Result<()> {
    let mut effective = layers.effective();
    effective.inputs = effective.inputs.iter().map(|i| redact::url(i)).collect();
    if let Some(m) = &mut effective.mqtt {
        m.url = m.url.as_deref().map(redact::url);
    }
    if let Some(f) = &mut effective.fleet {
        f.nats = f
            .nats
            .as_deref()
            .map(|n| n.split(',').map(redact::url).collect::<Vec<_>>().join(","));
    }
    out!(
        "# Effective configuration of `pedvision run`{}\n{}",
        args.config
            .as_ref()
            .map_or(String::new(), |p| format!(" with {}", p.display())),
        toml::to_string(&effective)?
    );
    Ok(())
}

/// The manifest the run starts with (its precision's version, with `--input-size`
/// and `--tta` applied) and the checked plan. Inputs, outputs and every value are
/// checked before the model loads: a typo should fail in milliseconds.
fn manifest_and_plan(layers: &Layers) -> anyhow::Result<(Manifest, RunPlan)> {
    let model = layers.effective().model;
    let model_path = match model.path {
        Some(path) => path,
        None => model_path(None)?,
    };
    let tta = tta_override(model.tta.as_deref())?;
    let overridden = |m: Manifest| -> anyhow::Result<Manifest> {
        Ok(with_tta(with_input_size(m, model.input_size)?, tta))
    };
    // The overrides go on after the precision's version is chosen: that version
    // must match the manifest as written, not as overridden.
    let written = Manifest::load(&model_path)?;
    let mut plan = RunPlan::build(layers, &overridden(written.clone())?)?;
    let manifest = overridden(written.for_precision(plan.runtime.precision)?)?;
    plan.model_path = manifest.path.clone();
    plan.model_name = manifest.name.clone();
    Ok((manifest, plan))
}

/// Runs the pipeline the settings' layers describe: `run`, and `worker` with its
/// `[fleet]` layer on top.
pub fn execute_layers(args: &RunArgs, layers: Layers) -> anyhow::Result<()> {
    if args.print_config {
        return print_effective_config(args, &layers);
    }
    let (manifest, plan) = manifest_and_plan(&layers)?;
    let board = Arc::new(Board::default());
    let (commands_tx, commands) = crossbeam_channel::unbounded();
    let control = Control::new(commands_tx, board.clone());
    let metrics = Arc::new(Metrics::new(&plan.model_name));
    // The API answers /healthz (and /readyz with 503) while the model loads.
    let _api = plan
        .api
        .as_ref()
        .map(|settings| ApiServer::start(settings, control.clone(), metrics.clone()))
        .transpose()?;
    runtime::init(plan.ort_lib.as_deref(), plan.runtime.device)?;
    let mut detector = Detector::load(&manifest, &plan.runtime)?;
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone(), args.config.is_none());
    if args.config.is_some() {
        super::reload::watch(layers, &plan, control.clone())?;
    }
    if let Some(after) = plan.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let agent = plan
        .fleet
        .clone()
        .map(|f| pedvision::fleet::agent::start(f, control.clone(), stop.clone()))
        .transpose()?;
    // Under systemd (Type=notify): READY=1 once the model and the streams are up,
    // the watchdog fed while frames flow.
    let _notifier =
        pedvision::service::Notifier::start(board.clone(), plan.sources.len(), stop.clone());
    let steering = pipeline::Steering { commands, board };
    let report = pipeline::run_with_metrics(&plan, &mut detector, &stop, steering, metrics);
    stop.store(true, Ordering::SeqCst);
    if let Some(agent) = agent {
        agent.join();
    }
    let report = report?;
    print_summary(&report);
    Ok(())
}

/// Per stream, when there are several or any is live: frames, drops, reconnects,
/// tracks and latency.
fn print_streams(report: &RunReport) {
    let live = report
        .streams
        .iter()
        .any(|s| s.latency_p50_ms.is_some() || s.dropped > 0 || s.reconnects > 0);
    if report.streams.len() > 1 || live {
        for s in &report.streams {
            let latency = match (s.latency_p50_ms, s.latency_p99_ms) {
                (Some(p50), Some(p99)) => format!(", latency p50 {p50:.0} ms p99 {p99:.0} ms"),
                _ => String::new(),
            };
            let failed = s
                .error
                .as_ref()
                .map_or(String::new(), |e| format!("; failed: {e}"));
            out!(
                "stream {} ({}): {} frames processed, {} dropped, {} reconnects, {} tracks{latency}{failed}",
                s.id,
                s.name,
                s.processed,
                s.dropped,
                s.reconnects,
                s.tracks
            );
        }
    }
}

/// What every line and zone counted.
fn print_counts(report: &RunReport) {
    for s in &report.streams {
        for l in &s.lines {
            let [(a, na), (b, nb)] = &l.counts;
            out!("line {} (stream {}): {a} {na}, {b} {nb}", l.name, s.id);
        }
        for z in &s.zones {
            let dwell = z
                .mean_dwell_s
                .map_or(String::new(), |d| format!(", mean dwell {d:.1} s"));
            out!(
                "zone {} (stream {}): {} entered, {} left, {} inside at the end{dwell}",
                z.name,
                s.id,
                z.entered,
                z.left,
                z.inside
            );
        }
    }
}

fn print_summary(report: &RunReport) {
    let mut written: Vec<String> = report
        .streams
        .iter()
        .filter_map(|s| s.video.as_ref().map(|v| format!("video {}", v.display())))
        .collect();
    if let Some(m) = &report.metadata {
        written.push(format!("metadata {}", m.display()));
    }
    out!(
        "processed {} frames in {:.1} s ({:.1} fps); {}",
        report.frames,
        report.elapsed.as_secs_f64(),
        report.fps(),
        if written.is_empty() {
            "nothing written".to_string()
        } else {
            written.join(", ")
        }
    );
    let tracks: u64 = report.streams.iter().map(|s| s.tracks).sum();
    if tracks > 0 {
        out!("tracks: {tracks} confirmed");
    }
    print_streams(report);
    print_counts(report);
    for (s, url) in report.streams.iter().zip(&report.rtsp_urls) {
        out!("stream {} was served at {url}", s.id);
    }
    if let Some(m) = &report.mqtt {
        out!(
            "mqtt: {} queued, {} acknowledged by the broker, {} left in the spool, {} dropped (spool full), {} recovered from an earlier run, {} connections",
            m.queued,
            m.acknowledged,
            m.left_in_spool,
            m.dropped,
            m.recovered,
            m.connections
        );
        if m.too_large > 0 {
            out!(
                "mqtt: {} messages larger than a packet may be were not sent (they are in the metadata file)",
                m.too_large
            );
        }
    }
    if let Some(n) = &report.nats {
        out!(
            "nats: {} queued, {} acknowledged by JetStream ({} as duplicates), {} left in the spool, {} dropped (spool full), {} recovered from an earlier run",
            n.queued,
            n.acknowledged,
            n.duplicates,
            n.left_in_spool,
            n.dropped,
            n.recovered
        );
    }
    if let Some(h) = &report.harvest {
        print_harvest(h);
    }
    let sizes: Vec<String> = report
        .infer
        .sizes
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(size, n)| format!("{n}×{size}"))
        .collect();
    out!(
        "batches: {} ({}), {} with frames of several streams",
        report.infer.batches,
        sizes.join(", "),
        report.infer.mixed
    );
}

/// The harvest's summary line.
fn print_harvest(h: &pedvision::sinks::harvest::HarvestReport) {
    out!(
        "harvest: {} frames saved in {} (chosen as unsure {}, blink {}, gap {}; left out: {} by the rate limit, {} as the same scene, {} with the writer busy)",
        h.saved,
        h.dir.display(),
        h.unsure,
        h.blink,
        h.gap,
        h.rate_limited,
        h.duplicates,
        h.dropped
    );
    if let Some(e) = &h.first_error {
        tracing::warn!(
            "harvest: {} frames could not be saved, the first because: {e}",
            h.failed
        );
    }
}

/// The `--tta` (or pipeline file `[model] tta`) override of the manifest's test-time
/// augmentation, if any.
fn tta_override(name: Option<&str>) -> anyhow::Result<Option<Tta>> {
    name.map(|n| Tta::parse(n).map_err(|e| anyhow::anyhow!("[model] tta (--tta): {e}")))
        .transpose()
}
