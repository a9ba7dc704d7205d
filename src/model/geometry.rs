//! Box geometry: area, intersection over union, where a frame lands in the network
//! input ([`Placement`]: stretched to fill it, or letterboxed: scaled keeping its
//! aspect ratio and centred, the rest padded), and the mapping of boxes from the
//! network's input space back to source pixels through that same placement.

use serde::Deserialize;

use super::BBox;

/// How a frame is fitted to the network input (the manifest's `input.resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Each axis scaled on its own to fill the input (people in 16:9 video are
    /// squeezed horizontally on a square input).
    #[default]
    Stretch,
    /// Scaled by one factor to fit, centred, the rest filled with the pad value.
    Letterbox,
}

impl crate::choice::Choice for Resize {
    const ALL: &'static [Self] = &[Self::Letterbox, Self::Stretch];
    /// The manifest's word for it (and `--resize`'s).
    fn name(self) -> &'static str {
        match self {
            Self::Stretch => "stretch",
            Self::Letterbox => "letterbox",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Letterbox => {
                "scaled by one factor keeping the aspect ratio, centred, bars of the manifest's pad"
            }
            Self::Stretch => "each axis scaled on its own to fill the input",
        }
    }
}

/// The rectangle of the network input that a source frame's pixels fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Placement {
    /// Where a `src`-sized frame lands in a `net`-sized input.
    pub fn new(src: (u32, u32), net: (u32, u32), resize: Resize) -> Self {
        match resize {
            Resize::Stretch => Self {
                x: 0,
                y: 0,
                width: net.0,
                height: net.1,
            },
            Resize::Letterbox => {
                let scale =
                    (net.0 as f64 / src.0.max(1) as f64).min(net.1 as f64 / src.1.max(1) as f64);
                let fit = |s: u32, n: u32| ((s as f64 * scale).round() as u32).clamp(1, n);
                let (width, height) = (fit(src.0, net.0), fit(src.1, net.1));
                Self {
                    x: (net.0 - width) / 2,
                    y: (net.1 - height) / 2,
                    width,
                    height,
                }
            }
        }
    }
}

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

/// How a box in network-input pixels maps to source pixels: the inverse of the
/// [`Placement`] the preprocessing used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputToSource {
    offset: (f32, f32),
    scale_x: f32,
    scale_y: f32,
    width: f32,
    height: f32,
}

impl InputToSource {
    /// Mapping for a source of `src` pixels fitted to a `net` input by `resize`.
    pub fn new(src: (u32, u32), net: (u32, u32), resize: Resize) -> Self {
        let p = Placement::new(src, net, resize);
        Self {
            offset: (p.x as f32, p.y as f32),
            scale_x: src.0 as f32 / p.width as f32,
            scale_y: src.1 as f32 / p.height as f32,
            width: src.0 as f32,
            height: src.1 as f32,
        }
    }

    /// The inverse: a box in source pixels to network-input pixels (for training
    /// targets).
    pub fn to_input(&self, b: &BBox) -> BBox {
        let (ox, oy) = self.offset;
        [
            b[0] / self.scale_x + ox,
            b[1] / self.scale_y + oy,
            b[2] / self.scale_x + ox,
            b[3] / self.scale_y + oy,
        ]
    }

    /// Moves a box to source pixels and clips it to the frame.
    pub fn map(&self, b: &BBox) -> BBox {
        let (ox, oy) = self.offset;
        [
            ((b[0] - ox) * self.scale_x).clamp(0.0, self.width),
            ((b[1] - oy) * self.scale_y).clamp(0.0, self.height),
            ((b[2] - ox) * self.scale_x).clamp(0.0, self.width),
            ((b[3] - oy) * self.scale_y).clamp(0.0, self.height),
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
        let m = InputToSource::new((768, 576), (416, 416), Resize::Stretch);
        let b = m.map(&[208.0, 208.0, 416.0, 416.0]);
        assert_eq!(b, [384.0, 288.0, 768.0, 576.0]);
        let clipped = m.map(&[-10.0, -5.0, 500.0, 420.0]);
        assert_eq!(clipped, [0.0, 0.0, 768.0, 576.0]);
    }

    #[test]
    fn letterbox_centres_a_wide_frame_and_maps_back_through_the_bars() {
        // 1280×720 on 416×416: scale 0.325, content 416×234, bars of 91 above and below.
        let p = Placement::new((1280, 720), (416, 416), Resize::Letterbox);
        assert_eq!(
            p,
            Placement {
                x: 0,
                y: 91,
                width: 416,
                height: 234
            }
        );
        let m = InputToSource::new((1280, 720), (416, 416), Resize::Letterbox);
        let b = m.map(&[104.0, 91.0, 208.0, 325.0]);
        let want = [320.0, 0.0, 640.0, 720.0];
        assert!(
            b.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-3),
            "{b:?}"
        );
        // A tall frame gets bars left and right.
        let tall = Placement::new((300, 600), (416, 416), Resize::Letterbox);
        assert_eq!(
            tall,
            Placement {
                x: 104,
                y: 0,
                width: 208,
                height: 416
            }
        );
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

        #[test]
        fn a_placement_fits_inside_the_input(
            sw in 1u32..5000, sh in 1u32..5000, nw in 1u32..1300, nh in 1u32..1300,
            letterbox: bool,
        ) {
            let resize = if letterbox { Resize::Letterbox } else { Resize::Stretch };
            let p = Placement::new((sw, sh), (nw, nh), resize);
            prop_assert!(p.width >= 1 && p.height >= 1);
            prop_assert!(p.x + p.width <= nw && p.y + p.height <= nh);
        }
    }
}
