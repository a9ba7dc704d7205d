//! Wiring: builds the stages of a run, spawns them on named threads, joins them and
//! decides what happens to the outputs.
//!
//! ```text
//! [source]  VideoSource::run ──Frame──▶ [preprocess] ──Prepared──▶ [infer] ──Inferred──▶ [post]
//!            GStreamer decode             resize+normalise            batch, ORT run        decode, NMS, overlay,
//!                                                                                          MP4 encoder, JSONL
//! ```
//!
//! Every queue is a bounded crossbeam channel that blocks when full: a file loses
//! nothing, and memory stays bounded. A stage stops when its input closes and drops
//! its sender, so the end of the input drains through every stage in order; a stage
//! that fails drops its channels too, which stops the others. The outputs are then
//! committed under their final names only if every stage succeeded; otherwise what
//! was processed is finalised and kept as `*.incomplete.*`.

pub mod colour;
mod frame;
mod stages;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

pub use frame::{Frame, Inferred, Prepared, chroma_size, i420_len};
pub use stages::PostOptions;

use crate::infer::Detector;
use crate::sinks::{encoder::Mp4Encoder, metadata::MetadataWriter};
use crate::sources::VideoSource;

/// Errors of the wiring itself, and failures that leave partial outputs behind.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the {0} stage panicked")]
    Panicked(&'static str),
    #[error("{source}; the {frames} frames processed before that are kept in {kept}")]
    Partial {
        source: Box<crate::Error>,
        frames: u64,
        kept: String,
    },
}

/// Everything one `run` over a single input needs, validated.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// A file path or URI.
    pub input: String,
    /// Annotated MP4 to write, if any.
    pub video: Option<PathBuf>,
    /// JSON Lines metadata to write, if any.
    pub metadata: Option<PathBuf>,
    /// Frames per inference call.
    pub batch: usize,
    /// Decoding, thresholds and class filter.
    pub post: PostOptions,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub frames: u64,
    pub batches: u64,
    /// From the first decoded frame being requested to the outputs being final.
    pub elapsed: Duration,
    /// Time spent inside the detector's `run`.
    pub inference: Duration,
    pub video: Option<PathBuf>,
    pub metadata: Option<PathBuf>,
}

/// Waits for a stage thread; a thread that could not start or that panicked is a
/// pipeline error.
fn join<T>(
    handle: std::io::Result<std::thread::ScopedJoinHandle<'_, T>>,
    name: &'static str,
) -> Result<T, PipelineError> {
    match handle {
        Ok(h) => h.join().map_err(|_| PipelineError::Panicked(name)),
        Err(_) => Err(PipelineError::Panicked(name)),
    }
}

impl RunReport {
    /// Frames per second over the whole run.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the whole pipeline over one input with an already-loaded detector.
pub fn run(plan: &RunPlan, detector: &mut Detector) -> crate::Result<RunReport> {
    // Outputs first: an unwritable destination fails before any decoding.
    let mut metadata = plan
        .metadata
        .as_deref()
        .map(MetadataWriter::create)
        .transpose()?;
    let source = VideoSource::open(&plan.input, 0)?;
    let info = source.info().clone();
    let mut encoder = plan
        .video
        .as_deref()
        .map(|p| Mp4Encoder::create(p, info.width, info.height, info.fps))
        .transpose()?;

    let started = Instant::now();
    let depth = 2 * plan.batch + 2;
    let (frame_tx, frame_rx) = bounded::<Frame>(depth);
    let (prep_tx, prep_rx) = bounded::<Prepared>(depth);
    let (inf_tx, inf_rx) = bounded::<Inferred>(depth);
    let (recycle_tx, recycle_rx) = bounded::<Vec<f32>>(depth);

    let spec = &plan.post.input;
    let (source_result, prep_result, infer_result, post_result) = std::thread::scope(|s| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
        let source_thread = spawn("source").spawn_scoped(s, move || source.run(frame_tx));
        let prep_thread = spawn("preprocess").spawn_scoped(s, move || {
            stages::preprocess(frame_rx, prep_tx, recycle_rx, spec)
        });
        let infer_thread = spawn("infer").spawn_scoped(s, move || {
            stages::infer(prep_rx, inf_tx, recycle_tx, detector, plan.batch)
        });
        let post = stages::post(inf_rx, &plan.post, encoder.as_mut(), metadata.as_mut());
        (
            join(source_thread, "source"),
            join(prep_thread, "preprocess"),
            join(infer_thread, "infer"),
            post,
        )
    });

    prep_result?;
    let (source_result, infer_result) = (source_result?, infer_result?);
    let mut report = RunReport::default();
    if let Ok(stats) = &infer_result {
        report.batches = stats.batches;
        report.inference = stats.busy;
    }
    // The first failure in stage order is the cause; later ones are its echoes.
    report.frames = match &post_result {
        Ok(frames) => *frames,
        // The post stage failed part-way: count what reached the outputs.
        Err(_) => metadata
            .as_ref()
            .map(MetadataWriter::lines)
            .or(encoder.as_ref().map(Mp4Encoder::frames))
            .unwrap_or(0),
    };
    let failure: Option<crate::Error> = match (source_result, infer_result, post_result) {
        (Err(e), _, _) => Some(e.into()),
        (_, Err(e), _) => Some(e.into()),
        (_, _, Err(e)) => Some(e),
        _ => None,
    };
    let complete = failure.is_none();
    report.video = encoder.map(|e| e.finish(complete)).transpose()?.flatten();
    report.metadata = metadata.map(|m| m.finish(complete)).transpose()?;
    report.elapsed = started.elapsed();
    let Some(cause) = failure else {
        return Ok(report);
    };
    let kept: Vec<String> = report
        .video
        .iter()
        .chain(&report.metadata)
        .map(|p| p.display().to_string())
        .collect();
    if report.frames == 0 || kept.is_empty() {
        return Err(cause);
    }
    Err(PipelineError::Partial {
        source: Box::new(cause),
        frames: report.frames,
        kept: kept.join(" and "),
    }
    .into())
}
