//! Augmented copies of training images, made before feature extraction so each
//! copy's features are cached like an original's: a horizontal flip, a scale
//! jitter about the centre, a translation, and a colour jitter (brightness,
//! contrast, saturation). Boxes and ignore regions move with the pixels; a box
//! that keeps less than [`MIN_VISIBLE`] of its area inside the picture becomes an
//! ignore region (neither an object to find nor background to learn).

use image::RgbImage;
use rand::Rng;

use crate::model::BBox;
use crate::model::geometry::area;

/// Share of a box's area that must stay in the picture for it to stay a box.
pub const MIN_VISIBLE: f32 = 0.4;
/// Grey of the picture's uncovered parts (YOLOX's pad; near the data's mean).
const FILL: u8 = 114;

/// One random draw of the transforms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    pub flip: bool,
    /// Zoom about the centre (1 = none).
    pub scale: f32,
    /// Shift, as fractions of the width and height.
    pub shift: (f32, f32),
    /// Added to every channel, in grey levels.
    pub brightness: f32,
    /// Multiplies the distance from mid-grey.
    pub contrast: f32,
    /// Multiplies the distance from the pixel's own grey.
    pub saturation: f32,
}

impl Augmentation {
    /// A draw: flip half the time, scale 0.75–1.25, shift up to ±10 %, brightness
    /// ±25 levels, contrast and saturation 0.7–1.3.
    pub fn draw(rng: &mut impl Rng) -> Self {
        Self {
            flip: rng.random_bool(0.5),
            scale: rng.random_range(0.75..1.25),
            shift: (rng.random_range(-0.1..0.1), rng.random_range(-0.1..0.1)),
            brightness: rng.random_range(-25.0..25.0),
            contrast: rng.random_range(0.7..1.3),
            saturation: rng.random_range(0.7..1.3),
        }
    }

    /// Where a source point lands.
    fn forward(&self, (x, y): (f32, f32), (w, h): (f32, f32)) -> (f32, f32) {
        let x = if self.flip { w - x } else { x };
        (
            (x - w / 2.0) * self.scale + w / 2.0 + self.shift.0 * w,
            (y - h / 2.0) * self.scale + h / 2.0 + self.shift.1 * h,
        )
    }

    /// The transformed picture (bilinear, uncovered parts grey).
    pub fn image(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (fw, fh) = (w as f32, h as f32);
        RgbImage::from_fn(w, h, |x, y| {
            // Inverse of `forward` at the pixel centre.
            let sx = (x as f32 + 0.5 - fw / 2.0 - self.shift.0 * fw) / self.scale + fw / 2.0;
            let sy = (y as f32 + 0.5 - fh / 2.0 - self.shift.1 * fh) / self.scale + fh / 2.0;
            let sx = if self.flip { fw - sx } else { sx };
            match bilinear(img, sx - 0.5, sy - 0.5) {
                Some(rgb) => image::Rgb(self.colour(rgb)),
                None => image::Rgb([FILL; 3]),
            }
        })
    }

    fn colour(&self, [r, g, b]: [f32; 3]) -> [u8; 3] {
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        [r, g, b].map(|c| {
            let c = grey + (c - grey) * self.saturation;
            let c = (c - 128.0) * self.contrast + 128.0 + self.brightness;
            c.round().clamp(0.0, 255.0) as u8
        })
    }

    /// A box moved with the picture and clipped to it, with the share of its area
    /// left inside.
    pub fn bbox(&self, b: &BBox, size: (u32, u32)) -> (BBox, f32) {
        let (w, h) = (size.0 as f32, size.1 as f32);
        let (ax, ay) = self.forward((b[0], b[1]), (w, h));
        let (bx, by) = self.forward((b[2], b[3]), (w, h));
        let moved = [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)];
        let clipped = [
            moved[0].clamp(0.0, w),
            moved[1].clamp(0.0, h),
            moved[2].clamp(0.0, w),
            moved[3].clamp(0.0, h),
        ];
        let visible = area(&clipped) / area(&moved).max(1e-6);
        (clipped, visible)
    }
}

/// Bilinear sample at a pixel-centre position; `None` outside the picture.
fn bilinear(img: &RgbImage, x: f32, y: f32) -> Option<[f32; 3]> {
    let (w, h) = img.dimensions();
    if x < -0.5 || y < -0.5 || x > w as f32 - 0.5 || y > h as f32 - 0.5 {
        return None;
    }
    let (x, y) = (x.clamp(0.0, w as f32 - 1.0), y.clamp(0.0, h as f32 - 1.0));
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let px = |x, y| img.get_pixel(x, y).0.map(f32::from);
    let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
    Some(std::array::from_fn(|k| {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bottom = c[k] + (d[k] - c[k]) * fx;
        top + (bottom - top) * fy
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Augmentation {
        Augmentation {
            flip: false,
            scale: 1.0,
            shift: (0.0, 0.0),
            brightness: 0.0,
            contrast: 1.0,
            saturation: 1.0,
        }
    }

    /// A 40×20 picture, black with a white 10×10 square at (4, 6).
    fn picture() -> RgbImage {
        RgbImage::from_fn(40, 20, |x, y| {
            let inside = (4..14).contains(&x) && (6..16).contains(&y);
            image::Rgb([if inside { 255 } else { 0 }; 3])
        })
    }

    /// The bounding box of the bright pixels.
    fn bright_box(img: &RgbImage) -> BBox {
        let mut b = [f32::MAX, f32::MAX, 0.0f32, 0.0f32];
        for (x, y, p) in img.enumerate_pixels() {
            if p.0[0] > 200 {
                b = [
                    b[0].min(x as f32),
                    b[1].min(y as f32),
                    b[2].max(x as f32 + 1.0),
                    b[3].max(y as f32 + 1.0),
                ];
            }
        }
        b
    }

    #[test]
    fn the_identity_changes_nothing() {
        let img = picture();
        assert_eq!(none().image(&img), img);
        assert_eq!(
            none().bbox(&[4.0, 6.0, 14.0, 16.0], (40, 20)),
            ([4.0, 6.0, 14.0, 16.0], 1.0)
        );
    }

    #[test]
    fn boxes_follow_the_pixels_under_flip_shift_and_scale() {
        let img = picture();
        for aug in [
            Augmentation {
                flip: true,
                ..none()
            },
            Augmentation {
                shift: (0.25, -0.1),
                ..none()
            },
            Augmentation {
                scale: 1.2,
                flip: true,
                shift: (-0.05, 0.05),
                ..none()
            },
        ] {
            let (b, visible) = aug.bbox(&[4.0, 6.0, 14.0, 16.0], (40, 20));
            assert!((visible - 1.0).abs() < 1e-6);
            let seen = bright_box(&aug.image(&img));
            for (got, want) in seen.iter().zip(b) {
                assert!(
                    (got - want).abs() <= 1.0,
                    "{aug:?}: pixels {seen:?}, box {b:?}"
                );
            }
        }
    }

    #[test]
    fn a_box_pushed_out_of_the_picture_reports_what_is_left() {
        let aug = Augmentation {
            shift: (-0.25, 0.0),
            ..none()
        };
        let (b, visible) = aug.bbox(&[4.0, 6.0, 14.0, 16.0], (40, 20));
        assert_eq!(b, [0.0, 6.0, 4.0, 16.0]);
        assert!((visible - 0.4).abs() < 1e-6);
    }

    #[test]
    fn colour_jitter_keeps_grey_grey_and_clamps() {
        let aug = Augmentation {
            brightness: 20.0,
            contrast: 1.2,
            saturation: 0.5,
            ..none()
        };
        let [r, g, b] = aug.colour([100.0, 100.0, 100.0]);
        // (100 − 128)·1.2 + 128 + 20 = 114.4.
        assert!(r == g && g == b && r == 114, "{r} {g} {b}");
        let bright = Augmentation {
            brightness: 200.0,
            ..none()
        };
        assert_eq!(bright.colour([250.0, 10.0, 10.0])[0], 255);
    }
}
