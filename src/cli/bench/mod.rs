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

use pedvision::pipeline::RunPlan;

use super::common::{DetectorArgs, demo_clip};
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
    let input = match &args.input {
        Some(input) => input.clone(),
        None => demo_clip()?,
    };
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    let mut model = args.detector.load(manifest, classes)?;
    let work = Workload::prepare(&input, &model, usize::from(args.detector.batch))?;
    for b in work.batches.iter().cycle().take(args.warmup) {
        model.detector.run(work.view(b)?)?;
    }
    print_header(&args, &input, &work, &model.detector);
    let dir = std::env::temp_dir().join(format!("pedvision-bench-{}", std::process::id()));
    let plans = Plans::new(
        &args,
        runner::base_plan(&input, &model, work.batch, &dir)?,
        &dir,
    )?;
    let (device, precision) = (model.detector.device(), model.detector.precision());
    let mut runner = Runner {
        detector: &mut model.detector,
        dir: &dir,
        frames: work.frames,
    };
    let cpu_before = runner::cpu_time();
    let mut tally = Tally {
        infer_fps: vec![work.inference_only_fps(runner.detector)?],
        ..Default::default()
    };
    let infer_cpu = runner::cpu_time().zip(cpu_before).map(|(a, b)| a - b);
    for round in 1..=usize::from(args.rounds) {
        let keep = args
            .keep_metadata
            .as_deref()
            .filter(|_| round == usize::from(args.rounds));
        tally.round(round, &mut runner, &work, &plans, keep)?;
    }
    let mut result = tally.result(&work, f64::from(args.rounds), infer_cpu);
    result.device = device.to_string();
    result.precision = precision.to_string();
    print_summary(&result, &tally.inference_rounds(), &tally.fps);
    tally.print_comparisons();
    if args.result_line {
        out!("bench-result: {}", serde_json::to_string(&result)?);
    }
    Ok(())
}

/// The plans a round runs: one per pass ([`PASSES`]), and the optional
/// comparisons.
struct Plans {
    passes: [RunPlan; 3],
    sinks: Option<RunPlan>,
    tracking: Option<(RunPlan, RunPlan)>,
}

impl Plans {
    fn new(args: &BenchArgs, plan: RunPlan, dir: &std::path::Path) -> anyhow::Result<Self> {
        let sinks = args
            .with_sinks
            .as_deref()
            .map(|url| runner::sinks_plan(url, &plan, dir))
            .transpose()?;
        let tracking = args
            .compare_tracking
            .then(|| runner::tracking_plans(&plan))
            .transpose()?;
        Ok(Self {
            passes: [
                runner::zero_cost_plan(&plan),
                plan.clone(),
                runner::metadata_only_plan(&plan),
            ],
            sinks,
            tracking,
        })
    }
}

/// What the rounds measured so far.
#[derive(Default)]
struct Tally {
    /// Inference-only fps before the first round and after each.
    infer_fps: Vec<f64>,
    /// Per pass ([`PASSES`]), each round's fps.
    fps: [Vec<f64>; 3],
    /// Per pass, CPU time per stage summed over the rounds.
    stage_totals: [[Duration; 6]; 3],
    sink_ratios: Vec<f64>,
    tracking_ratios: Vec<f64>,
    tracking_cpu: Vec<f64>,
}

impl Tally {
    /// Runs round `round`: every pass, inference alone, then the comparisons;
    /// prints its line. `keep` keeps the end-to-end pass's metadata.
    fn round(
        &mut self,
        round: usize,
        runner: &mut Runner<'_>,
        work: &Workload,
        plans: &Plans,
        keep: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        let mut passes: Vec<Pass> = Vec::new();
        for (i, (what, plan)) in PASSES.iter().zip(&plans.passes).enumerate() {
            passes.push(match keep {
                Some(keep) if i == 1 => runner.pass_keeping(plan, what, keep)?,
                _ => runner.pass(plan, what)?,
            });
        }
        self.infer_fps
            .push(work.inference_only_fps(runner.detector)?);
        for (i, pass) in passes.iter().enumerate() {
            self.fps[i].push(pass.report.fps());
            for (total, stage) in self.stage_totals[i].iter_mut().zip(pass.stages) {
                *total += stage;
            }
        }
        if let Some(sinks) = &plans.sinks {
            let ratio = runner.sinks_round(round, sinks, &passes[1].report)?;
            self.sink_ratios.push(ratio);
        }
        if let Some((with, without)) = &plans.tracking {
            let (ratio, cpu) = runner.tracking_round(round, with, without)?;
            self.tracking_ratios.push(ratio);
            self.tracking_cpu.extend(cpu);
        }
        out!(
            "round {round}: inference only {:6.1} / {:6.1} fps | zero-cost detector {:6.1} fps | end to end {:6.1} fps | metadata only {:6.1} fps",
            self.infer_fps[round - 1],
            self.infer_fps[round],
            self.fps[0][round - 1],
            self.fps[1][round - 1],
            self.fps[2][round - 1],
        );
        Ok(())
    }

    /// Each round's inference-only figure: the mean of the passes around it.
    fn inference_rounds(&self) -> Vec<f64> {
        self.infer_fps
            .windows(2)
            .map(|w| (w[0] + w[1]) / 2.0)
            .collect()
    }

    /// Medians over the rounds, and CPU ms per frame (device and precision are
    /// the caller's to fill in).
    fn result(&self, work: &Workload, rounds: f64, infer_cpu: Option<Duration>) -> BenchResult {
        BenchResult {
            batch: work.batch,
            frames: work.frames,
            inference_only_fps: median(&self.inference_rounds()),
            zero_cost_fps: median(&self.fps[0]),
            end_to_end_fps: median(&self.fps[1]),
            metadata_only_fps: median(&self.fps[2]),
            inference_cpu_ms: infer_cpu.map_or(0.0, |d| work.per_frame_ms(d)),
            stage_cpu_ms: self
                .stage_totals
                .iter()
                .map(|stages| {
                    stages
                        .iter()
                        .map(|d| work.per_frame_ms(*d) / rounds)
                        .collect()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The optional comparisons' ratios (nothing for those not run).
    fn print_comparisons(&mut self) {
        summarise("ratio with / without metrics + MQTT", &mut self.sink_ratios);
        summarise(
            "ratio with / without tracking + analytics",
            &mut self.tracking_ratios,
        );
        summarise(
            "CPU time with / without tracking + analytics",
            &mut self.tracking_cpu,
        );
    }
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
