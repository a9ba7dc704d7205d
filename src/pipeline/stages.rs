//! The stage bodies that run on the pipeline's threads: preprocess, infer (with
//! batching) and post (decode, NMS, overlay, encode, metadata). Each takes its input
//! channel and ends when that closes; dropping its sender then ends the next one.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ndarray::ArrayView4;

use super::{Frame, Inferred, Prepared};
use crate::config::InputSpec;
use crate::infer::{Detector, RuntimeError, preprocess::Preprocessor};
use crate::model::{Detection, classes::ClassFilter, geometry::InputToSource, nanodet, nms::nms};
use crate::sinks::{
    encoder::Mp4Encoder,
    metadata::{FrameRecord, MetadataWriter},
    overlay::{I420Canvas, Overlay},
};

/// How outputs become detections, and how they are shown.
#[derive(Debug, Clone)]
pub struct PostOptions {
    /// The network input (size, normalisation).
    pub input: InputSpec,
    /// The output layout.
    pub layout: nanodet::Layout,
    /// Class labels, in class-id order.
    pub labels: Vec<String>,
    /// Classes to keep.
    pub classes: ClassFilter,
    /// Minimum class score.
    pub conf: f32,
    /// IoU above which NMS suppresses a box of the same class.
    pub iou: f32,
}

impl PostOptions {
    /// Detections of one frame, in source pixels, best first.
    pub fn detections(
        &self,
        frame: &Frame,
        inferred: &crate::infer::FrameOutputs,
    ) -> Vec<Detection> {
        let levels = inferred.levels(&self.layout.strides);
        let candidates = nanodet::decode(&self.layout, &levels, self.conf, &self.classes);
        let mut dets = nms(candidates, self.iou);
        let (nw, nh) = self.layout.input_size;
        let map = InputToSource::new(frame.width, frame.height, nw, nh);
        for d in &mut dets {
            d.bbox = map.map(&d.bbox);
        }
        dets
    }
}

/// Frames to network inputs. Rebuilds its resize tables only if the size changes.
/// Input buffers come back from the inference stage through `recycled`, so the
/// steady state allocates (and page-faults) nothing.
pub fn preprocess(
    rx: Receiver<Frame>,
    tx: Sender<Prepared>,
    recycled: Receiver<Vec<f32>>,
    spec: &InputSpec,
) {
    let mut pre: Option<Preprocessor> = None;
    for frame in rx {
        if pre
            .as_ref()
            .is_none_or(|p| p.source_size() != (frame.width, frame.height))
        {
            pre = Some(Preprocessor::new(frame.width, frame.height, spec));
        }
        let Some(p) = pre.as_mut() else { return };
        let mut input = recycled.try_recv().unwrap_or_default();
        input.resize(p.input_len(), 0.0);
        p.run(&frame, &mut input);
        if tx.send(Prepared { frame, input }).is_err() {
            return;
        }
    }
}

/// What the inference stage did.
#[derive(Debug, Clone, Default)]
pub struct InferStats {
    pub batches: u64,
    pub frames: u64,
    /// Time inside the detector.
    pub busy: Duration,
}

/// Groups inputs into batches of up to `batch` frames (waiting for a full batch:
/// files never drop) and runs the detector on each. Spent input buffers go back to
/// the preprocessor through `recycle`.
pub fn infer(
    rx: Receiver<Prepared>,
    tx: Sender<Inferred>,
    recycle: Sender<Vec<f32>>,
    detector: &mut Detector,
    batch: usize,
) -> Result<InferStats, RuntimeError> {
    let mut stats = InferStats::default();
    let (w, h) = detector.layout().input_size;
    let mut tensor: Vec<f32> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        while items.len() < batch {
            match rx.recv() {
                Ok(p) => items.push(p),
                Err(_) => break,
            }
        }
        let shape = (items.len(), 3, h as usize, w as usize);
        let data: &[f32] = if let [single] = items.as_slice() {
            &single.input
        } else {
            tensor.clear();
            for item in &items {
                tensor.extend_from_slice(&item.input);
            }
            &tensor
        };
        let view = ArrayView4::from_shape(shape, data)
            .map_err(|e| RuntimeError::Run(format!("batch tensor: {e}")))?;
        let started = Instant::now();
        let outputs = detector.run(view)?;
        stats.busy += started.elapsed();
        stats.batches += 1;
        stats.frames += items.len() as u64;
        for (item, outputs) in items.into_iter().zip(outputs) {
            let _ = recycle.try_send(item.input);
            if tx
                .send(Inferred {
                    frame: item.frame,
                    outputs,
                })
                .is_err()
            {
                return Ok(stats);
            }
        }
    }
    Ok(stats)
}

/// Decodes, draws, encodes and records each frame, in order; returns how many
/// frames it finished. Logs a one-line
/// progress summary every few seconds (never per frame).
pub fn post(
    rx: Receiver<Inferred>,
    options: &PostOptions,
    mut encoder: Option<&mut Mp4Encoder>,
    mut metadata: Option<&mut MetadataWriter>,
) -> crate::Result<u64> {
    let overlay = encoder.is_some().then(|| Overlay::new(&options.labels));
    let started = Instant::now();
    let mut last_log = started;
    let mut frames = 0u64;
    for Inferred { mut frame, outputs } in rx {
        let stream = frame.stream_id;
        let dets = options.detections(&frame, &outputs);
        if let Some(m) = metadata.as_deref_mut() {
            m.write(&FrameRecord::new(&frame, &dets, &options.labels))?;
        }
        if let (Some(enc), Some(overlay)) = (encoder.as_deref_mut(), &overlay) {
            overlay.draw(&mut I420Canvas::new(&mut frame), &dets);
            enc.push(frame)?;
        }
        frames += 1;
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            let fps = frames as f64 / started.elapsed().as_secs_f64();
            tracing::info!(stream, frames, fps = %format!("{fps:.1}"), "progress");
        }
    }
    Ok(frames)
}
