//! People over time: line crossings and zone occupancy from tracked objects.
//!
//! Data flow, per stream, in the post stage: the tracker's confirmed objects of a
//! frame (id, class, box) and the tracks that ended go into that stream's
//! [`StreamAnalytics`]; out come [`EventKind`]s for the frame's record, and the
//! running counts that the overlay, the metrics and the summary show.
//! [`rules`] checks the configured lines and zones, [`line`] and [`zone`] hold the
//! state of one rule each, [`geometry`] is the plane geometry.
//!
//! Depends on `config` (rule settings), `model` (boxes) and `track` (objects).

pub mod event;
pub mod geometry;
pub mod line;
pub mod rules;
pub mod zone;

use std::collections::BTreeMap;

pub use event::{Event, EventKind, MessageId};
pub use rules::{RuleError, Rules};

use crate::config::rules::Anchor;
use crate::model::BBox;
use geometry::Point;
use line::LineCounter;
use zone::{ZoneChange, ZoneMonitor};

/// The anchor point of a box.
pub fn anchor_point(bbox: &BBox, anchor: Anchor) -> Point {
    let cx = (bbox[0] + bbox[2]) / 2.0;
    match anchor {
        Anchor::BottomCenter => Point::new(cx, bbox[3]),
        Anchor::Center => Point::new(cx, (bbox[1] + bbox[3]) / 2.0),
        Anchor::TopCenter => Point::new(cx, bbox[1]),
    }
}

/// Hysteresis margin in pixels for a box: a fraction of its height, at least 1 px.
fn margin(bbox: &BBox, fraction: f32) -> f32 {
    ((bbox[3] - bbox[1]) * fraction).max(1.0)
}

/// A confirmed track seen in a frame: what the analytics need of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub track_id: u64,
    pub class_id: usize,
    /// The detection's box, in source pixels.
    pub bbox: BBox,
}

/// One line of one stream: its rule, geometry in pixels and counts.
#[derive(Debug)]
pub struct LineState {
    pub rule: rules::LineRule,
    /// The two ends in pixels, once the frame size is known.
    pub ends: Option<[Point; 2]>,
    counter: LineCounter,
    /// Crossings per direction (0, 1) and class id.
    pub counts: BTreeMap<(usize, usize), u64>,
}

impl LineState {
    /// Crossings in direction `d`, every class.
    pub fn total(&self, d: usize) -> u64 {
        self.counts
            .iter()
            .filter(|((dir, _), _)| *dir == d)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One zone of one stream.
#[derive(Debug)]
pub struct ZoneState {
    pub rule: rules::ZoneRule,
    pub polygon: Option<Vec<Point>>,
    /// The largest hysteresis margin this zone allows, in pixels: a quarter of its
    /// bounding box's smaller side, so a narrow zone can still be entered.
    max_margin: f32,
    monitor: ZoneMonitor,
    pub entered: u64,
    pub left: u64,
    /// Dwell seconds summed over the tracks that left.
    pub dwell_total_s: f64,
}

impl ZoneState {
    /// Tracks inside now, every class.
    pub fn inside(&self) -> usize {
        self.monitor.occupancy().values().sum()
    }
}

/// The lines and zones of one stream, and their state.
#[derive(Debug)]
pub struct StreamAnalytics {
    stream: u32,
    labels: Vec<String>,
    pub lines: Vec<LineState>,
    pub zones: Vec<ZoneState>,
    frame_size: Option<(u32, u32)>,
    /// Whether a rule outside the first frame is an error (rules of the run's
    /// start) or only skipped with a warning (rules given while it runs: a bad
    /// one must not stop the run).
    strict: bool,
}

impl StreamAnalytics {
    /// The analytics of stream `stream` with the run's `rules` (those for other
    /// streams are left out) and the model's labels.
    pub fn new(stream: u32, rules: &Rules, labels: &[String]) -> Self {
        let mine = rules.for_stream(stream);
        Self {
            stream,
            labels: labels.to_vec(),
            lines: mine
                .lines
                .into_iter()
                .map(|rule| LineState {
                    rule,
                    ends: None,
                    counter: LineCounter::default(),
                    counts: BTreeMap::new(),
                })
                .collect(),
            zones: mine
                .zones
                .into_iter()
                .map(|rule| ZoneState {
                    rule,
                    polygon: None,
                    max_margin: f32::INFINITY,
                    monitor: ZoneMonitor::default(),
                    entered: 0,
                    left: 0,
                    dwell_total_s: 0.0,
                })
                .collect(),
            frame_size: None,
            strict: true,
        }
    }

    /// The same analytics, with rules that never stop the run (given while it
    /// runs): one that does not fit the frame is skipped with a warning.
    pub fn make_lenient(&mut self) {
        self.strict = false;
    }

    /// Takes the run's new rules. A line or zone whose rule is unchanged keeps its
    /// counts and the tracks inside it; the others start afresh. New rules never
    /// stop the run.
    pub fn update_rules(&mut self, rules: &Rules) {
        let fresh = Self::new(self.stream, rules, &self.labels);
        let lines = std::mem::take(&mut self.lines);
        self.lines = keep_unchanged(lines, fresh.lines, |a, b| a.rule == b.rule);
        let zones = std::mem::take(&mut self.zones);
        self.zones = keep_unchanged(zones, fresh.zones, |a, b| a.rule == b.rule);
        self.frame_size = None;
        self.strict = false;
    }

    /// The class names events use (a model switched in keeps the old ids' names
    /// and may add more).
    pub fn set_labels(&mut self, labels: &[String]) {
        self.labels = labels.to_vec();
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.zones.is_empty()
    }

    /// Puts the rules in pixels for this frame size (again when the size changes).
    /// Pixel points outside the first frame are an error; after a change of size
    /// (a camera that came back smaller), a rule that no longer fits is skipped with
    /// a warning until the size fits again, and the other rules go on.
    fn resolve(&mut self, width: u32, height: u32) -> Result<(), RuleError> {
        if self.frame_size == Some((width, height)) {
            return Ok(());
        }
        let first = self.frame_size.is_none() && self.strict;
        let stream = self.stream;
        let fits = |r: Result<Vec<Point>, RuleError>| match r {
            Ok(points) => Ok(Some(points)),
            Err(e) if first => Err(e),
            Err(e) => {
                tracing::warn!(stream, error = %e, "rule skipped while the frame is {width}x{height}");
                Ok(None)
            }
        };
        for l in &mut self.lines {
            let points = fits(l.rule.common.resolve(true, stream, width, height))?;
            l.ends = points.map(|p| [p[0], p[1]]);
        }
        for z in &mut self.zones {
            z.polygon = fits(z.rule.common.resolve(false, stream, width, height))?;
            if let Some(p) = &z.polygon {
                let span = |f: fn(&Point) -> f32| {
                    let (lo, hi) = p
                        .iter()
                        .map(f)
                        .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
                    hi - lo
                };
                z.max_margin = (span(|q| q.x).min(span(|q| q.y)) / 4.0).max(1.0);
            }
        }
        self.frame_size = Some((width, height));
        Ok(())
    }

    /// One frame: the confirmed objects seen in it, the tracks that ended, and the
    /// frame's size and time. Returns the events, lines first, in object order.
    pub fn observe(
        &mut self,
        (width, height): (u32, u32),
        time_s: f64,
        objects: &[Observed],
        ended: &[(u64, usize)],
    ) -> Result<Vec<EventKind>, RuleError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        self.resolve(width, height)?;
        let mut events = Vec::new();
        for l in &mut self.lines {
            l.observe(objects, ended, &self.labels, &mut events);
        }
        for z in &mut self.zones {
            z.observe(objects, ended, time_s, &self.labels, &mut events);
        }
        Ok(events)
    }
}

/// `fresh`, in its order, with each item that `old` has unchanged taken from
/// `old` (its state goes on).
fn keep_unchanged<T>(mut old: Vec<T>, fresh: Vec<T>, same: impl Fn(&T, &T) -> bool) -> Vec<T> {
    fresh
        .into_iter()
        .map(|new| match old.iter().position(|o| same(o, &new)) {
            Some(i) => old.swap_remove(i),
            None => new,
        })
        .collect()
}

/// The label of a class id (its number when the model has no such label).
fn label(labels: &[String], class_id: usize) -> String {
    labels
        .get(class_id)
        .cloned()
        .unwrap_or_else(|| class_id.to_string())
}

impl LineState {
    /// One frame's objects and ended tracks against this line; crossings are
    /// counted and pushed to `events`.
    fn observe(
        &mut self,
        objects: &[Observed],
        ended: &[(u64, usize)],
        labels: &[String],
        events: &mut Vec<EventKind>,
    ) {
        let Some([a, b]) = self.ends else { return };
        let rule = &self.rule.common;
        for o in objects.iter().filter(|o| rule.watches(o.class_id)) {
            let p = anchor_point(&o.bbox, rule.anchor);
            let m = margin(&o.bbox, rule.hysteresis);
            if let Some(d) = self.counter.observe(a, b, o.track_id, p, m) {
                *self.counts.entry((d, o.class_id)).or_default() += 1;
                events.push(EventKind::LineCrossed {
                    line: rule.name.clone(),
                    direction: self.rule.directions[d].clone(),
                    track_id: o.track_id,
                    class: label(labels, o.class_id),
                });
            }
        }
        for (id, _) in ended {
            self.counter.forget(*id);
        }
    }
}

impl ZoneState {
    /// One frame's objects and ended tracks against this zone; entries and exits
    /// are counted and pushed to `events`.
    fn observe(
        &mut self,
        objects: &[Observed],
        ended: &[(u64, usize)],
        time_s: f64,
        labels: &[String],
        events: &mut Vec<EventKind>,
    ) {
        let Some(polygon) = self.polygon.as_deref() else {
            return;
        };
        let rule = &self.rule.common;
        let mut changes = Vec::new();
        for o in objects.iter().filter(|o| rule.watches(o.class_id)) {
            let p = anchor_point(&o.bbox, rule.anchor);
            let m = margin(&o.bbox, rule.hysteresis).min(self.max_margin);
            if let Some(c) = self
                .monitor
                .observe(polygon, o.track_id, o.class_id, p, m, time_s)
            {
                changes.push((o.track_id, o.class_id, c));
            }
        }
        for &(id, class) in ended {
            if let Some(dwell) = self.monitor.forget(id) {
                changes.push((id, class, ZoneChange::Left(dwell)));
            }
        }
        for (track_id, class_id, change) in changes {
            let (zone, class) = (rule.name.clone(), label(labels, class_id));
            events.push(match change {
                ZoneChange::Entered => {
                    self.entered += 1;
                    EventKind::ZoneEntered {
                        zone,
                        track_id,
                        class,
                    }
                }
                ZoneChange::Left(dwell) => {
                    self.left += 1;
                    self.dwell_total_s += dwell;
                    EventKind::ZoneLeft {
                        zone,
                        track_id,
                        class,
                        dwell_s: (dwell * 1e3).round() / 1e3,
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::{LineConfig, ZoneConfig};
    use crate::model::classes::ClassFilter;

    fn object(id: u64, x: f32, y_bottom: f32) -> Observed {
        Observed {
            track_id: id,
            class_id: 0,
            bbox: [x - 10.0, y_bottom - 50.0, x + 10.0, y_bottom],
        }
    }

    #[test]
    fn a_narrow_zone_can_be_entered_by_a_tall_box() {
        // 20 px wide, people 200 px tall: a 10% margin (20 px) would never fit.
        let zones = [ZoneConfig::parse_shorthand("gap:100,0,120,0,120,300,100,300").unwrap()];
        let labels = vec!["person".to_string()];
        let rules = Rules::validate(&[], &zones, 1, &labels, &ClassFilter::only([0])).unwrap();
        let mut a = StreamAnalytics::new(0, &rules, &labels);
        let tall = |x: f32| Observed {
            track_id: 1,
            class_id: 0,
            bbox: [x - 10.0, 50.0, x + 10.0, 250.0],
        };
        let mut kinds = Vec::new();
        for (i, x) in [90.0, 104.0, 110.0, 116.0, 130.0].iter().enumerate() {
            kinds.extend(a.observe((300, 300), i as f64, &[tall(*x)], &[]).unwrap());
        }
        assert_eq!(kinds.len(), 2, "{kinds:?}");
    }

    #[test]
    fn pixel_rules_that_stop_fitting_are_skipped_not_fatal() {
        let lines = [LineConfig::parse_shorthand("door:10,50,300,50").unwrap()];
        let labels = vec!["person".to_string()];
        let rules = Rules::validate(&lines, &[], 1, &labels, &ClassFilter::only([0])).unwrap();
        let mut a = StreamAnalytics::new(0, &rules, &labels);
        assert!(
            a.observe((200, 100), 0.0, &[], &[]).is_err(),
            "first frame: an error"
        );
        let mut b = StreamAnalytics::new(0, &rules, &labels);
        b.observe((320, 240), 0.0, &[], &[]).unwrap();
        b.observe((200, 100), 0.1, &[], &[]).unwrap();
        assert!(b.lines[0].ends.is_none(), "skipped while it does not fit");
        b.observe((320, 240), 0.2, &[], &[]).unwrap();
        assert!(b.lines[0].ends.is_some());
    }

    #[test]
    fn rules_follow_a_change_of_frame_size() {
        let lines = [LineConfig::parse_shorthand("door:0.1,0.5,0.9,0.5").unwrap()];
        let labels = vec!["person".to_string()];
        let rules = Rules::validate(&lines, &[], 1, &labels, &ClassFilter::only([0])).unwrap();
        let mut a = StreamAnalytics::new(0, &rules, &labels);
        a.observe((200, 100), 0.0, &[], &[]).unwrap();
        assert_eq!(a.lines[0].ends.unwrap()[1], Point::new(180.0, 50.0));
        // A camera that comes back at another size: the line moves with the frame.
        a.observe((400, 300), 0.1, &[], &[]).unwrap();
        assert_eq!(a.lines[0].ends.unwrap()[1], Point::new(360.0, 150.0));
    }

    #[test]
    fn a_walk_through_a_door_into_a_zone() {
        let lines = [LineConfig::parse_shorthand("door:0,100,200,100:down,up").unwrap()];
        let zones = [ZoneConfig::parse_shorthand("hall:0,155,200,155,200,250,0,250").unwrap()];
        let labels = vec!["person".to_string()];
        let rules = Rules::validate(&lines, &zones, 1, &labels, &ClassFilter::only([0])).unwrap();
        let mut a = StreamAnalytics::new(0, &rules, &labels);
        let mut all = Vec::new();
        // Walks down 10 px per frame from y=60 to y=200, then the track ends.
        for i in 0..15 {
            let y = 60.0 + 10.0 * i as f32;
            all.extend(
                a.observe((200, 300), i as f64 * 0.1, &[object(4, 50.0, y)], &[])
                    .unwrap(),
            );
        }
        all.extend(a.observe((200, 300), 1.5, &[], &[(4, 0)]).unwrap());
        let kinds: Vec<&str> = all
            .iter()
            .map(|e| match e {
                EventKind::LineCrossed { direction, .. } => direction.as_str(),
                EventKind::ZoneEntered { .. } => "entered",
                EventKind::ZoneLeft { .. } => "left",
            })
            .collect();
        assert_eq!(kinds, ["down", "entered", "left"]);
        assert_eq!(a.lines[0].total(0), 1);
        // In at y=160 (frame 10), last seen at frame 14: 0.4 s.
        let EventKind::ZoneLeft { dwell_s, .. } = &all[2] else {
            panic!()
        };
        assert!((dwell_s - 0.4).abs() < 1e-9, "{dwell_s}");
        assert_eq!(a.zones[0].inside(), 0);
    }
}
