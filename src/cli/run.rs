//! `pedvision run`: flags -> a validated [`RunPlan`] -> the pipeline -> a summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use pedvision::pipeline::{self, RunPlan, RunReport};
use pedvision::sources::{ReconnectPolicy, RtspOptions, RtspTransport, SourceSpec};

use super::common::{DEMO_CLIP, DetectorArgs};

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
    /// for one input, out/metadata.jsonl for several.
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

    /// Longest wait, in ms, for a partial batch to fill (counted from its first
    /// frame). Default: wait for a full batch when every input is a file, 20 ms when
    /// any input is live.
    #[arg(long, value_name = "MS")]
    pub batch_timeout: Option<u64>,

    /// RTSP jitter-buffer latency, in ms.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub rtsp_latency: u32,

    /// RTSP transport: auto (UDP, then TCP when UDP gets nothing), tcp or udp.
    #[arg(long, value_enum, default_value_t = RtspTransport::Auto)]
    pub rtsp_transport: RtspTransport,

    /// With --rtsp-transport auto: how long UDP may get nothing before TCP, in ms.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub rtsp_udp_timeout: u32,

    /// First reconnection delay for network sources, in ms; it doubles per failed
    /// attempt up to --reconnect-max-delay.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub reconnect_delay: u64,

    /// Longest delay between reconnection attempts, in seconds.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub reconnect_max_delay: u64,

    /// Failed attempts in a row before a network source gives up (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub reconnect_attempts: u32,

    /// A live source with no frame for this long has stalled and reconnects, in s.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub stall_timeout: f64,

    /// Stop after this many seconds, as SIGINT would (outputs are finalised).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,

    #[command(flatten)]
    pub detector: DetectorArgs,

    #[command(flatten)]
    pub tracking: super::tracking::TrackingArgs,

    #[command(flatten)]
    pub mqtt: super::pipeline_file::MqttArgs,
}

/// Video file extensions a folder input expands to.
const VIDEO_EXTENSIONS: [&str; 11] = [
    "mp4", "mkv", "avi", "webm", "mov", "m4v", "ts", "mpg", "mpeg", "flv", "ogv",
];

/// The inputs with each folder replaced by its video files, in name order.
fn expand_folders(inputs: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if !path.is_dir() {
            out.push(input.clone());
            continue;
        }
        let mut files: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| anyhow::anyhow!("cannot list folder {input}: {e}"))?
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
        anyhow::ensure!(
            !files.is_empty(),
            "folder {input} has no video files ({})",
            VIDEO_EXTENSIONS.join(", ")
        );
        out.extend(files);
    }
    Ok(out)
}

/// Expands an output pattern for one stream.
fn expand(pattern: &str, spec: &SourceSpec) -> PathBuf {
    PathBuf::from(
        pattern
            .replace("{name}", &spec.stem())
            .replace("{stream}", &spec.id.to_string()),
    )
}

impl RunArgs {
    /// The inputs, folders expanded; the demo clip when none is given.
    pub fn inputs(&self) -> anyhow::Result<Vec<String>> {
        if self.input.is_empty() {
            Ok(vec![DEMO_CLIP.to_string()])
        } else {
            expand_folders(&self.input)
        }
    }

    /// Validates the flags into a plan (no threads start here).
    pub fn plan(&self, post: pipeline::PostOptions, model_name: &str) -> anyhow::Result<RunPlan> {
        let inputs = self.inputs()?;
        let sources = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| SourceSpec::parse(i as u32, input))
            .collect::<Result<Vec<_>, _>>()?;
        let many = sources.len() > 1;
        let videos = if self.no_video {
            vec![None; sources.len()]
        } else {
            let default = if many {
                "out/{stream}-{name}.mp4"
            } else {
                "out/{name}.mp4"
            };
            let pattern = self.output.as_deref().unwrap_or(default);
            if many && !pattern.contains("{stream}") {
                anyhow::bail!(
                    "--output {pattern:?} must contain {{stream}} when there are several inputs"
                );
            }
            sources.iter().map(|s| Some(expand(pattern, s))).collect()
        };
        let metadata = (!self.no_metadata).then(|| {
            self.metadata.clone().unwrap_or_else(|| match many {
                true => Path::new("out").join("metadata.jsonl"),
                false => expand("out/{name}.jsonl", &sources[0]),
            })
        });
        if metadata.is_some() && videos.iter().any(|v| v.is_some() && *v == metadata) {
            anyhow::bail!("--output and --metadata name the same file");
        }
        let any_live = sources.iter().any(SourceSpec::is_live);
        let batch_timeout = match self.batch_timeout {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => any_live.then_some(Duration::from_millis(20)),
        };
        if !(self.stall_timeout > 0.0 && self.stall_timeout.is_finite()) {
            anyhow::bail!("--stall-timeout must be a positive number of seconds");
        }
        let rtsp_out = self.rtsp_out.as_deref().map(loopback_unless_given);
        let tracking = self.tracking.settings(post.conf)?;
        let rules = pedvision::analytics::Rules::validate(
            &self.tracking.lines()?,
            &self.tracking.zones()?,
            sources.len() as u32,
            &post.labels,
            &post.classes,
        )?;
        if tracking.kind == pedvision::track::TrackerKind::None && !rules.is_empty() {
            anyhow::bail!("lines and zones count tracks: they need a tracker (not --tracker none)");
        }
        Ok(RunPlan {
            sources,
            rtsp: RtspOptions {
                latency_ms: self.rtsp_latency,
                transport: self.rtsp_transport,
                udp_timeout_ms: self.rtsp_udp_timeout,
            },
            reconnect: ReconnectPolicy {
                initial: Duration::from_millis(self.reconnect_delay.max(1)),
                max: Duration::from_secs(self.reconnect_max_delay.max(1)),
                attempts: self.reconnect_attempts,
                stall: Duration::from_secs_f64(self.stall_timeout),
            },
            videos,
            metadata,
            rtsp_out,
            display: self.display,
            metrics: self.metrics.as_deref().map(loopback_unless_given),
            mqtt: self.mqtt.settings()?,
            model_name: model_name.to_string(),
            batch: self.detector.batch.into(),
            batch_timeout,
            post,
            tracking,
            rules,
        })
    }
}

/// `PORT` -> `127.0.0.1:PORT`; `ADDRESS:PORT` as given.
fn loopback_unless_given(bind: &str) -> String {
    if bind.contains(':') {
        bind.to_string()
    } else {
        format!("127.0.0.1:{bind}")
    }
}

/// Raises `stop` on SIGINT or SIGTERM; a second signal exits at once.
fn install_stop_handler(stop: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("error: interrupted twice; exiting without finalising outputs");
            std::process::exit(130);
        }
        eprintln!(
            "stopping: finishing queued frames and closing outputs (interrupt again to abort)"
        );
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot install the SIGINT/SIGTERM handler");
    }
}

pub fn execute(mut args: RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    super::pipeline_file::load_and_apply(&mut args, matches)?;
    if args.print_config {
        let inputs: Vec<String> = args
            .inputs()?
            .iter()
            .map(|i| pedvision::redact::url(i))
            .collect();
        let effective = super::pipeline_file::effective(&args, &inputs)?;
        out!(
            "# Effective configuration of `pedvision run`{}\n{}",
            args.config
                .as_ref()
                .map_or(String::new(), |p| format!(" with {}", p.display())),
            toml::to_string(&effective)?
        );
        return Ok(());
    }
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    // Inputs and outputs are checked before the model loads: a typo should fail in
    // milliseconds. The post options are filled in once the model is loaded.
    let draft = pipeline::PostOptions {
        input: manifest.input.clone(),
        layout: manifest.layout(),
        labels: manifest.labels.clone(),
        classes: classes.clone(),
        conf: args.detector.conf,
        iou: args.detector.iou,
    };
    let mut plan = args.plan(draft, &manifest.name)?;
    let mut model = args.detector.load(manifest, classes)?;
    plan.post = model.post.clone();
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone());
    if let Some(secs) = args.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
            stop.store(true, Ordering::SeqCst);
        });
    }
    let report = pipeline::run(&plan, &mut model.detector, &stop)?;
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
            out!(
                "stream {} ({}): {} frames processed, {} dropped, {} reconnects, {} tracks{latency}",
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
    for (id, url) in report.rtsp_urls.iter().enumerate() {
        out!("stream {id} was served at {url}");
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

#[cfg(test)]
mod tests {
    use super::*;

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
