//! Which frames are worth a person's look: pure decisions over a three-frame
//! window of one stream (the frame before, the frame judged, the frame after).
//!
//! A frame is chosen when, in it,
//! - a reported detection scores below the `unsure_below` threshold (the detector
//!   hesitates: `unsure`);
//! - a reported detection has no counterpart (same class, IoU ≥ [`SAME_OBJECT_IOU`])
//!   in the frame before nor in the frame after (it appears for one frame: `blink`);
//! - a track seen in the frames before and after has no detection (the detector
//!   missed a person it found around it: `gap`). The missing box, the mean of the
//!   track's boxes around it, becomes a pre-label with score 0.

use crate::model::{BBox, Detection, geometry::iou};

/// IoU at which two detections in consecutive frames are taken for one object.
pub const SAME_OBJECT_IOU: f32 = 0.3;

/// What the pipeline reported for one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub detections: Vec<Detection>,
    /// Per detection, its confirmed track.
    pub track_ids: Vec<Option<u64>>,
}

/// Why a frame was chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons {
    pub unsure: bool,
    pub blink: bool,
    pub gap: bool,
}

impl Reasons {
    pub fn any(&self) -> bool {
        self.unsure || self.blink || self.gap
    }

    /// `unsure,gap`-style list.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.unsure, "unsure"),
            (self.blink, "blink"),
            (self.gap, "gap"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// The judgement on the middle frame of a window: why it is chosen (if at all),
/// and the boxes the tracker expected there but the detector missed.
pub fn judge(
    before: &Seen,
    middle: &Seen,
    after: &Seen,
    unsure_below: f32,
) -> (Reasons, Vec<Detection>) {
    let unsure = middle.detections.iter().any(|d| d.score < unsure_below);
    let seen_in = |frame: &Seen, d: &Detection| {
        frame
            .detections
            .iter()
            .any(|o| o.class_id == d.class_id && iou(&o.bbox, &d.bbox) >= SAME_OBJECT_IOU)
    };
    let blink = middle
        .detections
        .iter()
        .any(|d| !seen_in(before, d) && !seen_in(after, d));
    let missed = gaps(before, middle, after);
    let reasons = Reasons {
        unsure,
        blink,
        gap: !missed.is_empty(),
    };
    (reasons, missed)
}

/// Whether `middle` could be chosen once its next frame is known (a cheap
/// superset of [`judge`]'s reasons, from the frame before alone): something is
/// unsure, a detection is new since `before`, or a track of `before` is missing.
pub fn could_be_chosen(before: &Seen, middle: &Seen, unsure_below: f32) -> bool {
    let new_since_before = |d: &Detection| {
        !before
            .detections
            .iter()
            .any(|o| o.class_id == d.class_id && iou(&o.bbox, &d.bbox) >= SAME_OBJECT_IOU)
    };
    middle
        .detections
        .iter()
        .any(|d| d.score < unsure_below || new_since_before(d))
        || before
            .track_ids
            .iter()
            .flatten()
            .any(|id| !middle.track_ids.contains(&Some(*id)))
}

/// Tracks present before and after but not in the middle, with their mean box.
fn gaps(before: &Seen, middle: &Seen, after: &Seen) -> Vec<Detection> {
    fn of(frame: &Seen, id: u64) -> Option<&Detection> {
        frame
            .track_ids
            .iter()
            .position(|t| *t == Some(id))
            .and_then(|i| frame.detections.get(i))
    }
    before
        .track_ids
        .iter()
        .flatten()
        .filter(|&&id| of(middle, id).is_none())
        .filter_map(|&id| {
            let (a, b) = (of(before, id)?, of(after, id)?);
            let bbox: BBox = std::array::from_fn(|k| (a.bbox[k] + b.bbox[k]) / 2.0);
            Some(Detection {
                class_id: a.class_id,
                score: 0.0,
                bbox,
            })
        })
        .collect()
}

/// A 16×16 grid of mean luma: cheap to keep, enough to see that two frames of a
/// camera show the same scene.
pub fn thumbnail(luma: &[u8], width: u32, height: u32) -> [f32; 256] {
    let (w, h) = (width as usize, height as usize);
    let mut sums = [0f32; 256];
    let mut counts = [0f32; 256];
    for (y, row) in luma.chunks_exact(w.max(1)).take(h).enumerate() {
        let gy = y * 16 / h.max(1);
        for (x, &v) in row.iter().enumerate() {
            let cell = gy * 16 + x * 16 / w.max(1);
            sums[cell] += v as f32;
            counts[cell] += 1.0;
        }
    }
    std::array::from_fn(|i| sums[i] / counts[i].max(1.0))
}

/// Mean absolute difference of two thumbnails, in grey levels.
pub fn difference(a: &[f32; 256], b: &[f32; 256]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(score: f32, x: f32) -> Detection {
        Detection {
            class_id: 0,
            score,
            bbox: [x, 0.0, x + 10.0, 20.0],
        }
    }

    fn seen(dets: &[(f32, f32, Option<u64>)]) -> Seen {
        Seen {
            detections: dets.iter().map(|&(s, x, _)| det(s, x)).collect(),
            track_ids: dets.iter().map(|d| d.2).collect(),
        }
    }

    #[test]
    fn a_steady_confident_scene_is_not_chosen() {
        let s = seen(&[(0.9, 0.0, Some(1)), (0.8, 50.0, Some(2))]);
        let (r, missed) = judge(&s, &s, &s, 0.5);
        assert!(!r.any() && missed.is_empty());
    }

    #[test]
    fn a_low_score_is_unsure() {
        let s = seen(&[(0.9, 0.0, Some(1))]);
        let m = seen(&[(0.9, 0.0, Some(1)), (0.4, 50.0, None)]);
        let after = seen(&[(0.9, 0.0, Some(1)), (0.45, 51.0, None)]);
        let (r, _) = judge(&s, &m, &after, 0.5);
        assert_eq!(r.names(), ["unsure"]);
    }

    #[test]
    fn a_detection_of_one_frame_is_a_blink() {
        let s = seen(&[(0.9, 0.0, Some(1))]);
        let m = seen(&[(0.9, 0.0, Some(1)), (0.7, 80.0, None)]);
        let (r, _) = judge(&s, &m, &s, 0.5);
        assert_eq!(r.names(), ["blink"]);
        // Seen in the frame after: an object arriving, not a blink.
        let after = seen(&[(0.9, 0.0, Some(1)), (0.7, 81.0, None)]);
        assert!(!judge(&s, &m, &after, 0.5).0.any());
    }

    #[test]
    fn a_track_missing_in_the_middle_is_a_gap_with_its_mean_box() {
        let before = seen(&[(0.9, 0.0, Some(1)), (0.9, 100.0, Some(7))]);
        let middle = seen(&[(0.9, 0.0, Some(1))]);
        let after = seen(&[(0.9, 1.0, Some(1)), (0.9, 104.0, Some(7))]);
        let (r, missed) = judge(&before, &middle, &after, 0.5);
        assert_eq!(r.names(), ["gap"]);
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].bbox, [102.0, 0.0, 112.0, 20.0]);
        assert_eq!(missed[0].score, 0.0);
        // A track that ended (not seen after) is no gap.
        let ended = seen(&[(0.9, 1.0, Some(1))]);
        assert!(!judge(&before, &middle, &ended, 0.5).0.any());
    }

    #[test]
    fn whatever_judge_chooses_could_be_chosen_beforehand() {
        let frames = [
            seen(&[(0.9, 0.0, Some(1)), (0.9, 100.0, Some(7))]),
            seen(&[(0.9, 0.0, Some(1))]),
            seen(&[(0.9, 1.0, Some(1)), (0.4, 60.0, None)]),
            seen(&[(0.9, 1.0, Some(1)), (0.8, 200.0, None)]),
            seen(&[(0.9, 2.0, Some(1)), (0.9, 104.0, Some(7))]),
        ];
        for before in &frames {
            for middle in &frames {
                for after in &frames {
                    if judge(before, middle, after, 0.5).0.any() {
                        assert!(
                            could_be_chosen(before, middle, 0.5),
                            "{before:?} {middle:?} {after:?}"
                        );
                    }
                }
            }
        }
        // A steady confident scene needs no copy.
        assert!(!could_be_chosen(&frames[0], &frames[0], 0.5));
    }

    #[test]
    fn thumbnails_tell_a_changed_scene_from_the_same() {
        let flat = vec![100u8; 64 * 48];
        let mut moved = flat.clone();
        for v in &mut moved[..64 * 24] {
            *v = 200;
        }
        let (a, b) = (thumbnail(&flat, 64, 48), thumbnail(&moved, 64, 48));
        assert_eq!(difference(&a, &a), 0.0);
        assert!((difference(&a, &b) - 50.0).abs() < 1e-3);
        // Odd sizes do not panic.
        let _ = thumbnail(&[1, 2, 3], 3, 1);
        let _ = thumbnail(&[], 0, 0);
    }
}
