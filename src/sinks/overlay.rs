//! Draws detections onto a frame: a box per detection, with its label and score on
//! a filled tag above it. Pedestrians (`person`) get their own colour; other classes
//! get a stable colour from a small palette.
//!
//! Text needs a TrueType font; the DejaVu font from Debian's `fonts-dejavu-core` is
//! used (or `PEDVISION_FONT`). Without one, boxes are still drawn and a warning is
//! logged once.

use ab_glyph::{FontArc, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

use crate::model::Detection;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];
const PEDESTRIAN: Rgb<u8> = Rgb([0, 230, 64]);
const PALETTE: [Rgb<u8>; 6] = [
    Rgb([255, 160, 0]),
    Rgb([0, 160, 255]),
    Rgb([230, 40, 200]),
    Rgb([255, 230, 0]),
    Rgb([0, 230, 230]),
    Rgb([255, 64, 64]),
];
const TEXT_SCALE: f32 = 15.0;
const THICKNESS: i32 = 2;

/// The drawing settings, built once per run.
pub struct Overlay {
    font: Option<FontArc>,
    labels: Vec<String>,
    person_id: Option<usize>,
}

impl Overlay {
    /// An overlay for a model with these labels.
    pub fn new(labels: &[String]) -> Self {
        let font = load_font();
        if font.is_none() {
            tracing::warn!(
                "no TrueType font found (install fonts-dejavu-core or set PEDVISION_FONT); drawing boxes without labels"
            );
        }
        Self {
            font,
            labels: labels.to_vec(),
            person_id: labels.iter().position(|l| l == "person"),
        }
    }

    /// Colour of a class's boxes.
    pub fn colour(&self, class_id: usize) -> Rgb<u8> {
        if Some(class_id) == self.person_id {
            PEDESTRIAN
        } else {
            PALETTE[class_id % PALETTE.len()]
        }
    }

    /// Draws `detections` (in source pixels) onto `image`.
    pub fn draw(&self, image: &mut RgbImage, detections: &[Detection]) {
        // Lowest score first, so the most confident box ends up on top.
        for det in detections.iter().rev() {
            let colour = self.colour(det.class_id);
            let [x1, y1, x2, y2] = det.bbox.map(|v| v.round() as i32);
            for t in 0..THICKNESS {
                let (w, h) = ((x2 - x1 - 2 * t).max(1), (y2 - y1 - 2 * t).max(1));
                draw_hollow_rect_mut(
                    image,
                    Rect::at(x1 + t, y1 + t).of_size(w as u32, h as u32),
                    colour,
                );
            }
            if let Some(font) = &self.font {
                let label = self.labels.get(det.class_id).map_or("?", String::as_str);
                let text = format!("{label} {:.2}", det.score);
                let (tw, th) = text_size(PxScale::from(TEXT_SCALE), font, &text);
                let tag_h = th as i32 + 4;
                let tag_y = if y1 - tag_h >= 0 { y1 - tag_h } else { y1 };
                // Keep the tag inside the frame when the box touches the right edge.
                let tag_x = x1.min(image.width() as i32 - (tw as i32 + 6)).max(0);
                draw_filled_rect_mut(
                    image,
                    Rect::at(tag_x, tag_y).of_size(tw + 6, tag_h as u32),
                    colour,
                );
                draw_text_mut(
                    image,
                    Rgb([0, 0, 0]),
                    tag_x + 3,
                    tag_y + 2,
                    PxScale::from(TEXT_SCALE),
                    font,
                    &text,
                );
            }
        }
    }
}

fn load_font() -> Option<FontArc> {
    let custom = std::env::var("PEDVISION_FONT").ok();
    custom
        .iter()
        .map(String::as_str)
        .chain(FONT_PATHS)
        .find_map(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|bytes| FontArc::try_from_vec(bytes).ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_box_edges_in_the_class_colour() {
        let overlay = Overlay::new(&["person".to_string(), "car".to_string()]);
        let mut img = RgbImage::new(100, 100);
        overlay.draw(
            &mut img,
            &[Detection {
                class_id: 0,
                score: 0.9,
                bbox: [20.0, 40.0, 60.0, 90.0],
            }],
        );
        assert_eq!(*img.get_pixel(20, 70), PEDESTRIAN, "left edge");
        assert_eq!(*img.get_pixel(59, 70), PEDESTRIAN, "right edge");
        assert_eq!(*img.get_pixel(40, 89), PEDESTRIAN, "bottom edge");
        assert_eq!(
            *img.get_pixel(40, 70),
            Rgb([0, 0, 0]),
            "inside stays untouched"
        );
        assert_ne!(overlay.colour(1), PEDESTRIAN);
    }

    #[test]
    fn boxes_past_the_frame_edge_do_not_panic() {
        let overlay = Overlay::new(&["person".to_string()]);
        let mut img = RgbImage::new(50, 50);
        overlay.draw(
            &mut img,
            &[Detection {
                class_id: 0,
                score: 0.5,
                bbox: [-10.0, -10.0, 80.0, 80.0],
            }],
        );
        overlay.draw(
            &mut img,
            &[Detection {
                class_id: 3,
                score: 0.5,
                bbox: [49.0, 0.0, 49.0, 0.0],
            }],
        );
    }
}
