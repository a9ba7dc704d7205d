//! MOTChallenge text files: detections in (`det.txt`), tracks out (`result.txt`).
//!
//! Both are comma-separated lines, frames numbered from 1, boxes as top-left
//! corner, width and height in pixels:
//!
//! ```text
//! det.txt     frame, -1, left, top, width, height, score[, x, y, z]
//! result.txt  frame, id, left, top, width, height, score, -1, -1, -1
//! ```
//!
//! The parser takes outside input, so it never panics: a malformed line is an
//! error naming its number.

use crate::model::{BBox, Detection};

/// The highest frame number accepted: about 9 hours at 30 fps. Frames are stepped
/// one by one (empty ones too), so a typo such as 4294967295 must not allocate
/// billions of them.
pub const MAX_FRAME: u32 = 1_000_000;

/// A line of a detections file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MotParseError {
    pub line: usize,
    pub message: String,
}

/// The detections of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MotFrame {
    /// 1-based frame number.
    pub frame: u32,
    pub detections: Vec<Detection>,
}

/// Frames `1..=last` in order, empty frames included, so that time advances
/// through frames without detections too.
pub fn parse_detections(text: &str) -> Result<Vec<MotFrame>, MotParseError> {
    let mut rows: Vec<(u32, Detection)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let err = |message: String| MotParseError { line, message };
        if fields.len() < 7 {
            return Err(err(format!(
                "expected at least 7 comma-separated values (frame, id, left, top, width, height, score), got {}",
                fields.len()
            )));
        }
        let frame: u32 = fields[0]
            .parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= f64::from(MAX_FRAME))
            .map(|f| f as u32)
            .ok_or_else(|| {
                err(format!(
                    "frame {:?} is not a whole number from 1 to {MAX_FRAME}",
                    fields[0]
                ))
            })?;
        let mut v = [0f32; 5];
        for (slot, (name, text)) in v.iter_mut().zip(
            ["left", "top", "width", "height", "score"]
                .iter()
                .zip(&fields[2..7]),
        ) {
            *slot = text
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| err(format!("{name} {text:?} is not a number")))?;
        }
        let [left, top, width, height, score] = v;
        if width <= 0.0 || height <= 0.0 {
            return Err(err(format!("the box has no area ({width} × {height})")));
        }
        let bbox: BBox = [left, top, left + width, top + height];
        rows.push((
            frame,
            Detection {
                class_id: 0,
                score,
                bbox,
            },
        ));
    }
    let last = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let mut frames: Vec<MotFrame> = (1..=last)
        .map(|frame| MotFrame {
            frame,
            detections: Vec::new(),
        })
        .collect();
    for (frame, det) in rows {
        frames[frame as usize - 1].detections.push(det);
    }
    Ok(frames)
}

/// One line of a results file (no newline).
pub fn result_line(frame: u32, id: u64, bbox: &BBox, score: f32) -> String {
    format!(
        "{frame},{id},{:.2},{:.2},{:.2},{:.2},{score:.4},-1,-1,-1",
        bbox[0],
        bbox[1],
        bbox[2] - bbox[0],
        bbox[3] - bbox[1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_mot_detections_with_gaps() {
        let text =
            "1,-1,10,20,30,40,0.9,-1,-1,-1\n3,-1,1.5,2.5,3,4,0.25\n\n1,-1,0,0,5,5,0.1,-1,-1,-1\n";
        let frames = parse_detections(text).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].detections.len(), 2);
        assert!(frames[1].detections.is_empty());
        assert_eq!(frames[2].detections[0].bbox, [1.5, 2.5, 4.5, 6.5]);
        assert_eq!(frames[2].detections[0].score, 0.25);
    }

    #[test]
    fn malformed_lines_name_their_number() {
        for (text, needle) in [
            (
                "1,-1,10,20,30,40,0.9\n2,-1,1,2\n",
                "line 2: expected at least 7",
            ),
            ("0,-1,10,20,30,40,0.9\n", "line 1: frame \"0\""),
            (
                "4294967295,-1,0,0,1,1,0.9\n",
                "line 1: frame \"4294967295\" is not a whole number from 1 to 1000000",
            ),
            ("1,-1,10,20,-3,40,0.9\n", "line 1: the box has no area"),
            ("1,-1,10,x,30,40,0.9\n", "line 1: top \"x\" is not a number"),
            ("1,-1,10,20,30,40,nan\n", "line 1: score \"nan\""),
        ] {
            let e = parse_detections(text).unwrap_err().to_string();
            assert!(e.starts_with(needle), "{e}");
        }
    }

    #[test]
    fn result_lines_use_mot_columns() {
        assert_eq!(
            result_line(7, 3, &[10.0, 20.0, 40.5, 60.0], 0.87654),
            "7,3,10.00,20.00,30.50,40.00,0.8765,-1,-1,-1"
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "[0-9,.\\-a-z \n]{0,200}") {
            let _ = parse_detections(&text);
        }

        #[test]
        fn well_formed_lines_round_trip(
            rows in proptest::collection::vec((1u32..50, 0f32..500.0, 0f32..500.0, 1f32..100.0, 1f32..100.0, 0f32..1.0), 1..30)
        ) {
            let text: String = rows
                .iter()
                .map(|(f, l, t, w, h, s)| format!("{f},-1,{l},{t},{w},{h},{s},-1,-1,-1\n"))
                .collect();
            let frames = parse_detections(&text).unwrap();
            prop_assert_eq!(frames.len() as u32, rows.iter().map(|r| r.0).max().unwrap());
            let n: usize = frames.iter().map(|f| f.detections.len()).sum();
            prop_assert_eq!(n, rows.len());
        }
    }
}
