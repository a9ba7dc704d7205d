//! The controller: the one place where a running pipeline's set of streams, its
//! lines and zones and its model change. It runs on the thread that called
//! [`super::run`] while the stages run on theirs.
//!
//! - It answers [`Command`]s from the control API and SIGHUP: a new stream is
//!   opened ([`streams::open`]), handed to the post stage, then to the batcher,
//!   then its source starts; a removed stream's source is stopped and the answer
//!   waits until the post stage has finalised its outputs (it reports each
//!   stream it closes on `closed`).
//! - A model is loaded on a thread of its own beside the live one and handed to
//!   the inference stage, which switches between two batches.
//! - It reaps source threads, keeping their errors for the run's result.
//! - It decides when the run is over: when stopped (SIGINT, SIGTERM,
//!   `--duration`), when a stage failed, or, without the API, when every stream's
//!   outputs are final. Dropping the batcher's door then drains the stages.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select};

use super::batcher::StreamInput;
use super::handoff::{ModelInUse, ModelSwap};
use super::stages::{PostCommand, PostOptions};
use super::streams::{self, Opened, RunFlags, RunShared};
use super::{PipelineError, plan::expand};
use crate::analytics::Rules;
use crate::config::Manifest;
use crate::config::rules::{LineConfig, ZoneConfig};
use crate::control::{
    Board, Command, ControlError, ModelStatus, Reply, RuleEdit, RuleSet, StreamRequest, lock,
};
use crate::infer::Detector;
use crate::model::classes::ClassFilter;
use crate::sources::{SourceEnd, SourceError, SourceSpec};
use crate::track::TrackerKind;

/// A stream whose outputs are not final yet.
struct OpenStream {
    thread: Option<std::thread::JoinHandle<Result<SourceEnd, SourceError>>>,
    removed: Arc<AtomicBool>,
}

/// The channels the controller drives the stages through.
pub(super) struct Wires {
    pub joins: Sender<StreamInput>,
    pub to_post: Sender<PostCommand>,
    pub swaps: Sender<ModelSwap>,
}

pub(super) struct Controller<'a> {
    run: RunShared<'a>,
    board: Arc<Board>,
    flags: RunFlags,
    joins: Option<Sender<StreamInput>>,
    to_post: Sender<PostCommand>,
    swaps: Sender<ModelSwap>,
    open: BTreeMap<u32, OpenStream>,
    /// DELETE requests waiting for their stream's outputs to be final.
    pending: HashMap<u32, Vec<Reply<()>>>,
    next_id: u32,
    rules: RuleSet,
    /// The live model's labels (rules are checked against them).
    labels: Arc<Mutex<Vec<String>>>,
    /// Every video output of the run so far: a later stream never overwrites one.
    written: std::collections::HashSet<PathBuf>,
    /// Raised while a model loads (one switch at a time).
    loading: Arc<AtomicBool>,
    /// Sources that failed, and threads that could not start.
    pub failures: Vec<crate::Error>,
}

impl<'a> Controller<'a> {
    /// A controller of the run `run`, which starts with the plan's model.
    pub fn new(run: RunShared<'a>, board: Arc<Board>, flags: RunFlags, wires: Wires) -> Self {
        let plan = run.plan;
        board.set_model(ModelStatus {
            name: plan.model_name.clone(),
            path: plan.model_path.clone(),
            swaps: 0,
        });
        Self {
            board,
            flags,
            joins: Some(wires.joins),
            to_post: wires.to_post,
            swaps: wires.swaps,
            open: BTreeMap::new(),
            pending: HashMap::new(),
            next_id: plan.sources.len() as u32,
            rules: plan.rule_configs.clone(),
            labels: Arc::new(Mutex::new(plan.post.labels.clone())),
            loading: Arc::new(AtomicBool::new(false)),
            written: Default::default(),
            failures: Vec::new(),
            run,
        }
    }

    /// Starts the run's inputs; a failure is kept in `failures`.
    pub fn start_all(&mut self, opened: Vec<Opened>) {
        for stream in opened {
            let _ = self.start(stream);
        }
    }

    /// Hands an opened stream to the post stage and the batcher, then starts its
    /// source.
    pub fn start(&mut self, opened: Opened) -> Result<(), ControlError> {
        let entry = opened.entry();
        let board_entry = entry.clone();
        let Opened {
            spec,
            outputs,
            queue,
            rx,
            video,
        } = opened;
        let id = spec.id;
        self.written.extend(video.clone());
        self.to_post
            .send(PostCommand::Open(id, Box::new(outputs)))
            .map_err(|_| ControlError::Stopping)?;
        let joins = self.joins.as_ref().ok_or(ControlError::Stopping)?;
        joins.send((id, rx)).map_err(|_| ControlError::Stopping)?;
        let running = streams::start(
            self.run.plan,
            spec,
            queue,
            entry.outcome.clone(),
            self.flags.clone(),
        );
        self.board.insert(id, board_entry);
        match running {
            Ok(r) => {
                self.open.insert(
                    id,
                    OpenStream {
                        thread: Some(r.thread),
                        removed: r.removed,
                    },
                );
                Ok(())
            }
            // Its queue was dropped with the closure: the batcher closes the
            // stream, and the post stage finalises it as incomplete.
            Err(e) => {
                let message = format!("cannot start the source thread: {e}");
                *lock(&entry.outcome) =
                    Some(crate::control::SourceOutcome::Failed(message.clone()));
                self.open.insert(
                    id,
                    OpenStream {
                        thread: None,
                        removed: Arc::default(),
                    },
                );
                self.failures.push(
                    PipelineError::Panicked {
                        stage: "source".into(),
                        message: message.clone(),
                    }
                    .into(),
                );
                Err(ControlError::Internal(message))
            }
        }
    }

    /// Answers commands until the run is over; then closes the batcher's door and
    /// waits for every source thread.
    pub fn run(&mut self, commands: Receiver<Command>, closed: Receiver<u32>) {
        let mut commands = commands;
        loop {
            select! {
                recv(commands) -> c => match c {
                    Ok(c) => self.handle(c),
                    Err(_) => commands = crossbeam_channel::never(),
                },
                recv(closed) -> id => if let Ok(id) = id {
                    self.finalised(id);
                },
                default(Duration::from_millis(50)) => {}
            }
            self.reap(false);
            let stopped = self.flags.user.load(Ordering::SeqCst);
            if stopped || self.flags.abort.load(Ordering::SeqCst) {
                break;
            }
            if !self.run.plan.steered() && self.open.is_empty() {
                break;
            }
        }
        self.joins = None;
        self.reap(true);
    }

    /// Joins the source threads that ended (all of them when `all`).
    fn reap(&mut self, all: bool) {
        let mut failures = Vec::new();
        for stream in self.open.values_mut() {
            if let Some(thread) = stream.thread.take_if(|t| all || t.is_finished()) {
                failures.extend(joined(thread));
            }
        }
        self.failures.extend(failures);
    }

    /// The post stage finalised stream `id`'s outputs. Its source thread has
    /// returned (its queue closed), so joining it takes no time.
    fn finalised(&mut self, id: u32) {
        if let Some(thread) = self.open.remove(&id).and_then(|s| s.thread) {
            self.failures.extend(joined(thread));
        }
        if let Some(replies) = self.pending.remove(&id) {
            self.forget(id);
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Takes a removed stream off the board, the metrics and the rules.
    fn forget(&mut self, id: u32) {
        if let Some(entry) = self.board.remove(id) {
            self.run.metrics.forget_stream(id, &entry.name);
        }
        if let Some(rtsp) = self.run.rtsp_out {
            rtsp.remove(id);
        }
        let before = self.rules.clone();
        self.rules.lines.retain(|l| l.stream != Some(id));
        self.rules.zones.retain(|z| z.stream != Some(id));
        if self.rules != before
            && let Ok(rules) = self.check_rules(&self.rules)
        {
            let _ = self.to_post.send(PostCommand::Rules(rules));
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::AddStream(request, reply) => {
                let _ = reply.send(self.add(request));
            }
            Command::RemoveStream(id, reply) => self.remove(id, reply),
            Command::SwapModel(path, reply) => self.swap(path, reply),
            Command::EditRules(edit, reply) => {
                let _ = reply.send(self.edit_rules(edit));
            }
            Command::Rules(reply) => {
                let _ = reply.send(Ok(self.rules.clone()));
            }
        }
    }

    fn remove(&mut self, id: u32, reply: Reply<()>) {
        if let Some(stream) = self.open.get(&id) {
            stream.removed.store(true, Ordering::SeqCst);
            self.pending.entry(id).or_default().push(reply);
            tracing::info!(stream = id, "stream removed; finalising its outputs");
        } else if self.board.entry(id).is_some() {
            // Ended before: its outputs are already final.
            self.forget(id);
            let _ = reply.send(Ok(()));
        } else {
            let _ = reply.send(Err(ControlError::NoStream(id)));
        }
    }

    /// Opens and starts a stream asked for while the run goes on.
    fn add(&mut self, request: StreamRequest) -> Result<u32, ControlError> {
        let plan = self.run.plan;
        if self.open.len() >= plan.max_streams {
            return Err(ControlError::Conflict(format!(
                "the run already has {} streams open, its limit (--max-streams)",
                self.open.len()
            )));
        }
        let id = self.next_id;
        let spec = SourceSpec::parse(id, &request.input)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let video = self.video_of(&request, &spec)?;
        let mut rules = self.rules.clone();
        rules.lines.extend(request.lines.iter().map(|l| LineConfig {
            stream: Some(id),
            ..l.clone()
        }));
        rules.zones.extend(request.zones.iter().map(|z| ZoneConfig {
            stream: Some(id),
            ..z.clone()
        }));
        let checked = self.check_rules_for(&rules, id + 1)?;
        let mut opened = streams::open(&self.run, spec, video, &checked, true)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        opened.outputs.camera = request.camera.as_deref().map(Arc::from);
        self.next_id += 1;
        let name = opened.outputs.name.clone();
        self.start(opened)?;
        self.rules = rules;
        tracing::info!(stream = id, input = %name, "stream added");
        Ok(id)
    }

    /// The MP4 a new stream writes: its own, or the run's pattern, or none; never
    /// one another open stream writes, nor the metadata file.
    fn video_of(
        &self,
        request: &StreamRequest,
        spec: &SourceSpec,
    ) -> Result<Option<PathBuf>, ControlError> {
        let plan = self.run.plan;
        let pattern = match (&request.output, request.no_video) {
            (Some(_), true) => {
                return Err(ControlError::Invalid(
                    "output and no_video exclude each other".into(),
                ));
            }
            (None, true) => None,
            (Some(p), false) => Some(p.as_str()),
            (None, false) => plan.video_pattern.as_deref(),
        };
        let Some(video) = pattern.map(|p| expand(p, spec)) else {
            return Ok(None);
        };
        if video
            .extension()
            .is_none_or(|e| !e.eq_ignore_ascii_case("mp4"))
        {
            return Err(ControlError::Invalid(format!(
                "output {}: must name an .mp4 file",
                video.display()
            )));
        }
        if plan.metadata.as_deref() == Some(video.as_path()) {
            return Err(ControlError::Conflict(format!(
                "output {} is the run's metadata file",
                video.display()
            )));
        }
        if self.written.contains(&video) {
            return Err(ControlError::Conflict(format!(
                "output {} is written by another stream of this run",
                video.display()
            )));
        }
        if std::path::Path::new(spec.input()) == video {
            return Err(ControlError::Invalid(format!(
                "output {} is the stream's own input",
                video.display()
            )));
        }
        Ok(Some(video))
    }

    /// The rules as given, checked against the streams so far and the live model.
    fn check_rules(&self, rules: &RuleSet) -> Result<Rules, ControlError> {
        self.check_rules_for(rules, self.next_id)
    }

    fn check_rules_for(&self, rules: &RuleSet, streams: u32) -> Result<Rules, ControlError> {
        let plan = self.run.plan;
        let given = !rules.lines.is_empty() || !rules.zones.is_empty();
        if given && plan.tracking.kind == TrackerKind::None {
            return Err(ControlError::Invalid(
                "lines and zones count tracks: the run has no tracker (--tracker none)".into(),
            ));
        }
        let labels = lock(&self.labels).clone();
        Rules::validate(
            &rules.lines,
            &rules.zones,
            streams,
            &labels,
            &plan.post.classes,
        )
        .map_err(|e| ControlError::Invalid(e.to_string()))
    }

    fn edit_rules(&mut self, edit: RuleEdit) -> Result<(), ControlError> {
        let mut rules = self.rules.clone();
        match edit {
            RuleEdit::AddLine(line) => {
                if rules.lines.iter().any(|l| l.name == line.name) {
                    return Err(ControlError::Conflict(format!(
                        "a line named {:?} exists",
                        line.name
                    )));
                }
                rules.lines.push(line);
            }
            RuleEdit::AddZone(zone) => {
                if rules.zones.iter().any(|z| z.name == zone.name) {
                    return Err(ControlError::Conflict(format!(
                        "a zone named {:?} exists",
                        zone.name
                    )));
                }
                rules.zones.push(zone);
            }
            RuleEdit::RemoveLine(name) => {
                let at = rules.lines.iter().position(|l| l.name == name);
                let at = at.ok_or(ControlError::NoRule { kind: "line", name })?;
                rules.lines.remove(at);
            }
            RuleEdit::RemoveZone(name) => {
                let at = rules.zones.iter().position(|z| z.name == name);
                let at = at.ok_or(ControlError::NoRule { kind: "zone", name })?;
                rules.zones.remove(at);
            }
            RuleEdit::Replace(set) => rules = set,
        }
        let checked = self.check_rules(&rules)?;
        self.to_post
            .send(PostCommand::Rules(checked))
            .map_err(|_| ControlError::Stopping)?;
        self.rules = rules;
        Ok(())
    }

    /// Loads the model of `path` on a thread of its own and switches it in; the
    /// answer comes from that thread.
    fn swap(&mut self, path: PathBuf, reply: Reply<ModelStatus>) {
        if self.loading.swap(true, Ordering::SeqCst) {
            let _ = reply.send(Err(ControlError::Conflict(
                "another model is being switched in".into(),
            )));
            return;
        }
        let plan = self.run.plan;
        let job = ModelJob {
            path,
            runtime: plan.runtime.clone(),
            live_input: plan.post.input.clone(),
            labels: self.labels.clone(),
            classes: plan.classes_spec.clone(),
            decode: PostOptions {
                conf: super::people::StreamPeople::decode_floor(&plan.tracking, plan.post.conf),
                ..plan.post.clone()
            },
            swaps: self.swaps.clone(),
            board: self.board.clone(),
        };
        let loading = self.loading.clone();
        let answer = reply.clone();
        let spawned = std::thread::Builder::new()
            .name("model-load".into())
            .spawn(move || {
                let result = job.run();
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "model not switched in; the live one goes on");
                }
                loading.store(false, Ordering::SeqCst);
                let _ = answer.send(result);
            });
        if let Err(e) = spawned {
            self.loading.store(false, Ordering::SeqCst);
            let _ = reply.send(Err(ControlError::Internal(format!(
                "cannot start a thread to load the model: {e}"
            ))));
        }
    }
}

/// How a source thread ended, as a failure of the run if it failed.
fn joined(thread: std::thread::JoinHandle<Result<SourceEnd, SourceError>>) -> Option<crate::Error> {
    match thread.join() {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.into()),
        Err(p) => Some(
            PipelineError::Panicked {
                stage: "source".into(),
                message: super::panic_message(&*p),
            }
            .into(),
        ),
    }
}

/// A model to load and switch in, with what it must agree with.
struct ModelJob {
    path: PathBuf,
    runtime: crate::infer::RuntimeOptions,
    live_input: crate::config::InputSpec,
    labels: Arc<Mutex<Vec<String>>>,
    classes: String,
    /// The live decode settings (thresholds), for the new model's outputs.
    decode: PostOptions,
    swaps: Sender<ModelSwap>,
    board: Arc<Board>,
}

impl ModelJob {
    fn run(self) -> Result<ModelStatus, ControlError> {
        let model_error = |e: &dyn std::fmt::Display| {
            ControlError::Model(format!("model {}: {e}", self.path.display()))
        };
        let manifest = Manifest::load(&self.path).map_err(|e| model_error(&e))?;
        let manifest = manifest
            .for_precision(self.runtime.precision)
            .map_err(|e| model_error(&e))?;
        let live_labels = lock(&self.labels).clone();
        check_compatible(
            &manifest,
            &self.live_input,
            &live_labels,
            &self.decode.classes,
        )
        .map_err(|e| model_error(&e))?;
        let classes =
            ClassFilter::parse(&self.classes, &manifest.labels).map_err(|e| model_error(&e))?;
        let decode = PostOptions {
            input: manifest.input.clone(),
            layout: manifest.layout(),
            labels: manifest.labels.clone(),
            classes,
            ..self.decode.clone()
        };
        let mut detector = Detector::load(&manifest, &self.runtime).map_err(|e| model_error(&e))?;
        // One batch here first: a model that loads but cannot run (memory, a
        // provider that builds its engine on the first call) fails this request,
        // not the live streams.
        let (w, h) = (
            manifest.input.width as usize,
            manifest.input.height as usize,
        );
        let zeros = ndarray::Array4::<f32>::zeros((1, 3, h, w));
        detector
            .run(zeros.view())
            .map_err(|e| model_error(&format!("a trial batch failed: {e}")))?;
        let (done, old) = bounded(1);
        let model = Arc::new(ModelInUse {
            name: manifest.name.clone(),
            decode,
        });
        self.swaps
            .send(ModelSwap {
                detector,
                model,
                done,
            })
            .map_err(|_| ControlError::Stopping)?;
        // The detector let go is dropped here, off the inference thread.
        drop(old.recv().map_err(|_| ControlError::Stopping)?);
        *lock(&self.labels) = manifest.labels.clone();
        let status = ModelStatus {
            name: manifest.name.clone(),
            path: manifest.path.clone(),
            swaps: self.board.model().map_or(1, |m| m.swaps + 1),
        };
        self.board.set_model(status.clone());
        tracing::info!(model = %status.name, path = %Path::display(&status.path), "model live");
        Ok(status)
    }
}

/// Whether a model can replace the live one between two batches: the same
/// input (the batches are already preprocessed for it), and every class the run
/// keeps at the same id (tracks, lines and zones go on counting by id; a
/// retrained model may drop or add other classes).
fn check_compatible(
    manifest: &Manifest,
    live: &crate::config::InputSpec,
    live_labels: &[String],
    kept: &ClassFilter,
) -> Result<(), String> {
    let input = &manifest.input;
    if (input.width, input.height) != (live.width, live.height) {
        return Err(format!(
            "its input is {}×{}, the live model's {}×{}: a model switched in must take the same input size",
            input.width, input.height, live.width, live.height
        ));
    }
    if input.channel_order != live.channel_order
        || input.mean != live.mean
        || input.std != live.std
        || input.resize != live.resize
        || input.pad != live.pad
    {
        return Err(
            "its preprocessing (resize, pad, channel order, mean, std) differs from the live model's"
                .into(),
        );
    }
    for (id, label) in live_labels.iter().enumerate() {
        if kept.keeps(id) && manifest.labels.get(id) != Some(label) {
            let now = manifest.labels.iter().position(|l| l == label);
            return Err(format!(
                "class {label:?} is id {id} in the live model and {} in this one: the classes the run keeps must keep their ids",
                now.map_or("missing".to_string(), |n| format!("id {n}"))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(labels: &[&str], width: u32) -> Manifest {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/nanodet-g.toml"
        ))
        .unwrap();
        let mut m: Manifest = toml::from_str(&text).unwrap();
        m.labels = labels.iter().map(|l| l.to_string()).collect();
        m.input.width = width;
        m
    }

    #[test]
    fn a_retrained_model_may_change_other_classes_but_not_the_kept_ones() {
        let live = manifest(&["person", "bicycle", "car"], 416);
        let person = ClassFilter::only([0]);
        let retrained = manifest(&["person", "sign", "ball"], 416);
        assert_eq!(
            check_compatible(&retrained, &live.input, &live.labels, &person),
            Ok(())
        );
        let all = ClassFilter::All;
        let e = check_compatible(&retrained, &live.input, &live.labels, &all).unwrap_err();
        assert!(
            e.contains("\"bicycle\" is id 1") && e.contains("missing"),
            "{e}"
        );
        let moved = manifest(&["sign", "person"], 416);
        let e = check_compatible(&moved, &live.input, &live.labels, &person).unwrap_err();
        assert!(e.contains("id 0 in the live model and id 1"), "{e}");
        let bigger = manifest(&["person"], 512);
        let e = check_compatible(&bigger, &live.input, &live.labels, &person).unwrap_err();
        assert!(e.contains("512×384") && e.contains("416×384"), "{e}");
    }
}
