//! Which cells a training pass computes, with `--train-layers head`.
//!
//! Most of an image's cells are easy background. The quality focal loss's gradient
//! on a negative the head scores `p` is about `3p³` (`p ≪ 1`), so a cell scored
//! below [`SKIP_BELOW`] adds less than 4·10⁻⁴ to a step whose positives add about
//! 0.1 each (a cell at 0.01, most of the background once trained, 3·10⁻⁶). Yet
//! with trainable trunks every cell costs a convolution forward and, when its
//! gradient counts, one backward.
//!
//! So [`CellMemory`] keeps, per training image, level and cell, the highest class
//! score the head gave the cell the last time it was computed. Every
//! [`REFRESH_EVERY`]-th epoch, the first included, a pass computes every cell
//! (through ONNX Runtime's convolution) and records every score. The epochs in
//! between compute the positives, the cells whose recorded score is at least
//! `SKIP_BELOW`, and a random [`SAMPLE_EASY`] share of the others, whose loss
//! counts `1 / SAMPLE_EASY` times (so the class loss's expected gradient is the
//! full pass's); their convolution is a GEMM over their patches (see
//! `trunk::Trunk::forward_cells`), and they record their scores. The sample keeps
//! pressing the easy background down between refreshes: without it a cell could
//! climb unchecked from just under `SKIP_BELOW` to a false detection (measured:
//! validation AP@0.5 fell from 0.92 to 0.16 in one such epoch). Cells inside
//! ignore regions take no loss and are not computed between refreshes.
//!
//! Data flow: `head::train_epoch` asks [`CellMemory::pick`] per image and level,
//! runs the pass, and hands the scores back to [`CellMemory::record`]. The memory
//! is one `f32` per cell and training image (3 levels at 512 × 512: 5376 cells,
//! 21 KB an image).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::assign::LevelTargets;

/// A negative cell whose recorded score is below this is left out of the passes
/// between refreshes.
pub const SKIP_BELOW: f32 = 0.05;

/// The share of the easy cells (below `SKIP_BELOW`) a pass between refreshes
/// computes anyway, at random.
pub const SAMPLE_EASY: f32 = 0.05;

/// Every this many epochs (from the first) a pass computes every cell.
pub const REFRESH_EVERY: usize = 8;

/// Whether `epoch` (from 1) computes every cell.
pub fn is_full_epoch(epoch: usize) -> bool {
    epoch.saturating_sub(1).is_multiple_of(REFRESH_EVERY)
}

/// The cells one level's pass computes, in increasing order, and the weight of
/// each one's loss.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CellPick {
    pub cells: Vec<usize>,
    pub weights: Vec<f32>,
}

/// The last recorded score of every cell of every training image.
#[derive(Debug, Clone)]
pub struct CellMemory {
    /// `[image][level][cell]`; `f32::INFINITY` until first recorded.
    scores: Vec<Vec<Vec<f32>>>,
    /// Draws the sample of easy cells.
    rng: ChaCha8Rng,
}

impl CellMemory {
    /// A memory for images with `cells[l]` cells on level `l`, nothing recorded;
    /// `seed` seeds the sample of easy cells.
    pub fn new(images: usize, cells: &[usize], seed: u64) -> Self {
        let image: Vec<Vec<f32>> = cells.iter().map(|&n| vec![f32::INFINITY; n]).collect();
        Self {
            scores: vec![image; images],
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The cells of `image`'s level `level` that a pass between refreshes
    /// computes: the positives and the negatives outside ignore regions whose
    /// recorded score is at least [`SKIP_BELOW`] (or not yet recorded), weight 1;
    /// a [`SAMPLE_EASY`] share of the other negatives, weight `1 / SAMPLE_EASY`.
    pub fn pick(&mut self, image: usize, level: usize, targets: &LevelTargets) -> CellPick {
        let scores = &self.scores[image][level];
        let mut pick = CellPick::default();
        for (c, &score) in scores.iter().enumerate() {
            let positive = targets.class[c].is_some();
            let weight = if !positive && targets.ignored[c] {
                continue;
            } else if positive || score >= SKIP_BELOW {
                1.0
            } else if self.rng.random::<f32>() < SAMPLE_EASY {
                1.0 / SAMPLE_EASY
            } else {
                continue;
            };
            pick.cells.push(c);
            pick.weights.push(weight);
        }
        pick
    }

    /// Records the scores of a pass over `image`'s level `level`: `scores[i]` is
    /// cell `cells[i]`'s, or cell `i`'s when `cells` is `None` (every cell).
    pub fn record(&mut self, image: usize, level: usize, cells: Option<&[usize]>, scores: &[f32]) {
        let memory = &mut self.scores[image][level];
        debug_assert_eq!(cells.map_or(memory.len(), <[usize]>::len), scores.len());
        match cells {
            None => memory.copy_from_slice(scores),
            Some(cells) => {
                for (&c, &s) in cells.iter().zip(scores) {
                    memory[c] = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(classes: &[Option<usize>], ignored: &[bool]) -> LevelTargets {
        LevelTargets {
            class: classes.to_vec(),
            ignored: ignored.to_vec(),
            quality: vec![0.0; classes.len()],
            truth: vec![[0.0; 4]; classes.len()],
        }
    }

    #[test]
    fn refreshes_come_first_and_every_few_epochs() {
        let full: Vec<usize> = (1..=20).filter(|&e| is_full_epoch(e)).collect();
        assert_eq!(full, [1, 9, 17]);
    }

    fn cells(memory: &mut CellMemory, image: usize, t: &LevelTargets) -> Vec<usize> {
        let pick = memory.pick(image, 0, t);
        // Without an easy sample (it is random), every weight is 1.
        assert!(pick.weights.iter().all(|&w| w == 1.0), "{pick:?}");
        pick.cells
    }

    #[test]
    fn keeps_positives_hard_and_unknown_cells_and_skips_easy_and_ignored_ones() {
        // A seed whose draws leave every easy cell out here.
        let mut memory = CellMemory::new(2, &[6], 0);
        let t = targets(
            &[Some(0), None, None, None, None, None],
            &[false, false, false, true, false, false],
        );
        // Nothing recorded: every cell outside ignore regions.
        assert_eq!(cells(&mut memory, 0, &t), [0, 1, 2, 4, 5]);
        memory.record(0, 0, None, &[0.0001, 0.2, 0.001, 0.9, 0.05, 0.0]);
        // The positive despite its low score, the hard cell, the one at the
        // threshold; not the easy ones nor the ignored one.
        assert_eq!(cells(&mut memory, 0, &t), [0, 1, 4]);
        // A partial pass updates only its cells.
        memory.record(0, 0, Some(&[1, 4]), &[0.001, 0.3]);
        assert_eq!(cells(&mut memory, 0, &t), [0, 4]);
        // Another image is untouched.
        assert_eq!(cells(&mut memory, 1, &t), [0, 1, 2, 4, 5]);
    }

    #[test]
    fn samples_a_share_of_the_easy_cells_at_its_inverse_weight() {
        let n = 20_000;
        let mut memory = CellMemory::new(1, &[n], 3);
        let t = targets(&vec![None; n], &vec![false; n]);
        memory.record(0, 0, None, &vec![0.001; n]);
        let pick = memory.pick(0, 0, &t);
        let share = pick.cells.len() as f32 / n as f32;
        assert!((share - SAMPLE_EASY).abs() < 0.01, "{share}");
        assert!(pick.weights.iter().all(|&w| w == 1.0 / SAMPLE_EASY));
        assert!(pick.cells.windows(2).all(|w| w[0] < w[1]));
    }
}
