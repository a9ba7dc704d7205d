//! A generated data set for retraining tests and demos: frames of a video with
//! rendered objects pasted at random places and sizes, labelled in KITTI format
//! with exact boxes.
//!
//! No labelled data set with a new class ships in the registries this project can
//! reach, so this is how the retrain path is exercised end to end. Two classes are
//! drawn: `ball` (a disc of six alternating red and white sectors) and `sign` (a
//! yellow diamond with a black rim and a black bar). Frames are decoded by the
//! project's own reader ([`crate::sources::read_frames`]); the generator writes
//! into `OUT.partial/` and renames it to `OUT` only when every file is written.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TrainError;
use crate::frame::{Frame, chroma_size};
use crate::model::BBox;
use crate::model::geometry::iou;

/// The classes the generator draws.
pub const CLASSES: [&str; 2] = ["ball", "sign"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub video: PathBuf,
    pub out: PathBuf,
    pub images: usize,
    pub seed: u64,
    /// Frame indices to draw backgrounds from (half-open); `None` = the first
    /// 256 frames (no more are held in memory).
    pub frames: Option<(usize, usize)>,
    /// Object size range in pixels (the longer side).
    pub sizes: (u32, u32),
    /// Objects per image, at most.
    pub max_objects: usize,
}

/// What was generated.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthReport {
    pub images: usize,
    pub boxes: [usize; 2],
    pub frames_available: usize,
}

/// The frame as 8-bit RGB, converted with the colour space its caps declared.
/// (Full-frame conversion is fine here: this is offline data generation, not the
/// pipeline, which never converts whole frames.)
fn frame_to_rgb(frame: &Frame) -> RgbImage {
    let (y, u, v) = frame.planes();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, _) = chroma_size(frame.width, frame.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for col in 0..w {
            let c = (row / 2) * cw + col / 2;
            let px = frame
                .colour
                .to_rgb(y[row * w + col] as f32, u[c] as f32, v[c] as f32);
            rgb.extend(px.map(|v| v.round() as u8));
        }
    }
    RgbImage::from_raw(frame.width, frame.height, rgb).expect("w × h × 3 bytes")
}

/// Draws a `ball` of diameter `size` with its top-left at `(x, y)`.
fn draw_ball(img: &mut RgbImage, x: u32, y: u32, size: u32, phase: f32) {
    let r = size as f32 / 2.0;
    let (cx, cy) = (x as f32 + r, y as f32 + r);
    for py in y..(y + size).min(img.height()) {
        for px in x..(x + size).min(img.width()) {
            let (dx, dy) = (px as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
            if dx * dx + dy * dy > r * r {
                continue;
            }
            let angle = dy.atan2(dx) + std::f32::consts::PI + phase;
            let sector = (angle / (std::f32::consts::PI / 3.0)) as i32;
            let colour = if sector % 2 == 0 {
                Rgb([220, 30, 30])
            } else {
                Rgb([245, 245, 245])
            };
            img.put_pixel(px, py, colour);
        }
    }
}

/// Draws a `sign` (diamond) of width and height `size` with its top-left at `(x, y)`.
fn draw_sign(img: &mut RgbImage, x: u32, y: u32, size: u32) {
    let h = size as f32 / 2.0;
    let (cx, cy) = (x as f32 + h, y as f32 + h);
    for py in y..(y + size).min(img.height()) {
        for px in x..(x + size).min(img.width()) {
            let (dx, dy) = ((px as f32 + 0.5 - cx).abs(), (py as f32 + 0.5 - cy).abs());
            let d = dx + dy;
            if d > h {
                continue;
            }
            let rim = d > h * 0.8;
            let bar = dy < h * 0.12 && dx < h * 0.45;
            let colour = if rim || bar {
                Rgb([15, 15, 15])
            } else {
                Rgb([250, 200, 20])
            };
            img.put_pixel(px, py, colour);
        }
    }
}

fn write_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Most video frames kept in memory as backgrounds (768×576 I420 is 0.66 MB).
const MAX_BACKGROUNDS: usize = 256;

/// Generates the data set: backgrounds from the video, then each image with its
/// objects drawn and its KITTI labels.
pub fn generate(options: &SynthOptions) -> Result<SynthReport, TrainError> {
    let staged = super::StagedDir::create(&options.out)?;
    let staging = staged.path();
    let (min, max) = options.sizes;
    if min < 8 || max < min {
        return Err(TrainError::Invalid(format!(
            "object sizes {min}..{max} must be at least 8 and in order"
        )));
    }
    let (frames, first, last) = backgrounds(options)?;
    for dir in ["images", "labels"] {
        std::fs::create_dir_all(staging.join(dir)).map_err(|e| write_error(staging, e))?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut boxes = [0usize; 2];
    for n in 0..options.images {
        let mut img = frame_to_rgb(&frames[rng.random_range(first..last)]);
        let placed = draw_objects(&mut img, &mut rng, options);
        for (class, _) in &placed {
            boxes[*class] += 1;
        }
        save_example(staging, &format!("{n:05}"), &img, &placed)?;
    }
    staged.commit()?;
    Ok(SynthReport {
        images: options.images,
        boxes,
        frames_available: last - first,
    })
}

/// The video's frames to draw on, and the range of them to use. Only the first
/// frames (or the asked range) are decoded: a long video is not read whole.
fn backgrounds(options: &SynthOptions) -> Result<(Vec<Frame>, usize, usize), TrainError> {
    let video = options.video.to_string_lossy();
    let limit = options.frames.map_or(MAX_BACKGROUNDS, |(first, last)| {
        last.min(first + MAX_BACKGROUNDS)
    });
    let frames =
        crate::sources::read_frames(&video, Some(limit)).map_err(|e| TrainError::Image {
            path: options.video.clone(),
            reason: e.to_string(),
        })?;
    if frames.is_empty() {
        return Err(TrainError::Image {
            path: options.video.clone(),
            reason: "no video frames decoded".into(),
        });
    }
    let (first, last) = options.frames.unwrap_or((0, frames.len()));
    let last = last.min(frames.len());
    if first >= last {
        return Err(TrainError::Invalid(format!(
            "frame range {first}..{last} is empty (the video has {} frames)",
            frames.len()
        )));
    }
    Ok((frames, first, last))
}

/// Draws 1 to `max_objects` objects that do not overlap (20 tries each); their
/// classes and boxes.
fn draw_objects(
    img: &mut RgbImage,
    rng: &mut ChaCha8Rng,
    options: &SynthOptions,
) -> Vec<(usize, BBox)> {
    let (min, max) = options.sizes;
    let (w, h) = img.dimensions();
    let count = rng.random_range(1..=options.max_objects.max(1));
    let mut placed: Vec<(usize, BBox)> = Vec::new();
    for _ in 0..count {
        for _attempt in 0..20 {
            let size = rng.random_range(min..=max.min(w.min(h)));
            let (x, y) = (
                rng.random_range(0..=w - size),
                rng.random_range(0..=h - size),
            );
            let bbox = [x as f32, y as f32, (x + size) as f32, (y + size) as f32];
            if placed.iter().any(|(_, b)| iou(b, &bbox) > 0.0) {
                continue;
            }
            let class = rng.random_range(0..CLASSES.len());
            match class {
                0 => draw_ball(img, x, y, size, rng.random_range(0.0..1.0)),
                _ => draw_sign(img, x, y, size),
            }
            placed.push((class, bbox));
            break;
        }
    }
    placed
}

/// Writes `images/NAME.jpg` and its KITTI labels `labels/NAME.txt`.
fn save_example(
    staging: &Path,
    name: &str,
    img: &RgbImage,
    placed: &[(usize, BBox)],
) -> Result<(), TrainError> {
    let image_path = staging.join("images").join(format!("{name}.jpg"));
    img.save(&image_path).map_err(|e| TrainError::Image {
        path: image_path.clone(),
        reason: e.to_string(),
    })?;
    let labels: String = placed
        .iter()
        .map(|(c, b)| {
            format!(
                "{} 0.00 0 0.00 {:.2} {:.2} {:.2} {:.2} 0.00 0.00 0.00 0.00 0.00 0.00 0.00\n",
                CLASSES[*c], b[0], b[1], b[2], b[3]
            )
        })
        .collect();
    let label_path = staging.join("labels").join(format!("{name}.txt"));
    std::fs::write(&label_path, labels).map_err(|e| write_error(&label_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_objects_fill_their_boxes_exactly() {
        let mut img = RgbImage::new(40, 40);
        draw_ball(&mut img, 5, 6, 20, 0.0);
        draw_sign(&mut img, 0, 30, 10);
        let lit: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|p| p.2.0 != [0, 0, 0])
            .map(|p| (p.0, p.1))
            .collect();
        let ball: Vec<_> = lit.iter().filter(|p| p.1 < 30).collect();
        let (xs, ys): (Vec<u32>, Vec<u32>) = ball.iter().map(|p| (p.0, p.1)).unzip();
        assert_eq!(
            (*xs.iter().min().unwrap(), *xs.iter().max().unwrap()),
            (5, 24)
        );
        assert_eq!(
            (*ys.iter().min().unwrap(), *ys.iter().max().unwrap()),
            (6, 25)
        );
        // The sign's rim is black, so look at its extent through any drawn pixel
        // including the rim: it spans the middle row end to end.
        assert!(img.get_pixel(5, 35).0 != [0, 0, 0]);
    }
}
