//! Hard frames harvested for retraining (`run --harvest DIR`): frames where the
//! detector is unsure, saved with its detections as KITTI pre-labels, so a person
//! can correct them and give the folder to `retrain`.
//!
//! Data flow: the post stage hands every frame and what it reported to
//! [`Harvester::frame`]. Per stream it keeps a three-frame window (the frame
//! before, a copy of the frame being judged, the frame after); [`select::judge`]
//! decides on the middle frame once the next one arrives. Only a frame that could
//! still be chosen, and is not inside the rate limit, keeps a copy of its pixels
//! ([`select::could_be_chosen`]): most frames cost nothing. A chosen frame passes a
//! rate limit (per stream, on the stream's own clock, so a file processed faster
//! than real time is sampled across its length) and a duplicate check (a 16×16
//! luma thumbnail against the stream's last saved frame), then goes to the writer
//! thread ([`write`]) over a short queue. A full queue drops the frame (counted):
//! the pipeline never waits for the disk.

pub mod select;
pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::frame::Frame;
use crate::model::Detection;
use select::{Reasons, Seen};

use super::SinkError;

/// Frames waiting for the writer before new ones are dropped.
const QUEUE: usize = 8;
/// Mean grey-level difference of thumbnails under which a frame repeats the last.
const SAME_SCENE: f32 = 2.0;

/// Where and how much to harvest.
#[derive(Debug, Clone, PartialEq)]
pub struct HarvestSettings {
    pub dir: PathBuf,
    /// Most frames saved per stream per minute of the stream's time.
    pub per_minute: f64,
    /// A reported detection scoring below this makes its frame `unsure`.
    pub unsure_below: f32,
}

/// What the harvest did, for the run's summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HarvestReport {
    pub dir: PathBuf,
    pub saved: u64,
    /// Chosen frames by reason (a frame may have several).
    pub unsure: u64,
    pub blink: u64,
    pub gap: u64,
    /// Chosen but left out: too soon after the last, the same scene, queue full.
    pub rate_limited: u64,
    pub duplicates: u64,
    pub dropped: u64,
    pub failed: u64,
    pub first_error: Option<String>,
}

/// One stream's window and limits.
#[derive(Default)]
struct StreamWindow {
    before: Option<Seen>,
    /// The frame being judged: its pixels only if it could be saved.
    middle: Option<(Option<Frame>, Seen)>,
    last_saved_s: Option<f64>,
    last_thumbnail: Option<[f32; 256]>,
}

/// A frame's time on its stream's clock (25 fps assumed when it has none).
fn stream_time_s(frame: &Frame) -> f64 {
    frame.time_s().unwrap_or(frame.index as f64 / 25.0)
}

/// Whether a frame at `time_s` falls inside the rate limit after the last save.
fn too_soon(last_saved_s: Option<f64>, time_s: f64, settings: &HarvestSettings) -> bool {
    let every_s = 60.0 / settings.per_minute;
    last_saved_s.is_some_and(|t| (time_s - t).abs() < every_s)
}

/// The harvest of one run.
pub struct Harvester {
    settings: HarvestSettings,
    run_id: Arc<str>,
    streams: HashMap<u32, StreamWindow>,
    jobs: Option<Sender<write::Job>>,
    writer: Option<std::thread::JoinHandle<write::Written>>,
    report: HarvestReport,
}

impl Harvester {
    /// Creates `DIR/images` and `DIR/labels` and starts the writer.
    pub fn start(settings: HarvestSettings, run_id: Arc<str>) -> Result<Self, SinkError> {
        for sub in ["images", "labels"] {
            let path = settings.dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| SinkError::Io { path, source })?;
        }
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let dir = settings.dir.clone();
        let writer = std::thread::Builder::new()
            .name("harvest".into())
            .spawn(move || write::run(dir, rx))
            .map_err(|source| SinkError::Io {
                path: settings.dir.clone(),
                source,
            })?;
        Ok(Self {
            report: HarvestReport {
                dir: settings.dir.clone(),
                ..HarvestReport::default()
            },
            settings,
            run_id,
            streams: HashMap::new(),
            jobs: Some(tx),
            writer: Some(writer),
        })
    }

    /// One processed frame of a stream and what was reported for it (`labels`
    /// name the class ids).
    pub fn frame(&mut self, frame: &Frame, seen: Seen, labels: &[String]) {
        let window = self.streams.entry(frame.stream_id).or_default();
        let limited = too_soon(window.last_saved_s, stream_time_s(frame), &self.settings);
        let keep = !limited
            && window.middle.as_ref().is_some_and(|(_, previous)| {
                select::could_be_chosen(previous, &seen, self.settings.unsure_below)
            });
        let pixels = keep.then(|| frame.clone());
        let previous = window.middle.replace((pixels, seen.clone()));
        let previous_seen = previous.as_ref().map(|p| p.1.clone());
        let before = std::mem::replace(&mut window.before, previous_seen);
        let (Some((middle_frame, middle)), Some(before)) = (previous, before) else {
            return;
        };
        let (reasons, missed) = select::judge(&before, &middle, &seen, self.settings.unsure_below);
        if reasons.any() {
            self.offer(middle_frame, middle, missed, reasons, labels);
        }
    }

    /// A chosen frame through the rate limit and the duplicate check to the writer.
    fn offer(
        &mut self,
        frame: Option<Frame>,
        seen: Seen,
        missed: Vec<Detection>,
        reasons: Reasons,
        labels: &[String],
    ) {
        let r = &mut self.report;
        r.unsure += u64::from(reasons.unsure);
        r.blink += u64::from(reasons.blink);
        r.gap += u64::from(reasons.gap);
        // No pixels kept: the frame was inside the rate limit when it came.
        let Some(frame) = frame else {
            r.rate_limited += 1;
            return;
        };
        let Some(window) = self.streams.get_mut(&frame.stream_id) else {
            return;
        };
        let time_s = stream_time_s(&frame);
        // Checked again: the frame before this one may have been saved since.
        if too_soon(window.last_saved_s, time_s, &self.settings) {
            r.rate_limited += 1;
            return;
        }
        let thumbnail = select::thumbnail(frame.planes().0, frame.width, frame.height);
        if window
            .last_thumbnail
            .is_some_and(|t| select::difference(&t, &thumbnail) < SAME_SCENE)
        {
            r.duplicates += 1;
            return;
        }
        let name = format!("{}-s{}-f{:06}", self.run_id, frame.stream_id, frame.index);
        let label = |d: &Detection| {
            labels
                .get(d.class_id)
                .cloned()
                .unwrap_or_else(|| d.class_id.to_string())
        };
        let index_line = serde_json::json!({
            "image": format!("images/{name}.jpg"),
            "labels": format!("labels/{name}.txt"),
            "stream_id": frame.stream_id,
            "frame_index": frame.index,
            "pts_ns": frame.pts_ns,
            "reasons": reasons.names(),
            "scores": seen.detections.iter().map(|d| (f64::from(d.score) * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "missed": missed.len(),
        })
        .to_string();
        let labels = seen
            .detections
            .iter()
            .chain(&missed)
            .map(|d| (label(d), d.clone()))
            .collect();
        let job = write::Job {
            name,
            frame,
            labels,
            index_line,
        };
        // A full queue (or a writer gone) drops the frame: never wait for the disk.
        if self.jobs.as_ref().is_some_and(|j| j.try_send(job).is_ok()) {
            window.last_saved_s = Some(time_s);
            window.last_thumbnail = Some(thumbnail);
        } else {
            r.dropped += 1;
        }
    }

    /// A stream ended: its window goes (its last frame has no frame after it).
    pub fn close_stream(&mut self, stream_id: u32) {
        self.streams.remove(&stream_id);
    }

    /// Waits for the writer; what was harvested.
    pub fn finish(mut self) -> HarvestReport {
        self.jobs = None;
        if let Some(written) = self.writer.take().and_then(|w| w.join().ok()) {
            self.report.saved = written.saved;
            self.report.failed = written.failed;
            self.report.first_error = written.first_error;
        }
        self.report
    }
}
