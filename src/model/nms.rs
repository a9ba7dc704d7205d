//! Class-aware non-maximum suppression: within each class, keep the highest-scoring
//! box and drop the others that overlap it by more than the IoU threshold. Boxes of
//! different classes never suppress each other.
//!
//! Bounded work per frame whatever the model emits: at most
//! [`MAX_CANDIDATES_PER_CLASS`] boxes of a class are examined (the best ones), and
//! suppression stops once `max_detections` are kept (COCO's 100 by default), so a
//! degenerate frame cannot make NMS quadratic in thousands of boxes.

use super::{Detection, geometry::iou};

/// Boxes of one class examined by NMS, best first; the rest are dropped.
pub const MAX_CANDIDATES_PER_CLASS: usize = 1000;

/// Suppresses overlapping detections of the same class and keeps the best
/// `max_detections`; the result is sorted by descending score (ties keep their
/// input order).
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32, max_detections: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len().min(64));
    let mut examined = std::collections::HashMap::<usize, usize>::new();
    for det in dets {
        if kept.len() >= max_detections {
            break;
        }
        let seen = examined.entry(det.class_id).or_default();
        if *seen >= MAX_CANDIDATES_PER_CLASS {
            continue;
        }
        *seen += 1;
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
            usize::MAX,
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
            usize::MAX,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn threshold_is_exclusive() {
        // IoU exactly 1/3: kept at threshold 1/3 + epsilon, dropped below it.
        let a = det(0, 0.9, [0.0, 0.0, 10.0, 10.0]);
        let b = det(0, 0.8, [5.0, 0.0, 15.0, 10.0]);
        assert_eq!(nms(vec![a.clone(), b.clone()], 0.34, 100).len(), 2);
        assert_eq!(nms(vec![a, b], 0.3, 100).len(), 1);
    }

    #[test]
    fn a_flood_of_boxes_is_bounded() {
        // 5000 disjoint boxes of one class: only the best 1000 are examined and
        // 100 kept.
        let dets: Vec<_> = (0..5000)
            .map(|i| {
                let (x, y) = ((i % 100) as f32 * 20.0, (i / 100) as f32 * 20.0);
                det(0, 1.0 - i as f32 / 1e4, [x, y, x + 10.0, y + 10.0])
            })
            .collect();
        let out = nms(dets.clone(), 0.5, 100);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0].score, dets[0].score);
        assert_eq!(nms(dets, 0.5, usize::MAX).len(), MAX_CANDIDATES_PER_CLASS);
    }

    proptest! {
        #[test]
        fn survivors_of_a_class_never_overlap_beyond_threshold(
            boxes in prop::collection::vec((0usize..3, 0.0f32..1.0, 0.0f32..90.0, 0.0f32..90.0, 1.0f32..40.0, 1.0f32..40.0), 0..40),
            thr in 0.1f32..0.9,
        ) {
            let dets: Vec<_> = boxes.iter().map(|&(c, s, x, y, w, h)| det(c, s, [x, y, x + w, y + h])).collect();
            let out = nms(dets.clone(), thr, usize::MAX);
            prop_assert!(out.len() <= dets.len());
            let capped = nms(dets.clone(), thr, 5);
            prop_assert!(capped.len() <= 5);
            prop_assert_eq!(&capped[..], &out[..out.len().min(5)], "the cap keeps the best");
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
