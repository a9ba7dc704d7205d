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
