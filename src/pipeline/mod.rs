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
mod fault;
mod handoff;
pub mod latency;
pub mod people;
pub mod plan;
mod stages;

pub use crate::frame::{Frame, chroma_size, colour, i420_len};
pub use handoff::{Inferred, PreparedBatch};
pub use plan::{PlanError, RunPlan};
pub use stages::{InferStats, PostOptions};

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::infer::Detector;
use crate::sinks::{
    live_out::{Display, RtspOut},
    metadata::MetadataWriter,
    staging::StagedFile,
};
use crate::sources::{SourceEnd, StopFlags, StreamQueue, run_source};
use crate::telemetry::{Metrics, MetricsServer, StreamMetrics};

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

/// Everything the stages need before the first frame: the outputs, the servers,
/// the queues.
struct Built {
    metadata: Option<MetadataWriter>,
    streams: Vec<stages::StreamOutputs>,
    rtsp_out: Option<RtspOut>,
    metrics: Arc<Metrics>,
    _metrics_server: Option<MetricsServer>,
    mqtt: Option<crate::sinks::mqtt::MqttSink>,
    /// Per stream: its metric handles (the report reads its counters).
    counters: Vec<StreamMetrics>,
    queues: Vec<StreamQueue>,
    receivers: Vec<Receiver<Frame>>,
    started: Instant,
}

/// How each stage ended.
struct Ended {
    /// Per source, in stream order.
    sources: Vec<Result<SourceEnd, crate::Error>>,
    infer: Option<InferStats>,
    /// Failures of the stages after the sources, in pipeline order.
    stages: Vec<crate::Error>,
}

/// Each stream's outputs before its first frame: its staged MP4, its tracker, its
/// RTSP outlet and window; and the RTSP server that serves the outlets.
fn open_stream_outputs(
    plan: &RunPlan,
    run_id: &Arc<str>,
) -> crate::Result<(Vec<stages::StreamOutputs>, Option<RtspOut>)> {
    let mut streams = Vec::new();
    for i in 0..plan.sources.len() {
        let staged = plan
            .videos
            .get(i)
            .cloned()
            .flatten()
            .as_deref()
            .map(StagedFile::create)
            .transpose()?;
        let people = people::StreamPeople::new(
            i as u32,
            &plan.tracking,
            plan.post.conf,
            &plan.rules,
            &plan.post.labels,
        );
        streams.push(stages::StreamOutputs::new(staged, people, run_id.clone()));
    }
    let rtsp_out = match &plan.rtsp_out {
        Some(bind) => {
            let (server, outlets) = RtspOut::start(bind, plan.sources.len() as u32)?;
            for (s, outlet) in streams.iter_mut().zip(outlets) {
                s.rtsp = Some(outlet);
            }
            Some(server)
        }
        None => None,
    };
    if plan.display {
        for s in &mut streams {
            s.display = Some(Display::open()?);
        }
    }
    Ok((streams, rtsp_out))
}

/// Opens the outputs (first: an unwritable destination fails before any
/// decoding), the metrics server, the MQTT sink and the per-stream queues.
fn build(plan: &RunPlan) -> crate::Result<Built> {
    let metadata = plan
        .metadata
        .as_deref()
        .map(MetadataWriter::create)
        .transpose()?;
    let run_id: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    tracing::info!(run_id = %run_id, streams = plan.sources.len(), "run starting");
    let (mut streams, rtsp_out) = open_stream_outputs(plan, &run_id)?;
    let metrics = Arc::new(Metrics::new(&plan.model_name));
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
    let (mut counters, mut queues, mut receivers) = (Vec::new(), Vec::new(), Vec::new());
    for (spec, out) in plan.sources.iter().zip(streams.iter_mut()) {
        let handles = metrics.stream(spec.id, &spec.name());
        out.metrics = handles.clone();
        let capacity = if spec.is_live() { 1 } else { plan.batch.max(4) };
        let (queue, rx) = StreamQueue::new(capacity, spec.is_live(), handles.clone());
        counters.push(handles);
        queues.push(queue);
        receivers.push(rx);
    }
    Ok(Built {
        metadata,
        streams,
        rtsp_out,
        metrics,
        _metrics_server: metrics_server,
        mqtt,
        counters,
        queues,
        receivers,
        started: Instant::now(),
    })
}

/// Runs the stages on named threads (the post stage on this one) until the
/// inputs end, the user stops the run, or a stage fails.
fn spawn(plan: &RunPlan, detector: &mut Detector, built: &mut Built, stop: &AtomicBool) -> Ended {
    // Rendezvous hand-offs between batcher, preprocess and infer: a batch is only
    // formed when the next stage is ready for it, so under overload live frames
    // wait in their (one-frame, drop-oldest) queues instead of in stale batches.
    // Measured with 5 overloaded RTSP streams: p50 latency 390 ms instead of 630 ms
    // with one-slot channels, at the same throughput.
    let (batch_tx, batch_rx) = bounded::<Vec<Frame>>(0);
    let (prep_tx, prep_rx) = bounded::<PreparedBatch>(0);
    let (inf_tx, inf_rx) = bounded::<Inferred>(2 * plan.batch + 2);
    let (recycle_tx, recycle_rx) = bounded::<Vec<f32>>(4);
    let abort = AtomicBool::new(false);
    let flags = StopFlags {
        user: stop,
        abort: &abort,
    };
    let spec_in = &plan.post.input;
    // Under ByteTrack the detector reports scores down to the tracker's low
    // threshold; only those at or above the run's threshold are reported.
    let decode = PostOptions {
        conf: people::StreamPeople::decode_floor(&plan.tracking, plan.post.conf),
        ..plan.post.clone()
    };
    let queues = std::mem::take(&mut built.queues);
    let receivers = std::mem::take(&mut built.receivers);
    let metrics = built.metrics.clone();
    std::thread::scope(|s| {
        let spawn = |name: String| std::thread::Builder::new().name(name);
        let guard = || AbortOnPanic(&abort);
        let source_threads: Vec<_> = plan
            .sources
            .iter()
            .zip(queues)
            .map(|(spec, queue)| {
                spawn(format!("source-{}", spec.id)).spawn_scoped(s, move || {
                    let _guard = guard();
                    fault::inject("source", spec.id.into())
                        .map_err(|e| crate::sources::SourceError::Gstreamer(e.to_string()))?;
                    run_source(spec, &plan.rtsp, &plan.reconnect, queue, flags)
                })
            })
            .collect();
        let (size, timeout) = (plan.batch, plan.batch_timeout);
        let batcher_thread = spawn("batcher".into()).spawn_scoped(s, move || {
            let _guard = guard();
            batcher::run(receivers, batch_tx, size, timeout)
        });
        let prep_thread = spawn("preprocess".into()).spawn_scoped(s, move || {
            let _guard = guard();
            stages::preprocess(batch_rx, prep_tx, recycle_rx, spec_in)
        });
        let infer_thread = spawn("infer".into()).spawn_scoped(s, move || {
            let _guard = guard();
            let detector = (!plan.skip_inference).then_some(detector);
            stages::infer(prep_rx, inf_tx, recycle_tx, detector, &metrics)
        });
        let post = std::panic::catch_unwind(AssertUnwindSafe(|| {
            stages::post(
                inf_rx,
                &decode,
                &mut built.streams,
                built.metadata.as_mut(),
                built.mqtt.as_ref(),
            )
        }));
        // Whether it finished or failed, nothing downstream takes frames any more:
        // live sources would otherwise run on. (After a normal end every source
        // has already ended.)
        abort.store(true, Ordering::SeqCst);
        gather(
            source_threads,
            [batcher_thread, prep_thread],
            infer_thread,
            post,
        )
    })
}

/// A stage thread as spawned.
type Handle<'s, T> = std::io::Result<std::thread::ScopedJoinHandle<'s, T>>;

/// Waits for every stage thread and sorts out how each ended (the post stage ran
/// on the caller's thread; `post` is its result or its panic).
fn gather(
    sources: Vec<Handle<'_, Result<SourceEnd, crate::sources::SourceError>>>,
    [batcher, prep]: [Handle<'_, ()>; 2],
    infer: Handle<'_, Result<InferStats, crate::infer::RuntimeError>>,
    post: std::thread::Result<crate::Result<()>>,
) -> Ended {
    let sources = sources
        .into_iter()
        .map(|h| join(h, "source").and_then(|r| r.map_err(Into::into)))
        .collect();
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
    let post = post.unwrap_or_else(|p| {
        Err(PipelineError::Panicked {
            stage: "post".into(),
            message: panic_message(&*p),
        }
        .into())
    });
    if let Err(e) = post {
        stages.push(e);
    }
    Ended {
        sources,
        infer,
        stages,
    }
}

/// Finalises every output: complete under its final name where the stream
/// succeeded, `*.incomplete.*` where it did not; and reports.
fn finish(plan: &RunPlan, built: Built, ended: Ended) -> crate::Result<RunReport> {
    let Built {
        metadata,
        mut streams,
        rtsp_out,
        mqtt,
        counters,
        started,
        ..
    } = built;
    let stages_ok = ended.stages.is_empty();
    let mut failures = ended.stages;
    let mut report = RunReport {
        infer: ended.infer.unwrap_or_default(),
        ..RunReport::default()
    };
    for (i, ((spec, out), source)) in plan
        .sources
        .iter()
        .zip(streams.iter_mut())
        .zip(ended.sources)
        .enumerate()
    {
        let complete = stages_ok && matches!(source, Ok(end) if end.is_complete());
        if let Err(e) = source {
            failures.push(e);
        }
        let video = stages::finish_video(out, complete)?;
        let (tracks, lines, zones) = people_summary(&out.people);
        report.streams.push(StreamReport {
            id: spec.id,
            name: spec.name(),
            received: counters[i].received.get(),
            processed: out.frames,
            dropped: counters[i].dropped.get(),
            reconnects: counters[i].reconnects.get(),
            video,
            error: None,
            latency_p50_ms: out.latency.percentile_ms(50.0),
            latency_p99_ms: out.latency.percentile_ms(99.0),
            tracks,
            lines,
            zones,
        });
    }
    report.frames = report.streams.iter().map(|s| s.processed).sum();
    if let Some(sink) = mqtt {
        match sink.finish() {
            Ok(r) => report.mqtt = Some(r),
            Err(e) => failures.push(e.into()),
        }
    }
    let all_ok = failures.is_empty();
    // A failed run that processed nothing leaves no files behind at all.
    report.metadata = match metadata {
        Some(m) if all_ok || report.frames > 0 => Some(m.finish(all_ok)?),
        _ => None,
    };
    report.rtsp_urls = rtsp_out
        .as_ref()
        .map(|r| (0..plan.sources.len() as u32).map(|i| r.url(i)).collect())
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
/// ends, or `stop` is raised (the sources stop; everything queued still drains
/// and every output is finalised).
pub fn run(
    plan: &RunPlan,
    detector: &mut Detector,
    stop: &Arc<AtomicBool>,
) -> crate::Result<RunReport> {
    let mut built = build(plan)?;
    let ended = spawn(plan, detector, &mut built, stop);
    finish(plan, built, ended)
}
