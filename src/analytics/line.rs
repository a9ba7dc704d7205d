//! One line's counter: which side of the line each track's anchor is on, with
//! hysteresis, and the crossings it makes.
//!
//! A track's side is known only once its anchor is farther than the margin from
//! the line; inside the margin the side stays what it was. A crossing is a change
//! of known side whose path passes between the line's two ends. Each track is
//! counted at most once per direction. A track first seen on the line gets its
//! side when it leaves the margin, and that is not a crossing.

use std::collections::{HashMap, HashSet};

use super::geometry::{Point, crosses_within, signed_distance};

/// Where a track was last seen clearly on one side.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// -1 left of the line, +1 right of it.
    sign: i8,
    at: Point,
}

/// The crossing state of one line.
#[derive(Debug, Default)]
pub struct LineCounter {
    sides: HashMap<u64, Side>,
    counted: HashSet<(u64, usize)>,
}

impl LineCounter {
    /// Folds in a track's anchor `p`, with `margin` pixels of hysteresis, against
    /// the line `a -> b`. Returns the direction crossed (0: left to right, 1:
    /// right to left) when this observation completes a crossing that counts.
    pub fn observe(
        &mut self,
        a: Point,
        b: Point,
        track: u64,
        p: Point,
        margin: f32,
    ) -> Option<usize> {
        let d = signed_distance(a, b, p);
        let sign = if d > margin {
            1
        } else if d < -margin {
            -1
        } else {
            return None;
        };
        // The first known side is where the track starts, not a crossing.
        let prev = self.sides.insert(track, Side { sign, at: p })?;
        if prev.sign == sign || !crosses_within(a, b, prev.at, p) {
            return None;
        }
        let direction = if prev.sign < 0 { 0 } else { 1 };
        self.counted.insert((track, direction)).then_some(direction)
    }

    /// Forgets an ended track (ids are never reused, so nothing of it is needed).
    pub fn forget(&mut self, track: u64) {
        self.sides.remove(&track);
        self.counted.remove(&(track, 0));
        self.counted.remove(&(track, 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Point = Point::new(0.0, 100.0);
    const B: Point = Point::new(200.0, 100.0);

    fn walk(c: &mut LineCounter, track: u64, ys: &[f32]) -> Vec<usize> {
        ys.iter()
            .filter_map(|&y| c.observe(A, B, track, Point::new(100.0, y), 5.0))
            .collect()
    }

    #[test]
    fn a_walk_down_then_up_counts_each_direction_once() {
        let mut c = LineCounter::default();
        assert_eq!(
            walk(&mut c, 1, &[80.0, 90.0, 99.0, 104.0, 110.0, 120.0]),
            vec![0]
        );
        assert_eq!(walk(&mut c, 1, &[110.0, 90.0, 80.0]), vec![1]);
        // Down again: already counted in that direction.
        assert!(walk(&mut c, 1, &[120.0]).is_empty());
        c.forget(1);
        assert!(
            c.sides.is_empty() && c.counted.is_empty(),
            "nothing kept of ended tracks"
        );
    }

    #[test]
    fn jitter_on_the_line_is_not_a_crossing() {
        let mut c = LineCounter::default();
        let jitter = [90.0, 97.0, 103.0, 96.0, 104.0, 98.0, 102.0, 94.0, 91.0];
        assert!(walk(&mut c, 1, &jitter).is_empty());
    }

    #[test]
    fn a_track_that_appears_on_the_line_is_not_counted() {
        let mut c = LineCounter::default();
        assert!(walk(&mut c, 2, &[100.0, 101.0, 103.0, 110.0, 130.0]).is_empty());
        // Its first real crossing, back up, counts.
        assert_eq!(walk(&mut c, 2, &[90.0]), vec![1]);
    }

    #[test]
    fn passing_beyond_the_end_is_not_a_crossing() {
        let mut c = LineCounter::default();
        let outside = |c: &mut LineCounter, y| c.observe(A, B, 3, Point::new(260.0, y), 5.0);
        assert_eq!(outside(&mut c, 80.0), None);
        assert_eq!(outside(&mut c, 120.0), None);
    }
}
