//! Lines and zones as a run uses them: the pipeline file's `[[lines]]` and
//! `[[zones]]` checked against the run (streams, classes) into [`Rules`], and
//! turned into pixels once a stream's frame size is known ([`Rules::resolve`]).
//!
//! Every error names its rule.

use super::geometry::{Point, polygon_area, self_intersection};
use crate::config::rules::{Anchor, LineConfig, Units, ZoneConfig};
use crate::model::classes::ClassFilter;

/// Why a line or zone cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("line {name:?}: {message}")]
    Line { name: String, message: String },
    #[error("zone {name:?}: {message}")]
    Zone { name: String, message: String },
}

/// Which kind of rule, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Line,
    Zone,
}

fn error(kind: Kind, name: &str, message: String) -> RuleError {
    let name = name.to_string();
    match kind {
        Kind::Line => RuleError::Line { name, message },
        Kind::Zone => RuleError::Zone { name, message },
    }
}

/// Default hysteresis, as a fraction of the box height.
pub const DEFAULT_HYSTERESIS: f32 = 0.1;

/// What every rule has.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCommon {
    pub name: String,
    /// `None`: every stream.
    pub stream: Option<u32>,
    units: Units,
    points: Vec<Point>,
    /// Class ids it watches; `None`: every class.
    pub classes: Option<Vec<usize>>,
    pub anchor: Anchor,
    /// Fraction of the box height.
    pub hysteresis: f32,
}

/// A checked line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineRule {
    pub common: RuleCommon,
    /// Left-to-right name first.
    pub directions: [String; 2],
}

/// A checked zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneRule {
    pub common: RuleCommon,
}

/// Every line and zone of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub lines: Vec<LineRule>,
    pub zones: Vec<ZoneRule>,
}

/// What a rule is given as, before its checks.
struct Raw<'a> {
    kind: Kind,
    name: &'a str,
    stream: Option<u32>,
    points: &'a [[f32; 2]],
    units: Option<Units>,
    classes: Option<&'a [String]>,
    anchor: Option<Anchor>,
    hysteresis: Option<f32>,
}

impl Raw<'_> {
    fn check(
        &self,
        streams: u32,
        labels: &[String],
        kept: &ClassFilter,
    ) -> Result<RuleCommon, RuleError> {
        let err = |m: String| error(self.kind, self.name, m);
        if self.name.trim().is_empty() {
            return Err(err("a rule needs a name".into()));
        }
        if let Some(s) = self.stream
            && s >= streams
        {
            return Err(err(format!(
                "stream {s} does not exist (the run has {streams} input{}, numbered from 0)",
                if streams == 1 { "" } else { "s" }
            )));
        }
        let values = self.points.iter().flatten();
        if let Some(v) = values.clone().find(|v| !v.is_finite()) {
            return Err(err(format!("coordinate {v} is not a number")));
        }
        let fits_fraction = values.clone().all(|v| (0.0..=1.0).contains(v));
        let units = self.units.unwrap_or(if fits_fraction {
            Units::Fraction
        } else {
            Units::Pixels
        });
        for p in self.points {
            let outside = match units {
                Units::Fraction => !(0.0..=1.0).contains(&p[0]) || !(0.0..=1.0).contains(&p[1]),
                Units::Pixels => p[0] < 0.0 || p[1] < 0.0,
            };
            if outside {
                return Err(err(format!(
                    "point ({}, {}) is outside the frame ({})",
                    p[0],
                    p[1],
                    match units {
                        Units::Fraction => "fractions must be within [0, 1]",
                        Units::Pixels => "pixels cannot be negative",
                    }
                )));
            }
        }
        let classes = match self.classes {
            None => None,
            Some(names) => {
                let mut ids = Vec::new();
                for n in names {
                    let id = labels.iter().position(|l| l == n).ok_or_else(|| {
                        err(format!("class {n:?} is not one of the model's labels"))
                    })?;
                    if !kept.keeps(id) {
                        return Err(err(format!(
                            "class {n:?} is not among the classes this run keeps (--classes)"
                        )));
                    }
                    ids.push(id);
                }
                Some(ids)
            }
        };
        let hysteresis = self.hysteresis.unwrap_or(DEFAULT_HYSTERESIS);
        if !(0.0..=1.0).contains(&hysteresis) {
            return Err(err(format!(
                "hysteresis {hysteresis} must be within [0, 1] (a fraction of the box height)"
            )));
        }
        Ok(RuleCommon {
            name: self.name.trim().to_string(),
            stream: self.stream,
            units,
            points: self.points.iter().map(|p| Point::new(p[0], p[1])).collect(),
            classes,
            anchor: self.anchor.unwrap_or_default(),
            hysteresis,
        })
    }
}

/// What rules are checked against: the run's inputs, the model's labels and the
/// classes the run keeps.
struct RunContext<'a> {
    streams: u32,
    labels: &'a [String],
    kept: &'a ClassFilter,
}

impl<'a> From<&'a LineConfig> for Raw<'a> {
    fn from(l: &'a LineConfig) -> Self {
        Raw {
            kind: Kind::Line,
            name: &l.name,
            stream: l.stream,
            points: &l.points,
            units: l.units,
            classes: l.classes.as_deref(),
            anchor: l.anchor,
            hysteresis: l.hysteresis,
        }
    }
}

impl<'a> From<&'a ZoneConfig> for Raw<'a> {
    fn from(z: &'a ZoneConfig) -> Self {
        Raw {
            kind: Kind::Zone,
            name: &z.name,
            stream: z.stream,
            points: &z.points,
            units: z.units,
            classes: z.classes.as_deref(),
            anchor: z.anchor,
            hysteresis: z.hysteresis,
        }
    }
}

impl LineRule {
    /// A line's own checks: two distinct points, two distinct direction names.
    fn check(l: &LineConfig, run: &RunContext<'_>) -> Result<Self, RuleError> {
        let common = Raw::from(l).check(run.streams, run.labels, run.kept)?;
        let err = |m: String| error(Kind::Line, &l.name, m);
        let p = &common.points;
        if p.len() != 2 {
            return Err(err(format!("a line has 2 points, got {}", p.len())));
        }
        if p[0] == p[1] {
            return Err(err(
                "its two points are the same (a line of zero length)".into()
            ));
        }
        let directions = l.directions.clone().unwrap_or(["in".into(), "out".into()]);
        if directions.iter().any(|d| d.trim().is_empty()) || directions[0] == directions[1] {
            return Err(err(
                "the two directions need two different, non-empty names".into(),
            ));
        }
        Ok(LineRule { common, directions })
    }
}

impl ZoneRule {
    /// A zone's own checks: a simple polygon of at least 3 points, with an area.
    fn check(z: &ZoneConfig, run: &RunContext<'_>) -> Result<Self, RuleError> {
        let common = Raw::from(z).check(run.streams, run.labels, run.kept)?;
        let err = |m: String| error(Kind::Zone, &z.name, m);
        let p = &common.points;
        if p.len() < 3 {
            return Err(err(format!(
                "a polygon needs at least 3 points, got {}",
                p.len()
            )));
        }
        if let Some((i, j)) = self_intersection(p) {
            return Err(err(format!(
                "the polygon crosses itself (edge {} to {} touches edge {} to {}); list the corners in order around it",
                i + 1,
                i + 2,
                j + 1,
                (j + 1) % p.len() + 1
            )));
        }
        if polygon_area(p).abs() < 1e-9 {
            return Err(err("the polygon has no area".into()));
        }
        Ok(ZoneRule { common })
    }
}

impl Rules {
    /// Checks the rules of a run with `streams` inputs, a model with `labels`, and
    /// the classes the run keeps. Names must be unique among lines and among zones.
    pub fn validate(
        lines: &[LineConfig],
        zones: &[ZoneConfig],
        streams: u32,
        labels: &[String],
        kept: &ClassFilter,
    ) -> Result<Self, RuleError> {
        let run = RunContext {
            streams,
            labels,
            kept,
        };
        let mut rules = Rules::default();
        for l in lines {
            let line = LineRule::check(l, &run)?;
            if rules
                .lines
                .iter()
                .any(|o| o.common.name == line.common.name)
            {
                return Err(error(
                    Kind::Line,
                    &l.name,
                    "another line has the same name".into(),
                ));
            }
            rules.lines.push(line);
        }
        for z in zones {
            let zone = ZoneRule::check(z, &run)?;
            if rules
                .zones
                .iter()
                .any(|o| o.common.name == zone.common.name)
            {
                return Err(error(
                    Kind::Zone,
                    &z.name,
                    "another zone has the same name".into(),
                ));
            }
            rules.zones.push(zone);
        }
        Ok(rules)
    }

    /// The rules that apply to stream `id`.
    pub fn for_stream(&self, id: u32) -> Rules {
        let applies = |c: &RuleCommon| c.stream.is_none_or(|s| s == id);
        Rules {
            lines: self
                .lines
                .iter()
                .filter(|l| applies(&l.common))
                .cloned()
                .collect(),
            zones: self
                .zones
                .iter()
                .filter(|z| applies(&z.common))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.zones.is_empty()
    }
}

impl RuleCommon {
    fn kind_error(&self, is_line: bool, message: String) -> RuleError {
        error(
            if is_line { Kind::Line } else { Kind::Zone },
            &self.name,
            message,
        )
    }

    /// The points in pixels of a `width × height` frame of `stream`; pixel points
    /// outside the frame are an error.
    pub fn resolve(
        &self,
        is_line: bool,
        stream: u32,
        width: u32,
        height: u32,
    ) -> Result<Vec<Point>, RuleError> {
        let (w, h) = (width as f32, height as f32);
        match self.units {
            Units::Fraction => Ok(self
                .points
                .iter()
                .map(|p| Point::new(p.x * w, p.y * h))
                .collect()),
            Units::Pixels => {
                if let Some(p) = self.points.iter().find(|p| p.x > w || p.y > h) {
                    return Err(self.kind_error(
                        is_line,
                        format!(
                            "point ({}, {}) is outside stream {stream}'s {width}x{height} frame",
                            p.x, p.y
                        ),
                    ));
                }
                Ok(self.points.clone())
            }
        }
    }

    /// Whether the rule watches class `class_id`.
    pub fn watches(&self, class_id: usize) -> bool {
        self.classes.as_ref().is_none_or(|c| c.contains(&class_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["person".into(), "bicycle".into(), "car".into()]
    }

    fn line(name: &str, points: Vec<[f32; 2]>) -> LineConfig {
        LineConfig {
            name: name.into(),
            stream: None,
            points,
            units: None,
            directions: None,
            classes: None,
            anchor: None,
            hysteresis: None,
        }
    }

    fn zone(name: &str, points: Vec<[f32; 2]>) -> ZoneConfig {
        ZoneConfig {
            name: name.into(),
            stream: None,
            points,
            units: None,
            classes: None,
            anchor: None,
            hysteresis: None,
        }
    }

    fn check(lines: &[LineConfig], zones: &[ZoneConfig]) -> Result<Rules, String> {
        Rules::validate(lines, zones, 2, &labels(), &ClassFilter::only([0]))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bad_rules_name_themselves() {
        let cases: Vec<(Vec<LineConfig>, Vec<ZoneConfig>, &str)> = vec![
            (
                vec![line("door", vec![[0.5, 0.5], [0.5, 0.5]])],
                vec![],
                "line \"door\": its two points are the same",
            ),
            (
                vec![line("door", vec![[0.5, 0.5]])],
                vec![],
                "line \"door\": a line has 2 points",
            ),
            (
                vec![],
                vec![zone("q", vec![[0.0, 0.0], [1.0, 1.0]])],
                "zone \"q\": a polygon needs at least 3 points, got 2",
            ),
            (
                vec![],
                vec![zone(
                    "bow",
                    vec![[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
                )],
                "zone \"bow\": the polygon crosses itself",
            ),
            (
                vec![],
                vec![zone("flat", vec![[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])],
                "zone \"flat\": ",
            ),
            (
                vec![line("door", vec![[-5.0, 3.0], [40.0, 3.0]])],
                vec![],
                "line \"door\": point (-5, 3) is outside the frame",
            ),
        ];
        for (lines, zones, want) in cases {
            let got = check(&lines, &zones).unwrap_err();
            assert!(got.starts_with(want), "{got}");
        }
        let mut l = line("door", vec![[0.1, 0.5], [0.9, 0.5]]);
        l.stream = Some(2);
        assert!(
            check(&[l.clone()], &[])
                .unwrap_err()
                .contains("stream 2 does not exist")
        );
        l.stream = None;
        l.classes = Some(vec!["car".into()]);
        assert!(
            check(&[l.clone()], &[])
                .unwrap_err()
                .contains("not among the classes this run keeps")
        );
        l.classes = Some(vec!["unicorn".into()]);
        assert!(
            check(&[l.clone()], &[])
                .unwrap_err()
                .contains("not one of the model's labels")
        );
        l.classes = None;
        l.units = Some(Units::Fraction);
        l.points = vec![[0.1, 0.5], [1.5, 0.5]];
        assert!(
            check(&[l.clone()], &[])
                .unwrap_err()
                .contains("fractions must be within [0, 1]")
        );
        let dup = line("door", vec![[0.1, 0.5], [0.9, 0.5]]);
        assert!(
            check(&[dup.clone(), dup], &[])
                .unwrap_err()
                .contains("same name")
        );
    }

    #[test]
    fn units_are_inferred_and_resolved_per_frame_size() {
        let rules = check(
            &[
                line("frac", vec![[0.1, 0.5], [0.9, 0.5]]),
                line("px", vec![[10.0, 50.0], [300.0, 50.0]]),
            ],
            &[],
        )
        .unwrap();
        let frac = rules.lines[0].common.resolve(true, 0, 200, 100).unwrap();
        assert_eq!(frac, vec![Point::new(20.0, 50.0), Point::new(180.0, 50.0)]);
        let e = rules.lines[1]
            .common
            .resolve(true, 1, 200, 100)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "line \"px\": point (300, 50) is outside stream 1's 200x100 frame"
        );
        assert!(rules.lines[1].common.resolve(true, 1, 320, 240).is_ok());
    }

    #[test]
    fn rules_apply_to_their_stream() {
        let mut a = line("a", vec![[0.1, 0.5], [0.9, 0.5]]);
        a.stream = Some(1);
        let b = line("b", vec![[0.1, 0.5], [0.9, 0.5]]);
        let rules = check(&[a, b], &[]).unwrap();
        assert_eq!(rules.for_stream(0).lines.len(), 1);
        assert_eq!(rules.for_stream(1).lines.len(), 2);
    }
}
