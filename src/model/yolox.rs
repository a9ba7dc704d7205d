//! YOLOX output decoding (anchor-free, decoupled head, as exported by YOLOX with
//! `decode_in_inference = False`).
//!
//! Output layout: one tensor `[batch, cells, 4 + 1 + classes]` whose cells are the
//! pyramid levels in stride order, each row-major from the top-left cell
//! (`cells = Σ (W/s)·(H/s)`). Per cell: `x, y, log w, log h` (raw), objectness and
//! class scores (both already sigmoid). The box centre is `(x + gx)·s`, `(y + gy)·s`
//! (YOLOX's grid has no half-cell offset), its size `exp(log w)·s`, `exp(log h)·s`;
//! a class's score is objectness × class score.

use super::{BBox, Detection, classes::ClassFilter, nanodet::Layout};

/// Decodes one frame's output into candidate detections in network-input pixels,
/// before NMS. Only classes that `filter` keeps are considered.
pub fn decode(
    layout: &Layout,
    output: &[f32],
    score_threshold: f32,
    filter: &ClassFilter,
) -> Vec<Detection> {
    let width = 5 + layout.num_classes;
    let mut rows = output.chunks_exact(width);
    let mut out = Vec::new();
    for &stride in &layout.strides {
        let (grid_w, grid_h) = layout.grid(stride);
        for (cell, row) in rows.by_ref().take(grid_w * grid_h).enumerate() {
            let objectness = row[4];
            // score = objectness × class ≤ objectness: most cells end here.
            if objectness <= score_threshold {
                continue;
            }
            let bbox = cell_box(cell, grid_w, stride, row);
            for (class_id, &class_score) in row[5..].iter().enumerate() {
                let score = objectness * class_score;
                if score > score_threshold && filter.keeps(class_id) {
                    out.push(Detection {
                        class_id,
                        score,
                        bbox,
                    });
                }
            }
        }
    }
    out
}

/// The box of one cell from its row (`x, y, log w, log h`, raw), in
/// network-input pixels.
pub fn cell_box(cell: usize, grid_w: usize, stride: u32, row: &[f32]) -> BBox {
    let s = stride as f32;
    let cx = (row[0] + (cell % grid_w) as f32) * s;
    let cy = (row[1] + (cell / grid_w) as f32) * s;
    let (half_w, half_h) = (row[2].exp() * s / 2.0, row[3].exp() * s / 2.0);
    [cx - half_w, cy - half_h, cx + half_w, cy + half_h]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, geometry::Resize};

    fn layout() -> Layout {
        Layout {
            family: Family::Yolox,
            resize: Resize::Letterbox,
            input_size: (32, 32),
            strides: vec![8, 16],
            bins: 0,
            num_classes: 2,
        }
    }

    #[test]
    fn decodes_one_cell_of_the_second_level_by_hand() {
        let l = layout();
        // 16 cells of stride 8, then 4 of stride 16: 20 rows of 7.
        let mut out = vec![0.0f32; 20 * 7];
        // Second level, cell 3 = (x 1, y 1); offsets (0.5, 0.25), size exp(0)·16.
        let row = &mut out[(16 + 3) * 7..(16 + 4) * 7];
        row.copy_from_slice(&[0.5, 0.25, 0.0, 2f32.ln(), 0.8, 0.5, 0.9]);
        let dets = decode(&l, &out, 0.3, &ClassFilter::All);
        // Centre ((0.5 + 1)·16, (0.25 + 1)·16) = (24, 20); size 16 × 32.
        let want = [16.0, 4.0, 32.0, 36.0];
        assert_eq!(dets.len(), 2, "{dets:?}");
        for d in &dets {
            assert!(d.bbox.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4));
        }
        assert!((dets[0].score - 0.4).abs() < 1e-6 && dets[0].class_id == 0);
        assert!((dets[1].score - 0.72).abs() < 1e-6 && dets[1].class_id == 1);
        // A higher threshold keeps only class 1; a filter drops it.
        assert_eq!(decode(&l, &out, 0.5, &ClassFilter::All).len(), 1);
        assert!(decode(&l, &out, 0.5, &ClassFilter::only([0])).is_empty());
    }

    #[test]
    fn a_short_output_decodes_what_it_has_without_panicking() {
        let dets = decode(&layout(), &[0.0; 7 * 3], 0.1, &ClassFilter::All);
        assert!(dets.is_empty());
    }
}
