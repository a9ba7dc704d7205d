//! Model families: what a detector's outputs mean and how they become detections.
//!
//! Takes the raw output tensors of one frame (per-stride class scores and box
//! distributions) and gives [`Detection`]s in network-input pixels; [`geometry`] maps
//! them back to source pixels. All functions here are pure, so they are easy to test.

pub mod classes;
pub mod geometry;
pub mod nanodet;
pub mod nms;

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

/// One frame's detections in source pixels: decode (above `conf`, classes that
/// `filter` keeps), class-aware NMS at `nms_iou` keeping the best `max_detections`,
/// then the mapping from the network input back to a `source.0`×`source.1` frame.
/// Best first.
pub fn detect(
    layout: &nanodet::Layout,
    levels: &[nanodet::LevelOutputs<'_>],
    conf: f32,
    filter: &classes::ClassFilter,
    (nms_iou, max_detections): (f32, usize),
    source: (u32, u32),
) -> Vec<Detection> {
    let decoded = nanodet::decode(layout, levels, conf, filter);
    let mut dets = nms::nms(decoded, nms_iou, max_detections);
    let (nw, nh) = layout.input_size;
    let map = geometry::InputToSource::new(source.0, source.1, nw, nh);
    for d in &mut dets {
        d.bbox = map.map(&d.bbox);
    }
    dets
}
