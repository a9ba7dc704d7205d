//! The stage bodies that run on the pipeline's threads: preprocess (a whole batch
//! into one tensor), infer, and post (decode, NMS, overlay, per-stream outputs,
//! metadata). Each takes its input channel and ends when that closes; dropping its
//! sender then ends the next one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, select};
use ndarray::ArrayView4;

use super::batcher::Batch;
use super::handoff::{ModelInUse, ModelSwap, ToPost};
use super::people::{FrameAnalysis, StreamPeople};
use super::{Frame, Inferred, PreparedBatch, StreamReport};
use crate::analytics::{Event, EventKind, MessageId};
use crate::config::InputSpec;
use crate::control::{SourceOutcome, lock};
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
        let (direct, mirrored) = (inferred.views(), inferred.mirrored_views());
        crate::model::detect(
            &self.layout,
            crate::model::FrameTensors {
                direct: &direct,
                mirrored: &mirrored,
            },
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
    rx: Receiver<Batch>,
    tx: Sender<PreparedBatch>,
    recycled: Receiver<Vec<f32>>,
    spec: &InputSpec,
) {
    let mut by_size: HashMap<(u32, u32), Preprocessor> = HashMap::new();
    let per_frame = 3 * spec.width as usize * spec.height as usize;
    for Batch { frames, ended } in rx {
        let mut tensor = recycled.try_recv().unwrap_or_default();
        tensor.resize(frames.len() * per_frame, 0.0);
        for (frame, out) in frames.iter().zip(tensor.chunks_exact_mut(per_frame)) {
            by_size
                .entry((frame.width, frame.height))
                .or_insert_with(|| Preprocessor::new(frame.width, frame.height, spec))
                .run(frame, out);
        }
        let batch = PreparedBatch {
            frames,
            tensor,
            ended,
        };
        if tx.send(batch).is_err() {
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

/// The detectors of the inference stage: the one the run started with, and the
/// one switched in since, if any (it wins).
struct Detectors<'a> {
    first: Option<&'a mut Detector>,
    swapped: Option<Detector>,
}

impl Detectors<'_> {
    fn live(&mut self) -> Option<&mut Detector> {
        match &mut self.swapped {
            Some(d) => Some(d),
            None => self.first.as_deref_mut(),
        }
    }
}

/// Runs the detector on each batch (no detector: every frame passes with no
/// detections, for `bench`). Spent tensors go back to the preprocessor
/// through `recycle`. A model sent on `swaps` replaces the live one between two
/// batches: each frame is processed by exactly one model, and says which.
pub fn infer(
    rx: Receiver<PreparedBatch>,
    tx: Sender<ToPost>,
    recycle: Sender<Vec<f32>>,
    (detector, mut model): (Option<&mut Detector>, Arc<ModelInUse>),
    swaps: Receiver<ModelSwap>,
    metrics: &Metrics,
) -> Result<InferStats, RuntimeError> {
    let mut stats = InferStats::default();
    let mut detectors = Detectors {
        first: detector,
        swapped: None,
    };
    let mut swaps = swaps;
    loop {
        let batch = select! {
            recv(rx) -> batch => match batch {
                Ok(batch) => batch,
                Err(_) => return Ok(stats),
            },
            recv(swaps) -> swap => {
                match swap {
                    Ok(swap) => {
                        let old = detectors.swapped.replace(swap.detector);
                        tracing::info!(from = %model.name, to = %swap.model.name, after_batches = stats.batches, "model switched in");
                        model = swap.model;
                        let _ = swap.done.send(old);
                    }
                    Err(_) => swaps = crossbeam_channel::never(),
                }
                continue;
            }
        };
        let PreparedBatch {
            frames,
            tensor,
            ended,
        } = batch;
        let outputs = run_batch(&mut detectors, &frames, &tensor, &mut stats, metrics)?;
        let _ = recycle.try_send(tensor);
        for (frame, outputs) in frames.into_iter().zip(outputs) {
            let inferred = Inferred {
                frame,
                outputs,
                model: model.clone(),
            };
            if tx.send(ToPost::Frame(inferred)).is_err() {
                return Ok(stats);
            }
        }
        for id in ended {
            if tx.send(ToPost::Ended(id)).is_err() {
                return Ok(stats);
            }
        }
    }
}

/// One batch through the live detector, counted.
fn run_batch(
    detectors: &mut Detectors<'_>,
    frames: &[Frame],
    tensor: &[f32],
    stats: &mut InferStats,
    metrics: &Metrics,
) -> Result<Vec<FrameOutputs>, RuntimeError> {
    if frames.is_empty() {
        return Ok(Vec::new());
    }
    super::fault::inject("infer", stats.batches).map_err(|e| RuntimeError::Run(e.to_string()))?;
    let started = Instant::now();
    let outputs = match detectors.live() {
        Some(detector) => {
            let (w, h) = detector.layout().input_size;
            let shape = (frames.len(), 3, h as usize, w as usize);
            let view = ArrayView4::from_shape(shape, tensor)
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
    Ok(outputs)
}

/// One stream's outputs, owned by the post stage.
pub struct StreamOutputs {
    /// The input, credentials hidden.
    pub name: String,
    /// The fleet camera it is (workers): names its JetStream subjects.
    pub camera: Option<Arc<str>>,
    /// How the stream's source ended; set by its thread before its queue closes.
    pub outcome: Arc<std::sync::Mutex<Option<SourceOutcome>>>,
    /// The model of the stream's last frame (its labels name the events).
    pub model: Option<Arc<ModelInUse>>,
    /// Where the MP4 goes, until the first frame tells its size.
    pub staged: Option<StagedFile>,
    pub encoder: Option<Mp4Encoder>,
    pub rtsp: Option<RtspOutlet>,
    pub display: Option<Display>,
    /// Frames finished (metadata written, drawn, sent on).
    pub frames: u64,
    /// For live sources: capture-to-metadata latency percentiles, over the run
    /// and over the last window.
    pub latency: super::latency::LatencyHistogram,
    pub recent_latency: super::latency::RecentLatency,
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
        name: String,
        staged: Option<StagedFile>,
        people: StreamPeople,
        run_id: std::sync::Arc<str>,
    ) -> Self {
        Self {
            name,
            camera: None,
            outcome: Arc::default(),
            model: None,
            run_id,
            next_seq: 0,
            staged,
            encoder: None,
            rtsp: None,
            display: None,
            frames: 0,
            latency: Default::default(),
            recent_latency: super::latency::RecentLatency::new(Arc::default()),
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

/// What the post stage is told besides frames.
pub enum PostCommand {
    /// A new stream's outputs, sent before its first frame can arrive.
    Open(u32, Box<StreamOutputs>),
    /// The run's lines and zones changed.
    Rules(crate::analytics::Rules),
}

/// The post stage's streams: the open ones by id, and the reports of those
/// whose outputs are final.
#[derive(Default)]
pub struct PostStreams {
    pub open: BTreeMap<u32, StreamOutputs>,
    pub closed: Vec<StreamReport>,
}

impl PostStreams {
    fn apply(&mut self, commands: &Receiver<PostCommand>) {
        for command in commands.try_iter() {
            match command {
                PostCommand::Open(id, outputs) => {
                    self.open.insert(id, *outputs);
                }
                PostCommand::Rules(rules) => {
                    for (id, out) in &mut self.open {
                        out.people.analytics.update_rules(&rules.for_stream(*id));
                    }
                }
            }
        }
    }
}

/// Where frame records go.
#[derive(Default)]
pub struct Records<'a> {
    pub metadata: Option<&'a mut MetadataWriter>,
    pub mqtt: Option<&'a crate::sinks::mqtt::MqttSink>,
    pub nats: Option<&'a crate::sinks::nats::NatsSink>,
    /// Hard frames for retraining.
    pub harvest: Option<&'a mut crate::sinks::harvest::Harvester>,
}

impl<'a> Records<'a> {
    pub fn new(
        metadata: Option<&'a mut MetadataWriter>,
        mqtt: Option<&'a crate::sinks::mqtt::MqttSink>,
        nats: Option<&'a crate::sinks::nats::NatsSink>,
    ) -> Self {
        Self {
            metadata,
            mqtt,
            nats,
            harvest: None,
        }
    }
}

/// Decodes, records, draws and sends on each frame, in arrival order; frames go
/// to their own stream's outputs. A stream's end marker finalises its outputs
/// (complete when its source ended well) and is reported on `closed`. Logs a
/// one-line summary per stream every few seconds (never per frame).
pub fn post(
    rx: Receiver<ToPost>,
    commands: &Receiver<PostCommand>,
    streams: &mut PostStreams,
    mut records: Records<'_>,
    closed: &Sender<u32>,
) -> crate::Result<()> {
    let mut overlay: Option<(Arc<ModelInUse>, Overlay)> = None;
    let mut pace = Pace::new();
    for item in rx {
        streams.apply(commands);
        match item {
            ToPost::Ended(id) => {
                if let Some(harvest) = records.harvest.as_deref_mut() {
                    harvest.close_stream(id);
                }
                close(id, streams, records.metadata.as_deref_mut())?;
                let _ = closed.send(id);
            }
            ToPost::Frame(inferred) => {
                let Some(out) = streams.open.get_mut(&inferred.frame.stream_id) else {
                    continue;
                };
                one_frame(inferred, out, &mut records, &mut overlay)?;
            }
        }
        pace.tick(&mut streams.open);
    }
    Ok(())
}

/// One frame of an open stream: detections, tracks and events, its record, its
/// counters, and its annotated picture where the stream shows one.
fn one_frame(
    Inferred {
        mut frame,
        outputs,
        model,
    }: Inferred,
    out: &mut StreamOutputs,
    records: &mut Records<'_>,
    overlay: &mut Option<(Arc<ModelInUse>, Overlay)>,
) -> crate::Result<()> {
    let detections = model.decode.detections(&frame, &outputs);
    super::fault::inject("post", out.frames).map_err(super::PipelineError::from)?;
    if !out.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, &model)) {
        out.people.analytics.set_labels(&model.decode.labels);
        out.model = Some(model.clone());
    }
    let mut analysis = out.people.step(&frame, detections)?;
    if records.metadata.is_some() || records.mqtt.is_some() || records.nats.is_some() {
        record(out, &frame, &mut analysis, &model, records)?;
    }
    observe(out, &frame, &analysis);
    if let Some(harvest) = records.harvest.as_deref_mut() {
        let seen = crate::sinks::harvest::select::Seen {
            detections: analysis.detections.clone(),
            track_ids: analysis.track_ids.clone(),
        };
        harvest.frame(&frame, seen, &model.decode.labels);
    }
    if out.draws() {
        if !overlay
            .as_ref()
            .is_some_and(|(m, _)| Arc::ptr_eq(m, &model))
        {
            *overlay = Some((model.clone(), Overlay::new(&model.decode.labels)));
        }
        if let Some((_, overlay)) = overlay.as_ref() {
            let scene = out.people.scene();
            overlay.draw_scene(
                &mut I420Canvas::new(&mut frame),
                &analysis.detections,
                &analysis.track_ids,
                &scene,
            );
        }
        show(out, frame)?;
    }
    Ok(())
}

/// Finalises a stream whose every frame is written: its MP4 under its final
/// name when its source ended well, its metadata lines on disk.
fn close(
    id: u32,
    streams: &mut PostStreams,
    metadata: Option<&mut MetadataWriter>,
) -> crate::Result<()> {
    let Some(mut out) = streams.open.remove(&id) else {
        return Ok(());
    };
    let outcome = lock(&out.outcome).clone();
    let complete = matches!(outcome, Some(SourceOutcome::Complete));
    let video = finish_video(&mut out, complete)?;
    if let Some(m) = metadata {
        m.flush()?;
    }
    streams
        .closed
        .push(super::stream_report(id, &out, video, outcome));
    Ok(())
}

/// Gives the frame's record and events their message ids, then writes and sends
/// them.
fn record(
    out: &mut StreamOutputs,
    frame: &Frame,
    analysis: &mut FrameAnalysis,
    model: &ModelInUse,
    records: &mut Records<'_>,
) -> crate::Result<()> {
    let record_id = out.next_id();
    for e in &mut analysis.events {
        e.id = Some(out.next_id());
    }
    let mut record = FrameRecord::new(
        frame,
        &analysis.detections,
        &analysis.track_ids,
        &model.decode.labels,
        &analysis.events,
    );
    record.id = Some(record_id);
    record.model = Some(&model.name);
    publish(&record, &analysis.events, records)?;
    if let (Some(sink), Some(camera)) = (records.nats, out.camera.as_deref()) {
        to_nats(sink, camera, &record, &analysis.events);
    }
    Ok(())
}

/// Sends a frame's record and events to JetStream under the stream's camera id,
/// each with its message id (`run_id.stream.seq`) for de-duplication.
fn to_nats(
    sink: &crate::sinks::nats::NatsSink,
    camera: &str,
    record: &FrameRecord<'_>,
    events: &[Event],
) {
    use crate::sinks::nats::Kind;
    let id = |m: &Option<crate::analytics::event::MessageId>| {
        m.as_ref().map_or_else(String::new, |m| {
            format!("{}.{}.{}", m.run_id, record.stream_id, m.seq)
        })
    };
    sink.send(camera, id(&record.id), Kind::Meta, record.to_json());
    for e in events {
        sink.send(camera, id(&e.id), Kind::Event, e.to_json());
    }
}

/// The stream's counters, gauges and latency for one processed frame.
fn observe(out: &mut StreamOutputs, frame: &Frame, analysis: &FrameAnalysis) {
    count_events(&out.metrics, &analysis.events);
    out.metrics.tracks_live.set(out.people.tracks_live() as i64);
    if let Some(captured) = frame.captured_unix_ns {
        let ms = now_unix_ns().saturating_sub(captured) as f64 / 1e6;
        out.latency.record_ms(ms);
        out.recent_latency.record_ms(ms);
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

    fn tick(&mut self, streams: &mut BTreeMap<u32, StreamOutputs>) {
        self.progress.update(streams);
        if self.last_rate.elapsed() >= Duration::from_secs(1) {
            let secs = self.last_rate.elapsed().as_secs_f64();
            self.last_rate = Instant::now();
            for s in streams.values_mut() {
                s.metrics
                    .fps
                    .set((s.frames - s.frames_at_last_rate) as f64 / secs);
                s.frames_at_last_rate = s.frames;
            }
        }
        if !self.progress.visible() && self.last_log.elapsed() >= Duration::from_secs(10) {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            for (id, s) in streams.iter() {
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
    records: &mut Records<'_>,
) -> crate::Result<()> {
    let json = record.to_json();
    if let Some(m) = records.metadata.as_deref_mut() {
        m.write_line(&json)?;
    }
    if let Some(sink) = records.mqtt {
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

    fn update(&self, streams: &BTreeMap<u32, StreamOutputs>) {
        let Some(bar) = &self.bar else { return };
        // The total is known only when every stream is a file that declares it.
        let expected: Option<u64> = streams
            .values()
            .map(|s| {
                u64::try_from(s.metrics.frames_expected.get())
                    .ok()
                    .filter(|n| *n > 0)
            })
            .sum();
        let done: u64 = streams.values().map(|s| s.frames).sum();
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
