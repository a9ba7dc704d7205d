//! The bench's workload: the input's frames decoded and preprocessed into memory
//! beforehand, in batches, for the inference-only passes.

use std::time::{Duration, Instant};

use ndarray::ArrayView4;
use pedvision::infer::{Detector, preprocess::Preprocessor};
use pedvision::pipeline::Frame;
use pedvision::sources::SourceSpec;

use crate::cli::common::LoadedModel;

/// The frames of the input, decoded and preprocessed beforehand, in batches.
pub struct Workload {
    pub frames: usize,
    pub size: (u32, u32),
    pub batch: usize,
    pub batches: Vec<Vec<f32>>,
    /// Floats of one frame's network input, and the input's height and width.
    input_len: usize,
    input_hw: (usize, usize),
    pub decode_time: Duration,
    pub prep_time: Duration,
}

impl Workload {
    pub fn prepare(input: &str, model: &LoadedModel, batch: usize) -> anyhow::Result<Self> {
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

    pub fn per_frame_ms(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.frames as f64
    }

    /// A batch as the detector's input tensor.
    pub fn view<'a>(&self, b: &'a [f32]) -> anyhow::Result<ArrayView4<'a, f32>> {
        let shape = (
            b.len() / self.input_len,
            3,
            self.input_hw.0,
            self.input_hw.1,
        );
        Ok(ArrayView4::from_shape(shape, b)?)
    }

    /// One pass of inference alone over every batch, in frames per second.
    pub fn inference_only_fps(&self, detector: &mut Detector) -> anyhow::Result<f64> {
        let started = Instant::now();
        for b in &self.batches {
            detector.run(self.view(b)?)?;
        }
        Ok(self.frames as f64 / started.elapsed().as_secs_f64().max(1e-9))
    }
}

/// Frames decoded and preprocessed into memory for the inference-only passes
/// (512×384 float tensors are 2.4 MB a frame): a long input is measured end to end
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
