//! Training targets per cell: which cells are positives for which box, and the
//! soft (IoU-aware) score each should learn.
//!
//! For each ground-truth box, the candidates are the cells (of every level) whose
//! centre lies inside it, plus on each level the cell that holds the box's centre
//! (so a box smaller than a stride still gets one). Each candidate's *frozen* box
//! prediction is compared with the box; candidates whose IoU reaches the mean + the
//! standard deviation of the candidates' IoUs become positives (ATSS's adaptive
//! threshold, with the best candidate always kept). A cell claimed by two boxes
//! goes to the one it overlaps more. The score target of a positive is that IoU, as
//! in NanoDet's quality focal loss; every other cell and class has target 0, except
//! cells whose centre lies in an ignore region (KITTI `DontCare`, COCO crowd): they
//! are marked `ignored` and take no class loss (they are not background).

use crate::model::BBox;
use crate::model::geometry::iou;
use crate::model::nanodet::Layout;

/// Targets of one level: per cell, the class (`None` = negative), the score target
/// and, for positives, the box in network-input pixels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelTargets {
    pub class: Vec<Option<usize>>,
    /// Negative cells inside an ignore region: left out of the class loss.
    pub ignored: Vec<bool>,
    pub quality: Vec<f32>,
    pub truth: Vec<BBox>,
}

impl LevelTargets {
    /// Number of positive cells.
    pub fn positives(&self) -> usize {
        self.class.iter().filter(|c| c.is_some()).count()
    }
}

/// Assigns ground truth `(class, box in network-input pixels)` to the cells of every
/// level, given each level's frozen box logits (`cells × Layout::box_channels()`,
/// row-major).
pub fn assign(
    layout: &Layout,
    box_logits: &[&[f32]],
    truth: &[(usize, BBox)],
    ignore: &[BBox],
) -> Vec<LevelTargets> {
    let per_cell = layout.box_channels();
    let mut levels: Vec<LevelTargets> = layout
        .strides
        .iter()
        .map(|&s| {
            let cells = layout.cells(s);
            LevelTargets {
                class: vec![None; cells],
                ignored: vec![false; cells],
                quality: vec![0.0; cells],
                truth: vec![[0.0; 4]; cells],
            }
        })
        .collect();
    for &(class, gt) in truth {
        // (level, cell, IoU of the frozen prediction with this box)
        let mut candidates: Vec<(usize, usize, f32)> = Vec::new();
        for (l, &stride) in layout.strides.iter().enumerate() {
            let (gw, gh) = layout.grid(stride);
            let s = stride as f32;
            let centre_cell = {
                let cx = (((gt[0] + gt[2]) / 2.0 / s) as usize).min(gw - 1);
                let cy = (((gt[1] + gt[3]) / 2.0 / s) as usize).min(gh - 1);
                cy * gw + cx
            };
            let x0 = ((gt[0] / s - 0.5).ceil().max(0.0)) as usize;
            let y0 = ((gt[1] / s - 0.5).ceil().max(0.0)) as usize;
            let x1 = ((gt[2] / s - 0.5).floor().max(-1.0) + 1.0).min(gw as f32) as usize;
            let y1 = ((gt[3] / s - 0.5).floor().max(-1.0) + 1.0).min(gh as f32) as usize;
            let mut cells: Vec<usize> = (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| y * gw + x))
                .collect();
            if !cells.contains(&centre_cell) {
                cells.push(centre_cell);
            }
            for cell in cells {
                let logits = &box_logits[l][cell * per_cell..(cell + 1) * per_cell];
                let pred = layout.frozen_box(stride, cell, logits);
                candidates.push((l, cell, iou(&pred, &gt)));
            }
        }
        let n = candidates.len() as f32;
        let mean = candidates.iter().map(|c| c.2).sum::<f32>() / n;
        let std = (candidates.iter().map(|c| (c.2 - mean).powi(2)).sum::<f32>() / n).sqrt();
        let best = candidates
            .iter()
            .map(|c| c.2)
            .fold(f32::NEG_INFINITY, f32::max);
        let threshold = (mean + std).min(best);
        for &(l, cell, overlap) in &candidates {
            if overlap < threshold {
                continue;
            }
            let level = &mut levels[l];
            if level.class[cell].is_none() || level.quality[cell] < overlap {
                level.class[cell] = Some(class);
                level.quality[cell] = overlap;
                level.truth[cell] = gt;
            }
        }
    }
    mark_ignored(layout, &mut levels, ignore);
    levels
}

/// Marks the negative cells whose centre lies inside one of `regions`.
fn mark_ignored(layout: &Layout, levels: &mut [LevelTargets], regions: &[BBox]) {
    for (level, &stride) in levels.iter_mut().zip(&layout.strides) {
        let (gw, _) = layout.grid(stride);
        let s = stride as f32;
        for (cell, ignored) in level.ignored.iter_mut().enumerate() {
            let (cx, cy) = (
                ((cell % gw) as f32 + 0.5) * s,
                ((cell / gw) as f32 + 0.5) * s,
            );
            *ignored = level.class[cell].is_none()
                && regions
                    .iter()
                    .any(|r| cx >= r[0] && cx <= r[2] && cy >= r[1] && cy <= r[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            family: crate::model::Family::Nanodet,
            resize: crate::model::geometry::Resize::Stretch,
            input_size: (64, 64),
            strides: vec![8, 16],
            bins: 3,
            num_classes: 1,
        }
    }

    /// Box logits that predict, at every cell, distances of `d` bins on each side.
    fn logits(cells: usize, bins: usize, d: usize) -> Vec<f32> {
        let mut v = vec![0.0; cells * 4 * bins];
        for cell in 0..cells {
            for side in 0..4 {
                v[cell * 4 * bins + side * bins + d] = 50.0;
            }
        }
        v
    }

    #[test]
    fn the_best_fitting_cells_become_positives_with_iou_targets() {
        let l = layout();
        // Every cell predicts a box of ±1 bin: 16×16 at stride 8, 32×32 at stride 16.
        let (a, b) = (logits(64, 3, 1), logits(16, 3, 1));
        // A 16×16 box centred on the stride-8 cell (2, 2) (centre 20, 20).
        let gt = [12.0, 12.0, 28.0, 28.0];
        let t = assign(&l, &[&a, &b], &[(0, gt)], &[]);
        assert_eq!(t[0].class[2 * 8 + 2], Some(0));
        assert!((t[0].quality[2 * 8 + 2] - 1.0).abs() < 1e-5);
        assert_eq!(t[0].truth[2 * 8 + 2], gt);
        // Its neighbours overlap less and stay negative; so does the coarse level.
        assert_eq!(t[0].positives() + t[1].positives(), 1, "{:?}", t[0].class);
    }

    #[test]
    fn a_box_smaller_than_a_cell_still_gets_a_positive() {
        let l = layout();
        let (a, b) = (logits(64, 3, 0), logits(16, 3, 0));
        let t = assign(&l, &[&a, &b], &[(0, [1.0, 1.0, 3.0, 3.0])], &[]);
        assert!(t[0].positives() + t[1].positives() >= 1);
        assert!(t.iter().all(|lt| lt.class.len() == lt.quality.len()));
    }

    #[test]
    fn cells_in_an_ignore_region_are_ignored_unless_positive() {
        let l = layout();
        let (a, b) = (logits(64, 3, 1), logits(16, 3, 1));
        let gt = [12.0, 12.0, 28.0, 28.0];
        // The region covers the top-left 32×32: cells with centres inside it.
        let t = assign(&l, &[&a, &b], &[(0, gt)], &[[0.0, 0.0, 32.0, 32.0]]);
        for (level, stride) in t.iter().zip([8usize, 16]) {
            let gw = 64 / stride;
            for (cell, ignored) in level.ignored.iter().enumerate() {
                let centre = |i: usize| (i as f32 + 0.5) * stride as f32;
                let inside = centre(cell % gw) <= 32.0 && centre(cell / gw) <= 32.0;
                let want = inside && level.class[cell].is_none();
                assert_eq!(*ignored, want, "stride {stride} cell {cell}");
            }
        }
        assert!(t[0].ignored.iter().filter(|&&i| i).count() >= 10);
        assert!(t.iter().any(|l| l.positives() > 0));
        // No regions: nothing ignored.
        let t = assign(&l, &[&a, &b], &[(0, gt)], &[]);
        assert!(t.iter().all(|l| l.ignored.iter().all(|i| !i)));
    }
}
