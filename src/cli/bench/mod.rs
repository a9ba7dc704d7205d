//! `pedvision bench`: what the pipeline does per second against what its parts
//! allow, side by side in one process, round after round:
//!
//! - **inference only**: the detector on frames decoded and preprocessed
//!   beforehand (before and after each round, averaged): the model's ceiling;
//! - **zero-cost detector**: the whole pipeline with inference skipped (every
//!   frame passes with no detections): the ceiling of decode, preprocess, post,
//!   overlay and encode;
//! - **end to end**: `run`'s defaults (annotated MP4 + JSON Lines);
//! - **metadata only**: `run --no-video`.
//!
//! Each pass reports CPU time per frame per stage ([`stage_cpu`]). `--compare`
//! runs the bench once per device and precision in child processes (a process
//! loads one ONNX Runtime library), alternating, and prints a table with each
//! one's parity to the first ([`compare`]).

mod compare;
mod runner;
pub mod stage_cpu;
mod workload;

use std::time::Duration;

use clap::Args;

use super::common::{DEMO_CLIP, DetectorArgs};
use runner::{Pass, Runner};
use stage_cpu::STAGES;
use workload::Workload;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Video to measure on. Default: the bundled demo clip.
    #[arg(long, short, value_name = "FILE|URI")]
    pub input: Option<String>,

    /// Batches run before timing starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,

    /// Rounds; each runs every pass once, and the medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub rounds: u16,

    /// Compare devices and precisions, side by side in one run: a list of
    /// DEVICE[:PRECISION] (for example `cpu:fp32,auto,openvino:int8`), each
    /// benched in its own process, in alternating order, one round at a time.
    /// The first is the reference for the ratios and for parity (its detections
    /// with score >= 0.5 matched at IoU >= 0.9 by the same class).
    #[arg(long, value_name = "LIST", conflicts_with_all = ["with_sinks", "compare_tracking"])]
    pub compare: Option<String>,

    /// Print one `bench-result: {json}` line at the end (what --compare reads).
    #[arg(long, hide = true)]
    pub result_line: bool,

    /// Keep the last end-to-end pass's JSON Lines here (what --compare compares).
    #[arg(long, hide = true, value_name = "FILE")]
    pub keep_metadata: Option<std::path::PathBuf>,

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

/// The passes of a round, in the order they run and are reported.
const PASSES: [&str; 3] = ["zero-cost detector", "end to end", "metadata only"];

/// What one bench process measured: medians over its rounds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub device: String,
    pub precision: String,
    pub batch: usize,
    pub frames: usize,
    pub inference_only_fps: f64,
    pub zero_cost_fps: f64,
    pub end_to_end_fps: f64,
    pub metadata_only_fps: f64,
    /// CPU ms per frame: inference only, then per pass and stage.
    pub inference_cpu_ms: f64,
    pub stage_cpu_ms: Vec<Vec<f64>>,
}

pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(list) = &args.compare {
        return compare::execute(&args, list);
    }
    let input = args.input.clone().unwrap_or_else(|| DEMO_CLIP.to_string());
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    let mut model = args.detector.load(manifest, classes)?;
    let work = Workload::prepare(&input, &model, usize::from(args.detector.batch))?;
    for b in work.batches.iter().cycle().take(args.warmup) {
        model.detector.run(work.view(b)?)?;
    }
    print_header(&args, &input, &work, &model.detector);
    let dir = std::env::temp_dir().join(format!("pedvision-bench-{}", std::process::id()));
    let plan = runner::base_plan(&input, &model, work.batch, &dir)?;
    let plans = [
        runner::zero_cost_plan(&plan),
        plan.clone(),
        runner::metadata_only_plan(&plan),
    ];
    let sinks = args
        .with_sinks
        .as_deref()
        .map(|url| runner::sinks_plan(url, &plan, &dir))
        .transpose()?;
    let tracking = args
        .compare_tracking
        .then(|| runner::tracking_plans(&plan))
        .transpose()?;
    let mut result = BenchResult {
        device: model.detector.device().to_string(),
        precision: model.detector.precision().to_string(),
        batch: work.batch,
        frames: work.frames,
        ..Default::default()
    };
    let mut runner = Runner {
        detector: &mut model.detector,
        dir: &dir,
        frames: work.frames,
    };
    let cpu_before = runner::cpu_time();
    let mut infer_fps = vec![work.inference_only_fps(runner.detector)?];
    let infer_cpu = runner::cpu_time().zip(cpu_before).map(|(a, b)| a - b);
    let mut fps: [Vec<f64>; 3] = Default::default();
    let mut stage_totals = [[Duration::ZERO; 6]; 3];
    let (mut sink_ratios, mut tracking_ratios, mut tracking_cpu) = (vec![], vec![], vec![]);
    for round in 1..=usize::from(args.rounds) {
        let mut passes: Vec<Pass> = Vec::new();
        for (i, (what, plan)) in PASSES.iter().zip(&plans).enumerate() {
            if i == 1
                && let Some(keep) = &args.keep_metadata
                && round == usize::from(args.rounds)
            {
                passes.push(runner.pass_keeping(plan, what, keep)?);
            } else {
                passes.push(runner.pass(plan, what)?);
            }
        }
        infer_fps.push(work.inference_only_fps(runner.detector)?);
        for (i, pass) in passes.iter().enumerate() {
            fps[i].push(pass.report.fps());
            for (total, stage) in stage_totals[i].iter_mut().zip(pass.stages) {
                *total += stage;
            }
        }
        if let Some(sinks) = &sinks {
            sink_ratios.push(runner.sinks_round(round, sinks, &passes[1].report)?);
        }
        if let Some((with, without)) = &tracking {
            let (ratio, cpu) = runner.tracking_round(round, with, without)?;
            tracking_ratios.push(ratio);
            tracking_cpu.extend(cpu);
        }
        out!(
            "round {round}: inference only {:6.1} / {:6.1} fps | zero-cost detector {:6.1} fps | end to end {:6.1} fps | metadata only {:6.1} fps",
            infer_fps[round - 1],
            infer_fps[round],
            fps[0][round - 1],
            fps[1][round - 1],
            fps[2][round - 1],
        );
    }
    // Each round's inference-only figure is the mean of the passes around it.
    let infer_rounds: Vec<f64> = infer_fps.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    result.inference_only_fps = median(&infer_rounds);
    result.zero_cost_fps = median(&fps[0]);
    result.end_to_end_fps = median(&fps[1]);
    result.metadata_only_fps = median(&fps[2]);
    result.inference_cpu_ms = infer_cpu.map_or(0.0, |d| work.per_frame_ms(d));
    let rounds = f64::from(args.rounds);
    result.stage_cpu_ms = stage_totals
        .iter()
        .map(|stages| {
            stages
                .iter()
                .map(|d| work.per_frame_ms(*d) / rounds)
                .collect()
        })
        .collect();
    print_summary(&result, &infer_rounds, &fps);
    summarise("ratio with / without metrics + MQTT", &mut sink_ratios);
    summarise(
        "ratio with / without tracking + analytics",
        &mut tracking_ratios,
    );
    summarise(
        "CPU time with / without tracking + analytics",
        &mut tracking_cpu,
    );
    if args.result_line {
        out!("bench-result: {}", serde_json::to_string(&result)?);
    }
    Ok(())
}

/// Medians, the ceilings' ratios, and CPU time per frame per stage.
fn print_summary(r: &BenchResult, infer: &[f64], fps: &[Vec<f64>; 3]) {
    out!(
        "median fps: inference only {:.1}, zero-cost detector {:.1}, end to end {:.1}, metadata only {:.1}",
        r.inference_only_fps,
        r.zero_cost_fps,
        r.end_to_end_fps,
        r.metadata_only_fps
    );
    // Per round, end to end against the lower ceiling, metadata only against
    // inference only.
    let mut to_ceiling: Vec<f64> = (0..infer.len())
        .map(|i| fps[1][i] / infer[i].min(fps[0][i]))
        .collect();
    let mut meta_to_infer: Vec<f64> = (0..infer.len()).map(|i| fps[2][i] / infer[i]).collect();
    summarise(
        "end to end / min(inference only, zero-cost detector)",
        &mut to_ceiling,
    );
    summarise("metadata only / inference only", &mut meta_to_infer);
    out!(
        "CPU ms per frame      {}  total",
        STAGES.map(|s| format!("{s:>10}")).join(" ")
    );
    out!(
        "  inference only      {}  {:>5.1}",
        STAGES
            .map(|s| if s == "inference" {
                format!("{:>10.1}", r.inference_cpu_ms)
            } else {
                format!("{:>10}", "")
            })
            .join(" "),
        r.inference_cpu_ms
    );
    for (what, stages) in PASSES.iter().zip(&r.stage_cpu_ms) {
        out!(
            "  {what:<19} {}  {:>5.1}",
            stages
                .iter()
                .map(|ms| format!("{ms:>10.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            stages.iter().sum::<f64>()
        );
    }
    out!(
        "(decode: demux + decoder threads; preprocess: batcher + resize/normalise; post: NMS, tracking, overlay, JSON Lines; encode: conversion, x264, MP4)"
    );
}

/// What is measured, on which provider and precision, and the single-threaded
/// costs of decoding and preprocessing.
fn print_header(
    args: &BenchArgs,
    input: &str,
    work: &Workload,
    detector: &pedvision::infer::Detector,
) {
    out!(
        "pedvision bench: {input}: {} frames {}x{}, batch {}, threads {}, device {} (runs as {} {})",
        work.frames,
        work.size.0,
        work.size.1,
        work.batch,
        if args.detector.runtime.threads == 0 {
            "auto".to_string()
        } else {
            args.detector.runtime.threads.to_string()
        },
        args.detector.runtime.device,
        detector.device(),
        detector.precision()
    );
    out!(
        "single-threaded costs:    decode {:.2} ms/frame, preprocess {:.2} ms/frame",
        work.per_frame_ms(work.decode_time),
        work.per_frame_ms(work.prep_time)
    );
}

/// The median of some figures (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
