//! Detection metrics, as pure functions over per-image detections and ground truth.
//!
//! - **AP (COCO style):** per class, detections of all images sorted by score
//!   (stable), each matched greedily to the unmatched ground-truth box of the same
//!   image with the highest IoU at or above the threshold; precision is made
//!   monotone (the running maximum from the right) and read at the 101 recall points
//!   0, 0.01, …, 1 (0 past the highest recall reached). AP@[0.5:0.95] averages the
//!   ten thresholds 0.50, 0.55, …, 0.95. A class with no ground truth has no AP.
//! - **Log-average miss rate (MR⁻²),** the Caltech / CityPersons pedestrian metric:
//!   miss rate `1 − recall` against false positives per image, read at nine FPPI
//!   points spaced evenly in log space over [10⁻², 10⁰] (at each, the miss rate of
//!   the last operating point whose FPPI does not exceed it, or 1 if none does),
//!   averaged as `exp(mean(ln(max(mr, 1e-10))))`. Matching is at IoU 0.5; no
//!   height ranges are applied.
//! - **Ignore regions** (KITTI `DontCare`, COCO `iscrowd`): a detection that matches
//!   no ground-truth box but lies mostly inside an ignore region (at least
//!   [`IGNORE_COVER`] of its own area, COCO's crowd rule: intersection over the
//!   detection's area) is left out: neither a true nor a false positive.

use crate::model::BBox;
use crate::model::geometry::{area, iou};

/// Share of a detection's area inside an ignore region above which it is ignored.
pub const IGNORE_COVER: f32 = 0.5;

/// One image: detections and ground truth, each `(class id, box)`.
#[derive(Debug, Clone, Default)]
pub struct ImageEval {
    /// `(class id, score, box)`.
    pub detections: Vec<(usize, f32, BBox)>,
    pub truth: Vec<(usize, BBox)>,
    /// Regions where detections of any class count for nothing.
    pub ignore: Vec<BBox>,
}

/// Whether `b` lies mostly inside one of `regions`.
pub fn ignored(b: &BBox, regions: &[BBox]) -> bool {
    let own = area(b);
    own > 0.0
        && regions.iter().any(|r| {
            let inter = area(&[
                b[0].max(r[0]),
                b[1].max(r[1]),
                b[2].min(r[2]),
                b[3].min(r[3]),
            ]);
            inter >= IGNORE_COVER * own
        })
}

/// The operating points of one class at one IoU threshold, best score first.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Ground-truth boxes of the class.
    pub positives: usize,
    /// Per detection, sorted by score: cumulative true and false positives.
    pub tp: Vec<usize>,
    pub fp: Vec<usize>,
    pub scores: Vec<f32>,
}

impl Curve {
    /// Matches the class's detections in every image to its ground truth.
    pub fn new(images: &[ImageEval], class: usize, iou_threshold: f32) -> Self {
        let mut dets: Vec<(f32, usize, BBox)> = Vec::new();
        let mut positives = 0;
        for (i, image) in images.iter().enumerate() {
            positives += image.truth.iter().filter(|t| t.0 == class).count();
            dets.extend(
                image
                    .detections
                    .iter()
                    .filter(|d| d.0 == class)
                    .map(|d| (d.1, i, d.2)),
            );
        }
        dets.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut matched: Vec<Vec<bool>> = images
            .iter()
            .map(|im| vec![false; im.truth.len()])
            .collect();
        let (mut tp, mut fp) = (
            Vec::with_capacity(dets.len()),
            Vec::with_capacity(dets.len()),
        );
        let (mut t, mut f) = (0, 0);
        let mut scores = Vec::with_capacity(dets.len());
        for (score, image, bbox) in &dets {
            let mut best: Option<(usize, f32)> = None;
            for (j, truth) in images[*image].truth.iter().enumerate() {
                if truth.0 != class || matched[*image][j] {
                    continue;
                }
                let o = iou(bbox, &truth.1);
                if o >= iou_threshold && best.is_none_or(|(_, b)| o > b) {
                    best = Some((j, o));
                }
            }
            match best {
                Some((j, _)) => {
                    matched[*image][j] = true;
                    t += 1;
                }
                None if ignored(bbox, &images[*image].ignore) => continue,
                None => f += 1,
            }
            tp.push(t);
            fp.push(f);
            scores.push(*score);
        }
        Self {
            positives,
            tp,
            fp,
            scores,
        }
    }

    /// Precision and recall at each operating point.
    pub fn precision_recall(&self) -> Vec<(f32, f32)> {
        self.tp
            .iter()
            .zip(&self.fp)
            .map(|(&t, &f)| {
                (
                    t as f32 / (t + f).max(1) as f32,
                    t as f32 / self.positives.max(1) as f32,
                )
            })
            .collect()
    }

    /// COCO's 101-point interpolated average precision; `None` without ground truth.
    pub fn average_precision(&self) -> Option<f32> {
        if self.positives == 0 {
            return None;
        }
        let pr = self.precision_recall();
        let mut envelope: Vec<f32> = pr.iter().map(|p| p.0).collect();
        for i in (0..envelope.len().saturating_sub(1)).rev() {
            envelope[i] = envelope[i].max(envelope[i + 1]);
        }
        let mut sum = 0.0;
        let mut k = 0;
        for step in 0..=100 {
            let r = step as f32 / 100.0;
            while k < pr.len() && pr[k].1 < r - 1e-6 {
                k += 1;
            }
            if k < pr.len() {
                sum += envelope[k];
            }
        }
        Some(sum / 101.0)
    }
}

/// AP@0.5 and AP@[0.5:0.95] of one class; `None` without ground truth.
pub fn coco_ap(images: &[ImageEval], class: usize) -> Option<(f32, f32)> {
    let ap50 = Curve::new(images, class, 0.5).average_precision()?;
    let thresholds = (0..10).map(|i| (50 + 5 * i) as f32 / 100.0);
    let mean = thresholds
        .map(|t| {
            Curve::new(images, class, t)
                .average_precision()
                .unwrap_or(0.0)
        })
        .sum::<f32>()
        / 10.0;
    Some((ap50, mean))
}

/// The nine FPPI reference points of MR⁻².
pub fn fppi_points() -> [f32; 9] {
    std::array::from_fn(|i| 10f32.powf(-2.0 + 0.25 * i as f32))
}

/// Log-average miss rate over FPPI in [10⁻², 10⁰] at IoU 0.5; `None` without
/// ground truth or images.
pub fn log_average_miss_rate(images: &[ImageEval], class: usize) -> Option<f32> {
    let curve = Curve::new(images, class, 0.5);
    if curve.positives == 0 || images.is_empty() {
        return None;
    }
    let n = images.len() as f32;
    let sum: f32 = fppi_points()
        .iter()
        .map(|&reference| {
            // A hair of slack so that 1/10 FPPI counts as reaching the 10⁻¹ point.
            let last = curve
                .fp
                .iter()
                .rposition(|&f| f as f32 / n <= reference * (1.0 + 1e-5));
            let mr = last.map_or(1.0, |i| 1.0 - curve.tp[i] as f32 / curve.positives as f32);
            mr.max(1e-10).ln()
        })
        .sum();
    Some((sum / 9.0).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dets: &[(f32, BBox)], truth: &[BBox]) -> ImageEval {
        ImageEval {
            detections: dets.iter().map(|&(s, b)| (0, s, b)).collect(),
            truth: truth.iter().map(|&b| (0, b)).collect(),
            ignore: Vec::new(),
        }
    }

    const A: BBox = [0.0, 0.0, 10.0, 10.0];
    const B: BBox = [20.0, 20.0, 30.0, 30.0];
    const FAR: BBox = [50.0, 50.0, 60.0, 60.0];

    #[test]
    fn perfect_detections_give_ap_one_and_no_misses() {
        let images = vec![image(&[(0.9, A), (0.8, B)], &[A, B])];
        assert_eq!(coco_ap(&images, 0), Some((1.0, 1.0)));
        let mr = log_average_miss_rate(&images, 0).unwrap();
        assert!(mr < 1e-9, "{mr}");
        assert_eq!(coco_ap(&images, 1), None);
    }

    #[test]
    fn hand_computed_ap_with_a_false_positive_in_between() {
        // Scores: TP (0.9), FP (0.8), TP (0.7); 2 ground-truth boxes.
        // Points (P, R): (1, .5), (.5, .5), (.667, 1). Envelope: 1, .667, .667.
        // Recall 0..=0.5 (51 points) reads 1; 0.51..=1 (50 points) reads 2/3.
        let images = vec![image(&[(0.9, A), (0.8, FAR), (0.7, B)], &[A, B])];
        let ap = Curve::new(&images, 0, 0.5).average_precision().unwrap();
        let want = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
        assert!((ap - want).abs() < 1e-5, "{ap} vs {want}");
    }

    #[test]
    fn duplicates_count_as_false_positives_and_iou_thresholds_matter() {
        // Same box twice: the second is a duplicate. Shifted box: IoU 0.6 with A.
        let shifted = [0.0, 0.0, 10.0, 6.0];
        let images = vec![image(&[(0.9, A), (0.8, A)], &[A])];
        let curve = Curve::new(&images, 0, 0.5);
        assert_eq!(
            (curve.tp.clone(), curve.fp.clone()),
            (vec![1, 1], vec![0, 1])
        );
        let images = vec![image(&[(0.9, shifted)], &[A])];
        let (ap50, ap) = coco_ap(&images, 0).unwrap();
        assert_eq!(ap50, 1.0);
        // Matches at 0.50 and 0.55 and 0.60 (IoU = 0.6 exactly), not above.
        assert!((ap - 0.3).abs() < 1e-5, "{ap}");
    }

    #[test]
    fn hand_computed_miss_rate() {
        // 10 images, 4 pedestrians. Detections by score: TP, FP, TP, FP x 9 ...
        // FPPI after each: 0 (TP), .1, .1 (TP), then .2 .. 1.0.
        // References .01 .. .056: last point with FPPI <= ref is the first TP:
        //   mr = 1 - 1/4 = .75 (refs 10^-2, 10^-1.75, 10^-1.5, 10^-1.25: 4 points).
        // Ref .1 (10^-1) .. 1: the second TP has been reached: mr = .5 (5 points).
        let mut images: Vec<ImageEval> = (0..10).map(|_| ImageEval::default()).collect();
        for im in images.iter_mut().take(4) {
            im.truth.push((0, A));
        }
        images[0].detections.push((0, 0.99, A));
        images[5].detections.push((0, 0.98, FAR));
        images[1].detections.push((0, 0.97, A));
        for (i, im) in images.iter_mut().enumerate().skip(1) {
            im.detections.push((0, 0.5 - i as f32 * 0.01, FAR));
        }
        let mr = log_average_miss_rate(&images, 0).unwrap();
        let want = ((4.0 * 0.75f32.ln() + 5.0 * 0.5f32.ln()) / 9.0).exp();
        assert!((mr - want).abs() < 1e-5, "{mr} vs {want}");
    }

    #[test]
    fn a_detection_in_an_ignore_region_is_neither_right_nor_wrong() {
        // FAR lies in the ignore region: without it, it is a false positive before
        // the true positive B; with it, it is left out and AP is 1.
        let mut images = vec![image(&[(0.9, FAR), (0.8, B)], &[B])];
        assert!(coco_ap(&images, 0).unwrap().0 < 1.0);
        images[0].ignore.push([45.0, 45.0, 70.0, 70.0]);
        assert_eq!(coco_ap(&images, 0).unwrap().0, 1.0);
        let curve = Curve::new(&images, 0, 0.5);
        assert_eq!(
            (curve.tp, curve.fp, curve.scores),
            (vec![1], vec![0], vec![0.8])
        );
        // A true box inside an ignore region still counts when matched.
        images[0].ignore.push([15.0, 15.0, 35.0, 35.0]);
        assert_eq!(Curve::new(&images, 0, 0.5).tp, vec![1]);
        // Less than half of the detection inside the region: still a false positive.
        assert!(!ignored(&FAR, &[[55.0, 50.0, 70.0, 60.0 - 0.1]]));
        assert!(ignored(&FAR, &[[55.0, 50.0, 70.0, 60.0]]));
    }

    #[test]
    fn nothing_detected_is_a_full_miss() {
        let images = vec![image(&[], &[A])];
        assert_eq!(coco_ap(&images, 0), Some((0.0, 0.0)));
        assert!((log_average_miss_rate(&images, 0).unwrap() - 1.0).abs() < 1e-6);
    }
}
