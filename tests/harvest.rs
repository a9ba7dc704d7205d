//! `run --harvest`: the frames the detector is unsure of are saved as a KITTI data
//! set that `eval` and `retrain` read back, rate-limited, with no partial files.

mod common;

use common::*;

#[test]
fn harvested_frames_form_a_data_set_that_eval_reads_back() {
    let dir = scratch();
    let harvest = dir.path().join("hard");
    let meta = dir.path().join("m.jsonl");
    let mut args = clip_metadata_args(&meta, &["--harvest", path_str(&harvest)]);
    args.extend(["--harvest-rate", "30"]);
    let stdout = ok(&pedvision(&args));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("harvest: "))
        .unwrap_or_else(|| panic!("no harvest line: {stdout}"));
    let saved: usize = line["harvest: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // 40 frames at 10 fps = 4 s of stream; 30 a minute = one every 2 s.
    assert!((1..=2).contains(&saved), "{line}");
    assert!(line.contains("by the rate limit"), "{line}");

    let names = |sub: &str| files_in(&harvest.join(sub));
    let (images, labels) = (names("images"), names("labels"));
    assert_eq!(images.len(), saved, "{images:?}");
    assert_eq!(
        images
            .iter()
            .map(|i| i.replace(".jpg", ""))
            .collect::<Vec<_>>(),
        labels
            .iter()
            .map(|l| l.replace(".txt", ""))
            .collect::<Vec<_>>(),
        "one label file per image, nothing partial"
    );
    let index = read_jsonl(&harvest.join("harvest.jsonl"));
    assert_eq!(index.len(), saved);
    for entry in &index {
        assert!(!entry["reasons"].as_array().unwrap().is_empty());
        assert!(harvest.join(entry["image"].as_str().unwrap()).is_file());
    }

    // The folder is a KITTI data set: every pre-label is a usable box, and the
    // model scores on its own pre-labels close to perfectly (the labels sit where
    // the detections were: the geometry survives the trip through JPEG).
    let data = pedvision::train::dataset::Dataset::load(&harvest, None).unwrap();
    assert_eq!(data.samples.len(), saved);
    assert!(data.skipped.is_empty(), "{:?}", data.skipped);
    assert!(data.boxes() >= 3 * saved, "several people a frame");
    let report = dir.path().join("eval.json");
    ok(&pedvision(&[
        "eval",
        "--data",
        path_str(&harvest),
        "--report",
        path_str(&report),
    ]));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let ap = eval["classes"][0]["ap50"].as_f64().unwrap();
    assert!(ap >= 0.9, "AP@0.5 on its own pre-labels: {ap}");
}

#[test]
fn harvest_settings_are_checked() {
    let dir = scratch();
    let out = pedvision(&[
        "run",
        "--input",
        CLIP,
        "--no-video",
        "--no-metadata",
        "--harvest",
        path_str(dir.path()),
        "--harvest-below",
        "0.2",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("harvest") && err.contains("above the detection threshold (0.35)"),
        "{err}"
    );
    let out = pedvision(&["run", "--input", CLIP, "--harvest-rate", "5"]);
    assert!(!out.status.success(), "--harvest-rate needs --harvest");
}
