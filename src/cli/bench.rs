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
use pedvision::sources::VideoSource;

use super::common::{DEMO_CLIP, DetectorArgs};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Video to measure on. Default: the bundled demo clip.
    #[arg(long, short, value_name = "FILE|URI")]
    pub input: Option<String>,

    /// Batches run before timing starts.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,

    #[command(flatten)]
    pub detector: DetectorArgs,
}

pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    let input = args.input.clone().unwrap_or_else(|| DEMO_CLIP.to_string());
    let (manifest, classes) = args.detector.manifest_and_classes()?;
    let mut model = args.detector.load(manifest, classes)?;
    let batch = usize::from(args.detector.batch);

    let frames = decode_all(&input)?;
    let (w, h) = (frames[0].width, frames[0].height);
    let mut pre = Preprocessor::new(w, h, &model.manifest.input);
    let inputs: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| {
            let mut v = vec![0.0; pre.input_len()];
            pre.run(f, &mut v);
            v
        })
        .collect();
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
    println!(
        "pedvision bench: {input}: {} frames {w}x{h}, batch {batch}, threads {}, device {}",
        frames.len(),
        if args.detector.threads == 0 {
            "auto".to_string()
        } else {
            args.detector.threads.to_string()
        },
        args.detector.device
    );

    let infer_before = inference_only(&mut model.detector, &batches, shape)?;
    println!(
        "inference only, pass 1:   {:7.2} fps",
        fps(frames.len(), infer_before)
    );

    let dir = std::env::temp_dir().join(format!("pedvision-bench-{}", std::process::id()));
    let plan = RunPlan {
        input: input.clone(),
        video: Some(dir.join("bench.mp4")),
        metadata: Some(dir.join("bench.jsonl")),
        batch,
        post: model.post.clone(),
    };
    let report = pipeline::run(&plan, &mut model.detector);
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    anyhow::ensure!(
        report.frames == frames.len() as u64,
        "end-to-end run processed {} of {} frames",
        report.frames,
        frames.len()
    );
    let e2e = report.fps();
    println!(
        "end to end:               {e2e:7.2} fps  (decode, preprocess, infer, NMS, overlay, H.264/MP4, JSONL)"
    );

    let infer_after = inference_only(&mut model.detector, &batches, shape)?;
    println!(
        "inference only, pass 2:   {:7.2} fps",
        fps(frames.len(), infer_after)
    );
    let infer = fps(2 * frames.len(), infer_before + infer_after);
    println!(
        "ratio end-to-end / inference-only: {:.3}  (inference-only mean {infer:.2} fps)",
        e2e / infer
    );
    Ok(())
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
    let source = VideoSource::open(input, 0)?;
    let (tx, rx) = crossbeam_channel::bounded(16);
    let decoder = std::thread::spawn(move || source.run(tx));
    let frames: Vec<Frame> = rx.iter().collect();
    decoder
        .join()
        .map_err(|_| anyhow::anyhow!("decoder thread panicked"))??;
    anyhow::ensure!(!frames.is_empty(), "{input} has no frames");
    Ok(frames)
}
