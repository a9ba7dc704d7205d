//! Box geometry: area, intersection over union, and the mapping from the network's
//! input space back to source pixels (frames are stretched to the input size, no
//! letterbox, so each axis scales on its own).

use super::BBox;

/// Area of a box; zero for an empty or inverted box.
pub fn area(b: &BBox) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union of two boxes, in `[0, 1]`; 0 when both are empty.
pub fn iou(a: &BBox, b: &BBox) -> f32 {
    let inter = area(&[
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// How a box in network-input pixels maps to source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputToSource {
    scale_x: f32,
    scale_y: f32,
    width: f32,
    height: f32,
}

impl InputToSource {
    /// Mapping for a source of `src_w`×`src_h` stretched to a `net_w`×`net_h` input.
    pub fn new(src_w: u32, src_h: u32, net_w: u32, net_h: u32) -> Self {
        Self {
            scale_x: src_w as f32 / net_w as f32,
            scale_y: src_h as f32 / net_h as f32,
            width: src_w as f32,
            height: src_h as f32,
        }
    }

    /// Scales a box to source pixels and clips it to the frame.
    pub fn map(&self, b: &BBox) -> BBox {
        [
            (b[0] * self.scale_x).clamp(0.0, self.width),
            (b[1] * self.scale_y).clamp(0.0, self.height),
            (b[2] * self.scale_x).clamp(0.0, self.width),
            (b[3] * self.scale_y).clamp(0.0, self.height),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half overlap: intersection 50, union 150.
        let v = iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]);
        assert!((v - 1.0 / 3.0).abs() < 1e-6, "{v}");
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn maps_input_pixels_to_source_pixels_and_clips() {
        let m = InputToSource::new(768, 576, 416, 416);
        let b = m.map(&[208.0, 208.0, 416.0, 416.0]);
        assert_eq!(b, [384.0, 288.0, 768.0, 576.0]);
        let clipped = m.map(&[-10.0, -5.0, 500.0, 420.0]);
        assert_eq!(clipped, [0.0, 0.0, 768.0, 576.0]);
    }

    proptest! {
        #[test]
        fn iou_is_symmetric_and_bounded(
            a in prop::array::uniform4(0.0f32..100.0),
            b in prop::array::uniform4(0.0f32..100.0),
        ) {
            let x = iou(&a, &b);
            prop_assert!((0.0..=1.0).contains(&x));
            prop_assert!((x - iou(&b, &a)).abs() < 1e-6);
        }
    }
}
