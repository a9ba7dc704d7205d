//! KITTI object labels, the format NVIDIA TAO uses for detection: per image a `.txt`
//! in `labels/` (or `label_2/`) with one object per line,
//! `type truncated occluded alpha x1 y1 x2 y2 h w l x y z rot_y [score]`; only the
//! type and the 2-D box are used. `DontCare` lines mark regions to ignore.

use std::path::{Path, PathBuf};

use super::{Parsed, RawBox, RawSample, Skipped, files_with, find_image, number, read_label_file};

/// The label folder of a KITTI data set, if there is one.
pub(crate) fn label_dir(root: &Path) -> Option<PathBuf> {
    ["labels", "label_2"]
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.is_dir())
}

fn image_dir(root: &Path) -> PathBuf {
    ["images", "image_2"]
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| root.join("images"))
}

pub(crate) fn parse(root: &Path) -> Result<Parsed, String> {
    let labels = label_dir(root).ok_or("no labels/ or label_2/ folder")?;
    let images = image_dir(root);
    let mut parsed = Parsed::default();
    let label_files = files_with(&labels, &["txt"])?;
    let mut labelled = std::collections::HashSet::new();
    for file in label_files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let origin = file.display().to_string();
        let Some(image) = find_image(&images, &stem) else {
            parsed.skipped.push(Skipped {
                item: origin,
                reason: format!("no image {stem}.jpg/.png in {}", images.display()),
            });
            continue;
        };
        labelled.insert(image.clone());
        let Some(text) = read_label_file(&file, &mut parsed.skipped) else {
            continue;
        };
        let mut sample = RawSample {
            image,
            origin: origin.clone(),
            boxes: Vec::new(),
            ignore: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            let at = format!("{origin}:{}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let dont_care = fields[0].eq_ignore_ascii_case("dontcare");
            if dont_care {
                parsed.ignored += 1;
            }
            let list = if dont_care {
                &mut sample.ignore
            } else {
                &mut sample.boxes
            };
            match parse_line(&fields) {
                Ok(bbox) => list.push(RawBox {
                    label: fields[0].to_string(),
                    bbox,
                    normalised: false,
                    origin: at,
                }),
                Err(reason) => parsed.skipped.push(Skipped { item: at, reason }),
            }
        }
        parsed.samples.push(sample);
    }
    // An image with no label file is most likely a labelling slip, not a negative.
    for image in files_with(&images, &["jpg", "jpeg", "png"]).unwrap_or_default() {
        if !labelled.contains(&image) {
            parsed.skipped.push(Skipped {
                item: image.display().to_string(),
                reason: "no label file (an image with no objects needs an empty one)".into(),
            });
        }
    }
    Ok(parsed)
}

fn parse_line(fields: &[&str]) -> Result<[f32; 4], String> {
    if !(15..=16).contains(&fields.len()) {
        return Err(format!("expected 15 or 16 fields, found {}", fields.len()));
    }
    Ok([
        number(fields[4], "x1")?,
        number(fields[5], "y1")?,
        number(fields[6], "x2")?,
        number(fields[7], "y2")?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_type_and_2d_box() {
        let line = "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01";
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parse_line(&fields), Ok([712.40, 143.00, 810.73, 307.92]));
        assert!(parse_line(&fields[..8]).unwrap_err().contains("15 or 16"));
        let mut bad = fields.clone();
        bad[5] = "top";
        assert!(parse_line(&bad).unwrap_err().contains("y1"));
    }

    proptest::proptest! {
        /// Any line: an error or four finite numbers, never a panic.
        #[test]
        fn any_line_parses_or_errs(line in "(\\PC{0,12}[ \t]){0,18}", numbers in proptest::collection::vec(-1e6f32..1e6, 15)) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let Ok(b) = parse_line(&fields) {
                proptest::prop_assert!(b.iter().all(|v| v.is_finite()));
            }
            let text: Vec<String> = std::iter::once("Car".to_string())
                .chain(numbers[1..].iter().map(|v| v.to_string()))
                .collect();
            let fields: Vec<&str> = text.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(parse_line(&fields).unwrap(), [numbers[4], numbers[5], numbers[6], numbers[7]]);
        }
    }
}
