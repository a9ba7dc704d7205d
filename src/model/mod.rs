//! Model families: what a detector's outputs mean and how they become detections.
//!
//! Takes the raw output tensors of one frame, in the order the manifest lists them
//! ([`nanodet`]: per-stride class scores then box distributions; [`yolox`]: one
//! tensor of every cell's box, objectness and class scores), and gives
//! [`Detection`]s in network-input pixels; [`geometry`] maps them back to source
//! pixels through the placement the preprocessing used. All functions here are
//! pure, so they are easy to test.

pub mod classes;
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

/// One frame's detections in source pixels: decode (above `conf`, classes that
/// `filter` keeps), class-aware NMS at `nms_iou` keeping the best `max_detections`,
/// then the mapping from the network input back to a `source.0`×`source.1` frame.
/// Best first.
pub fn detect(
    layout: &nanodet::Layout,
    tensors: &[&[f32]],
    conf: f32,
    filter: &classes::ClassFilter,
    (nms_iou, max_detections): (f32, usize),
    source: (u32, u32),
) -> Vec<Detection> {
    let decoded = decode(layout, tensors, conf, filter);
    let mut dets = nms::nms(decoded, nms_iou, max_detections);
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
}
