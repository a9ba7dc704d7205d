//! Optimal one-to-one assignment of tracks to detections with a cost limit: the
//! `lapjv(cost, extend_cost=True, cost_limit=L)` call of ByteTrack, solved with
//! `pathfinding`'s Kuhn–Munkres.
//!
//! Why it is the same problem: with a cost limit, leaving a row or a column
//! unmatched costs `L / 2`, so a match of cost `c` saves `L - c` against leaving
//! both out. Minimising the total cost is then maximising the sum of `L - c` over
//! the matches, where a pair with `c >= L` can only lose and is never kept.
//! Kuhn–Munkres maximises integer weights, so the weights are `L - c` scaled to
//! integers (`c` is in [0, 1]: a resolution of 1e-6 is far below any IoU that
//! matters) and clamped at zero; zero-weight matches are dropped afterwards.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// Integer steps per unit of cost.
const SCALE: f64 = 1e6;

/// The outcome: matched `(row, column)` pairs, and the rows and columns left over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub matches: Vec<(usize, usize)>,
    pub unmatched_rows: Vec<usize>,
    pub unmatched_columns: Vec<usize>,
}

/// Assigns rows to columns minimising the summed `cost` (row-major, `rows ×
/// columns`), never matching a pair whose cost is `>= limit`.
pub fn assign(cost: &[f32], rows: usize, columns: usize, limit: f32) -> Assignment {
    debug_assert_eq!(cost.len(), rows * columns);
    let weight = |c: f32| ((f64::from(limit) - f64::from(c)) * SCALE).max(0.0).round() as i64;
    let mut matches = Vec::new();
    if rows > 0 && columns > 0 {
        // Kuhn–Munkres wants no more rows than columns: transpose when needed.
        if rows <= columns {
            let m = Matrix::from_fn(rows, columns, |(r, c)| weight(cost[r * columns + c]));
            let (_, cols) = kuhn_munkres(&m);
            for (r, c) in cols.into_iter().enumerate() {
                if m[(r, c)] > 0 {
                    matches.push((r, c));
                }
            }
        } else {
            let m = Matrix::from_fn(columns, rows, |(c, r)| weight(cost[r * columns + c]));
            let (_, rows_of) = kuhn_munkres(&m);
            for (c, r) in rows_of.into_iter().enumerate() {
                if m[(c, r)] > 0 {
                    matches.push((r, c));
                }
            }
            matches.sort_unstable();
        }
    }
    let mut row_used = vec![false; rows];
    let mut col_used = vec![false; columns];
    for &(r, c) in &matches {
        row_used[r] = true;
        col_used[c] = true;
    }
    Assignment {
        matches,
        unmatched_rows: (0..rows).filter(|&r| !row_used[r]).collect(),
        unmatched_columns: (0..columns).filter(|&c| !col_used[c]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every partial matching, by brute force: the least total cost with each
    /// unmatched row and column costing `limit / 2`.
    fn brute_force(cost: &[f32], rows: usize, columns: usize, limit: f32) -> f64 {
        fn go(
            r: usize,
            used: &mut Vec<bool>,
            cost: &[f32],
            rows: usize,
            cols: usize,
            l: f64,
        ) -> f64 {
            if r == rows {
                let free = used.iter().filter(|u| !**u).count();
                return free as f64 * l / 2.0;
            }
            // Row r unmatched.
            let mut best = l / 2.0 + go(r + 1, used, cost, rows, cols, l);
            for c in 0..cols {
                let v = f64::from(cost[r * cols + c]);
                if !used[c] && v < l {
                    used[c] = true;
                    best = best.min(v + go(r + 1, used, cost, rows, cols, l));
                    used[c] = false;
                }
            }
            best
        }
        go(
            0,
            &mut vec![false; columns],
            cost,
            rows,
            columns,
            f64::from(limit),
        )
    }

    fn total(a: &Assignment, cost: &[f32], columns: usize, limit: f32) -> f64 {
        let l = f64::from(limit);
        a.matches
            .iter()
            .map(|&(r, c)| f64::from(cost[r * columns + c]))
            .sum::<f64>()
            + (a.unmatched_rows.len() + a.unmatched_columns.len()) as f64 * l / 2.0
    }

    #[test]
    fn picks_the_global_optimum_not_the_greedy_one() {
        // Greedy takes (0,0) at 0.1 and leaves row 1 with 0.9 (over the limit);
        // the optimum matches both rows.
        let cost = [0.1, 0.2, 0.3, 0.95];
        let a = assign(&cost, 2, 2, 0.8);
        assert_eq!(a.matches, vec![(0, 1), (1, 0)]);
        assert!(a.unmatched_rows.is_empty() && a.unmatched_columns.is_empty());
    }

    #[test]
    fn never_matches_at_or_over_the_limit() {
        let a = assign(&[0.9, 0.85, 0.99], 3, 1, 0.8);
        assert!(a.matches.is_empty());
        assert_eq!(a.unmatched_rows, vec![0, 1, 2]);
        assert_eq!(a.unmatched_columns, vec![0]);
        let empty = assign(&[], 0, 3, 0.8);
        assert_eq!(empty.unmatched_columns, vec![0, 1, 2]);
    }

    proptest! {
        #[test]
        fn equals_brute_force(
            rows in 0usize..5,
            columns in 0usize..5,
            values in proptest::collection::vec(0.0f32..1.0, 25),
            limit in 0.1f32..1.0,
        ) {
            let cost: Vec<f32> = values[..rows * columns].to_vec();
            let a = assign(&cost, rows, columns, limit);
            let best = brute_force(&cost, rows, columns, limit);
            prop_assert!((total(&a, &cost, columns, limit) - best).abs() < 1e-4);
            for &(r, c) in &a.matches {
                prop_assert!(cost[r * columns + c] < limit);
            }
            prop_assert_eq!(a.matches.len() + a.unmatched_rows.len(), rows);
            prop_assert_eq!(a.matches.len() + a.unmatched_columns.len(), columns);
        }
    }
}
