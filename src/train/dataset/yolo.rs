//! YOLO txt: `images/`, `labels/` with one `.txt` per image (`class cx cy w h`, all
//! fractions of the image size) and the class names one per line in `classes.txt`
//! (or darknet's `obj.names`). An image without a label file has no objects, as in
//! YOLO's own loaders.

use std::path::{Path, PathBuf};

use super::{Parsed, RawBox, RawSample, Skipped, files_with, number, read_label_file};

/// The class-name file of a YOLO data set, if there is one.
pub(crate) fn classes_file(root: &Path) -> Option<PathBuf> {
    ["classes.txt", "obj.names"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
}

pub(crate) fn parse(root: &Path) -> Result<Parsed, String> {
    let names_file =
        classes_file(root).ok_or("no classes.txt (or obj.names) with the class names")?;
    let names: Vec<String> = std::fs::read_to_string(&names_file)
        .map_err(|e| format!("cannot read {}: {e}", names_file.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(format!("{} lists no classes", names_file.display()));
    }
    let mut parsed = Parsed {
        declared: names.clone(),
        ..Parsed::default()
    };
    for image in files_with(&root.join("images"), &["jpg", "jpeg", "png"])? {
        let stem = image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let label_file = root.join("labels").join(format!("{stem}.txt"));
        let origin = label_file.display().to_string();
        let mut sample = RawSample {
            image: image.clone(),
            origin: origin.clone(),
            boxes: Vec::new(),
            ignore: Vec::new(),
        };
        if label_file.is_file() {
            let Some(text) = read_label_file(&label_file, &mut parsed.skipped) else {
                continue;
            };
            for (i, line) in text.lines().enumerate() {
                let at = format!("{origin}:{}", i + 1);
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(line, &names) {
                    Ok((label, bbox)) => sample.boxes.push(RawBox {
                        label,
                        bbox,
                        normalised: true,
                        origin: at,
                    }),
                    Err(reason) => parsed.skipped.push(Skipped { item: at, reason }),
                }
            }
        }
        parsed.samples.push(sample);
    }
    Ok(parsed)
}

fn parse_line(line: &str, names: &[String]) -> Result<(String, [f32; 4]), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (class cx cy w h), found {}",
            fields.len()
        ));
    }
    let class: usize = fields[0]
        .parse()
        .map_err(|_| format!("class {:?} is not an index", fields[0]))?;
    let label = names.get(class).ok_or_else(|| {
        format!(
            "unknown class index {class} (classes.txt has {} classes)",
            names.len()
        )
    })?;
    let [cx, cy, w, h] = [
        number(fields[1], "cx")?,
        number(fields[2], "cy")?,
        number(fields[3], "w")?,
        number(fields[4], "h")?,
    ];
    Ok((
        label.clone(),
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_normalised_centre_boxes() {
        let names = vec!["ball".to_string(), "sign".to_string()];
        let (label, b) = parse_line("1 0.5 0.25 0.2 0.1", &names).unwrap();
        assert_eq!(label, "sign");
        for (got, want) in b.iter().zip([0.4, 0.2, 0.6, 0.3]) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
        assert!(
            parse_line("2 0.5 0.5 0.1 0.1", &names)
                .unwrap_err()
                .contains("unknown class index 2")
        );
        assert!(
            parse_line("0 0.5 0.5 0.1", &names)
                .unwrap_err()
                .contains("5 fields")
        );
    }

    proptest::proptest! {
        /// Any line: an error or a known label with a finite box, never a panic.
        #[test]
        fn any_line_parses_or_errs(line in "\\PC{0,60}", cx in 0f32..1.0, cy in 0f32..1.0, w in 0f32..1.0, h in 0f32..1.0) {
            let names = vec!["a".to_string(), "b".to_string()];
            if let Ok((label, b)) = parse_line(&line, &names) {
                proptest::prop_assert!(names.contains(&label));
                proptest::prop_assert!(b.iter().all(|v| v.is_finite()));
            }
            let (_, b) = parse_line(&format!("1 {cx} {cy} {w} {h}"), &names).unwrap();
            proptest::prop_assert!((b[0] + b[2] - 2.0 * cx).abs() < 1e-4 && (b[3] - b[1] - h).abs() < 1e-4);
        }
    }
}
