//! Class-aware non-maximum suppression: within each class, keep the highest-scoring
//! box and drop the others that overlap it by more than the IoU threshold. Boxes of
//! different classes never suppress each other.

use super::{Detection, geometry::iou};

/// Suppresses overlapping detections of the same class; the result is sorted by
/// descending score (ties keep their input order).
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len().min(64));
    for det in dets {
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == det.class_id && iou(&k.bbox, &det.bbox) > iou_threshold);
        if !suppressed {
            kept.push(det);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn det(class_id: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            class_id,
            score,
            bbox,
        }
    }

    #[test]
    fn keeps_best_of_overlapping_same_class() {
        let out = nms(
            vec![
                det(0, 0.6, [0.0, 0.0, 10.0, 10.0]),
                det(0, 0.9, [1.0, 1.0, 11.0, 11.0]),
                det(0, 0.5, [50.0, 50.0, 60.0, 60.0]),
            ],
            0.5,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].score, 0.5);
    }

    #[test]
    fn different_classes_do_not_suppress() {
        let out = nms(
            vec![
                det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                det(2, 0.8, [0.0, 0.0, 10.0, 10.0]),
            ],
            0.5,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn threshold_is_exclusive() {
        // IoU exactly 1/3: kept at threshold 1/3 + epsilon, dropped below it.
        let a = det(0, 0.9, [0.0, 0.0, 10.0, 10.0]);
        let b = det(0, 0.8, [5.0, 0.0, 15.0, 10.0]);
        assert_eq!(nms(vec![a.clone(), b.clone()], 0.34).len(), 2);
        assert_eq!(nms(vec![a, b], 0.3).len(), 1);
    }

    proptest! {
        #[test]
        fn survivors_of_a_class_never_overlap_beyond_threshold(
            boxes in prop::collection::vec((0usize..3, 0.0f32..1.0, 0.0f32..90.0, 0.0f32..90.0, 1.0f32..40.0, 1.0f32..40.0), 0..40),
            thr in 0.1f32..0.9,
        ) {
            let dets: Vec<_> = boxes.iter().map(|&(c, s, x, y, w, h)| det(c, s, [x, y, x + w, y + h])).collect();
            let out = nms(dets.clone(), thr);
            prop_assert!(out.len() <= dets.len());
            for (i, a) in out.iter().enumerate() {
                for b in &out[i + 1..] {
                    prop_assert!(a.class_id != b.class_id || iou(&a.bbox, &b.bbox) <= thr);
                }
            }
            prop_assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
            // The best detection always survives.
            if let Some(best) = dets.iter().map(|d| d.score).reduce(f32::max) {
                prop_assert_eq!(out[0].score, best);
            }
        }
    }
}
