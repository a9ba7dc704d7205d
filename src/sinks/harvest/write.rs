//! The harvest's writer thread: each chosen frame becomes
//! `images/NAME.jpg` (RGB, converted with the stream's colour space), then
//! `labels/NAME.txt` (the model's detections as KITTI pre-labels), then one line
//! of `harvest.jsonl` (why it was chosen). Each file is written under a temporary
//! name and renamed, image first: a crash leaves at most an image without labels,
//! which `retrain` reports and skips; never a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use image::RgbImage;

use crate::frame::{Frame, chroma_size};
use crate::model::Detection;

/// One chosen frame, as the writer needs it.
pub struct Job {
    /// File stem, unique in the run.
    pub name: String,
    pub frame: Frame,
    /// Pre-labels: the model's detections and the gaps filled from tracks.
    pub labels: Vec<(String, Detection)>,
    /// The `harvest.jsonl` line.
    pub index_line: String,
}

/// What the writer did.
#[derive(Debug, Default)]
pub struct Written {
    pub saved: u64,
    /// Failures, with the first one's message.
    pub failed: u64,
    pub first_error: Option<String>,
}

/// Writes every job until the channel closes.
pub fn run(dir: PathBuf, jobs: Receiver<Job>) -> Written {
    let mut written = Written::default();
    for job in jobs {
        match save(&dir, &job) {
            Ok(()) => written.saved += 1,
            Err(e) => {
                written.failed += 1;
                tracing::warn!(name = %job.name, "harvest: {e}");
                written.first_error.get_or_insert(e);
            }
        }
    }
    written
}

fn save(dir: &Path, job: &Job) -> Result<(), String> {
    let image = dir.join("images").join(format!("{}.jpg", job.name));
    let rgb = to_rgb(&job.frame);
    write_atomically(&image, |path| {
        rgb.save_with_format(path, image::ImageFormat::Jpeg)
            .map_err(|e| e.to_string())
    })?;
    let labels = dir.join("labels").join(format!("{}.txt", job.name));
    let text = kitti_lines(&job.labels);
    write_atomically(&labels, |path| {
        std::fs::write(path, text.as_bytes()).map_err(|e| e.to_string())
    })?;
    let index = dir.join("harvest.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&index)
        .and_then(|mut f| f.write_all(format!("{}\n", job.index_line).as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", index.display()))
}

/// Writes through `PATH.partial`, then renames it to `path`.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result =
        write(&partial).and_then(|()| std::fs::rename(&partial, path).map_err(|e| e.to_string()));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// KITTI label lines (15 fields and the score; labels with spaces get `_`).
pub fn kitti_lines(labels: &[(String, Detection)]) -> String {
    labels
        .iter()
        .map(|(label, d)| {
            let [x1, y1, x2, y2] = d.bbox;
            format!(
                "{} 0.00 0 0.00 {x1:.2} {y1:.2} {x2:.2} {y2:.2} 0.00 0.00 0.00 0.00 0.00 0.00 0.00 {:.3}\n",
                label.replace(char::is_whitespace, "_"),
                d.score
            )
        })
        .collect()
}

/// The frame in RGB (chroma taken from its 2×2 block).
pub fn to_rgb(frame: &Frame) -> RgbImage {
    let (w, h) = (frame.width, frame.height);
    let (cw, _) = chroma_size(w, h);
    let (y, u, v) = frame.planes();
    RgbImage::from_fn(w, h, |px, py| {
        let c = (py as usize / 2) * cw + px as usize / 2;
        let l = y[py as usize * w as usize + px as usize];
        let rgb = frame.colour.to_rgb(l as f32, u[c] as f32, v[c] as f32);
        image::Rgb(rgb.map(|x| x.round() as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kitti_lines_parse_back_with_the_same_boxes() {
        let d = Detection {
            class_id: 9,
            score: 0.4,
            bbox: [1.0, 2.5, 30.25, 40.0],
        };
        let text = kitti_lines(&[("traffic light".into(), d)]);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 16);
        assert_eq!(fields[0], "traffic_light");
        assert_eq!(&fields[4..8], ["1.00", "2.50", "30.25", "40.00"]);
        assert_eq!(fields[15], "0.400");
    }
}
