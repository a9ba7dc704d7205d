//! The association logic of one stream's tracker: ByteTrack (two stages) or SORT
//! (one stage), per class, over a timeline in seconds.
//!
//! One call of [`Tracker::update`] per frame, with the frame's detections (every
//! score down to the low threshold) and its time:
//!
//! 1. every confirmed track's box is predicted to the frame's time ([`BoxFilter`]);
//! 2. **first stage**: confirmed and lost tracks against detections scoring above
//!    `high`, cost `1 - IoU × score`, optimal assignment below `match_cost`;
//! 3. **second stage** (ByteTrack only): the confirmed tracks still unmatched
//!    against detections in `(low, high]`, cost `1 - IoU`, below `low_match_cost`.
//!    This keeps a partly hidden person's track alive on weak detections;
//! 4. tentative tracks against the confident detections left, below
//!    `tentative_match_cost`; a tentative track that misses a frame is dropped, one
//!    that reaches `min_hits` consecutive hits is confirmed and gets its id;
//! 5. confident detections still unmatched (score >= `new_track`) start tentative
//!    tracks; confirmed tracks unmatched become lost, and a lost track not seen for
//!    `buffer_s` seconds ends. A lost track and a confirmed one that overlap at
//!    IoU > 0.85 are the same person twice: the younger one ends.
//!
//! Ids are given at confirmation, from one counter per stream, so they are unique
//! within the stream for the life of the process and never reused. Tracks of
//! different classes never match each other.

use std::collections::BTreeMap;

use super::assign::assign;
use super::kalman::BoxFilter;
use crate::model::geometry::iou;
use crate::model::{BBox, Detection};

/// Which association runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// ByteTrack: confident detections first, then weak ones for the tracks left.
    #[default]
    Bytetrack,
    /// SORT: one association of confident detections.
    Sort,
    /// No tracking: detections carry no track id and no events are produced.
    None,
}

impl crate::choice::Choice for TrackerKind {
    const ALL: &'static [Self] = &[Self::Bytetrack, Self::Sort, Self::None];
    fn name(self) -> &'static str {
        match self {
            Self::Bytetrack => "bytetrack",
            Self::Sort => "sort",
            Self::None => "none",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Bytetrack => "two stages: weak detections keep partly hidden people's tracks",
            Self::Sort => "one association of confident detections",
            Self::None => "no track ids, no line or zone events",
        }
    }
}

impl std::fmt::Display for TrackerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::choice::Choice::name(*self))
    }
}

/// A tracker's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    pub kind: TrackerKind,
    /// Detections scoring above this take part in the first association.
    pub high: f32,
    /// ByteTrack's second association uses detections scoring in `(low, high]`.
    pub low: f32,
    /// An unmatched detection scoring at least this starts a track.
    pub new_track: f32,
    /// Cost limit of the first association (cost `1 - IoU × score`).
    pub match_cost: f32,
    /// Cost limit of the second association (cost `1 - IoU`).
    pub low_match_cost: f32,
    /// Cost limit for tentative tracks.
    pub tentative_match_cost: f32,
    /// A lost track ends when it has not been seen for this many seconds.
    pub buffer_s: f64,
    /// Consecutive hits that confirm a track (1: at once).
    pub min_hits: u32,
    /// The nominal frame interval in seconds: the filter's reference step, and the
    /// step assumed when a frame's time does not move forward.
    pub interval_s: f64,
}

impl Default for TrackerSettings {
    /// ByteTrack's published defaults (MOT17): track threshold 0.5, new tracks
    /// from 0.6, matching 0.8 / 0.5 / 0.7, a 30-frame buffer at 30 fps.
    fn default() -> Self {
        Self {
            kind: TrackerKind::Bytetrack,
            high: 0.5,
            low: 0.1,
            new_track: 0.6,
            match_cost: 0.8,
            low_match_cost: 0.5,
            tentative_match_cost: 0.7,
            buffer_s: 1.0,
            min_hits: 2,
            interval_s: 1.0 / 30.0,
        }
    }
}

/// SORT's IoU threshold (0.3) as a cost limit.
const SORT_MATCH_COST: f32 = 0.7;
/// Overlap above which a lost and a confirmed track are one object twice.
const DUPLICATE_IOU: f32 = 0.85;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Seen fewer than `min_hits` frames in a row; no id yet.
    Tentative,
    /// Confirmed and seen in the last frame.
    Tracked,
    /// Confirmed, not seen in the last frame, kept for `buffer_s`.
    Lost,
}

#[derive(Debug, Clone)]
struct Track {
    id: Option<u64>,
    filter: BoxFilter,
    state: State,
    hits: u32,
    started_s: f64,
    last_seen_s: f64,
    /// The detection this frame's measurement came from.
    detection: Option<usize>,
}

/// A confirmed track seen in this frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedObject {
    pub track_id: u64,
    pub class_id: usize,
    /// The filtered box (the Kalman state after this frame's measurement).
    pub bbox: BBox,
    /// The detection it was matched to, as an index into the frame's detections.
    pub detection: usize,
    pub score: f32,
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameTracks {
    /// Confirmed tracks matched in this frame, in detection order.
    pub objects: Vec<TrackedObject>,
    /// Per detection: the id of the confirmed track it belongs to.
    pub ids: Vec<Option<u64>>,
    /// Confirmed tracks that ended in this frame (lost for longer than the buffer,
    /// or merged into a duplicate), with their class.
    pub ended: Vec<(u64, usize)>,
    /// The frame's time on the tracker's clock, in seconds: the frame's own time,
    /// except that it always moves forward (see [`Tracker::update`]).
    pub time_s: f64,
}

/// One stream's tracker.
#[derive(Debug)]
pub struct Tracker {
    settings: TrackerSettings,
    /// Tracks per class id.
    classes: BTreeMap<usize, Vec<Track>>,
    next_id: u64,
    last_time_s: Option<f64>,
    frames: u64,
}

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Self {
        Self {
            settings,
            classes: BTreeMap::new(),
            next_id: 1,
            last_time_s: None,
            frames: 0,
        }
    }

    /// Tracks confirmed so far (ids given).
    pub fn confirmed(&self) -> u64 {
        self.next_id - 1
    }

    /// Confirmed tracks alive now (tracked or lost).
    pub fn live_tracks(&self) -> usize {
        self.classes
            .values()
            .flatten()
            .filter(|t| t.id.is_some())
            .count()
    }

    /// Folds in one frame's detections at `time_s`. A time that does not move
    /// forward (a source that restarted its clock) counts as one nominal interval.
    pub fn update(&mut self, time_s: f64, detections: &[Detection]) -> FrameTracks {
        let interval = self.settings.interval_s;
        let (now, dt) = match self.last_time_s {
            Some(last) if time_s > last => (time_s, time_s - last),
            Some(last) => (last + interval, interval),
            None => (time_s, 0.0),
        };
        self.last_time_s = Some(now);
        self.frames += 1;
        let first_frame = self.frames == 1;
        let mut out = FrameTracks {
            ids: vec![None; detections.len()],
            time_s: now,
            ..Default::default()
        };
        let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, d) in detections.iter().enumerate() {
            by_class.entry(d.class_id).or_default().push(i);
        }
        for class in by_class.keys() {
            self.classes.entry(*class).or_default();
        }
        let Self {
            settings,
            classes,
            next_id,
            ..
        } = self;
        for (&class, tracks) in classes.iter_mut() {
            let indices = by_class.remove(&class).unwrap_or_default();
            let step = Step {
                settings,
                now,
                dt,
                first_frame,
                class,
                detections,
                indices: &indices,
            };
            step.run(tracks, next_id, &mut out);
        }
        classes.retain(|_, tracks| !tracks.is_empty());
        out.objects.sort_by_key(|o| o.detection);
        out
    }
}

/// One class's work for one frame.
struct Step<'a> {
    settings: &'a TrackerSettings,
    now: f64,
    dt: f64,
    first_frame: bool,
    class: usize,
    detections: &'a [Detection],
    /// This class's detections, as indices into `detections`.
    indices: &'a [usize],
}

impl Step<'_> {
    fn run(&self, tracks: &mut Vec<Track>, next_id: &mut u64, out: &mut FrameTracks) {
        // A track lost for longer than the buffer ends before it can be matched:
        // after a long gap between frames (a stalled camera) it is someone new.
        self.end_expired(tracks, out);
        for t in tracks.iter_mut() {
            t.detection = None;
            // As in ByteTrack: a lost box keeps its height, and a tentative track is
            // matched where it was last seen (ByteTrack predicts only confirmed
            // tracks). SORT predicts every track.
            if t.state == State::Lost {
                t.filter.freeze_height();
            }
            if t.state != State::Tentative || self.settings.kind == TrackerKind::Sort {
                t.filter.predict(self.dt as f32);
            }
        }
        let unmatched = self.associate_all(tracks);
        self.settle(tracks, next_id, out);
        self.remove_duplicates(tracks, out);
        self.start_tracks(tracks, &unmatched, next_id);
        for track in tracks.iter() {
            if track.state == State::Tracked
                && track.last_seen_s == self.now
                && let Some(id) = track.id
                && let Some(i) = track.detection
            {
                out.ids[i] = Some(id);
                out.objects.push(self.object(id, track, i));
            }
        }
    }

    /// Every association stage of the tracker's kind; matched tracks are updated.
    /// Returns the confident detections nobody took.
    fn associate_all(&self, tracks: &mut [Track]) -> Vec<usize> {
        let s = self.settings;
        let score = |i: usize| self.detections[i].score;
        let (high, low): (Vec<usize>, Vec<usize>) =
            self.indices.iter().partition(|&&i| score(i) > s.high);
        let mut matched = vec![false; tracks.len()];
        let pool = |tracks: &[Track], matched: &[bool], keep: fn(State) -> bool| -> Vec<usize> {
            (0..tracks.len())
                .filter(|&t| !matched[t] && keep(tracks[t].state))
                .collect()
        };
        if s.kind == TrackerKind::Sort {
            let all = pool(tracks, &matched, |_| true);
            return self.associate(tracks, &all, &high, SORT_MATCH_COST, false, &mut matched);
        }
        // First stage: confirmed (tracked or lost) tracks, confident detections.
        let confirmed = pool(tracks, &matched, |st| st != State::Tentative);
        let left = self.associate(tracks, &confirmed, &high, s.match_cost, true, &mut matched);
        // Second stage: tracks seen last frame and still unmatched, weak detections.
        let weak: Vec<usize> = low.into_iter().filter(|&i| score(i) > s.low).collect();
        let seen = pool(tracks, &matched, |st| st == State::Tracked);
        self.associate(tracks, &seen, &weak, s.low_match_cost, false, &mut matched);
        // Tentative tracks, the confident detections left.
        let tentative = pool(tracks, &matched, |st| st == State::Tentative);
        let limit = s.tentative_match_cost;
        self.associate(tracks, &tentative, &left, limit, true, &mut matched)
    }

    /// After association: tracks seen now are confirmed once they have enough hits;
    /// tentative tracks not seen end, confirmed ones are lost, and lost ones older
    /// than the buffer end.
    fn settle(&self, tracks: &mut Vec<Track>, next_id: &mut u64, out: &mut FrameTracks) {
        let s = self.settings;
        let now = self.now;
        tracks.retain_mut(|t| {
            let seen = t.last_seen_s == now;
            if seen && t.id.is_none() && t.hits >= s.min_hits.max(1) {
                t.id = Some(*next_id);
                *next_id += 1;
            }
            match (t.state, seen) {
                (State::Tentative, false) => return false,
                (_, true) if t.id.is_some() => t.state = State::Tracked,
                (State::Tracked, false) => t.state = State::Lost,
                _ => {}
            }
            true
        });
        self.end_expired(tracks, out);
    }

    /// Ends the lost tracks not seen for longer than the buffer.
    fn end_expired(&self, tracks: &mut Vec<Track>, out: &mut FrameTracks) {
        let (now, buffer) = (self.now, self.settings.buffer_s);
        tracks.retain(|t| {
            let expired = t.state == State::Lost && now - t.last_seen_s > buffer;
            if expired && let Some(id) = t.id {
                out.ended.push((id, self.class));
            }
            !expired
        });
    }

    /// New tentative tracks from confident detections nobody took (confirmed at once
    /// on a stream's first frame, as ByteTrack does, or when one hit is enough).
    fn start_tracks(&self, tracks: &mut Vec<Track>, unmatched: &[usize], next_id: &mut u64) {
        let s = self.settings;
        for &i in unmatched {
            let d = &self.detections[i];
            if d.score < s.new_track {
                continue;
            }
            let mut track = Track {
                id: None,
                filter: BoxFilter::new(&d.bbox, s.interval_s as f32),
                state: State::Tentative,
                hits: 1,
                started_s: self.now,
                last_seen_s: self.now,
                detection: Some(i),
            };
            if self.first_frame || s.min_hits <= 1 {
                track.id = Some(*next_id);
                *next_id += 1;
                track.state = State::Tracked;
            }
            tracks.push(track);
        }
    }

    fn object(&self, id: u64, track: &Track, detection: usize) -> TrackedObject {
        TrackedObject {
            track_id: id,
            class_id: self.class,
            bbox: track.filter.bbox(),
            detection,
            score: self.detections[detection].score,
        }
    }

    /// Optimal assignment of `pool` tracks to `dets`; matched tracks are updated.
    /// Returns the detections left unmatched.
    fn associate(
        &self,
        tracks: &mut [Track],
        pool: &[usize],
        dets: &[usize],
        limit: f32,
        fuse_score: bool,
        matched: &mut [bool],
    ) -> Vec<usize> {
        if pool.is_empty() || dets.is_empty() {
            return dets.to_vec();
        }
        let mut cost = Vec::with_capacity(pool.len() * dets.len());
        for &t in pool {
            let predicted = tracks[t].filter.bbox();
            for &d in dets {
                let det = &self.detections[d];
                let overlap = iou(&predicted, &det.bbox);
                let similarity = if fuse_score {
                    overlap * det.score
                } else {
                    overlap
                };
                cost.push(1.0 - similarity);
            }
        }
        let result = assign(&cost, pool.len(), dets.len(), limit);
        for &(r, c) in &result.matches {
            let track = &mut tracks[pool[r]];
            let d = dets[c];
            track.filter.update(&self.detections[d].bbox);
            // Tentative tracks that miss a frame end, so hits are consecutive.
            track.hits += 1;
            track.last_seen_s = self.now;
            track.detection = Some(d);
            matched[pool[r]] = true;
        }
        result.unmatched_columns.iter().map(|&c| dets[c]).collect()
    }

    /// Ends the younger of a lost and a confirmed track that cover the same object.
    fn remove_duplicates(&self, tracks: &mut Vec<Track>, out: &mut FrameTracks) {
        let mut drop = vec![false; tracks.len()];
        for a in 0..tracks.len() {
            if tracks[a].state != State::Tracked {
                continue;
            }
            for b in 0..tracks.len() {
                if tracks[b].state != State::Lost || drop[a] || drop[b] {
                    continue;
                }
                if iou(&tracks[a].filter.bbox(), &tracks[b].filter.bbox()) > DUPLICATE_IOU {
                    let age_a = self.now - tracks[a].started_s;
                    let age_b = self.now - tracks[b].started_s;
                    drop[if age_a > age_b { b } else { a }] = true;
                }
            }
        }
        let mut i = 0;
        tracks.retain(|t| {
            let keep = !drop[i];
            i += 1;
            if !keep && let Some(id) = t.id {
                out.ended.push((id, self.class));
            }
            keep
        });
    }
}
