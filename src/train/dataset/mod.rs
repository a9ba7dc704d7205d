//! Labelled data sets: KITTI, COCO JSON, Pascal VOC XML and YOLO txt, read into one
//! form ([`Dataset`]: image paths with boxes in source pixels and class names).
//!
//! Each format module only parses (`RawSample`s, plus what it could not parse);
//! [`validate`] then does the checks every format shares: the image exists and
//! decodes its header, boxes have a size and lie in the image (within a pixel, then
//! clipped). Whatever is dropped becomes a [`Skipped`] entry with the file and the
//! reason, so a report can list it; nothing is dropped silently.

mod coco;
mod kitti;
mod voc;
mod yolo;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::BBox;

/// A label format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// KITTI (as NVIDIA TAO uses it): `images/` (or `image_2/`) and `labels/`
    /// (or `label_2/`), one `.txt` per image, `class trunc occ alpha x1 y1 x2 y2 ...`.
    Kitti,
    /// COCO JSON: an annotation file whose `file_name`s are relative to its folder.
    Coco,
    /// Pascal VOC: `Annotations/*.xml` and `JPEGImages/`.
    Voc,
    /// YOLO: `images/`, `labels/` (`class cx cy w h`, normalised) and `classes.txt`.
    Yolo,
}

impl crate::choice::Choice for Format {
    const ALL: &'static [Self] = &[Self::Kitti, Self::Coco, Self::Voc, Self::Yolo];
    fn name(self) -> &'static str {
        match self {
            Self::Kitti => "kitti",
            Self::Coco => "coco",
            Self::Voc => "voc",
            Self::Yolo => "yolo",
        }
    }
    fn about(self) -> &'static str {
        match self {
            Self::Kitti => "images/ and labels/ with one .txt per image (NVIDIA TAO)",
            Self::Coco => "a COCO JSON annotation file",
            Self::Voc => "Pascal VOC: Annotations/*.xml and JPEGImages/",
            Self::Yolo => "images/, labels/ (normalised cx cy w h) and classes.txt",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kitti => "KITTI",
            Self::Coco => "COCO",
            Self::Voc => "Pascal VOC",
            Self::Yolo => "YOLO",
        })
    }
}

/// One labelled box, corners in source-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub label: String,
    pub bbox: BBox,
}

/// One usable image with its boxes (possibly none: a negative example).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: PathBuf,
    pub width: u32,
    pub height: u32,
    pub annotations: Vec<Annotation>,
    /// Regions to ignore (KITTI `DontCare`, COCO `iscrowd`), in pixels: a
    /// detection there is neither right nor wrong, and training leaves them out.
    pub ignore: Vec<BBox>,
}

/// Something left out of the data set, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// The file (and line or box) it came from.
    pub item: String,
    pub reason: String,
}

/// What went wrong reading a data set as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("data set {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "data set {path}: no usable images ({skipped} item(s) skipped: {first}{more})",
        more = if *skipped > 1 { ", ..." } else { "" }
    )]
    Empty {
        path: PathBuf,
        skipped: usize,
        first: String,
    },
}

/// A box as a parser read it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawBox {
    pub label: String,
    /// Corners; in pixels, or fractions of the image size when `normalised`.
    pub bbox: BBox,
    pub normalised: bool,
    /// Where it came from, for messages (`file:line`).
    pub origin: String,
}

/// An image as a parser read it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSample {
    pub image: PathBuf,
    pub origin: String,
    pub boxes: Vec<RawBox>,
    /// Regions marked to ignore.
    pub ignore: Vec<RawBox>,
}

/// A parser's result.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub samples: Vec<RawSample>,
    pub skipped: Vec<Skipped>,
    /// Class names the format declares (COCO categories, YOLO `classes.txt`).
    pub declared: Vec<String>,
    /// Regions the format marks to ignore (KITTI `DontCare`, COCO `iscrowd`).
    pub ignored: usize,
}

/// A validated data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub samples: Vec<Sample>,
    pub skipped: Vec<Skipped>,
    /// Regions the labels mark as "don't care" or crowd, left out on purpose.
    pub ignored: usize,
    /// Class names the format declares, in its order (may list unused ones).
    pub declared: Vec<String>,
}

impl Dataset {
    /// Reads a data set, guessing the format from its layout unless `format` is set.
    /// An empty result (nothing usable) is an error that names the first problem.
    pub fn load(path: &Path, format: Option<Format>) -> Result<Self, DatasetError> {
        let unreadable = |reason: String| DatasetError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            return Err(unreadable("no such file or folder".into()));
        }
        let format = match format {
            Some(f) => f,
            None => detect(path).ok_or_else(|| {
                unreadable(
                    "cannot tell its format: expected a COCO .json file, or a folder with \
                     Annotations/ (Pascal VOC), classes.txt and labels/ (YOLO), or labels/ \
                     (KITTI); pass --format"
                        .into(),
                )
            })?,
        };
        let parsed = match format {
            Format::Kitti => kitti::parse(path),
            Format::Coco => coco::parse(path),
            Format::Voc => voc::parse(path),
            Format::Yolo => yolo::parse(path),
        }
        .map_err(unreadable)?;
        let (samples, mut skipped) = validate(parsed.samples);
        skipped.splice(0..0, parsed.skipped);
        if samples.is_empty() {
            return Err(DatasetError::Empty {
                path: path.to_path_buf(),
                skipped: skipped.len(),
                first: skipped.first().map_or_else(
                    || "the data set lists no images".into(),
                    |s| format!("{}: {}", s.item, s.reason),
                ),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            samples,
            skipped,
            ignored: parsed.ignored,
            declared: parsed.declared,
        })
    }

    /// Class names that occur, with their box counts, in name order.
    pub fn label_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in self.samples.iter().flat_map(|s| &s.annotations) {
            *counts.entry(a.label.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Class names that occur: in the order the format declares them if it does,
    /// else in order of first appearance.
    pub fn labels(&self) -> Vec<String> {
        let counts = self.label_counts();
        let mut labels: Vec<String> = self
            .declared
            .iter()
            .filter(|l| counts.contains_key(*l))
            .cloned()
            .collect();
        for a in self.samples.iter().flat_map(|s| &s.annotations) {
            if !labels.contains(&a.label) {
                labels.push(a.label.clone());
            }
        }
        labels
    }

    /// Keeps only boxes whose class is in `known`; the others are listed as skipped.
    pub fn restrict_to(&mut self, known: &[String]) {
        for sample in &mut self.samples {
            let image = sample.image.display().to_string();
            let skipped = &mut self.skipped;
            sample.annotations.retain(|a| {
                let keep = known.contains(&a.label);
                if !keep {
                    skipped.push(Skipped {
                        item: image.clone(),
                        reason: format!(
                            "unknown class {:?} (known: {})",
                            a.label,
                            known.join(", ")
                        ),
                    });
                }
                keep
            });
        }
    }

    /// Number of boxes.
    pub fn boxes(&self) -> usize {
        self.samples.iter().map(|s| s.annotations.len()).sum()
    }

    /// A one-line summary: images, boxes per class, skipped and ignored counts.
    pub fn summary(&self) -> String {
        let classes = self
            .label_counts()
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} data set {}: {} images, {} boxes ({}); {} skipped, {} ignore regions",
            self.format,
            self.path.display(),
            self.samples.len(),
            self.boxes(),
            if classes.is_empty() {
                "no classes".into()
            } else {
                classes
            },
            self.skipped.len(),
            self.ignored
        )
    }
}

/// Guesses the format from the layout on disk.
fn detect(path: &Path) -> Option<Format> {
    if path.is_file() {
        return path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            .then_some(Format::Coco);
    }
    if path.join("Annotations").is_dir() {
        Some(Format::Voc)
    } else if yolo::classes_file(path).is_some() {
        Some(Format::Yolo)
    } else if kitti::label_dir(path).is_some() {
        Some(Format::Kitti)
    } else if path.join("annotations.json").is_file() {
        Some(Format::Coco)
    } else {
        None
    }
}

/// The image file beside `stem` in `dir` with a JPEG or PNG extension, if any.
pub(crate) fn find_image(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["jpg", "jpeg", "png", "JPG", "JPEG", "PNG"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// Files in `dir` with one of `exts` (case-insensitive), sorted by name.
pub(crate) fn files_with(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// How far (pixels) a box may reach past the image before it counts as outside:
/// labelling tools round, and a box on the border often ends a pixel beyond it.
const BORDER_SLACK: f32 = 1.0;

/// The checks every format shares; returns the usable samples and what was dropped.
fn validate(raw: Vec<RawSample>) -> (Vec<Sample>, Vec<Skipped>) {
    let mut samples = Vec::with_capacity(raw.len());
    let mut skipped = Vec::new();
    for r in raw {
        if !r.image.is_file() {
            skipped.push(Skipped {
                item: r.origin,
                reason: format!("missing image {}", r.image.display()),
            });
            continue;
        }
        let (width, height) = match image::image_dimensions(&r.image) {
            Ok(d) => d,
            Err(e) => {
                skipped.push(Skipped {
                    item: r.image.display().to_string(),
                    reason: format!("unreadable image: {e}"),
                });
                continue;
            }
        };
        let (w, h) = (width as f32, height as f32);
        let mut checked = |b: RawBox| {
            let mut bbox = b.bbox;
            if b.normalised {
                bbox = [bbox[0] * w, bbox[1] * h, bbox[2] * w, bbox[3] * h];
            }
            match check_box(bbox, w, h) {
                Ok(bbox) => Some((b.label, bbox)),
                Err(reason) => {
                    skipped.push(Skipped {
                        item: b.origin,
                        reason: format!("{} box {}: {reason}", b.label, show_box(&bbox)),
                    });
                    None
                }
            }
        };
        let annotations: Vec<Annotation> = r
            .boxes
            .into_iter()
            .filter_map(&mut checked)
            .map(|(label, bbox)| Annotation { label, bbox })
            .collect();
        let ignore = r
            .ignore
            .into_iter()
            .filter_map(&mut checked)
            .map(|(_, bbox)| bbox)
            .collect();
        samples.push(Sample {
            image: r.image,
            width,
            height,
            annotations,
            ignore,
        });
    }
    (samples, skipped)
}

fn show_box(b: &BBox) -> String {
    format!("[{:.1}, {:.1}, {:.1}, {:.1}]", b[0], b[1], b[2], b[3])
}

/// A box that is finite, has a size and lies in the `w`×`h` image (within
/// [`BORDER_SLACK`]), clipped to the image.
fn check_box(b: BBox, w: f32, h: f32) -> Result<BBox, String> {
    if b.iter().any(|v| !v.is_finite()) {
        return Err("not a number".into());
    }
    if b[2] <= b[0] || b[3] <= b[1] {
        return Err("zero or negative size".into());
    }
    let s = BORDER_SLACK;
    if b[0] < -s || b[1] < -s || b[2] > w + s || b[3] > h + s {
        return Err(format!("outside the {w}×{h} image"));
    }
    let clipped = [b[0].max(0.0), b[1].max(0.0), b[2].min(w), b[3].min(h)];
    if clipped[2] - clipped[0] < 1.0 || clipped[3] - clipped[1] < 1.0 {
        return Err("smaller than a pixel".into());
    }
    Ok(clipped)
}

/// Reads a label file; an unreadable one becomes a skipped item and `None`.
pub(crate) fn read_label_file(path: &Path, skipped: &mut Vec<Skipped>) -> Option<String> {
    std::fs::read_to_string(path)
        .map_err(|e| {
            skipped.push(Skipped {
                item: path.display().to_string(),
                reason: format!("unreadable: {e}"),
            })
        })
        .ok()
}

/// Parses a number field for a parser's error message.
pub(crate) fn number(s: &str, what: &str) -> Result<f32, String> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_checked_and_clipped() {
        assert_eq!(
            check_box([-0.5, 0.0, 100.5, 50.0], 100.0, 50.0),
            Ok([0.0, 0.0, 100.0, 50.0])
        );
        assert!(
            check_box([10.0, 10.0, 10.0, 20.0], 100.0, 50.0)
                .unwrap_err()
                .contains("zero")
        );
        assert!(check_box([20.0, 10.0, 10.0, 20.0], 100.0, 50.0).is_err());
        assert!(
            check_box([50.0, 10.0, 120.0, 20.0], 100.0, 50.0)
                .unwrap_err()
                .contains("outside")
        );
        assert!(check_box([f32::NAN, 0.0, 1.0, 1.0], 100.0, 50.0).is_err());
    }

    #[test]
    fn an_empty_or_missing_data_set_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Dataset::load(&dir.path().join("nope"), None).unwrap_err();
        assert!(missing.to_string().contains("no such file"), "{missing}");
        let unknown = Dataset::load(dir.path(), None).unwrap_err();
        assert!(unknown.to_string().contains("--format"), "{unknown}");
        std::fs::create_dir_all(dir.path().join("labels")).unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let empty = Dataset::load(dir.path(), Some(Format::Kitti)).unwrap_err();
        assert!(empty.to_string().contains("no usable images"), "{empty}");
    }
}
