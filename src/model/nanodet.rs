//! NanoDet output decoding (generalised focal loss / DFL head).
//!
//! Output layout, per pyramid level of stride `s` on a `W`×`H` input
//! (`cells = (W/s)·(H/s)`, row-major from the top-left cell):
//!
//! ```text
//! class scores  [batch, cells, classes]   already sigmoid
//! box bins      [batch, cells, 4 * bins]  logits; sides left, top, right, bottom
//! ```
//!
//! A cell's centre is `((x + 0.5)·s, (y + 0.5)·s)`. For each side the distance to the
//! box edge is the expected bin under a softmax over its `bins` logits, times `s`.
//! Every class whose score passes the threshold yields a candidate (as NanoDet's own
//! post-processing does); class-aware NMS ([`super::nms`]) then removes duplicates.

use super::{BBox, Detection, Family, classes::ClassFilter, geometry::Resize};

/// The shape of one model's outputs and how its input was fitted, as its manifest
/// states them (shared by every family; `bins` is NanoDet's only).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Which decoder reads the outputs.
    pub family: Family,
    /// How frames are fitted to the input (boxes map back through it).
    pub resize: Resize,
    /// Network input width and height in pixels.
    pub input_size: (u32, u32),
    /// Stride of each pyramid level, in output order.
    pub strides: Vec<u32>,
    /// Distance bins per box side.
    pub bins: usize,
    /// Number of class-score channels.
    pub num_classes: usize,
}

impl Layout {
    /// Cells (grid width, grid height) of the level with this stride.
    pub fn grid(&self, stride: u32) -> (usize, usize) {
        (
            self.input_size.0.div_ceil(stride) as usize,
            self.input_size.1.div_ceil(stride) as usize,
        )
    }

    /// Number of cells of the level with this stride.
    pub fn cells(&self, stride: u32) -> usize {
        let (w, h) = self.grid(stride);
        w * h
    }

    /// Frozen box values per cell that retraining keeps: NanoDet's `4·bins`
    /// distance logits, YOLOX's raw box and objectness.
    pub fn box_channels(&self) -> usize {
        match self.family {
            Family::Nanodet => 4 * self.bins,
            Family::Yolox => YOLOX_BOX_CHANNELS,
        }
    }

    /// The box of `cell` of the level with `stride` from its frozen box values
    /// (a row of [`Self::box_channels`]), in network-input pixels.
    pub fn frozen_box(&self, stride: u32, cell: usize, row: &[f32]) -> BBox {
        let (grid_w, _) = self.grid(stride);
        match self.family {
            Family::Nanodet => cell_box(cell, grid_w, stride, row, self.bins),
            Family::Yolox => super::yolox::cell_box(cell, grid_w, stride, row),
        }
    }

    /// How many output tensors the family has.
    pub fn tensor_count(&self) -> usize {
        match self.family {
            Family::Nanodet => 2 * self.strides.len(),
            Family::Yolox => 1,
        }
    }

    /// The output tensors in manifest order, as (cells, channels) per tensor:
    /// NanoDet's class tensors then box tensors per stride; YOLOX's one tensor.
    pub fn tensors(&self) -> Vec<(usize, usize)> {
        match self.family {
            Family::Nanodet => {
                let cells = self.strides.iter().map(|&s| self.cells(s));
                cells
                    .clone()
                    .map(|c| (c, self.num_classes))
                    .chain(cells.map(|c| (c, 4 * self.bins)))
                    .collect()
            }
            Family::Yolox => {
                let cells = self.strides.iter().map(|&s| self.cells(s)).sum();
                vec![(cells, 5 + self.num_classes)]
            }
        }
    }
}

/// YOLOX's frozen box values per cell: `x, y, log w, log h`, objectness.
pub const YOLOX_BOX_CHANNELS: usize = 5;

/// The outputs of one frame for one level: `scores` is `cells × classes`, `boxes` is
/// `cells × 4·bins`, both row-major.
#[derive(Debug, Clone, Copy)]
pub struct LevelOutputs<'a> {
    pub stride: u32,
    pub scores: &'a [f32],
    pub boxes: &'a [f32],
}

/// Decodes one frame's outputs into candidate detections in network-input pixels,
/// before NMS. Only classes that `filter` keeps are considered.
pub fn decode(
    layout: &Layout,
    levels: &[LevelOutputs<'_>],
    score_threshold: f32,
    filter: &ClassFilter,
) -> Vec<Detection> {
    let mut out = Vec::new();
    for level in levels {
        let (grid_w, _) = layout.grid(level.stride);
        let per_cell_box = 4 * layout.bins;
        for (cell, scores) in level.scores.chunks_exact(layout.num_classes).enumerate() {
            let mut bbox: Option<BBox> = None;
            for (class_id, &score) in scores.iter().enumerate() {
                if score <= score_threshold || !filter.keeps(class_id) {
                    continue;
                }
                let b = *bbox.get_or_insert_with(|| {
                    let bins = &level.boxes[cell * per_cell_box..(cell + 1) * per_cell_box];
                    cell_box(cell, grid_w, level.stride, bins, layout.bins)
                });
                out.push(Detection {
                    class_id,
                    score,
                    bbox: b,
                });
            }
        }
    }
    out
}

/// The box of one cell from its `4 × bins` distance logits.
pub fn cell_box(cell: usize, grid_w: usize, stride: u32, logits: &[f32], bins: usize) -> BBox {
    let s = stride as f32;
    let cx = ((cell % grid_w) as f32 + 0.5) * s;
    let cy = ((cell / grid_w) as f32 + 0.5) * s;
    let mut d = [0.0f32; 4];
    for (side, chunk) in logits.chunks_exact(bins).enumerate() {
        d[side] = expected_bin(chunk) * s;
    }
    [cx - d[0], cy - d[1], cx + d[2], cy + d[3]]
}

/// Expected bin index under a softmax of `logits` (numerically stable).
pub fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0.0f32, 0.0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            family: Family::Nanodet,
            resize: Resize::Stretch,
            input_size: (32, 32),
            strides: vec![8, 16],
            bins: 3,
            num_classes: 2,
        }
    }

    #[test]
    fn expected_bin_of_peaked_and_flat_logits() {
        // A strong peak at bin 2 gives ~2; equal logits give the mean bin.
        assert!((expected_bin(&[0.0, 0.0, 50.0]) - 2.0).abs() < 1e-4);
        assert!((expected_bin(&[1.0, 1.0, 1.0, 1.0, 1.0]) - 2.0).abs() < 1e-6);
        // Hand-computed: softmax([0, ln 3]) = [0.25, 0.75] -> 0.75.
        assert!((expected_bin(&[0.0, 3.0f32.ln()]) - 0.75).abs() < 1e-6);
        // Large logits must not overflow.
        assert!((expected_bin(&[1000.0, 1000.0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn decodes_a_single_hot_cell_by_hand() {
        let l = layout();
        // Level stride 8: 4×4 grid. Cell 6 is (x=2, y=1): centre (20, 12).
        let mut scores = vec![0.0f32; 16 * 2];
        scores[6 * 2 + 1] = 0.9; // class 1
        let mut boxes = vec![0.0f32; 16 * 12];
        // Distances in bins: left 1, top 0, right 2, bottom 1 (strong one-hot logits).
        for (side, bin) in [1usize, 0, 2, 1].iter().enumerate() {
            boxes[6 * 12 + side * 3 + bin] = 60.0;
        }
        let level16_scores = vec![0.0f32; 4 * 2];
        let level16_boxes = vec![0.0f32; 4 * 12];
        let dets = decode(
            &l,
            &[
                LevelOutputs {
                    stride: 8,
                    scores: &scores,
                    boxes: &boxes,
                },
                LevelOutputs {
                    stride: 16,
                    scores: &level16_scores,
                    boxes: &level16_boxes,
                },
            ],
            0.5,
            &ClassFilter::All,
        );
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        let b = dets[0].bbox;
        let want = [20.0 - 8.0, 12.0 - 0.0, 20.0 + 16.0, 12.0 + 8.0];
        for (got, want) in b.iter().zip(want) {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
    }

    #[test]
    fn threshold_and_filter_drop_candidates() {
        let l = layout();
        let mut scores = vec![0.0f32; 16 * 2];
        scores[0] = 0.4; // class 0, below 0.5
        scores[3] = 0.8; // cell 1, class 1
        let boxes = vec![0.0f32; 16 * 12];
        let lv = [LevelOutputs {
            stride: 8,
            scores: &scores,
            boxes: &boxes,
        }];
        assert_eq!(decode(&l, &lv, 0.5, &ClassFilter::All).len(), 1);
        assert_eq!(decode(&l, &lv, 0.3, &ClassFilter::All).len(), 2);
        let only0 = ClassFilter::only([0]);
        assert_eq!(decode(&l, &lv, 0.3, &only0).len(), 1);
        assert_eq!(decode(&l, &lv, 0.5, &only0).len(), 0);
    }
}
