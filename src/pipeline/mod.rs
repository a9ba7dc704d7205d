//! Wiring: builds the stages of a run, spawns them on named threads, joins them and
//! decides what happens to the outputs.
//!
//! ```text
//! [source 0] ─Frame─▶ queue 0 ─┐
//! [source 1] ─Frame─▶ queue 1 ─┼─▶ [batcher] ─Vec<Frame>─▶ [preprocess] ─PreparedBatch─▶ [infer] ─Inferred─▶ [post]
//! [source N] ─Frame─▶ queue N ─┘    round-robin,             one tensor                  one ORT     decode, NMS, overlay,
//!  decode, reconnect     block (file)  size or timeout          per batch                   session     per-stream MP4 / RTSP /
//!                        drop oldest (live)                                                              display, JSONL
//! ```
//!
//! Every queue is a bounded crossbeam channel. A file's queue blocks when full, so a
//! file loses nothing; a live source's queue drops its oldest frame and counts it, so
//! latency never builds up. A stage stops when its input closes and drops its
//! sender, so the end of the inputs drains through every stage in order; a stop
//! request (SIGINT/SIGTERM) ends the sources, and the rest drains the same way. The
//! outputs are then committed under their final names if their stream succeeded;
//! otherwise what was processed is finalised and kept as `*.incomplete.*`.
//!
//! [`run`] has three phases: [`build`] opens every output and queue before the
//! first frame (an unwritable destination fails in milliseconds), [`spawn`] runs
//! the stages until the inputs end or a stop, and [`finish`] decides, per stream,
//! whether its outputs are complete. A stream is complete only when its source
//! ended by end-of-stream or a user stop ([`SourceEnd::is_complete`]) and every
//! later stage processed what it was sent. A stage that fails or panics raises the
//! pipeline's abort flag (a drop guard does it for panics), so the sources stop
//! within a poll interval instead of running on while nothing takes their frames.

pub mod batcher;
mod controller;
mod fault;
mod handoff;
pub mod latency;
pub mod people;
pub mod plan;
mod stages;
mod streams;

pub use crate::frame::{Frame, chroma_size, colour, i420_len};
pub use handoff::{Inferred, PreparedBatch};
pub use plan::{PlanError, RunPlan};
pub use stages::{InferStats, PostOptions};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::control::{Board, Command, SourceOutcome, lock as control_lock};
use crate::infer::Detector;
use crate::sinks::{live_out::RtspOut, metadata::MetadataWriter};
use crate::telemetry::{Metrics, MetricsServer};

/// Errors of the wiring itself, and failures that leave partial outputs behind.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Fault(#[from] fault::InjectedFault),
    #[error("internal error: the {stage} stage panicked: {message}")]
    Panicked { stage: String, message: String },
    #[error("{source}; the {frames} frames processed before that are kept in {kept}")]
    Partial {
        source: Box<crate::Error>,
        frames: u64,
        kept: String,
    },
}

/// What one counting line of one stream counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineSummary {
    pub name: String,
    /// The two direction names and their counts.
    pub counts: [(String, u64); 2],
}

/// What one zone of one stream saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneSummary {
    pub name: String,
    pub entered: u64,
    pub left: u64,
    /// Tracks inside at the end.
    pub inside: usize,
    /// Mean dwell of the tracks that left, in seconds.
    pub mean_dwell_s: Option<f64>,
}

/// What one stream did.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub id: u32,
    /// The input, credentials hidden.
    pub name: String,
    /// Frames decoded and queued.
    pub received: u64,
    /// Frames that went through inference to the outputs.
    pub processed: u64,
    /// Frames dropped because the pipeline was behind (live sources only).
    pub dropped: u64,
    pub reconnects: u64,
    pub video: Option<PathBuf>,
    /// Why the stream failed, if it did.
    pub error: Option<String>,
    /// Capture-to-metadata latency percentiles in ms (live sources).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Tracks confirmed (ids given) in this stream.
    pub tracks: u64,
    pub lines: Vec<LineSummary>,
    pub zones: Vec<ZoneSummary>,
}

/// The counts of a stream's lines and zones at the end of a run.
fn people_summary(p: &people::StreamPeople) -> (u64, Vec<LineSummary>, Vec<ZoneSummary>) {
    let lines = p
        .analytics
        .lines
        .iter()
        .map(|l| LineSummary {
            name: l.rule.common.name.clone(),
            counts: [0, 1].map(|d| (l.rule.directions[d].clone(), l.total(d))),
        })
        .collect();
    let zones = p
        .analytics
        .zones
        .iter()
        .map(|z| ZoneSummary {
            name: z.rule.common.name.clone(),
            entered: z.entered,
            left: z.left,
            inside: z.inside(),
            mean_dwell_s: (z.left > 0).then(|| z.dwell_total_s / z.left as f64),
        })
        .collect();
    (p.tracks_confirmed(), lines, zones)
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub streams: Vec<StreamReport>,
    /// Frames processed over all streams.
    pub frames: u64,
    /// From the stages starting to the outputs being final.
    pub elapsed: Duration,
    /// Inference batches, by size, and time in the detector.
    pub infer: InferStats,
    pub metadata: Option<PathBuf>,
    /// The RTSP output's URLs, per stream.
    pub rtsp_urls: Vec<String>,
    /// What the MQTT sink delivered, if there was one.
    pub mqtt: Option<crate::sinks::mqtt::MqttReport>,
    /// What the NATS JetStream sink delivered, if there was one (workers).
    pub nats: Option<crate::sinks::nats::NatsReport>,
    /// What `--harvest` saved, if it was on.
    pub harvest: Option<crate::sinks::harvest::HarvestReport>,
}

impl RunReport {
    /// Frames per second over the whole run.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Raises the abort flag when the thread it lives on unwinds from a panic, so the
/// sources stop instead of feeding a pipeline that lost a stage.
struct AbortOnPanic<'a>(&'a AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Waits for a stage thread; a thread that could not start or that panicked is a
/// pipeline error.
fn join<T>(
    handle: std::io::Result<std::thread::ScopedJoinHandle<'_, T>>,
    stage: &str,
) -> Result<T, crate::Error> {
    let panicked = |message: String| PipelineError::Panicked {
        stage: stage.to_string(),
        message,
    };
    match handle {
        Ok(h) => h.join().map_err(|p| panicked(panic_message(&*p)).into()),
        Err(e) => Err(panicked(format!("cannot start its thread: {e}")).into()),
    }
}

/// Everything the stages need before the first frame.
struct Built {
    metadata: Option<MetadataWriter>,
    rtsp_out: Option<RtspOut>,
    metrics: Arc<Metrics>,
    _metrics_server: Option<MetricsServer>,
    mqtt: Option<crate::sinks::mqtt::MqttSink>,
    nats: Option<crate::sinks::nats::NatsSink>,
    harvest: Option<crate::sinks::harvest::Harvester>,
    run_id: Arc<str>,
    /// The inputs' streams, opened; their sources start with the stages.
    opened: Vec<streams::Opened>,
    /// The post stage's streams (what it closed is reported from here).
    post: stages::PostStreams,
    started: Instant,
}

/// How each stage ended.
struct Ended {
    /// Sources that failed, in the order they were reaped.
    sources: Vec<crate::Error>,
    infer: Option<InferStats>,
    /// Failures of the stages after the sources, in pipeline order.
    stages: Vec<crate::Error>,
}

/// Opens the outputs (first: an unwritable destination fails before any
/// decoding), the metrics server, the MQTT sink, the RTSP server and each
/// input's stream.
fn build(plan: &RunPlan, metrics: Arc<Metrics>) -> crate::Result<Built> {
    let metadata = plan
        .metadata
        .as_deref()
        .map(MetadataWriter::create)
        .transpose()?;
    let run_id: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    tracing::info!(run_id = %run_id, streams = plan.sources.len(), "run starting");
    let metrics_server = plan
        .metrics
        .as_deref()
        .map(|bind| MetricsServer::start(bind, metrics.clone()))
        .transpose()?;
    let mqtt = plan
        .mqtt
        .clone()
        .map(|settings| crate::sinks::mqtt::MqttSink::start(settings, metrics.mqtt.clone()))
        .transpose()?;
    let nats = plan
        .nats
        .clone()
        .map(crate::sinks::nats::NatsSink::start)
        .transpose()?;
    let harvest = plan
        .harvest
        .clone()
        .map(|settings| crate::sinks::harvest::Harvester::start(settings, run_id.clone()))
        .transpose()?;
    let rtsp_out = plan
        .rtsp_out
        .as_deref()
        .map(|bind| RtspOut::start(bind, 0).map(|(server, _)| server))
        .transpose()?;
    let shared = streams::RunShared {
        plan,
        run_id: run_id.clone(),
        metrics: &metrics,
        rtsp_out: rtsp_out.as_ref(),
    };
    let opened = plan
        .sources
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let video = plan.videos.get(i).cloned().flatten();
            streams::open(&shared, spec.clone(), video, &plan.rules, false)
        })
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(Built {
        metadata,
        rtsp_out,
        metrics,
        _metrics_server: metrics_server,
        mqtt,
        nats,
        harvest,
        run_id,
        opened,
        post: stages::PostStreams::default(),
        started: Instant::now(),
    })
}

/// How a run is steered while it goes on: the commands of the control API and
/// SIGHUP, and the board they read.
pub struct Steering {
    pub commands: Receiver<Command>,
    pub board: Arc<Board>,
}

impl Steering {
    /// A run nobody steers (its streams are its inputs).
    pub fn none() -> Self {
        Self {
            commands: crossbeam_channel::never(),
            board: Arc::default(),
        }
    }
}

/// The channels between the stages, and between the controller and the stages.
struct Channels {
    batch: (Sender<batcher::Batch>, Receiver<batcher::Batch>),
    prep: (Sender<PreparedBatch>, Receiver<PreparedBatch>),
    inferred: (Sender<handoff::ToPost>, Receiver<handoff::ToPost>),
    recycle: (Sender<Vec<f32>>, Receiver<Vec<f32>>),
    joins: (Sender<batcher::StreamInput>, Receiver<batcher::StreamInput>),
    post_commands: (Sender<stages::PostCommand>, Receiver<stages::PostCommand>),
    closed: (Sender<u32>, Receiver<u32>),
    swaps: (Sender<handoff::ModelSwap>, Receiver<handoff::ModelSwap>),
}

impl Channels {
    fn new(batch: usize) -> Self {
        Self {
            // Rendezvous hand-offs between batcher, preprocess and infer: a batch
            // is only formed when the next stage is ready for it, so under
            // overload live frames wait in their (one-frame, drop-oldest) queues
            // instead of in stale batches. Measured with 5 overloaded RTSP
            // streams: p50 latency 390 ms instead of 630 ms with one-slot
            // channels, at the same throughput.
            batch: bounded(0),
            prep: bounded(0),
            inferred: bounded(2 * batch + 2),
            recycle: bounded(4),
            // The controller's channels: unbounded, so it never waits on a stage
            // (each carries one message per stream added or rule changed).
            joins: unbounded(),
            post_commands: unbounded(),
            closed: unbounded(),
            swaps: bounded(1),
        }
    }
}

/// The model the run starts with, as the inference stage hands it on. Under
/// ByteTrack the detector reports scores down to the tracker's low threshold;
/// only those at or above the run's threshold are reported.
fn first_model(plan: &RunPlan) -> Arc<handoff::ModelInUse> {
    Arc::new(handoff::ModelInUse {
        name: plan.model_name.clone(),
        decode: PostOptions {
            conf: people::StreamPeople::decode_floor(&plan.tracking, plan.post.conf),
            ..plan.post.clone()
        },
    })
}

/// The source failures that fail the run: all of them, except under the control
/// API, where cameras come and go and one that fails is that stream's outcome
/// (its state, its outputs kept as incomplete, the summary).
fn run_failures(plan: &RunPlan, mut failures: Vec<crate::Error>) -> Vec<crate::Error> {
    if plan.steered() {
        for e in failures.drain(..) {
            tracing::warn!(error = %e, "a stream failed; the run went on");
        }
    }
    failures
}

/// Runs the stages on named threads and the controller on this one until the
/// inputs end, the user stops the run, or a stage fails.
fn spawn(
    plan: &RunPlan,
    detector: &mut Detector,
    built: &mut Built,
    stop: &Arc<AtomicBool>,
    steering: Steering,
) -> Ended {
    let c = Channels::new(plan.batch);
    let flags = streams::RunFlags {
        user: stop.clone(),
        abort: Arc::new(AtomicBool::new(false)),
    };
    let abort = flags.abort.clone();
    let Built {
        metadata,
        rtsp_out,
        metrics,
        mqtt,
        nats,
        harvest,
        run_id,
        opened,
        post: post_streams,
        ..
    } = built;
    let shared = streams::RunShared {
        plan,
        run_id: run_id.clone(),
        metrics,
        rtsp_out: rtsp_out.as_ref(),
    };
    let wires = controller::Wires {
        joins: c.joins.0,
        to_post: c.post_commands.0,
        swaps: c.swaps.0,
    };
    let mut control = controller::Controller::new(shared, steering.board, flags, wires);
    control.start_all(std::mem::take(opened));
    let (metrics, model) = (metrics.clone(), first_model(plan));
    std::thread::scope(|s| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.into());
        let guard = || AbortOnPanic(&abort);
        let (size, timeout) = (plan.batch, plan.batch_timeout);
        let (joins, (batch_tx, batch_rx)) = (c.joins.1, c.batch);
        let batcher_thread = spawn("batcher").spawn_scoped(s, move || {
            let _guard = guard();
            batcher::run(Vec::new(), joins, batch_tx, size, timeout)
        });
        let (prep, recycled) = (c.prep, c.recycle);
        let prep_thread = spawn("preprocess").spawn_scoped(s, move || {
            let _guard = guard();
            stages::preprocess(batch_rx, prep.0, recycled.1, &plan.post.input)
        });
        let (inferred_tx, swaps) = (c.inferred.0, c.swaps.1);
        let infer_thread = spawn("infer").spawn_scoped(s, move || {
            let _guard = guard();
            let detector = (!plan.skip_inference).then_some(detector);
            let (rx, recycle) = (prep.1, recycled.0);
            stages::infer(rx, inferred_tx, recycle, (detector, model), swaps, &metrics)
        });
        let mut records = stages::Records::new(metadata.as_mut(), mqtt.as_ref(), nats.as_ref());
        records.harvest = harvest.as_mut();
        let (abort, closed_tx, commands) = (&abort, &c.closed.0, &c.post_commands.1);
        let inferred = c.inferred.1;
        let post_thread = spawn("post").spawn_scoped(s, move || {
            let _guard = AbortOnPanic(abort);
            let result = stages::post(inferred, commands, post_streams, records, closed_tx);
            // Whether it finished or failed, nothing downstream takes frames any
            // more: live sources would otherwise run on. (After a normal end
            // every source has already ended.)
            abort.store(true, Ordering::SeqCst);
            result
        });
        control.run(steering.commands, c.closed.1.clone());
        let mut ended = gather([batcher_thread, prep_thread], infer_thread, post_thread);
        ended.sources = run_failures(plan, std::mem::take(&mut control.failures));
        ended
    })
}

/// A stage thread as spawned.
type Handle<'s, T> = std::io::Result<std::thread::ScopedJoinHandle<'s, T>>;

/// Waits for every stage thread after the sources and sorts out how each ended.
fn gather(
    [batcher, prep]: [Handle<'_, ()>; 2],
    infer: Handle<'_, Result<InferStats, crate::infer::RuntimeError>>,
    post: Handle<'_, crate::Result<()>>,
) -> Ended {
    let mut stages = Vec::new();
    for (handle, name) in [(batcher, "batcher"), (prep, "preprocess")] {
        if let Err(e) = join(handle, name) {
            stages.push(e);
        }
    }
    let infer = match join(infer, "infer").and_then(|r| r.map_err(Into::into)) {
        Ok(stats) => Some(stats),
        Err(e) => {
            stages.push(e);
            None
        }
    };
    if let Err(e) = join(post, "post").and_then(|r| r) {
        stages.push(e);
    }
    Ended {
        sources: Vec::new(),
        infer,
        stages,
    }
}

/// The report of a stream whose outputs are final.
fn stream_report(
    id: u32,
    out: &stages::StreamOutputs,
    video: Option<PathBuf>,
    outcome: Option<SourceOutcome>,
) -> StreamReport {
    let (tracks, lines, zones) = people_summary(&out.people);
    StreamReport {
        id,
        name: out.name.clone(),
        received: out.metrics.received.get(),
        processed: out.frames,
        dropped: out.metrics.dropped.get(),
        reconnects: out.metrics.reconnects.get(),
        video,
        error: match outcome {
            Some(SourceOutcome::Failed(e)) => Some(e),
            _ => None,
        },
        latency_p50_ms: out.latency.percentile_ms(50.0),
        latency_p99_ms: out.latency.percentile_ms(99.0),
        tracks,
        lines,
        zones,
    }
}

/// Finalises every output: complete under its final name where the stream
/// succeeded, `*.incomplete.*` where it did not; and reports.
fn finish(built: Built, ended: Ended) -> crate::Result<RunReport> {
    let Built {
        metadata,
        rtsp_out,
        mqtt,
        nats,
        harvest,
        post,
        started,
        ..
    } = built;
    let mut failures = ended.stages;
    failures.extend(ended.sources);
    let mut report = RunReport {
        infer: ended.infer.unwrap_or_default(),
        ..RunReport::default()
    };
    report.streams = post.closed;
    // Streams the post stage never closed (it failed): what they processed is
    // kept as incomplete.
    for (id, mut out) in post.open {
        let video = stages::finish_video(&mut out, false)?;
        let outcome = control_lock(&out.outcome).clone();
        report.streams.push(stream_report(id, &out, video, outcome));
    }
    report.streams.sort_by_key(|s| s.id);
    report.frames = report.streams.iter().map(|s| s.processed).sum();
    if let Some(sink) = mqtt {
        match sink.finish() {
            Ok(r) => report.mqtt = Some(r),
            Err(e) => failures.push(e.into()),
        }
    }
    if let Some(sink) = nats {
        match sink.finish() {
            Ok(r) => report.nats = Some(r),
            Err(e) => failures.push(e.into()),
        }
    }
    report.harvest = harvest.map(crate::sinks::harvest::Harvester::finish);
    let all_ok = failures.is_empty();
    // A failed run that processed nothing leaves no files behind at all.
    report.metadata = match metadata {
        Some(m) if all_ok || report.frames > 0 => Some(m.finish(all_ok)?),
        _ => None,
    };
    report.rtsp_urls = rtsp_out
        .as_ref()
        .map(|r| report.streams.iter().map(|s| r.url(s.id)).collect())
        .unwrap_or_default();
    drop(rtsp_out);
    report.elapsed = started.elapsed();
    if all_ok {
        return Ok(report);
    }
    Err(failure(&report, failures))
}

/// The error of a failed run: its first cause, and what was kept.
fn failure(report: &RunReport, mut failures: Vec<crate::Error>) -> crate::Error {
    for s in &report.streams {
        tracing::info!(stream = s.id, input = %s.name, processed = s.processed, dropped = s.dropped, "stream summary");
    }
    let cause = failures.remove(0);
    let kept: Vec<String> = report
        .streams
        .iter()
        .filter_map(|s| s.video.as_ref())
        .chain(&report.metadata)
        .map(|p| p.display().to_string())
        .collect();
    if report.frames == 0 || kept.is_empty() {
        return cause;
    }
    PipelineError::Partial {
        source: Box::new(cause),
        frames: report.frames,
        kept: kept.join(" and "),
    }
    .into()
}

/// Runs the whole pipeline with an already-loaded detector until every source
/// ends (or, with the control API, until stopped), or `stop` is raised (the
/// sources stop; everything queued still drains and every output is
/// finalised). `steering` carries the commands that change the run as it goes.
pub fn run(
    plan: &RunPlan,
    detector: &mut Detector,
    stop: &Arc<AtomicBool>,
    steering: Steering,
) -> crate::Result<RunReport> {
    run_with_metrics(
        plan,
        detector,
        stop,
        steering,
        Arc::new(Metrics::new(&plan.model_name)),
    )
}

/// [`run`], with a metrics registry the caller also serves (the control API's
/// `/metrics`).
pub fn run_with_metrics(
    plan: &RunPlan,
    detector: &mut Detector,
    stop: &Arc<AtomicBool>,
    steering: Steering,
    metrics: Arc<Metrics>,
) -> crate::Result<RunReport> {
    let mut built = build(plan, metrics)?;
    let ended = spawn(plan, detector, &mut built, stop, steering);
    finish(built, ended)
}
