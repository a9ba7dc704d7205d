//! COCO detection JSON: `images` (id, `file_name` relative to the JSON's folder),
//! `categories` (id, name) and `annotations` (`image_id`, `category_id`, `bbox` as
//! `[x, y, width, height]`, `iscrowd`). Crowd boxes are regions to ignore.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{Parsed, RawBox, RawSample, Skipped};

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: i64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    #[serde(default)]
    id: Option<i64>,
    image_id: i64,
    category_id: i64,
    bbox: [f32; 4],
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: i64,
    name: String,
}

pub(crate) fn parse(path: &Path) -> Result<Parsed, String> {
    let file = if path.is_dir() {
        path.join("annotations.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let coco: CocoFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not COCO JSON: {e}", file.display()))?;
    let root = file.parent().unwrap_or(Path::new("."));
    let origin = file.display().to_string();
    let categories: HashMap<i64, &str> = coco
        .categories
        .iter()
        .map(|c| (c.id, c.name.as_str()))
        .collect();
    let mut parsed = Parsed {
        declared: coco.categories.iter().map(|c| c.name.clone()).collect(),
        ..Parsed::default()
    };
    let mut index: HashMap<i64, usize> = HashMap::new();
    for image in &coco.images {
        index.insert(image.id, parsed.samples.len());
        parsed.samples.push(RawSample {
            image: root.join(&image.file_name),
            origin: format!("{origin}: image {}", image.id),
            boxes: Vec::new(),
            ignore: Vec::new(),
        });
    }
    for (i, a) in coco.annotations.iter().enumerate() {
        let at = format!("{origin}: annotation {}", a.id.unwrap_or(i as i64));
        let Some(&sample) = index.get(&a.image_id) else {
            parsed.skipped.push(Skipped {
                item: at,
                reason: format!("unknown image_id {}", a.image_id),
            });
            continue;
        };
        let Some(&label) = categories.get(&a.category_id) else {
            parsed.skipped.push(Skipped {
                item: at,
                reason: format!("unknown category_id {}", a.category_id),
            });
            continue;
        };
        let [x, y, w, h] = a.bbox;
        let raw = &mut parsed.samples[sample];
        let list = if a.iscrowd != 0 {
            parsed.ignored += 1;
            &mut raw.ignore
        } else {
            &mut raw.boxes
        };
        list.push(RawBox {
            label: label.to_string(),
            bbox: [x, y, x + w, y + h],
            normalised: false,
            origin: at,
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any file, or COCO JSON with any numbers: samples with finite boxes or a
        /// reason, never a panic.
        #[test]
        fn any_annotation_file_parses_or_errs(
            text in "\\PC{0,200}",
            bbox in proptest::collection::vec(-1e9f64..1e9, 0..6),
            category in -3i64..3,
            image in -3i64..3,
            crowd in 0u8..3,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let json = format!(
                r#"{{"images":[{{"id":1,"file_name":"a.jpg","width":10,"height":10}}],"categories":[{{"id":1,"name":"person"}}],"annotations":[{{"id":1,"image_id":{image},"category_id":{category},"bbox":{bbox:?},"iscrowd":{crowd}}}]}}"#
            );
            for (i, body) in [text, json].iter().enumerate() {
                let file = dir.path().join(format!("{i}.json"));
                std::fs::write(&file, body).unwrap();
                if let Ok(parsed) = parse(&file) {
                    for s in &parsed.samples {
                        proptest::prop_assert!(s.boxes.iter().all(|b| b.bbox.iter().all(|v| v.is_finite())));
                    }
                }
            }
        }
    }
}
