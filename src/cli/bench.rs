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
use pedvision::pipeline::{self, Frame, RunPlan};
use pedvision::sources::{ReconnectPolicy, RtspOptions, SourceSpec};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::common::{DEMO_CLIP, DetectorArgs};

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
    let batch = usize::from(args.detector.batch);

    let decode_started = Instant::now();
    let frames = decode_all(&input)?;
    let decode_time = decode_started.elapsed();
    let (w, h) = (frames[0].width, frames[0].height);
    let mut pre = Preprocessor::new(w, h, &model.manifest.input);
    let prep_started = Instant::now();
    let inputs: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| {
            let mut v = vec![0.0; pre.input_len()];
            pre.run(f, &mut v);
            v
        })
        .collect();
    let prep_time = prep_started.elapsed();
    let batches: Vec<Vec<f32>> = inputs.chunks(batch).map(|c| c.concat()).collect();
    let shape = |b: &Vec<f32>| {
        (
            b.len() / pre.input_len(),
            3,
            model.post.input.height as usize,
            model.post.input.width as usize,
        )
    };
    for b in batches.iter().cycle().take(args.warmup) {
        model.detector.run(ArrayView4::from_shape(shape(b), b)?)?;
    }
    out!(
        "pedvision bench: {input}: {} frames {w}x{h}, batch {batch}, threads {}, device {}",
        frames.len(),
        if args.detector.runtime.threads == 0 {
            "auto".to_string()
        } else {
            args.detector.runtime.threads.to_string()
        },
        args.detector.runtime.device
    );

    let per_frame = |d: Duration| d.as_secs_f64() * 1e3 / frames.len() as f64;
    out!(
        "single-threaded costs:    decode {:.2} ms/frame, preprocess {:.2} ms/frame",
        per_frame(decode_time),
        per_frame(prep_time)
    );
    let dir = std::env::temp_dir().join(format!("pedvision-bench-{}", std::process::id()));
    let source = SourceSpec::parse(0, &input)?;
    let plan = RunPlan {
        sources: vec![source.clone()],
        rtsp: RtspOptions::default(),
        reconnect: ReconnectPolicy::default(),
        videos: vec![Some(dir.join("bench.mp4"))],
        metadata: Some(dir.join("bench.jsonl")),
        rtsp_out: None,
        display: false,
        metrics: None,
        mqtt: None,
        model_name: model.manifest.name.clone(),
        batch,
        batch_timeout: None,
        post: model.post.clone(),
        tracking: pedvision::track::TrackerSettings {
            high: model.post.conf,
            new_track: model.post.conf,
            ..Default::default()
        },
        rules: Default::default(),
    };
    let tracking_plans = args
        .compare_tracking
        .then(|| tracking_plans(&plan))
        .transpose()?;
    let mut tracking_ratios = Vec::new();
    let mut tracking_cpu_ratios = Vec::new();
    // Alternate inference-only and end-to-end passes; each round's ratio divides
    // its end-to-end fps by the mean of the inference-only passes around it, so a
    // change in machine load hits both sides of a ratio alike.
    let cpu_before = cpu_time();
    let mut infer_fps = vec![fps(
        frames.len(),
        inference_only(&mut model.detector, &batches, shape)?,
    )];
    let infer_cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let mut e2e_cpu = Duration::ZERO;
    let mut ratios = Vec::new();
    let sinks_plan = match &args.with_sinks {
        Some(url) => {
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
            Some(p)
        }
        None => None,
    };
    let mut sink_ratios = Vec::new();
    for round in 1..=usize::from(args.rounds) {
        let cpu_before = cpu_time();
        let report = pipeline::run(
            &plan,
            &mut model.detector,
            &Arc::new(AtomicBool::new(false)),
        );
        e2e_cpu += cpu_time()
            .zip(cpu_before)
            .map_or(Duration::ZERO, |(after, before)| after - before);
        let _ = std::fs::remove_dir_all(&dir);
        let report = report?;
        anyhow::ensure!(
            report.frames == frames.len() as u64,
            "end-to-end run processed {} of {} frames",
            report.frames,
            frames.len()
        );
        infer_fps.push(fps(
            frames.len(),
            inference_only(&mut model.detector, &batches, shape)?,
        ));
        if let Some(sinks_plan) = &sinks_plan {
            let with = pipeline::run(
                sinks_plan,
                &mut model.detector,
                &Arc::new(AtomicBool::new(false)),
            );
            let _ = std::fs::remove_dir_all(&dir);
            let with = with?;
            let mqtt = with.mqtt.clone().unwrap_or_default();
            anyhow::ensure!(
                mqtt.acknowledged == frames.len() as u64,
                "the MQTT broker acknowledged {} of {} frames",
                mqtt.acknowledged,
                frames.len()
            );
            sink_ratios.push(with.fps() / report.fps());
            out!(
                "round {round}: with metrics + MQTT {:6.2} fps, without {:6.2} fps, ratio {:.3}",
                with.fps(),
                report.fps(),
                with.fps() / report.fps()
            );
        }
        if let Some((with_plan, without_plan)) = &tracking_plans {
            // A run raises its stop flag when it ends: each run gets its own. The
            // order alternates per round, so drifting load hits both sides alike.
            let mut timed = |p: &RunPlan| {
                let before = cpu_time();
                let r = pipeline::run(p, &mut model.detector, &Arc::new(AtomicBool::new(false)));
                let cpu = cpu_time().zip(before).map(|(a, b)| a - b);
                let _ = std::fs::remove_dir_all(&dir);
                r.map(|r| (r, cpu))
            };
            let ((with, with_cpu), (without, without_cpu)) = if round % 2 == 1 {
                let with = timed(with_plan)?;
                (with, timed(without_plan)?)
            } else {
                let without = timed(without_plan)?;
                (timed(with_plan)?, without)
            };
            if let (Some(a), Some(b)) = (with_cpu, without_cpu) {
                tracking_cpu_ratios.push(a.as_secs_f64() / b.as_secs_f64().max(1e-9));
            }
            for r in [&with, &without] {
                anyhow::ensure!(
                    r.frames == frames.len() as u64,
                    "the tracking comparison processed {} of {} frames",
                    r.frames,
                    frames.len()
                );
            }
            let crossings: u64 = with.streams[0]
                .lines
                .iter()
                .map(|l| l.counts[0].1 + l.counts[1].1)
                .sum();
            tracking_ratios.push(with.fps() / without.fps());
            out!(
                "round {round}: with tracking + line + zone {:6.2} fps ({} tracks, {crossings} crossings), without tracking {:6.2} fps, ratio {:.3}",
                with.fps(),
                with.streams[0].tracks,
                without.fps(),
                with.fps() / without.fps()
            );
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
    ratios.sort_by(f64::total_cmp);
    out!(
        "ratio end-to-end / inference-only: median {:.3} (min {:.3}, max {:.3}) over {} rounds",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
    if !sink_ratios.is_empty() {
        sink_ratios.sort_by(f64::total_cmp);
        out!(
            "ratio with / without metrics + MQTT: median {:.3} (min {:.3}, max {:.3}) over {} rounds",
            sink_ratios[sink_ratios.len() / 2],
            sink_ratios[0],
            sink_ratios[sink_ratios.len() - 1],
            sink_ratios.len()
        );
    }
    if !tracking_ratios.is_empty() {
        tracking_ratios.sort_by(f64::total_cmp);
        out!(
            "ratio with / without tracking + analytics: median {:.3} (min {:.3}, max {:.3}) over {} rounds",
            tracking_ratios[tracking_ratios.len() / 2],
            tracking_ratios[0],
            tracking_ratios[tracking_ratios.len() - 1],
            tracking_ratios.len()
        );
        tracking_cpu_ratios.sort_by(f64::total_cmp);
        if !tracking_cpu_ratios.is_empty() {
            out!(
                "CPU time with / without tracking + analytics: median {:.3} (min {:.3}, max {:.3})",
                tracking_cpu_ratios[tracking_cpu_ratios.len() / 2],
                tracking_cpu_ratios[0],
                tracking_cpu_ratios[tracking_cpu_ratios.len() - 1]
            );
        }
    }
    if let Some(infer_cpu) = infer_cpu {
        let per_frame = |d: Duration, n: usize| d.as_secs_f64() * 1e3 / n as f64;
        out!(
            "CPU time per frame: inference only {:.1} ms, end to end {:.1} ms",
            per_frame(infer_cpu, frames.len()),
            per_frame(e2e_cpu, frames.len() * usize::from(args.rounds))
        );
    }
    out!(
        "(end to end = decode, preprocess, inference, NMS, overlay, H.264/MP4 encode, JSON Lines)"
    );
    Ok(())
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

fn fps(frames: usize, took: Duration) -> f64 {
    frames as f64 / took.as_secs_f64().max(1e-9)
}

fn inference_only(
    detector: &mut Detector,
    batches: &[Vec<f32>],
    shape: impl Fn(&Vec<f32>) -> (usize, usize, usize, usize),
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for b in batches {
        detector.run(ArrayView4::from_shape(shape(b), b)?)?;
    }
    Ok(started.elapsed())
}

/// Decodes the whole input into memory.
fn decode_all(input: &str) -> anyhow::Result<Vec<Frame>> {
    let spec = SourceSpec::parse(0, input)?;
    anyhow::ensure!(
        !spec.is_live(),
        "bench needs a file: a live input has no end to measure to"
    );
    let frames = pedvision::sources::read_frames(input, None)?;
    anyhow::ensure!(!frames.is_empty(), "{input} has no frames");
    Ok(frames)
}
