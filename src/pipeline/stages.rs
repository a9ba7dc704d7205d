//! The stage bodies that run on the pipeline's threads: preprocess (a whole batch
//! into one tensor), infer, and post (decode, NMS, overlay, per-stream outputs,
//! metadata). Each takes its input channel and ends when that closes; dropping its
//! sender then ends the next one.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use ndarray::ArrayView4;

use super::people::{FrameAnalysis, StreamPeople};
use super::{Frame, Inferred, PreparedBatch};
use crate::analytics::{Event, EventKind, MessageId};
use crate::config::InputSpec;
use crate::infer::{Detector, FrameOutputs, RuntimeError, preprocess::Preprocessor};
use crate::model::{Detection, classes::ClassFilter, nanodet};
use crate::sinks::{
    SinkError,
    encoder::Mp4Encoder,
    live_out::{Display, RtspOutlet},
    metadata::{FrameRecord, MetadataWriter},
    overlay::{I420Canvas, Overlay},
    staging::StagedFile,
};
use crate::telemetry::{LineLabels, Metrics, StreamMetrics, ZoneLabels};

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
    /// Most detections kept per frame, best first.
    pub max_detections: usize,
}

impl PostOptions {
    /// Detections of one frame, in source pixels, best first.
    pub fn detections(
        &self,
        frame: &Frame,
        inferred: &crate::infer::FrameOutputs,
    ) -> Vec<Detection> {
        let levels = inferred.levels(&self.layout.strides);
        crate::model::detect(
            &self.layout,
            &levels,
            self.conf,
            &self.classes,
            (self.iou, self.max_detections),
            (frame.width, frame.height),
        )
    }
}

/// Batches of frames to one input tensor each. Keeps a resize table per frame
/// size (streams may differ). Tensors come back from the inference stage through
/// `recycled`, so the steady state allocates (and page-faults) nothing.
pub fn preprocess(
    rx: Receiver<Vec<Frame>>,
    tx: Sender<PreparedBatch>,
    recycled: Receiver<Vec<f32>>,
    spec: &InputSpec,
) {
    let mut by_size: HashMap<(u32, u32), Preprocessor> = HashMap::new();
    let per_frame = 3 * spec.width as usize * spec.height as usize;
    for frames in rx {
        let mut tensor = recycled.try_recv().unwrap_or_default();
        tensor.resize(frames.len() * per_frame, 0.0);
        for (frame, out) in frames.iter().zip(tensor.chunks_exact_mut(per_frame)) {
            by_size
                .entry((frame.width, frame.height))
                .or_insert_with(|| Preprocessor::new(frame.width, frame.height, spec))
                .run(frame, out);
        }
        if tx.send(PreparedBatch { frames, tensor }).is_err() {
            return;
        }
    }
}

/// What the inference stage did.
#[derive(Debug, Clone, Default)]
pub struct InferStats {
    pub batches: u64,
    /// `sizes[n]` = how many batches held `n` frames.
    pub sizes: Vec<u64>,
    /// How many batches held frames of more than one stream.
    pub mixed: u64,
}

/// Runs the detector on each batch (no detector: every frame passes with no
/// detections, for `bench`). Spent tensors go back to the preprocessor
/// through `recycle`.
pub fn infer(
    rx: Receiver<PreparedBatch>,
    tx: Sender<Inferred>,
    recycle: Sender<Vec<f32>>,
    mut detector: Option<&mut Detector>,
    metrics: &Metrics,
) -> Result<InferStats, RuntimeError> {
    let mut stats = InferStats::default();
    for PreparedBatch { frames, tensor } in rx {
        super::fault::inject("infer", stats.batches)
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let started = Instant::now();
        let outputs = match detector.as_deref_mut() {
            Some(detector) => {
                let (w, h) = detector.layout().input_size;
                let shape = (frames.len(), 3, h as usize, w as usize);
                let view = ArrayView4::from_shape(shape, &tensor)
                    .map_err(|e| RuntimeError::Run(format!("batch tensor: {e}")))?;
                detector.run(view)?
            }
            // The zero-cost detector of `bench`: no detections, no time.
            None => vec![FrameOutputs::default(); frames.len()],
        };
        let took = started.elapsed();
        metrics.inference_seconds.observe(took.as_secs_f64());
        metrics.batch_size.observe(frames.len() as f64);
        stats.batches += 1;
        if stats.sizes.len() <= frames.len() {
            stats.sizes.resize(frames.len() + 1, 0);
        }
        stats.sizes[frames.len()] += 1;
        if frames.iter().any(|f| f.stream_id != frames[0].stream_id) {
            stats.mixed += 1;
        }
        let _ = recycle.try_send(tensor);
        for (frame, outputs) in frames.into_iter().zip(outputs) {
            if tx.send(Inferred { frame, outputs }).is_err() {
                return Ok(stats);
            }
        }
    }
    Ok(stats)
}

/// One stream's outputs, owned by the post stage.
pub struct StreamOutputs {
    /// Where the MP4 goes, until the first frame tells its size.
    pub staged: Option<StagedFile>,
    pub encoder: Option<Mp4Encoder>,
    pub rtsp: Option<RtspOutlet>,
    pub display: Option<Display>,
    /// Frames finished (metadata written, drawn, sent on).
    pub frames: u64,
    /// For live sources: capture-to-metadata latency percentiles.
    pub latency: super::latency::LatencyHistogram,
    /// The stream's metric handles.
    pub metrics: StreamMetrics,
    /// Frames processed at the last fps update.
    pub frames_at_last_rate: u64,
    /// The run's id, and the next message number of this stream.
    pub run_id: std::sync::Arc<str>,
    pub next_seq: u64,
    /// The stream's tracker, lines and zones.
    pub people: StreamPeople,
}

impl StreamOutputs {
    /// A stream's outputs before its first frame: its MP4 (if any) and its tracker.
    pub fn new(
        staged: Option<StagedFile>,
        people: StreamPeople,
        run_id: std::sync::Arc<str>,
    ) -> Self {
        Self {
            run_id,
            next_seq: 0,
            staged,
            encoder: None,
            rtsp: None,
            display: None,
            frames: 0,
            latency: Default::default(),
            metrics: StreamMetrics::default(),
            frames_at_last_rate: 0,
            people,
        }
    }

    /// The id of this stream's next message.
    fn next_id(&mut self) -> MessageId {
        self.next_seq += 1;
        MessageId {
            run_id: self.run_id.clone(),
            seq: self.next_seq - 1,
        }
    }

    fn draws(&self) -> bool {
        self.staged.is_some()
            || self.encoder.is_some()
            || self.rtsp.is_some()
            || self.display.is_some()
    }
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Decodes, records, draws and sends on each frame, in arrival order; frames go
/// to their own stream's outputs. Logs a one-line summary per stream every few
/// seconds (never per frame).
pub fn post(
    rx: Receiver<Inferred>,
    options: &PostOptions,
    streams: &mut [StreamOutputs],
    mut metadata: Option<&mut MetadataWriter>,
    mqtt: Option<&crate::sinks::mqtt::MqttSink>,
) -> crate::Result<()> {
    let overlay = streams
        .iter()
        .any(StreamOutputs::draws)
        .then(|| Overlay::new(&options.labels));
    let mut pace = Pace::new();
    for Inferred { mut frame, outputs } in rx {
        let detections = options.detections(&frame, &outputs);
        let Some(out) = streams.get_mut(frame.stream_id as usize) else {
            continue;
        };
        super::fault::inject("post", out.frames).map_err(super::PipelineError::from)?;
        let mut analysis = out.people.step(&frame, detections)?;
        if metadata.is_some() || mqtt.is_some() {
            record(
                out,
                &frame,
                &mut analysis,
                &options.labels,
                metadata.as_deref_mut(),
                mqtt,
            )?;
        }
        observe(out, &frame, &analysis);
        if let Some(overlay) = &overlay
            && out.draws()
        {
            let scene = out.people.scene();
            overlay.draw_scene(
                &mut I420Canvas::new(&mut frame),
                &analysis.detections,
                &analysis.track_ids,
                &scene,
            );
            show(out, frame)?;
        }
        pace.tick(streams);
    }
    Ok(())
}

/// Gives the frame's record and events their message ids, then writes and sends
/// them.
fn record(
    out: &mut StreamOutputs,
    frame: &Frame,
    analysis: &mut FrameAnalysis,
    labels: &[String],
    metadata: Option<&mut MetadataWriter>,
    mqtt: Option<&crate::sinks::mqtt::MqttSink>,
) -> crate::Result<()> {
    let record_id = out.next_id();
    for e in &mut analysis.events {
        e.id = Some(out.next_id());
    }
    let mut record = FrameRecord::new(
        frame,
        &analysis.detections,
        &analysis.track_ids,
        labels,
        &analysis.events,
    );
    record.id = Some(record_id);
    publish(&record, &analysis.events, metadata, mqtt)
}

/// The stream's counters, gauges and latency for one processed frame.
fn observe(out: &mut StreamOutputs, frame: &Frame, analysis: &FrameAnalysis) {
    count_events(&out.metrics, &analysis.events);
    out.metrics.tracks_live.set(out.people.tracks_live() as i64);
    if let Some(captured) = frame.captured_unix_ns {
        let ms = now_unix_ns().saturating_sub(captured) as f64 / 1e6;
        out.latency.record_ms(ms);
        out.metrics.latency.observe(ms / 1e3);
    }
    out.frames += 1;
    out.metrics.processed.inc();
}

/// The post stage's clock for what it reports over time: the progress bar, each
/// stream's fps gauge every second, a progress log line every 10 s when there is
/// no bar.
struct Pace {
    started: Instant,
    last_log: Instant,
    last_rate: Instant,
    progress: Progress,
}

impl Pace {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last_log: now,
            last_rate: now,
            progress: Progress::new(),
        }
    }

    fn tick(&mut self, streams: &mut [StreamOutputs]) {
        self.progress.update(streams);
        if self.last_rate.elapsed() >= Duration::from_secs(1) {
            let secs = self.last_rate.elapsed().as_secs_f64();
            self.last_rate = Instant::now();
            for s in streams.iter_mut() {
                s.metrics
                    .fps
                    .set((s.frames - s.frames_at_last_rate) as f64 / secs);
                s.frames_at_last_rate = s.frames;
            }
        }
        if !self.progress.visible() && self.last_log.elapsed() >= Duration::from_secs(10) {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            for (id, s) in streams.iter().enumerate() {
                tracing::info!(stream = id, frames = s.frames, fps = %format!("{:.1}", s.frames as f64 / secs), "progress");
            }
        }
    }
}

/// Writes a frame's record to the metadata file and sends it, and each of its
/// events, to the MQTT sink.
fn publish(
    record: &FrameRecord<'_>,
    events: &[Event],
    metadata: Option<&mut MetadataWriter>,
    mqtt: Option<&crate::sinks::mqtt::MqttSink>,
) -> crate::Result<()> {
    let json = record.to_json();
    if let Some(m) = metadata {
        m.write_line(&json)?;
    }
    if let Some(sink) = mqtt {
        sink.send(record.stream_id, json);
        for event in events {
            sink.send_event(record.stream_id, event.to_json());
        }
    }
    Ok(())
}

/// Hands an annotated frame to the stream's RTSP re-stream, window and MP4 (the
/// encoder starts on the first frame, which tells the size).
fn show(out: &mut StreamOutputs, frame: Frame) -> crate::Result<()> {
    if let Some(rtsp) = &out.rtsp {
        rtsp.push(&frame);
    }
    if let Some(display) = &mut out.display {
        display.push(&frame);
    }
    if out.encoder.is_none()
        && let Some(staged) = out.staged.take()
    {
        out.encoder = Some(Mp4Encoder::create(
            staged,
            frame.width,
            frame.height,
            frame.fps,
            frame.colour,
        )?);
    }
    if let Some(encoder) = &mut out.encoder {
        encoder.push(frame)?;
    }
    Ok(())
}

/// Moves the line-crossing counters, zone occupancy gauges and dwell histograms
/// for one frame's events (a handful at most; nothing happens without events).
fn count_events(metrics: &StreamMetrics, events: &[Event]) {
    let stream = &metrics.stream_label;
    let zone_labels = |zone: &str, class: &str| ZoneLabels {
        stream: stream.clone(),
        zone: zone.to_string(),
        class: class.to_string(),
    };
    for e in events {
        match &e.kind {
            EventKind::LineCrossed {
                line,
                direction,
                class,
                ..
            } => {
                metrics
                    .people
                    .line_crossings
                    .get_or_create(&LineLabels {
                        stream: stream.clone(),
                        line: line.clone(),
                        direction: direction.clone(),
                        class: class.clone(),
                    })
                    .inc();
            }
            EventKind::ZoneEntered { zone, class, .. } => {
                metrics
                    .people
                    .zone_occupancy
                    .get_or_create(&zone_labels(zone, class))
                    .inc();
            }
            EventKind::ZoneLeft {
                zone,
                class,
                dwell_s,
                ..
            } => {
                let labels = zone_labels(zone, class);
                metrics.people.zone_occupancy.get_or_create(&labels).dec();
                metrics
                    .people
                    .zone_dwell
                    .get_or_create(&labels)
                    .observe(*dwell_s);
            }
        }
    }
}

/// A progress bar on a terminal: frames, fps and ETA when every input is a file of
/// known length, frames and fps otherwise. Absent when stderr is not a terminal
/// (then the periodic log lines say the same).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// Whether the bar shows a known total (style is set only when this changes).
    with_total: std::cell::Cell<Option<bool>>,
}

const BAR: &str = "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}";
const SPINNER: &str = "{spinner} [{elapsed_precise}] {pos} frames {per_sec}";

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| indicatif::ProgressBar::new(0));
        Self {
            bar,
            with_total: std::cell::Cell::new(None),
        }
    }

    fn visible(&self) -> bool {
        self.bar.is_some()
    }

    fn update(&self, streams: &[StreamOutputs]) {
        let Some(bar) = &self.bar else { return };
        // The total is known only when every stream is a file that declares it.
        let expected: Option<u64> = streams
            .iter()
            .map(|s| {
                u64::try_from(s.metrics.frames_expected.get())
                    .ok()
                    .filter(|n| *n > 0)
            })
            .sum();
        let done: u64 = streams.iter().map(|s| s.frames).sum();
        if self.with_total.get() != Some(expected.is_some()) {
            self.with_total.set(Some(expected.is_some()));
            let template = if expected.is_some() { BAR } else { SPINNER };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
        }
        bar.set_length(expected.unwrap_or(done).max(done));
        bar.set_position(done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Closes a stream's encoder: its file gets its final name when `complete`.
pub fn finish_video(
    out: &mut StreamOutputs,
    complete: bool,
) -> Result<Option<std::path::PathBuf>, SinkError> {
    out.staged = None;
    out.encoder
        .take()
        .map(|e| e.finish(complete))
        .transpose()
        .map(Option::flatten)
}
