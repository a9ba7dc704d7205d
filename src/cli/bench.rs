//! `pedvision bench`: end-to-end fps (decode, preprocess, inference, NMS, overlay,
//! H.264 encoding, JSON Lines) against the inference-only fps of the same model with
//! the same threads and batch size, measured side by side in one process.
//!
//! Inference-only is measured before and after the end-to-end run and averaged, so
//! drift in machine load hits both sides alike. Inference-only runs on frames
//! decoded and preprocessed beforehand; it is the ceiling the pipeline can reach.

use std::time::{Duration, Instant};

use clap::Args;
use ndarray::ArrayView4;
use pedvision::infer::{Detector, preprocess::Preprocessor};
use pedvision::pipeline::{self, Frame, RunPlan, RunReport};
use pedvision::sources::{ReconnectPolicy, RtspOptions, SourceSpec};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::common::{DEMO_CLIP, DetectorArgs, LoadedModel};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Video to measure on. Default: the bundled demo clip.
    #[arg(long, short, value_name = "FILE|URI")]
    pub input: Option<String>,

    /// Batches run before timing starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,

    /// End-to-end passes, each between two inference-only passes; the median
    /// ratio is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub rounds: u16,

    /// Also time each round with the operational sinks on: Prometheus metrics
    /// (served on a loopback port) and the MQTT sink publishing to this broker
    /// (mqtt://HOST:PORT), and report their cost as a ratio to the plain run.
    #[arg(long, value_name = "MQTT_URL")]
    pub with_sinks: Option<String>,

    /// Also time each round with tracking, a counting line and a zone against
    /// the same run without tracking (`--tracker none`), and report the ratio.
    #[arg(long)]
    pub compare_tracking: bool,

    #[command(flatten)]
    pub detector: DetectorArgs,
}

pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    let input = args.input.clone().unwrap_or_else(|| DEMO_CLIP.to_string());
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    let mut model = args.detector.load(manifest, classes)?;
    let work = Workload::prepare(&input, &model, usize::from(args.detector.batch))?;
    for b in work.batches.iter().cycle().take(args.warmup) {
        model.detector.run(work.view(b)?)?;
    }
    print_header(&args, &input, &work);
    let dir = std::env::temp_dir().join(format!("pedvision-bench-{}", std::process::id()));
    let plan = base_plan(&input, &model, work.batch, &dir)?;
    let sinks = args
        .with_sinks
        .as_deref()
        .map(|url| sinks_plan(url, &plan, &dir))
        .transpose()?;
    let tracking = args
        .compare_tracking
        .then(|| tracking_plans(&plan))
        .transpose()?;
    let mut runner = Runner {
        detector: &mut model.detector,
        dir: &dir,
        frames: work.frames,
    };
    // Alternate inference-only and end-to-end passes; each round's ratio divides
    // its end-to-end fps by the mean of the inference-only passes around it, so a
    // change in machine load hits both sides of a ratio alike.
    let cpu_before = cpu_time();
    let mut infer_fps = vec![work.inference_only_fps(runner.detector)?];
    let infer_cpu = cpu_time().zip(cpu_before).map(|(a, b)| a - b);
    let (mut e2e_cpu, mut ratios) = (Duration::ZERO, Vec::new());
    let (mut sink_ratios, mut tracking_ratios, mut tracking_cpu) = (vec![], vec![], vec![]);
    for round in 1..=usize::from(args.rounds) {
        let (report, cpu) = runner.run(&plan, "end-to-end run")?;
        e2e_cpu += cpu.unwrap_or_default();
        infer_fps.push(work.inference_only_fps(runner.detector)?);
        if let Some(sinks) = &sinks {
            sink_ratios.push(runner.sinks_round(round, sinks, &report)?);
        }
        if let Some((with, without)) = &tracking {
            let (fps, cpu) = runner.tracking_round(round, with, without)?;
            tracking_ratios.push(fps);
            tracking_cpu.extend(cpu);
        }
        let around = (infer_fps[round - 1] + infer_fps[round]) / 2.0;
        ratios.push(report.fps() / around);
        out!(
            "round {round}: end to end {:6.2} fps, inference only {:6.2} / {:6.2} fps, ratio {:.3}",
            report.fps(),
            infer_fps[round - 1],
            infer_fps[round],
            report.fps() / around
        );
    }
    summarise("ratio end-to-end / inference-only", &mut ratios);
    summarise("ratio with / without metrics + MQTT", &mut sink_ratios);
    summarise(
        "ratio with / without tracking + analytics",
        &mut tracking_ratios,
    );
    summarise(
        "CPU time with / without tracking + analytics",
        &mut tracking_cpu,
    );
    if let Some(infer_cpu) = infer_cpu {
        out!(
            "CPU time per frame: inference only {:.1} ms, end to end {:.1} ms",
            work.per_frame_ms(infer_cpu),
            work.per_frame_ms(e2e_cpu) / f64::from(args.rounds)
        );
    }
    out!(
        "(end to end = decode, preprocess, inference, NMS, tracking, overlay, H.264/MP4 encode, JSON Lines)"
    );
    Ok(())
}

/// What is measured, and the single-threaded costs of decoding and preprocessing.
fn print_header(args: &BenchArgs, input: &str, work: &Workload) {
    out!(
        "pedvision bench: {input}: {} frames {}x{}, batch {}, threads {}, device {}",
        work.frames,
        work.size.0,
        work.size.1,
        work.batch,
        if args.detector.runtime.threads == 0 {
            "auto".to_string()
        } else {
            args.detector.runtime.threads.to_string()
        },
        args.detector.runtime.device
    );
    out!(
        "single-threaded costs:    decode {:.2} ms/frame, preprocess {:.2} ms/frame",
        work.per_frame_ms(work.decode_time),
        work.per_frame_ms(work.prep_time)
    );
}

/// Prints the median, min and max of some per-round ratios (nothing when empty).
fn summarise(what: &str, ratios: &mut [f64]) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    out!(
        "{what}: median {:.3} (min {:.3}, max {:.3}) over {} rounds",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

/// The frames of the input, decoded and preprocessed beforehand, in batches.
struct Workload {
    frames: usize,
    size: (u32, u32),
    batch: usize,
    batches: Vec<Vec<f32>>,
    /// Floats of one frame's network input, and the input's height and width.
    input_len: usize,
    input_hw: (usize, usize),
    decode_time: Duration,
    prep_time: Duration,
}

impl Workload {
    fn prepare(input: &str, model: &LoadedModel, batch: usize) -> anyhow::Result<Self> {
        let started = Instant::now();
        let frames = decode_all(input)?;
        let decode_time = started.elapsed();
        let size = (frames[0].width, frames[0].height);
        let mut pre = Preprocessor::new(size.0, size.1, &model.manifest.input);
        let started = Instant::now();
        let inputs: Vec<Vec<f32>> = frames
            .iter()
            .map(|f| {
                let mut v = vec![0.0; pre.input_len()];
                pre.run(f, &mut v);
                v
            })
            .collect();
        Ok(Self {
            frames: frames.len(),
            size,
            batch,
            batches: inputs.chunks(batch).map(|c| c.concat()).collect(),
            input_len: pre.input_len(),
            input_hw: (
                model.post.input.height as usize,
                model.post.input.width as usize,
            ),
            decode_time,
            prep_time: started.elapsed(),
        })
    }

    fn per_frame_ms(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.frames as f64
    }

    /// A batch as the detector's input tensor.
    fn view<'a>(&self, b: &'a [f32]) -> anyhow::Result<ArrayView4<'a, f32>> {
        let shape = (
            b.len() / self.input_len,
            3,
            self.input_hw.0,
            self.input_hw.1,
        );
        Ok(ArrayView4::from_shape(shape, b)?)
    }

    /// One pass of inference alone over every batch, in frames per second.
    fn inference_only_fps(&self, detector: &mut Detector) -> anyhow::Result<f64> {
        let started = Instant::now();
        for b in &self.batches {
            detector.run(self.view(b)?)?;
        }
        Ok(self.frames as f64 / started.elapsed().as_secs_f64().max(1e-9))
    }
}

/// Runs whole pipelines on the input, each with its own stop flag (a run raises
/// its flag when it ends), removing their outputs afterwards.
struct Runner<'a> {
    detector: &'a mut Detector,
    dir: &'a std::path::Path,
    frames: usize,
}

impl Runner<'_> {
    /// One run of `plan`, its report and the CPU time it took; every frame must
    /// come through (at least those held in memory: a longer input runs whole).
    fn run(&mut self, plan: &RunPlan, what: &str) -> anyhow::Result<(RunReport, Option<Duration>)> {
        let before = cpu_time();
        let report = pipeline::run(plan, self.detector, &Arc::new(AtomicBool::new(false)));
        let cpu = cpu_time().zip(before).map(|(a, b)| a - b);
        let _ = std::fs::remove_dir_all(self.dir);
        let report = report?;
        anyhow::ensure!(
            report.frames >= self.frames as u64,
            "{what} processed {} of {} frames",
            report.frames,
            self.frames
        );
        Ok((report, cpu))
    }

    /// The run with metrics and MQTT against the plain one; their fps ratio.
    fn sinks_round(
        &mut self,
        round: usize,
        plan: &RunPlan,
        plain: &RunReport,
    ) -> anyhow::Result<f64> {
        let (with, _) = self.run(plan, "the run with metrics + MQTT")?;
        let mqtt = with.mqtt.clone().unwrap_or_default();
        anyhow::ensure!(
            mqtt.acknowledged == self.frames as u64,
            "the MQTT broker acknowledged {} of {} frames",
            mqtt.acknowledged,
            self.frames
        );
        let ratio = with.fps() / plain.fps();
        out!(
            "round {round}: with metrics + MQTT {:6.2} fps, without {:6.2} fps, ratio {ratio:.3}",
            with.fps(),
            plain.fps()
        );
        Ok(ratio)
    }

    /// Tracking with a line and a zone against no tracking, in alternating order so
    /// drifting load hits both sides alike; their fps and CPU-time ratios.
    fn tracking_round(
        &mut self,
        round: usize,
        with_plan: &RunPlan,
        without_plan: &RunPlan,
    ) -> anyhow::Result<(f64, Option<f64>)> {
        let what = "the tracking comparison";
        let ((with, with_cpu), (without, without_cpu)) = if round % 2 == 1 {
            let with = self.run(with_plan, what)?;
            (with, self.run(without_plan, what)?)
        } else {
            let without = self.run(without_plan, what)?;
            (self.run(with_plan, what)?, without)
        };
        let cpu = with_cpu
            .zip(without_cpu)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9));
        let crossings: u64 = with.streams[0]
            .lines
            .iter()
            .map(|l| l.counts[0].1 + l.counts[1].1)
            .sum();
        let ratio = with.fps() / without.fps();
        out!(
            "round {round}: with tracking + line + zone {:6.2} fps ({} tracks, {crossings} crossings), without tracking {:6.2} fps, ratio {ratio:.3}",
            with.fps(),
            with.streams[0].tracks,
            without.fps()
        );
        Ok((ratio, cpu))
    }
}

/// `run`'s defaults on one file: MP4 and JSONL into `dir`, ByteTrack, no rules.
fn base_plan(
    input: &str,
    model: &LoadedModel,
    batch: usize,
    dir: &std::path::Path,
) -> anyhow::Result<RunPlan> {
    Ok(RunPlan {
        sources: vec![SourceSpec::parse(0, input)?],
        rtsp: RtspOptions::default(),
        reconnect: ReconnectPolicy::default(),
        videos: vec![Some(dir.join("bench.mp4"))],
        metadata: Some(dir.join("bench.jsonl")),
        rtsp_out: None,
        display: false,
        metrics: None,
        mqtt: None,
        model_path: model.manifest.path.clone(),
        model_name: model.manifest.name.clone(),
        runtime: Default::default(),
        ort_lib: None,
        duration: None,
        batch,
        batch_timeout: None,
        post: model.post.clone(),
        tracking: pedvision::track::TrackerSettings {
            high: model.post.conf,
            new_track: model.post.conf,
            ..Default::default()
        },
        rules: Default::default(),
    })
}

/// The plan with metrics on a loopback port and MQTT to the broker at `url`.
fn sinks_plan(url: &str, plan: &RunPlan, dir: &std::path::Path) -> anyhow::Result<RunPlan> {
    let (host, port, tls) = pedvision::sinks::mqtt::MqttSettings::parse_url(url)
        .map_err(|e| anyhow::anyhow!("--with-sinks: {e}"))?;
    let mut p = plan.clone();
    p.metrics = Some("127.0.0.1:0".into());
    p.mqtt = Some(pedvision::sinks::mqtt::MqttSettings {
        host,
        port,
        tls,
        topic_prefix: "pedvision-bench".into(),
        client_id: format!("pedvision-bench-{}", std::process::id()),
        username: None,
        password: None,
        tls_ca: None,
        tls_client: None,
        spool_dir: dir.join("spool"),
        spool_max_bytes: 256 << 20,
        drain_timeout: Duration::from_secs(10),
        keep_alive: Duration::from_secs(15),
    });
    Ok(p)
}

/// The plan with ByteTrack, a counting line across the middle and a zone on the
/// right half (the demo clip's walkers cross both), and the plan without tracking.
fn tracking_plans(plan: &RunPlan) -> anyhow::Result<(RunPlan, RunPlan)> {
    use pedvision::config::rules::{LineConfig, ZoneConfig};
    let lines = [LineConfig::parse_shorthand("middle:0.05,0.5,0.95,0.5")?];
    let zones = [ZoneConfig::parse_shorthand(
        "right:0.5,0.1,0.95,0.1,0.95,0.9,0.5,0.9",
    )?];
    let mut with = plan.clone();
    with.rules = pedvision::analytics::Rules::validate(
        &lines,
        &zones,
        1,
        &plan.post.labels,
        &plan.post.classes,
    )?;
    let mut without = plan.clone();
    without.tracking.kind = pedvision::track::TrackerKind::None;
    Ok((with, without))
}

/// CPU time (user + system) this process has used so far, from /proc/self/stat;
/// `None` where that file does not exist.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at state (3rd).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream platform.
    Some(Duration::from_millis(ticks * 10))
}

/// Frames decoded and preprocessed into memory for the inference-only passes
/// (416×416 float tensors are 2 MB a frame): a long input is measured end to end
/// whole, and inference alone on its first frames.
const IN_MEMORY_FRAMES: usize = 200;

/// Decodes the input's first [`IN_MEMORY_FRAMES`] frames into memory.
fn decode_all(input: &str) -> anyhow::Result<Vec<Frame>> {
    let spec = SourceSpec::parse(0, input)?;
    anyhow::ensure!(
        !spec.is_live(),
        "bench needs a file: a live input has no end to measure to"
    );
    let frames = pedvision::sources::read_frames(input, Some(IN_MEMORY_FRAMES))?;
    anyhow::ensure!(!frames.is_empty(), "{input} has no frames");
    Ok(frames)
}
