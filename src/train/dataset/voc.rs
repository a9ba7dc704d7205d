//! Pascal VOC: one XML file per image in `Annotations/`, naming the image in
//! `JPEGImages/` (`<filename>`) and its `<object>`s with `<name>` and `<bndbox>`.

use std::path::Path;

use super::{Parsed, RawBox, RawSample, Skipped, files_with, number};

pub(crate) fn parse(root: &Path) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    for file in files_with(&root.join("Annotations"), &["xml"])? {
        let origin = file.display().to_string();
        match parse_file(&file, root) {
            Ok((sample, skipped)) => {
                parsed.samples.push(sample);
                parsed.skipped.extend(skipped);
            }
            Err(reason) => parsed.skipped.push(Skipped {
                item: origin,
                reason,
            }),
        }
    }
    Ok(parsed)
}

fn parse_file(file: &Path, root: &Path) -> Result<(RawSample, Vec<Skipped>), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("unreadable: {e}"))?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| format!("not valid XML: {e}"))?;
    let origin = file.display().to_string();
    let annotation = doc.root_element();
    let child_text = |node: roxmltree::Node, name: &str| {
        node.children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let filename = child_text(annotation, "filename").unwrap_or_else(|| {
        format!(
            "{}.jpg",
            file.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
        )
    });
    let mut sample = RawSample {
        image: root.join("JPEGImages").join(filename),
        origin: origin.clone(),
        boxes: Vec::new(),
        ignore: Vec::new(),
    };
    let mut skipped = Vec::new();
    for (i, object) in annotation
        .children()
        .filter(|c| c.has_tag_name("object"))
        .enumerate()
    {
        let at = format!("{origin}: object {}", i + 1);
        let parsed = (|| {
            let label = child_text(object, "name").ok_or("no <name>")?;
            let bndbox = object
                .children()
                .find(|c| c.has_tag_name("bndbox"))
                .ok_or("no <bndbox>")?;
            let mut bbox = [0.0f32; 4];
            for (v, key) in bbox.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
                let text = child_text(bndbox, key).ok_or_else(|| format!("no <{key}>"))?;
                *v = number(&text, key)?;
            }
            Ok::<_, String>(RawBox {
                label,
                bbox,
                normalised: false,
                origin: at.clone(),
            })
        })();
        match parsed {
            Ok(b) => sample.boxes.push(b),
            Err(reason) => skipped.push(Skipped { item: at, reason }),
        }
    }
    Ok((sample, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VOC annotation with `value` where a coordinate or name would be.
    fn doc(name: &str, xmin: &str) -> String {
        format!(
            "<annotation><filename>a.jpg</filename><object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
        )
    }

    proptest::proptest! {
        /// Any file, or a valid one with any text in its fields: samples with
        /// finite boxes or a reason, never a panic.
        #[test]
        fn any_annotation_parses_or_errs(
            text in "\\PC{0,200}",
            name in "[^<&]{0,10}",
            xmin in "[-+.e0-9a-z]{0,8}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            for (i, body) in [text, doc(&name, &xmin)].iter().enumerate() {
                let file = dir.path().join(format!("{i}.xml"));
                std::fs::write(&file, body).unwrap();
                if let Ok((sample, _)) = parse_file(&file, dir.path()) {
                    proptest::prop_assert!(sample.boxes.iter().all(|b| b.bbox.iter().all(|v| v.is_finite())));
                }
            }
        }
    }
}
