//! Model families: what a detector's outputs mean and how they become detections.
//!
//! Takes the raw output tensors of one frame, in the order the manifest lists them
//! ([`nanodet`]: per-stride class scores then box distributions; [`yolox`]: one
//! tensor of every cell's box, objectness and class scores), and gives
//! [`Detection`]s in network-input pixels; [`geometry`] maps them back to source
//! pixels through the placement the preprocessing used. With test-time flip
//! ([`flip`]) a frame also has the outputs of its mirror image: each view's boxes
//! go through NMS (the mirror's mirrored back), then the two views are merged. All functions here are
//! pure, so they are easy to test.

pub mod classes;
pub mod flip;
pub mod geometry;
pub mod nanodet;
pub mod nms;
pub mod yolox;

use serde::Deserialize;

/// A detector family: how its outputs are laid out and decoded (the manifest's
/// `family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// NanoDet: per-stride sigmoid class scores and DFL distance bins.
    Nanodet,
    /// YOLOX: one `[cells, 4 + 1 + classes]` tensor over all strides; boxes
    /// `(xy + grid)·stride`, `exp(wh)·stride`; score = objectness × class.
    Yolox,
}

impl Family {
    /// The manifest's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nanodet => "nanodet",
            Self::Yolox => "yolox",
        }
    }
}

/// An axis-aligned box, corners in pixels: `[x1, y1, x2, y2]`.
pub type BBox = [f32; 4];

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Index into the manifest's label list.
    pub class_id: usize,
    /// Confidence in `[0, 1]`.
    pub score: f32,
    /// Box corners, in the pixel space of whoever produced it (see [`geometry`]).
    pub bbox: BBox,
}

/// Most detections per image for evaluation and tools (COCO's limit).
pub const COCO_MAX_DETECTIONS: usize = 100;

/// One frame's candidate detections in network-input pixels, before NMS, from its
/// output tensors in manifest order (see [`nanodet::Layout::tensors`]).
pub fn decode(
    layout: &nanodet::Layout,
    tensors: &[&[f32]],
    conf: f32,
    filter: &classes::ClassFilter,
) -> Vec<Detection> {
    // No outputs (bench's zero-cost detector) or fewer than the family needs:
    // nothing to decode.
    if tensors.len() < layout.tensor_count() {
        return Vec::new();
    }
    match layout.family {
        Family::Nanodet => {
            let n = layout.strides.len();
            let levels: Vec<_> = layout
                .strides
                .iter()
                .enumerate()
                .map(|(i, &stride)| nanodet::LevelOutputs {
                    stride,
                    scores: tensors[i],
                    boxes: tensors[n + i],
                })
                .collect();
            nanodet::decode(layout, &levels, conf, filter)
        }
        Family::Yolox => yolox::decode(layout, tensors[0], conf, filter),
    }
}

/// One frame's outputs: as the network saw it, and (test-time flip, see [`flip`])
/// of its mirror image; each in the order [`decode`] takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameTensors<'a> {
    pub direct: &'a [&'a [f32]],
    /// Empty without test-time flip.
    pub mirrored: &'a [&'a [f32]],
}

impl<'a> FrameTensors<'a> {
    /// Outputs of the frame alone.
    pub fn direct(tensors: &'a [&'a [f32]]) -> Self {
        Self {
            direct: tensors,
            mirrored: &[],
        }
    }
}

/// One frame's detections in source pixels: decode (above `conf`, classes that
/// `filter` keeps), class-aware NMS at `nms_iou` keeping the best
/// `max_detections`, then the mapping from the network input back to a
/// `source.0`×`source.1` frame. Best first. With the mirror image's outputs, the
/// two views are merged as [`flip`] says.
pub fn detect(
    layout: &nanodet::Layout,
    outputs: FrameTensors<'_>,
    conf: f32,
    filter: &classes::ClassFilter,
    (nms_iou, max_detections): (f32, usize),
    source: (u32, u32),
) -> Vec<Detection> {
    let mut dets = if outputs.mirrored.is_empty() {
        nms::nms(
            decode(layout, outputs.direct, conf, filter),
            nms_iou,
            max_detections,
        )
    } else {
        let view_conf = conf / 2.0;
        let width = layout.input_size.0 as f32;
        let direct = decode(layout, outputs.direct, view_conf, filter);
        let mirrored = decode(layout, outputs.mirrored, view_conf, filter)
            .into_iter()
            .map(|d| Detection {
                bbox: flip::unmirror(&d.bbox, width),
                ..d
            })
            .collect();
        let mut merged = flip::merge(
            nms::nms(direct, nms_iou, max_detections),
            nms::nms(mirrored, nms_iou, max_detections),
            nms_iou,
        );
        merged.retain(|d| d.score > conf);
        merged.truncate(max_detections);
        merged
    };
    let map = geometry::InputToSource::new(source, layout.input_size, layout.resize);
    for d in &mut dets {
        d.bbox = map.map(&d.bbox);
    }
    dets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_outputs_decode_to_nothing() {
        for family in [Family::Nanodet, Family::Yolox] {
            let layout = nanodet::Layout {
                family,
                resize: geometry::Resize::Stretch,
                input_size: (32, 32),
                strides: vec![8, 16],
                bins: 3,
                num_classes: 2,
            };
            assert!(decode(&layout, &[], 0.1, &classes::ClassFilter::All).is_empty());
        }
    }

    /// A YOLOX layout on a 32 × 32 input: one level of stride 16 (2 × 2 cells),
    /// one class.
    fn yolox_one_level() -> nanodet::Layout {
        nanodet::Layout {
            family: Family::Yolox,
            resize: geometry::Resize::Stretch,
            input_size: (32, 32),
            strides: vec![16],
            bins: 0,
            num_classes: 1,
        }
    }

    /// Its output with an object at each `(cell, box offsets, score)`, 1 × 1 cell.
    fn yolox_output(objects: &[(usize, [f32; 2], f32)]) -> Vec<f32> {
        let mut out = vec![0.0f32; 4 * 6];
        for &(cell, [x, y], score) in objects {
            out[cell * 6..cell * 6 + 6].copy_from_slice(&[x, y, 0.0, 0.0, score, 1.0]);
        }
        out
    }

    /// Detections of a frame whose direct and mirrored outputs hold `direct` and
    /// `mirror` (cell, offsets, score), with threshold `conf`, NMS 0.5, and
    /// without the mirror's outputs when `mirror` is `None`.
    fn detect_views(
        direct: &[(usize, [f32; 2], f32)],
        mirror: Option<&[(usize, [f32; 2], f32)]>,
        conf: f32,
        source: (u32, u32),
    ) -> Vec<Detection> {
        let (direct, mirror) = (yolox_output(direct), mirror.map(yolox_output));
        let d = [direct.as_slice()];
        let m: Vec<&[f32]> = mirror.iter().map(Vec::as_slice).collect();
        let outputs = FrameTensors {
            direct: &d,
            mirrored: &m,
        };
        let all = classes::ClassFilter::All;
        detect(&yolox_one_level(), outputs, conf, &all, (0.5, 100), source)
    }

    fn assert_one_box(dets: &[Detection], score: f32, want: BBox) {
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert!((dets[0].score - score).abs() < 1e-6, "{dets:?}");
        let close = dets[0]
            .bbox
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() < 1e-4);
        assert!(close, "{dets:?} instead of {want:?}");
    }

    #[test]
    fn a_person_found_only_in_the_mirror_image_is_found_where_it_is() {
        // Mirror: a 16 × 16 box centred at ((0.25 + 1)·16, 0.5·16) = (20, 8), i.e.
        // x 12..28, which is x 4..20 in the frame itself; the source is twice as
        // wide as the input (stretch): x 8..40. Seen by one view of two: half its
        // score.
        let mirror = [(1, [0.25, 0.5], 0.9)];
        let dets = detect_views(&[], Some(&mirror), 0.3, (64, 32));
        assert_one_box(&dets, 0.45, [8.0, 0.0, 40.0, 16.0]);
        // Without the mirror's outputs the frame has no detection; at a threshold
        // above the mean of the views, neither has it.
        assert!(detect_views(&[], None, 0.3, (64, 32)).is_empty());
        assert!(detect_views(&[], Some(&mirror), 0.5, (64, 32)).is_empty());
    }

    #[test]
    fn a_person_found_in_both_views_is_kept_once_with_the_mean_score() {
        // Direct: box x 4..20 (cell 0, offset 0.75) at 0.4; mirror: the same
        // object at x 12..28 (cell 1, offset 0.25) at 0.8. The direct view's 0.4
        // is above half the threshold, so it counts.
        let direct = [(0, [0.75, 0.5], 0.4)];
        let mirror = [(1, [0.25, 0.5], 0.8)];
        let dets = detect_views(&direct, Some(&mirror), 0.3, (32, 32));
        assert_one_box(&dets, 0.6, [4.0, 0.0, 20.0, 16.0]);
    }
}
