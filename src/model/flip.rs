//! Test-time flip (the manifest's `input.tta = "flip"`, `--tta flip`): the network
//! sees each frame twice, as it is and mirrored left to right, in one batch; the
//! cost is twice the inference.
//!
//! Merging the two views ([`merge`]): each view's boxes go through their own NMS
//! (the mirror's mirrored back first), then, best first, a box takes every
//! remaining box of its class that overlaps it by more than the NMS threshold, in
//! either view. It keeps its own corners; its score is the mean of the best score
//! each view gave that object, a view that did not see it counting 0. Averaging
//! the two views' evidence ranks people above the background better than either
//! view alone, or than keeping the higher of the two scores (measured in
//! models/README.md). Views are decoded at half the score threshold, so that an
//! object both views see at about the threshold is not lost; merged scores below
//! the threshold are then dropped.
//!
//! Mirroring the whole network input (bars included) is exact for both resize
//! modes: input column `c` of the mirror is column `W − 1 − c` of the original, so
//! a box `[x1, y1, x2, y2]` found there is `[W − x2, y1, W − x1, y2]` here, and maps
//! to source pixels through the frame's own placement.

use serde::Deserialize;

use super::{BBox, Detection, geometry::iou};

/// What else the network sees of each frame (the manifest's `input.tta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    /// The frame once, as it is.
    #[default]
    None,
    /// The frame and its mirror image; boxes of both, then NMS.
    Flip,
}

impl crate::choice::Choice for Tta {
    const ALL: &'static [Self] = &[Self::None, Self::Flip];
    /// The manifest's word for it (and `--tta`'s).
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Flip => "flip",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::None => "each frame once, as it is",
            Self::Flip => {
                "each frame and its left-right mirror image, an object scored by the mean of the two views: ranks people above the background better, at twice the inference"
            }
        }
    }
}

/// Writes the left-right mirror image of one planar input (`planes × H × W`
/// floats, rows of `width`) into `out`, of the same length.
pub fn mirror_input(input: &[f32], width: usize, out: &mut [f32]) {
    assert_eq!(input.len(), out.len(), "mirror buffer size");
    for (row_in, row_out) in input.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        for (o, &v) in row_out.iter_mut().zip(row_in.iter().rev()) {
            *o = v;
        }
    }
}

/// A box found in the mirror image of a `width`-pixel-wide input, in the
/// original input's pixels.
pub fn unmirror(b: &BBox, width: f32) -> BBox {
    [width - b[2], b[1], width - b[0], b[3]]
}

/// One frame's detections from its two views (each after its own NMS, the
/// mirror's already mirrored back), merged as the module says; best first.
pub fn merge(
    direct: Vec<Detection>,
    mirrored: Vec<Detection>,
    iou_threshold: f32,
) -> Vec<Detection> {
    let mut all: Vec<(Detection, usize)> = (direct.into_iter().map(|d| (d, 0)))
        .chain(mirrored.into_iter().map(|d| (d, 1)))
        .collect();
    // Stable: at equal scores the frame's own view leads.
    all.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
    let mut taken = vec![false; all.len()];
    let mut merged = Vec::new();
    for i in 0..all.len() {
        if taken[i] {
            continue;
        }
        let lead = &all[i].0;
        let mut best = [0.0f32; 2];
        for (j, (other, view)) in all.iter().enumerate().skip(i) {
            let joins = j == i
                || (other.class_id == lead.class_id
                    && iou(&lead.bbox, &other.bbox) > iou_threshold);
            if !taken[j] && joins {
                taken[j] = true;
                best[*view] = best[*view].max(other.score);
            }
        }
        merged.push(Detection {
            score: (best[0] + best[1]) / 2.0,
            ..lead.clone()
        });
    }
    merged.sort_by(|a, b| b.score.total_cmp(&a.score));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mirror_reverses_each_row_of_each_plane() {
        // Two planes of 2 × 3.
        let input = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ];
        let mut out = [0.0; 12];
        mirror_input(&input, 3, &mut out);
        assert_eq!(
            out,
            [
                3.0, 2.0, 1.0, 6.0, 5.0, 4.0, 9.0, 8.0, 7.0, 12.0, 11.0, 10.0
            ]
        );
    }

    #[test]
    fn a_box_in_the_mirror_maps_back_to_where_the_object_is() {
        // An object over columns 10..30 of a 100-wide input is over 70..90 in
        // the mirror.
        assert_eq!(
            unmirror(&[70.0, 5.0, 90.0, 50.0], 100.0),
            [10.0, 5.0, 30.0, 50.0]
        );
    }

    fn det(class_id: usize, score: f32, x: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: [x, 0.0, x + 10.0, 20.0],
        }
    }

    #[test]
    fn merged_scores_are_the_mean_of_the_views() {
        let merged = merge(
            vec![det(0, 0.8, 0.0), det(0, 0.6, 100.0)],
            vec![det(0, 0.4, 1.0), det(0, 0.9, 200.0)],
            0.5,
        );
        let got: Vec<(f32, f32)> = merged.iter().map(|d| (d.score, d.bbox[0])).collect();
        // Seen in both views: (0.8 + 0.4) / 2 at the better box's place; seen
        // in one: half its score.
        assert_eq!(got, vec![(0.6, 0.0), (0.45, 200.0), (0.3, 100.0)]);
    }

    #[test]
    fn classes_never_merge() {
        let merged = merge(vec![det(0, 0.8, 0.0)], vec![det(1, 0.8, 0.0)], 0.5);
        assert_eq!(merged.len(), 2);
        assert!(merged.iter().all(|d| (d.score - 0.4).abs() < 1e-6));
    }

    #[test]
    fn a_view_counts_its_best_box_of_the_object_once() {
        // Two boxes of the direct view overlapping the lead (a loose NMS kept
        // both): the view's best counts, not their sum.
        let merged = merge(
            vec![det(0, 0.9, 0.0), det(0, 0.7, 1.0)],
            vec![det(0, 0.5, 0.5)],
            0.2,
        );
        assert_eq!(merged.len(), 1);
        assert!((merged[0].score - 0.7).abs() < 1e-6, "{merged:?}");
    }

    #[test]
    fn a_manifest_without_tta_runs_each_frame_once() {
        assert_eq!(Tta::default(), Tta::None);
    }

    proptest! {
        #[test]
        fn merging_never_raises_a_score_above_the_best_view(
            scores in proptest::collection::vec((0f32..1.0, 0f32..200.0, 0usize..2), 0..20)
        ) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, &(s, x, view)) in scores.iter().enumerate() {
                let d = det(i % 2, s, x);
                if view == 0 { a.push(d) } else { b.push(d) }
            }
            let top = scores.iter().map(|s| s.0).fold(0.0f32, f32::max);
            let merged = merge(a, b, 0.5);
            prop_assert!(merged.len() <= scores.len());
            prop_assert!(merged.windows(2).all(|w| w[0].score >= w[1].score));
            prop_assert!(merged.iter().all(|d| d.score <= top + 1e-6));
        }

        #[test]
        fn mirroring_twice_is_the_identity(
            rows in 1usize..6, width in 1usize..9, seed in any::<u64>()
        ) {
            let input: Vec<f32> = (0..rows * width)
                .map(|i| ((i as u64).wrapping_mul(seed | 1) % 1000) as f32)
                .collect();
            let (mut once, mut twice) = (vec![0.0; input.len()], vec![0.0; input.len()]);
            mirror_input(&input, width, &mut once);
            mirror_input(&once, width, &mut twice);
            prop_assert_eq!(twice, input);
        }

        #[test]
        fn unmirror_keeps_a_valid_box_valid_and_is_its_own_inverse(
            x1 in 0f32..500.0, w in 0f32..100.0, y1 in 0f32..500.0, h in 0f32..100.0
        ) {
            let b = [x1, y1, x1 + w, y1 + h];
            let m = unmirror(&b, 640.0);
            prop_assert!(m[0] <= m[2] && m[1] <= m[3]);
            prop_assert!((m[2] - m[0] - w).abs() < 1e-3);
            let back = unmirror(&m, 640.0);
            for (a, b) in back.iter().zip(b) {
                prop_assert!((a - b).abs() < 1e-3);
            }
        }
    }
}
