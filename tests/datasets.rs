//! The four label formats, read from Debian's labelme samples (a real Pascal VOC
//! data set and a real COCO file) and from fixtures written here, including every
//! kind of bad item: missing image, box outside the image, zero-size box, unknown
//! class, malformed line, and a data set with nothing usable.

use std::path::{Path, PathBuf};

use pedvision::train::dataset::{Dataset, Format};

mod common;

fn labelme(sub: &str) -> PathBuf {
    common::labelme_examples().join(sub)
}

/// A `w`×`h` PNG at `path`.
fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150]))
        .save(path)
        .unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn reasons(d: &Dataset) -> Vec<String> {
    d.skipped
        .iter()
        .map(|s| format!("{}: {}", s.item, s.reason))
        .collect()
}

fn has(reasons: &[String], needle: &str) -> bool {
    reasons.iter().any(|r| r.contains(needle))
}

#[test]
fn labelme_pascal_voc_sample() {
    let d = Dataset::load(&labelme("bbox_detection/data_dataset_voc"), None).unwrap();
    assert_eq!(d.format, Format::Voc);
    assert_eq!(d.samples.len(), 3);
    assert!(d.skipped.is_empty(), "{:?}", reasons(&d));
    let counts = d.label_counts();
    assert_eq!(counts.get("person"), Some(&6));
    assert_eq!(counts.get("bus"), Some(&2));
    assert_eq!(counts.get("car"), Some(&1));
    // 2011_000003.xml, first object, as written in the file (and in 500×338 pixels).
    let first = d
        .samples
        .iter()
        .find(|s| s.image.ends_with("2011_000003.jpg"))
        .unwrap();
    assert_eq!((first.width, first.height), (500, 338));
    let b = first.annotations[0].bbox;
    assert_eq!(first.annotations[0].label, "person");
    assert!(
        (b[0] - 191.0).abs() < 1e-3 && (b[3] - 329.369).abs() < 1e-2,
        "{b:?}"
    );
}

#[test]
fn labelme_coco_sample() {
    let path = labelme("instance_segmentation/data_dataset_coco/annotations.json");
    let d = Dataset::load(&path, None).unwrap();
    assert_eq!(d.format, Format::Coco);
    assert_eq!(d.samples.len(), 3);
    assert_eq!(d.boxes(), 12);
    assert_eq!(d.label_counts().get("person"), Some(&6));
    // COCO boxes are x, y, w, h: annotation 0 is [191, 107, 123, 221].
    let first = d
        .samples
        .iter()
        .find(|s| s.image.ends_with("2011_000003.jpg"))
        .unwrap();
    assert!(
        first
            .annotations
            .iter()
            .any(|a| a.bbox == [191.0, 107.0, 314.0, 328.0])
    );
    // Declared order (category ids), not alphabetical.
    let labels = d.labels();
    assert!(
        labels.iter().position(|l| l == "bus") < labels.iter().position(|l| l == "person"),
        "{labels:?}"
    );
}

#[test]
fn kitti_fixture_with_bad_items() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("images/a.png"), 100, 80);
    png(&root.join("images/b.png"), 100, 80);
    png(&root.join("images/unlabelled.png"), 100, 80);
    let tail = "0.0 0.0 0.0 0.0 0.0 0.0 0.0";
    write(
        &root.join("labels/a.txt"),
        &format!(
            "Pedestrian 0.00 0 0.00 10 20 30 60 {tail}\n\
             DontCare -1 -1 -10 50 10 60 20 {tail}\n\
             scooter 0.00 0 0.00 40 20 40 60 {tail}\n\
             scooter 0.00 0 0.00 90 20 130 60 {tail}\n\
             scooter 0.00 0 0.00 only five\n"
        ),
    );
    write(&root.join("labels/b.txt"), "");
    write(
        &root.join("labels/ghost.txt"),
        &format!("car 0 0 0 1 1 5 5 {tail}\n"),
    );
    let d = Dataset::load(root, None).unwrap();
    assert_eq!(d.format, Format::Kitti);
    assert_eq!(d.samples.len(), 2, "a (1 box) and b (negative)");
    assert_eq!(d.boxes(), 1);
    assert_eq!(d.samples[0].annotations[0].label, "Pedestrian");
    assert_eq!(d.samples[0].annotations[0].bbox, [10.0, 20.0, 30.0, 60.0]);
    assert_eq!(d.ignored, 1, "DontCare");
    assert_eq!(
        d.samples[0].ignore,
        vec![[50.0, 10.0, 60.0, 20.0]],
        "DontCare region kept"
    );
    let r = reasons(&d);
    assert!(
        has(&r, "a.txt:3: scooter box") && has(&r, "zero or negative size"),
        "{r:?}"
    );
    assert!(
        has(&r, "a.txt:4") && has(&r, "outside the 100×80 image"),
        "{r:?}"
    );
    assert!(has(&r, "a.txt:5: expected 15 or 16 fields"), "{r:?}");
    assert!(has(&r, "ghost.txt: no image ghost"), "{r:?}");
    assert!(has(&r, "unlabelled.png: no label file"), "{r:?}");
    assert_eq!(r.len(), 5, "{r:?}");
}

#[test]
fn coco_fixture_with_bad_items() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("img/one.png"), 64, 48);
    png(&root.join("img/corrupt.png"), 10, 10);
    std::fs::write(root.join("img/corrupt.png"), b"\x89PNG not really").unwrap();
    write(
        &root.join("data.json"),
        r#"{"images": [{"id": 1, "file_name": "img/one.png", "width": 64, "height": 48},
                       {"id": 2, "file_name": "img/missing.png", "width": 64, "height": 48},
                       {"id": 3, "file_name": "img/corrupt.png", "width": 10, "height": 10}],
            "categories": [{"id": 7, "name": "stroller"}],
            "annotations": [
              {"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 5, 10, 20], "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 9, "bbox": [4, 5, 10, 20]},
              {"id": 3, "image_id": 5, "category_id": 7, "bbox": [4, 5, 10, 20]},
              {"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 64, 48], "iscrowd": 1},
              {"id": 5, "image_id": 1, "category_id": 7, "bbox": [60, 40, 0, 5]}
            ]}"#,
    );
    let d = Dataset::load(&root.join("data.json"), None).unwrap();
    assert_eq!(d.samples.len(), 1);
    assert_eq!(d.samples[0].annotations.len(), 1);
    assert_eq!(d.samples[0].annotations[0].bbox, [4.0, 5.0, 14.0, 25.0]);
    assert_eq!(d.ignored, 1, "crowd");
    assert_eq!(
        d.samples[0].ignore,
        vec![[0.0, 0.0, 64.0, 48.0]],
        "crowd region kept"
    );
    let r = reasons(&d);
    assert!(has(&r, "annotation 2: unknown category_id 9"), "{r:?}");
    assert!(has(&r, "annotation 3: unknown image_id 5"), "{r:?}");
    assert!(has(&r, "missing image") && has(&r, "missing.png"), "{r:?}");
    assert!(has(&r, "corrupt.png: unreadable image"), "{r:?}");
    assert!(
        has(&r, "annotation 5: stroller box") && has(&r, "zero"),
        "{r:?}"
    );
    // Not JSON at all: one clear error.
    write(&root.join("bad.json"), "{ nope");
    let e = Dataset::load(&root.join("bad.json"), None).unwrap_err();
    assert!(e.to_string().contains("is not COCO JSON"), "{e}");
}

#[test]
fn voc_fixture_with_bad_items() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("JPEGImages/x.png"), 50, 50);
    let object = |name: &str, b: [&str; 4]| {
        format!(
            "<object><name>{name}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            b[0], b[1], b[2], b[3]
        )
    };
    write(
        &root.join("Annotations/x.xml"),
        &format!(
            "<annotation><filename>x.png</filename>{}{}{}</annotation>",
            object("scooter", ["1", "2", "20", "30"]),
            object("scooter", ["1", "2", "wide", "30"]),
            object("scooter", ["-20", "2", "20", "30"]),
        ),
    );
    write(&root.join("Annotations/broken.xml"), "<annotation><object>");
    let d = Dataset::load(root, None).unwrap();
    assert_eq!(d.format, Format::Voc);
    assert_eq!(d.samples.len(), 1);
    assert_eq!(d.samples[0].annotations.len(), 1);
    let r = reasons(&d);
    assert!(has(&r, "broken.xml: not valid XML"), "{r:?}");
    assert!(has(&r, "object 2: xmax \"wide\" is not a number"), "{r:?}");
    assert!(
        has(&r, "object 3: scooter box") && has(&r, "outside"),
        "{r:?}"
    );
}

#[test]
fn yolo_fixture_with_bad_items() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("images/p.png"), 200, 100);
    png(&root.join("images/negative.png"), 200, 100);
    write(&root.join("classes.txt"), "scooter\nstroller\n");
    write(
        &root.join("labels/p.txt"),
        "1 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.2 0.2\n0 0.95 0.5 0.3 0.2\n0 0.5 0.5\n",
    );
    let d = Dataset::load(root, None).unwrap();
    assert_eq!(d.format, Format::Yolo);
    assert_eq!(
        d.samples.len(),
        2,
        "an image without labels is a negative in YOLO"
    );
    let p = d
        .samples
        .iter()
        .find(|s| s.image.ends_with("p.png"))
        .unwrap();
    assert_eq!(p.annotations.len(), 1);
    assert_eq!(p.annotations[0].label, "stroller");
    let b = p.annotations[0].bbox;
    for (got, want) in b.iter().zip([80.0, 30.0, 120.0, 70.0]) {
        assert!((got - want).abs() < 1e-3, "{b:?}");
    }
    let r = reasons(&d);
    assert!(has(&r, "p.txt:2: unknown class index 7"), "{r:?}");
    assert!(
        has(&r, "p.txt:3: scooter box") && has(&r, "outside"),
        "{r:?}"
    );
    assert!(has(&r, "p.txt:4: expected 5 fields"), "{r:?}");
    // Restricting to known classes lists the others.
    let mut only = d.clone();
    only.restrict_to(&["scooter".to_string()]);
    assert_eq!(only.boxes(), 0);
    assert!(has(&reasons(&only), "unknown class \"stroller\""));
}

#[test]
fn nothing_usable_is_an_error_naming_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("labels/a.txt"),
        "car 0 0 0 1 1 5 5 0 0 0 0 0 0 0\n",
    );
    std::fs::create_dir_all(root.join("images")).unwrap();
    let e = Dataset::load(root, Some(Format::Kitti)).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("no usable images"), "{text}");
    assert!(text.contains("a.txt: no image a.jpg/.png"), "{text}");
}
