//! `[[lines]]`, `[[zones]]` and `[tracking]` of a pipeline file, and the
//! command-line shorthands `--line NAME:X1,Y1,X2,Y2[:A,B]` and
//! `--zone NAME:X1,Y1,X2,Y2,X3,Y3[,...]`.
//!
//! These are the settings as written; `analytics::rules` checks them against the
//! run (streams, classes) and the frame size.

use serde::{Deserialize, Serialize};

use crate::track::TrackerKind;

/// How a rule's coordinates are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// Pixels of the stream's frames.
    Pixels,
    /// Fractions of the frame's width and height, in [0, 1].
    Fraction,
}

/// The point of a box that must cross a line or be inside a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Middle of the bottom edge: where a person stands (DeepStream's default).
    #[default]
    BottomCenter,
    /// Centre of the box.
    Center,
    /// Middle of the top edge.
    TopCenter,
}

/// `[tracking]`: identities over time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSection {
    /// `bytetrack` (default), `sort` or `none`.
    pub tracker: Option<TrackerKind>,
    /// How long a track that is not seen is kept, in seconds.
    pub buffer_s: Option<f64>,
    /// Consecutive detections that confirm a new track (and give it an id).
    pub min_hits: Option<u32>,
    /// ByteTrack's second stage: detections down to this score keep tracks alive.
    pub low_score: Option<f32>,
}

// Lines and zones repeat their common fields instead of sharing a flattened struct:
// serde's `flatten` does not work with `deny_unknown_fields`, and a misspelt key in
// a rule must stay an error that names it.

/// `[[lines]]`: counts tracks whose anchor crosses a line, per direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Name, unique among the lines (used in events, metrics and the summary).
    pub name: String,
    /// The stream (0 for the first input); every stream when left out.
    #[serde(default)]
    pub stream: Option<u32>,
    /// The two ends, `[[x1, y1], [x2, y2]]`.
    pub points: Vec<[f32; 2]>,
    /// `pixels` or `fraction` (of the frame); default: fraction when every value
    /// is within [0, 1], pixels otherwise.
    #[serde(default)]
    pub units: Option<Units>,
    /// Names of the two directions: the first for crossing from the left of the
    /// line (as drawn from its first point to its second, seen in the picture) to
    /// its right. For a line drawn left to right, that is moving down the picture.
    /// Default `["in", "out"]`.
    #[serde(default)]
    pub directions: Option<[String; 2]>,
    /// Classes it counts (labels); default: every class the run keeps.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// The point of the box that must cross; default `bottom_center`.
    #[serde(default)]
    pub anchor: Option<Anchor>,
    /// How far past the line, as a fraction of the box's height, the anchor must
    /// be before its side counts (default 0.1): a box jittering on the line is
    /// never counted twice.
    #[serde(default)]
    pub hysteresis: Option<f32>,
}

/// `[[zones]]`: tracks entering, leaving and dwelling in a polygon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Name, unique among the zones.
    pub name: String,
    /// The stream; every stream when left out.
    #[serde(default)]
    pub stream: Option<u32>,
    /// The polygon's corners, `[[x, y], ...]`, at least 3, edges not crossing.
    pub points: Vec<[f32; 2]>,
    /// `pixels` or `fraction`; inferred as for lines.
    #[serde(default)]
    pub units: Option<Units>,
    /// Classes it watches; default: every class the run keeps.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// The point of the box that must be inside; default `bottom_center`.
    #[serde(default)]
    pub anchor: Option<Anchor>,
    /// Margin past the border, as a fraction of the box's height (default 0.1).
    #[serde(default)]
    pub hysteresis: Option<f32>,
}

/// A shorthand that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{flag} {value:?}: {message} (expected {expected})")]
pub struct ShorthandError {
    pub flag: &'static str,
    pub value: String,
    pub message: String,
    pub expected: &'static str,
}

const LINE_FORM: &str = "NAME:X1,Y1,X2,Y2[:DIRECTION_A,DIRECTION_B]";
const ZONE_FORM: &str = "NAME:X1,Y1,X2,Y2,X3,Y3[,...]";

fn numbers(text: &str) -> Result<Vec<f32>, String> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{:?} is not a number", v.trim()))
        })
        .collect()
}

fn pairs(values: &[f32]) -> Vec<[f32; 2]> {
    values.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}

impl LineConfig {
    /// Reads `--line NAME:X1,Y1,X2,Y2[:A,B]` (every stream, default settings).
    pub fn parse_shorthand(value: &str) -> Result<Self, ShorthandError> {
        let err = |message: String| ShorthandError {
            flag: "--line",
            value: value.to_string(),
            message,
            expected: LINE_FORM,
        };
        let mut parts = value.split(':');
        let name = parts.next().unwrap_or_default().trim();
        let coords = parts.next().ok_or_else(|| err("no coordinates".into()))?;
        let directions = parts.next();
        if parts.next().is_some() {
            return Err(err("too many ':'".into()));
        }
        let values = numbers(coords).map_err(err)?;
        if values.len() != 4 {
            return Err(err(format!(
                "a line has 4 coordinates, got {}",
                values.len()
            )));
        }
        let directions = match directions {
            None => None,
            Some(d) => {
                let names: Vec<&str> = d.split(',').map(str::trim).collect();
                match names[..] {
                    [a, b] => Some([a.to_string(), b.to_string()]),
                    _ => return Err(err("give two direction names".into())),
                }
            }
        };
        Ok(Self {
            name: name.to_string(),
            stream: None,
            points: pairs(&values),
            units: None,
            directions,
            classes: None,
            anchor: None,
            hysteresis: None,
        })
    }
}

impl ZoneConfig {
    /// Reads `--zone NAME:X1,Y1,X2,Y2,X3,Y3[,...]` (every stream, defaults).
    pub fn parse_shorthand(value: &str) -> Result<Self, ShorthandError> {
        let err = |message: String| ShorthandError {
            flag: "--zone",
            value: value.to_string(),
            message,
            expected: ZONE_FORM,
        };
        let (name, coords) = value
            .split_once(':')
            .ok_or_else(|| err("no coordinates".into()))?;
        let values = numbers(coords).map_err(err)?;
        if values.len() % 2 != 0 {
            return Err(err(format!(
                "{} coordinates is not a list of x,y pairs",
                values.len()
            )));
        }
        Ok(Self {
            name: name.trim().to_string(),
            stream: None,
            points: pairs(&values),
            units: None,
            classes: None,
            anchor: None,
            hysteresis: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_shorthand() {
        let l = LineConfig::parse_shorthand("door:0.1,0.6,0.9,0.6").unwrap();
        assert_eq!(l.name, "door");
        assert_eq!(l.points, vec![[0.1, 0.6], [0.9, 0.6]]);
        assert_eq!(l.directions, None);
        let l = LineConfig::parse_shorthand("gate:10,20,300,20:south,north").unwrap();
        assert_eq!(l.directions, Some(["south".into(), "north".into()]));
        for bad in [
            "door",
            "door:1,2,3",
            "door:1,2,3,x",
            "d:1,2,3,4:in",
            "d:1,2,3,4:a,b:c",
        ] {
            let e = LineConfig::parse_shorthand(bad).unwrap_err().to_string();
            assert!(e.contains("--line") && e.contains("expected NAME:"), "{e}");
        }
    }

    #[test]
    fn zone_shorthand() {
        let z = ZoneConfig::parse_shorthand("queue:0,0,1,0,1,1").unwrap();
        assert_eq!(z.points.len(), 3);
        assert!(ZoneConfig::parse_shorthand("queue:0,0,1").is_err());
        assert!(ZoneConfig::parse_shorthand("queue").is_err());
    }

    #[test]
    fn rules_read_from_toml() {
        #[derive(Deserialize)]
        struct File {
            lines: Vec<LineConfig>,
            zones: Vec<ZoneConfig>,
        }
        let f: File = toml::from_str(
            "[[lines]]\nname = \"door\"\nstream = 1\npoints = [[0.1, 0.5], [0.9, 0.5]]\nanchor = \"center\"\ndirections = [\"in\", \"out\"]\n[[zones]]\nname = \"q\"\npoints = [[0, 0], [100, 0], [100, 50]]\nunits = \"pixels\"\n",
        )
        .unwrap();
        assert_eq!(f.lines[0].stream, Some(1));
        assert_eq!(f.lines[0].anchor, Some(Anchor::Center));
        assert_eq!(f.zones[0].units, Some(Units::Pixels));
        assert!(
            toml::from_str::<File>("lines = [{name = \"a\", point = []}]\nzones = []").is_err()
        );
    }

    proptest! {
        #[test]
        fn shorthands_never_panic(s in "[a-z0-9:,.\\- ]{0,40}") {
            let _ = LineConfig::parse_shorthand(&s);
            let _ = ZoneConfig::parse_shorthand(&s);
        }
    }
}
