//! People over time, per stream, inside the post stage: the frame's detections go
//! through the stream's tracker, the confirmed tracks through its lines and zones,
//! and out come track ids for the reported detections, events, and the short
//! trails the overlay draws.
//!
//! ```text
//! detections (down to the tracker's low score) --Tracker--> ids, objects, ended
//!   --StreamAnalytics--> events        objects --Trails--> recent anchor points
//! ```
//!
//! The tracker starts on the stream's first frame, which tells the nominal frame
//! interval. Owned by the post stage's `StreamOutputs`; nothing here is shared.

use std::collections::{HashMap, VecDeque};

use super::Frame;
use crate::analytics::{Event, Observed, RuleError, Rules, StreamAnalytics, geometry::Point};
use crate::model::Detection;
use crate::sinks::overlay::Scene;
use crate::track::{FrameTracks, Tracker, TrackerKind, TrackerSettings};

/// Anchor points kept per track for its trail.
const TRAIL_POINTS: usize = 24;
/// The interval assumed when a stream declares no rate and gives no durations.
const FALLBACK_INTERVAL_S: f64 = 1.0 / 30.0;

/// What one frame gives its outputs.
#[derive(Debug, Default)]
pub struct FrameAnalysis {
    /// The detections to report (score above the run's threshold, as the decoder
    /// applies it), best first.
    pub detections: Vec<Detection>,
    /// Per reported detection: its confirmed track.
    pub track_ids: Vec<Option<u64>>,
    pub events: Vec<Event>,
}

/// What the analytics see of a frame's tracks: each confirmed object matched to a
/// detection scoring above `conf` (one the frame's record reports), with that
/// detection's box (where the person was seen, not the filter's estimate). Weak
/// matches only keep tracks alive: the box of a half-hidden person is shorter, and
/// its feet would seem to move.
pub fn observed(tracks: &FrameTracks, detections: &[Detection], conf: f32) -> Vec<Observed> {
    tracks
        .objects
        .iter()
        .filter(|o| detections[o.detection].score > conf)
        .map(|o| Observed {
            track_id: o.track_id,
            class_id: o.class_id,
            bbox: detections[o.detection].bbox,
        })
        .collect()
}

/// One stream's tracker, lines and zones, and trails.
#[derive(Debug)]
pub struct StreamPeople {
    settings: TrackerSettings,
    /// The run's reporting threshold: detections below it only feed the tracker.
    conf: f32,
    tracker: Option<Tracker>,
    pub analytics: StreamAnalytics,
    /// Recent bottom-centre points per live track, with its class.
    pub trails: HashMap<u64, (usize, VecDeque<Point>)>,
}

impl StreamPeople {
    pub fn new(
        stream: u32,
        settings: &TrackerSettings,
        conf: f32,
        rules: &Rules,
        labels: &[String],
    ) -> Self {
        Self {
            settings: settings.clone(),
            conf,
            tracker: None,
            analytics: StreamAnalytics::new(stream, rules, labels),
            trails: HashMap::new(),
        }
    }

    /// The lowest score the detector must report for this stream: the tracker's
    /// low threshold under ByteTrack, the reporting threshold otherwise.
    pub fn decode_floor(settings: &TrackerSettings, conf: f32) -> f32 {
        match settings.kind {
            TrackerKind::Bytetrack => conf.min(settings.low),
            _ => conf,
        }
    }

    /// `detections` are the frame's, scored down to [`Self::decode_floor`], best
    /// first.
    pub fn step(
        &mut self,
        frame: &Frame,
        detections: Vec<Detection>,
    ) -> Result<FrameAnalysis, RuleError> {
        let conf = self.conf;
        if self.settings.kind == TrackerKind::None {
            let detections: Vec<Detection> =
                detections.into_iter().filter(|d| d.score > conf).collect();
            return Ok(FrameAnalysis {
                track_ids: vec![None; detections.len()],
                detections,
                events: Vec::new(),
            });
        }
        let interval = frame.interval_s().unwrap_or(FALLBACK_INTERVAL_S);
        let time_s = frame.time_s().unwrap_or(frame.index as f64 * interval);
        let settings = &self.settings;
        let tracker = self.tracker.get_or_insert_with(|| {
            Tracker::new(TrackerSettings {
                interval_s: interval,
                ..settings.clone()
            })
        });
        let tracks = tracker.update(time_s, &detections);
        let observed = observed(&tracks, &detections, conf);
        let kinds = self.analytics.observe(
            (frame.width, frame.height),
            tracks.time_s,
            &observed,
            &tracks.ended,
        )?;
        self.update_trails(&observed, &tracks.ended);
        let mut analysis = FrameAnalysis::default();
        for (det, id) in detections.into_iter().zip(tracks.ids) {
            if det.score > conf {
                analysis.detections.push(det);
                analysis.track_ids.push(id);
            }
        }
        analysis.events = kinds
            .into_iter()
            .map(|kind| Event {
                id: None,
                stream_id: frame.stream_id,
                frame_index: frame.index,
                pts_ns: frame.pts_ns,
                captured_unix_ns: frame.captured_unix_ns,
                kind,
            })
            .collect();
        Ok(analysis)
    }

    /// Confirmed tracks alive now.
    pub fn tracks_live(&self) -> usize {
        self.tracker.as_ref().map_or(0, Tracker::live_tracks)
    }

    /// What the overlay draws besides boxes: lines and zones with their counts, and
    /// the trails.
    pub fn scene(&self) -> Scene {
        let xy = |p: &Point| (p.x, p.y);
        Scene {
            lines: self
                .analytics
                .lines
                .iter()
                .filter_map(|l| {
                    let [a, b] = l.ends?;
                    let d = &l.rule.directions;
                    let label = format!(
                        "{}: {} {}, {} {}",
                        l.rule.common.name,
                        d[0],
                        l.total(0),
                        d[1],
                        l.total(1)
                    );
                    Some(([xy(&a), xy(&b)], label))
                })
                .collect(),
            zones: self
                .analytics
                .zones
                .iter()
                .filter_map(|z| {
                    let polygon = z.polygon.as_ref()?;
                    let label = format!("{}: {} inside", z.rule.common.name, z.inside());
                    Some((polygon.iter().map(xy).collect(), label))
                })
                .collect(),
            trails: self
                .trails
                .values()
                .map(|(class, points)| (*class, points.iter().map(xy).collect()))
                .collect(),
        }
    }

    /// Tracks confirmed so far (ids given).
    pub fn tracks_confirmed(&self) -> u64 {
        self.tracker.as_ref().map_or(0, Tracker::confirmed)
    }

    fn update_trails(&mut self, observed: &[Observed], ended: &[(u64, usize)]) {
        for o in observed {
            let entry = self
                .trails
                .entry(o.track_id)
                .or_insert_with(|| (o.class_id, VecDeque::with_capacity(TRAIL_POINTS)));
            if entry.1.len() == TRAIL_POINTS {
                entry.1.pop_front();
            }
            entry
                .1
                .push_back(crate::analytics::anchor_point(&o.bbox, Default::default()));
        }
        for (id, _) in ended {
            self.trails.remove(id);
        }
    }
}
