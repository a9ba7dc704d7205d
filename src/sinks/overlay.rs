//! Draws detections onto a frame: a box per detection, with its label, track id and
//! score on a filled tag above it, a short trail per track, and the [`Scene`]'s
//! counting lines and zones with their live counts. Pedestrians (`person`) get
//! their own colour; other classes get a stable colour from a small palette.
//!
//! Drawing goes through imageproc's `Canvas`; [`I420Canvas`] is that canvas over an
//! I420 frame, so frames are drawn on in the decoder's YUV and never converted whole.
//!
//! Text needs a TrueType font; the DejaVu font from Debian's `fonts-dejavu-core` is
//! used (or `PEDVISION_FONT`). Without one, boxes are still drawn and a warning is
//! logged once.

use ab_glyph::{FontArc, PxScale};
use image::Rgb;
use imageproc::drawing::{
    Canvas, draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut, draw_text_mut,
    text_size,
};
use imageproc::rect::Rect;

use crate::frame::{Frame, chroma_size, colour::ColourSpace};
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
const LINE_COLOUR: Rgb<u8> = Rgb([255, 215, 0]);
const ZONE_COLOUR: Rgb<u8> = Rgb([0, 200, 255]);
const TEXT_SCALE: f32 = 15.0;

/// What is drawn besides the boxes: counting lines and zones with their labels
/// (counts included), and each track's recent path. Points in source pixels.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// Each line's two ends and its label.
    pub lines: Vec<([(f32, f32); 2], String)>,
    /// Each zone's corners and its label.
    pub zones: Vec<(Vec<(f32, f32)>, String)>,
    /// Each track's class and recent anchor points, oldest first.
    pub trails: Vec<(usize, Vec<(f32, f32)>)>,
}
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
    pub fn draw<C: Canvas<Pixel = Rgb<u8>>>(&self, image: &mut C, detections: &[Detection]) {
        self.draw_scene(image, detections, &[], &Scene::default());
    }

    /// Draws the scene (zones, lines, trails), then `detections` with their track
    /// ids (`track_ids[i]` for `detections[i]`; missing ones have none).
    pub fn draw_scene<C: Canvas<Pixel = Rgb<u8>>>(
        &self,
        image: &mut C,
        detections: &[Detection],
        track_ids: &[Option<u64>],
        scene: &Scene,
    ) {
        for (polygon, label) in &scene.zones {
            for (i, a) in polygon.iter().enumerate() {
                thick_segment(image, *a, polygon[(i + 1) % polygon.len()], ZONE_COLOUR);
            }
            if let Some(first) = polygon.first() {
                self.tag(
                    image,
                    label,
                    (first.0 as i32, first.1 as i32 + 2),
                    ZONE_COLOUR,
                );
            }
        }
        for ([a, b], label) in &scene.lines {
            thick_segment(image, *a, *b, LINE_COLOUR);
            self.tag(image, label, (a.0 as i32, a.1 as i32 + 2), LINE_COLOUR);
        }
        for (class_id, points) in &scene.trails {
            for w in points.windows(2) {
                draw_line_segment_mut(image, w[0], w[1], self.colour(*class_id));
            }
        }
        // Lowest score first, so the most confident box ends up on top.
        for (i, det) in detections.iter().enumerate().rev() {
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
            let label = self.labels.get(det.class_id).map_or("?", String::as_str);
            let text = match track_ids.get(i).copied().flatten() {
                Some(id) => format!("{label} #{id} {:.2}", det.score),
                None => format!("{label} {:.2}", det.score),
            };
            self.tag_above(image, &text, (x1, y1), colour);
        }
    }

    /// A filled tag with `text` whose bottom-left corner is at `at` (below it when
    /// there is no room above), kept inside the frame.
    fn tag_above<C: Canvas<Pixel = Rgb<u8>>>(
        &self,
        image: &mut C,
        text: &str,
        at: (i32, i32),
        colour: Rgb<u8>,
    ) {
        let Some((_, tag_h)) = self.tag_size(text) else {
            return;
        };
        let y = if at.1 - tag_h >= 0 {
            at.1 - tag_h
        } else {
            at.1
        };
        self.tag(image, text, (at.0, y), colour);
    }

    /// Width and height of a tag holding `text`; `None` without a font.
    fn tag_size(&self, text: &str) -> Option<(i32, i32)> {
        let (tw, th) = text_size(PxScale::from(TEXT_SCALE), self.font.as_ref()?, text);
        Some((tw as i32 + 6, th as i32 + 4))
    }

    /// A filled tag with `text`, top-left at `at`, kept inside the frame.
    fn tag<C: Canvas<Pixel = Rgb<u8>>>(
        &self,
        image: &mut C,
        text: &str,
        at: (i32, i32),
        colour: Rgb<u8>,
    ) {
        let (Some(font), Some((tag_w, tag_h))) = (&self.font, self.tag_size(text)) else {
            return;
        };
        let x = at.0.min(image.width() as i32 - tag_w).max(0);
        let y = at.1.min(image.height() as i32 - tag_h).max(0);
        draw_filled_rect_mut(
            image,
            Rect::at(x, y).of_size(tag_w as u32, tag_h as u32),
            colour,
        );
        draw_text_mut(
            image,
            Rgb([0, 0, 0]),
            x + 3,
            y + 2,
            PxScale::from(TEXT_SCALE),
            font,
            text,
        );
    }
}

/// A segment two pixels wide.
fn thick_segment<C: Canvas<Pixel = Rgb<u8>>>(
    image: &mut C,
    a: (f32, f32),
    b: (f32, f32),
    colour: Rgb<u8>,
) {
    let vertical = (b.1 - a.1).abs() > (b.0 - a.0).abs();
    let (dx, dy) = if vertical { (1.0, 0.0) } else { (0.0, 1.0) };
    draw_line_segment_mut(image, a, b, colour);
    draw_line_segment_mut(image, (a.0 + dx, a.1 + dy), (b.0 + dx, b.1 + dy), colour);
}

/// An imageproc canvas over an I420 frame: reads convert YUV to RGB, writes set
/// the pixel's luma and the chroma of its 2×2 block.
pub struct I420Canvas<'a> {
    width: u32,
    height: u32,
    chroma_width: usize,
    colour: ColourSpace,
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
}

impl<'a> I420Canvas<'a> {
    /// A canvas over `frame`'s planes.
    pub fn new(frame: &'a mut Frame) -> Self {
        let (width, height, colour) = (frame.width, frame.height, frame.colour);
        let (chroma_width, _) = chroma_size(width, height);
        let (y, u, v) = frame.planes_mut();
        Self {
            width,
            height,
            chroma_width,
            colour,
            y,
            u,
            v,
        }
    }

    fn offsets(&self, x: u32, y: u32) -> (usize, usize) {
        (
            y as usize * self.width as usize + x as usize,
            (y / 2) as usize * self.chroma_width + (x / 2) as usize,
        )
    }
}

impl Canvas for I420Canvas<'_> {
    type Pixel = Rgb<u8>;

    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn get_pixel(&self, x: u32, y: u32) -> Rgb<u8> {
        let (l, c) = self.offsets(x, y);
        let rgb = self
            .colour
            .to_rgb(self.y[l] as f32, self.u[c] as f32, self.v[c] as f32);
        Rgb(rgb.map(|v| v.round() as u8))
    }

    fn draw_pixel(&mut self, x: u32, y: u32, colour: Rgb<u8>) {
        let (l, c) = self.offsets(x, y);
        let [yy, u, v] = self.colour.from_rgb(colour.0);
        self.y[l] = yy;
        self.u[c] = u;
        self.v[c] = v;
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
    use crate::frame::i420_len;
    use image::RgbImage;

    #[test]
    fn i420_canvas_writes_luma_and_chroma() {
        let mut frame = Frame::from_i420(0, 0, 4, 4, ColourSpace::BT601, vec![16; i420_len(4, 4)]);
        let mut canvas = I420Canvas::new(&mut frame);
        canvas.draw_pixel(3, 2, PEDESTRIAN);
        let back = canvas.get_pixel(3, 2);
        for (a, b) in back.0.iter().zip(PEDESTRIAN.0) {
            assert!((*a as i32 - b as i32).abs() <= 3, "{back:?}");
        }
        let (y, u, _) = frame.planes();
        assert_eq!(y[2 * 4 + 3], ColourSpace::BT601.from_rgb(PEDESTRIAN.0)[0]);
        assert_eq!(y[2 * 4 + 2], 16, "neighbouring luma untouched");
        assert_eq!(
            u[2 + 1],
            ColourSpace::BT601.from_rgb(PEDESTRIAN.0)[1],
            "chroma of block (1, 1)"
        );
    }

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
    fn draws_lines_zones_and_trails() {
        let overlay = Overlay::new(&["person".to_string()]);
        let mut img = RgbImage::new(200, 100);
        let scene = Scene {
            lines: vec![([(10.0, 50.0), (190.0, 50.0)], "door in 1 out 0".into())],
            zones: vec![(
                vec![(100.0, 10.0), (150.0, 10.0), (150.0, 40.0)],
                "queue 1".into(),
            )],
            trails: vec![(0, vec![(20.0, 90.0), (60.0, 90.0)])],
        };
        overlay.draw_scene(&mut img, &[], &[], &scene);
        assert_eq!(*img.get_pixel(120, 50), LINE_COLOUR, "the line");
        assert_eq!(
            *img.get_pixel(150, 25),
            ZONE_COLOUR,
            "the zone's right edge"
        );
        assert_eq!(*img.get_pixel(40, 90), PEDESTRIAN, "the trail");
        // Shapes past the frame are clipped, not a panic.
        let off = Scene {
            lines: vec![([(-50.0, -5.0), (500.0, 300.0)], "x".into())],
            ..Default::default()
        };
        overlay.draw_scene(&mut img, &[], &[], &off);
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
