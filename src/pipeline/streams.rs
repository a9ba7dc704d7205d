//! One stream's life in a run, the same for the run's inputs and for streams
//! added while it runs: [`open`] makes what must exist before its first frame
//! (its staged MP4, tracker, RTSP mount, window, queue and metric series; an
//! unwritable destination fails here, before any decoding), and [`start`] runs
//! its source on its own thread.
//!
//! The source's thread records how the source ended on the stream's outcome
//! slot *before* it drops the queue: the batcher sees the queue close only after
//! the outcome is there, so the post stage, finalising the stream behind its last
//! frame, always knows whether its outputs are complete.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::Receiver;

use super::people::StreamPeople;
use super::stages::StreamOutputs;
use super::{AbortOnPanic, RunPlan};
use crate::analytics::Rules;
use crate::control::{SourceOutcome, StreamEntry, lock};
use crate::frame::Frame;
use crate::sinks::live_out::{Display, RtspOut};
use crate::sinks::staging::StagedFile;
use crate::sources::{SourceEnd, SourceError, SourceSpec, StopFlags, StreamQueue, run_source};
use crate::telemetry::Metrics;

/// What every stream of a run shares.
pub(super) struct RunShared<'a> {
    pub plan: &'a RunPlan,
    pub run_id: Arc<str>,
    pub metrics: &'a Metrics,
    pub rtsp_out: Option<&'a RtspOut>,
}

/// A stream whose outputs and queue exist, before its source runs.
pub(super) struct Opened {
    pub spec: SourceSpec,
    pub outputs: StreamOutputs,
    pub queue: StreamQueue,
    pub rx: Receiver<Frame>,
    pub video: Option<PathBuf>,
}

impl Opened {
    /// What the control board shows of it.
    pub fn entry(&self) -> StreamEntry {
        StreamEntry {
            name: self.outputs.name.clone(),
            metrics: self.outputs.metrics.clone(),
            outcome: self.outputs.outcome.clone(),
            latency: self.outputs.recent_latency.shared(),
        }
    }
}

/// Opens stream `spec`'s outputs and queue. `added`: the stream joins a running
/// pipeline (its rules then never stop the run).
pub(super) fn open(
    run: &RunShared<'_>,
    spec: SourceSpec,
    video: Option<PathBuf>,
    rules: &Rules,
    added: bool,
) -> crate::Result<Opened> {
    let plan = run.plan;
    let staged = video.as_deref().map(StagedFile::create).transpose()?;
    let mut people = StreamPeople::new(
        spec.id,
        &plan.tracking,
        plan.post.conf,
        rules,
        &plan.post.labels,
    );
    if added {
        people.analytics.make_lenient();
    }
    let name = spec.name();
    let mut outputs = StreamOutputs::new(name.clone(), staged, people, run.run_id.clone());
    outputs.metrics = run.metrics.stream(spec.id, &name);
    let capacity = if spec.is_live() { 1 } else { plan.batch.max(4) };
    let (queue, rx) = StreamQueue::new(capacity, spec.is_live(), outputs.metrics.clone());
    outputs.rtsp = run.rtsp_out.map(|r| r.outlet(spec.id));
    if plan.display {
        outputs.display = Some(Display::open()?);
    }
    Ok(Opened {
        spec,
        outputs,
        queue,
        rx,
        video,
    })
}

/// Records a failed outcome when the source's thread unwinds from a panic, so
/// the stream shows `failed` rather than `connecting` for ever.
struct FailedOnPanic<'a>(&'a std::sync::Mutex<Option<SourceOutcome>>);

impl Drop for FailedOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).get_or_insert(SourceOutcome::Failed("the source panicked".into()));
        }
    }
}

/// The run-wide flags a source watches, shared with its thread.
#[derive(Clone)]
pub(super) struct RunFlags {
    pub user: Arc<AtomicBool>,
    pub abort: Arc<AtomicBool>,
}

/// A source running on its thread.
pub(super) struct Running {
    pub thread: std::thread::JoinHandle<Result<SourceEnd, SourceError>>,
    /// Raised to stop this one stream.
    pub removed: Arc<AtomicBool>,
}

/// Runs `spec` on a thread named after its stream, feeding `queue`.
pub(super) fn start(
    plan: &RunPlan,
    spec: SourceSpec,
    mut queue: StreamQueue,
    outcome: Arc<std::sync::Mutex<Option<SourceOutcome>>>,
    flags: RunFlags,
) -> std::io::Result<Running> {
    let removed = Arc::new(AtomicBool::new(false));
    let stream_flag = removed.clone();
    let (rtsp, reconnect) = (plan.rtsp.clone(), plan.reconnect.clone());
    let thread = std::thread::Builder::new()
        .name(format!("source-{}", spec.id))
        .spawn(move || {
            let _guard = AbortOnPanic(&flags.abort);
            let _outcome = FailedOnPanic(&outcome);
            let stop = StopFlags {
                user: &flags.user,
                removed: &stream_flag,
                abort: &flags.abort,
            };
            let result = super::fault::inject("source", spec.id.into())
                .map_err(|e| SourceError::Gstreamer(e.to_string()))
                .and_then(|()| run_source(&spec, &rtsp, &reconnect, &mut queue, stop));
            *lock(&outcome) = Some(match &result {
                Ok(end) if end.is_complete() => SourceOutcome::Complete,
                Ok(_) => SourceOutcome::Aborted,
                Err(e) => SourceOutcome::Failed(e.to_string()),
            });
            drop(queue);
            result
        })?;
    Ok(Running { thread, removed })
}
