//! `retrain`, `eval` and `synth` end to end on the real binary: a generated data
//! set with two new classes, a retrained model that detects them on held-out
//! images, keeps the original model's pedestrians on the demo clip, and runs in
//! `pedvision run`; plus the clean failures.

mod common;

use std::path::Path;

use common::*;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Person detections (score ≥ 0.5) per frame of a `run` over the test clip.
fn people(model: &str, dir: &Path, name: &str) -> Vec<Vec<Det>> {
    let jsonl = join(dir, name);
    clip_metadata(&jsonl, &["--model", model, "--classes", "person"])
        .iter()
        .map(|f| detections(f).into_iter().filter(|d| d.1 >= 0.5).collect())
        .collect()
}

/// Share of `a`'s detections with a same-class match in `b` at IoU ≥ 0.9.
fn matched(a: &[Vec<Det>], b: &[Vec<Det>]) -> (usize, usize) {
    let mut hits = 0;
    let mut total = 0;
    for (fa, fb) in a.iter().zip(b) {
        for d in fa {
            total += 1;
            if best_match(d, fb) >= 0.9 {
                hits += 1;
            }
        }
    }
    (hits, total)
}

/// A generated training set (backgrounds from frames 0–149) and a held-out one
/// (frames 150–199, which the training set never uses).
fn synth_sets(train: &Path, train_images: usize, test: &Path, test_images: usize) {
    for (folder, images, seed, frames) in [
        (train, train_images, "0", "0..150"),
        (test, test_images, "1", "150..200"),
    ] {
        let images = images.to_string();
        let summary = ok(&pedvision(&[
            "synth",
            "--out",
            path_str(folder),
            "--images",
            &images,
            "--seed",
            seed,
            "--frames",
            frames,
            "--sizes",
            "48..144",
        ]));
        assert!(summary.contains(&format!("{images} images")), "{summary}");
    }
}

/// `run` over the test clip with `base` and with `model`: at least a `share` of
/// each one's people (score ≥ 0.5) have a match at IoU ≥ 0.9 in the other's.
fn assert_same_people(dir: &Path, base: &str, model: &Path, share: f64) {
    let before = people(base, dir, "base.jsonl");
    let after = people(path_str(model), dir, "retrained.jsonl");
    assert_eq!(before.len(), CLIP_FRAMES);
    for (a, b) in [(&before, &after), (&after, &before)] {
        let (hits, total) = matched(a, b);
        assert!(total > 50, "too few people to compare: {total}");
        assert!(
            hits as f64 >= share * total as f64,
            "{hits} of {total} matched at IoU 0.9"
        );
    }
}

/// `synth` sets of `train_images` and `test_images` in a scratch folder and a
/// `retrain` on the first with `extra` options: the folder, the test set, the
/// model folder and the summary.
fn retrain_on_synth(
    train_images: usize,
    test_images: usize,
    extra: &[&str],
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let dir = scratch();
    let train = join(dir.path(), "train");
    let test = join(dir.path(), "test");
    let out = join(dir.path(), "model");
    synth_sets(&train, train_images, &test, test_images);
    let mut args = vec![
        "retrain",
        "--data",
        path_str(&train),
        "--out",
        path_str(&out),
    ];
    args.extend_from_slice(extra);
    let summary = ok(&pedvision(&args));
    (dir, test, out, summary)
}

/// `eval` of `model` on `test`: two classes, each at AP@0.5 ≥ `floor`.
fn assert_held_out_ap(dir: &Path, model: &Path, test: &Path, floor: f64) {
    let eval_json = join(dir, "eval.json");
    let table = ok(&pedvision(&[
        "eval",
        "--model",
        path_str(model),
        "--data",
        path_str(test),
        "--report",
        path_str(&eval_json),
    ]));
    let eval = json(&eval_json);
    assert_eq!(eval["classes"].as_array().unwrap().len(), 2, "{table}");
    for class in eval["classes"].as_array().unwrap() {
        let ap = class["ap50"].as_f64().unwrap();
        assert!(
            ap >= floor,
            "{} AP@0.5 {ap} on held-out images:\n{table}",
            class["label"]
        );
    }
}

/// The retrain's report: the export matches the trained head and the training
/// loss went down.
fn assert_trained(report: &serde_json::Value) {
    assert!(report["export_max_score_diff"].as_f64().unwrap() < 1e-3);
    let history = report["history"].as_array().unwrap();
    assert!(!history.is_empty());
    let first = history[0]["train_loss"].as_f64().unwrap();
    let last = history.last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(last < first, "training loss went from {first} to {last}");
}

#[test]
fn retrain_adds_classes_keeps_pedestrians_and_runs() {
    let (dir, test, out, summary) = retrain_on_synth(200, 50, &[]);
    let train = join(dir.path(), "train");
    assert!(
        summary.contains("classes   person, sign, ball"),
        "{summary}"
    );
    assert!(!Path::new(&format!("{}.partial", out.display())).exists());
    let report = json(&join(&out, "report.json"));
    assert_eq!(report["train_images"], 160);
    assert_eq!(report["val_images"], 40);
    assert_eq!(report["sources"][0], "kept");
    assert_trained(&report);
    let png = std::fs::read(join(&out, "training.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let manifest = std::fs::read_to_string(join(&out, "retrained.toml")).unwrap();
    assert!(
        manifest.contains("labels = [\"person\", \"sign\", \"ball\"]"),
        "{manifest}"
    );

    // Held-out images: each new class at AP@0.5 >= 0.9.
    let model = join(&out, "retrained.toml");
    assert_held_out_ap(dir.path(), &model, &test, 0.9);

    // The demo clip: the retrained model's pedestrians are the original model's.
    assert_same_people(dir.path(), MODEL, &model, 0.95);

    // And it runs like any model: annotated video with its own labels.
    let mp4 = join(dir.path(), "all.mp4");
    let jsonl = join(dir.path(), "all.jsonl");
    ok(&pedvision(&[
        "run",
        "--input",
        CLIP,
        "--model",
        path_str(&model),
        "--classes",
        "all",
        "--output",
        path_str(&mp4),
        "--metadata",
        path_str(&jsonl),
    ]));
    assert_eq!(probe(&mp4).0, CLIP_FRAMES);
    assert_eq!(read_jsonl(&jsonl).len(), CLIP_FRAMES);

    // The output folder is never overwritten.
    let again = failed(&pedvision(&[
        "retrain",
        "--data",
        path_str(&train),
        "--out",
        path_str(&out),
    ]));
    assert!(again.contains("already exists"), "{again}");
}

#[test]
fn head_layers_train_a_copy_of_the_convolution_and_keep_pedestrians() {
    let extra = ["--train-layers", "head", "--augment", "0", "--epochs", "12"];
    let (dir, test, out, summary) = retrain_on_synth(80, 40, &extra);
    assert!(
        summary.contains("classes   person, sign, ball"),
        "{summary}"
    );
    let report = json(&join(&out, "report.json"));
    assert_eq!(report["options"]["train_layers"], "head");
    // By default a rank-16 update trains, at the head's learning rate.
    assert_eq!(report["options"]["trunk_rank"], 16);
    assert_eq!(report["options"]["trunk_lr_scale"], 1.0);
    // The exported graph (the update merged into the convolution's copy, beside
    // the original) gives the trained head's scores.
    assert_trained(&report);
    let model = join(&out, "retrained.toml");
    assert_held_out_ap(dir.path(), &model, &test, 0.7);

    // The whole copy trains too (a few epochs: the export and the loss).
    let whole = join(dir.path(), "whole");
    let train = join(dir.path(), "train");
    ok(&pedvision(&[
        "retrain",
        "--data",
        path_str(&train),
        "--out",
        path_str(&whole),
        "--train-layers",
        "head",
        "--trunk-rank",
        "0",
        "--augment",
        "0",
        "--epochs",
        "4",
    ]));
    let report = json(&join(&whole, "report.json"));
    assert_eq!(report["options"]["trunk_rank"], 0);
    let share = report["options"]["trunk_lr_scale"].as_f64().unwrap();
    assert!((share - 0.1).abs() < 1e-6, "{share}");
    assert_trained(&report);

    // Pedestrians read the original convolution: the same people as before (a
    // person scored right at 0.5 may fall either side of the cut in a graph that
    // ONNX Runtime optimises differently, so 99 %).
    assert_same_people(dir.path(), MODEL, &model, 0.99);
}

#[test]
fn yolox_retrains_its_class_rows_and_keeps_pedestrians() {
    let extra = ["--base-model", YOLOX_MODEL, "--augment", "0"];
    let (dir, test, out, summary) = retrain_on_synth(80, 40, &extra);
    assert!(
        summary.contains("classes   person, sign, ball"),
        "{summary}"
    );
    let report = json(&join(&out, "report.json"));
    assert_eq!(report["base_model"], "yolox-nano");
    assert_eq!(report["sources"][0], "kept");
    // The exported graph (trained classes scored alone, objectness 1) gives the
    // trained head's scores, as run decodes them.
    assert_trained(&report);
    let model = join(&out, "retrained.toml");
    let manifest = std::fs::read_to_string(&model).unwrap();
    assert!(manifest.contains("family = \"yolox\""), "{manifest}");
    assert_held_out_ap(dir.path(), &model, &test, 0.7);

    // Kept people keep objectness × class, computed in the graph instead of the
    // decoder: the same people as the base model's.
    assert_same_people(dir.path(), YOLOX_MODEL, &model, 0.99);

    // What YOLOX cannot train is refused before any work, and nothing is written.
    let train = join(dir.path(), "train");
    let refused = join(dir.path(), "refused");
    for option in [&["--train-box"][..], &["--train-layers", "head"]] {
        let mut args = vec!["retrain", "--data", path_str(&train), "--out"];
        args.extend([path_str(&refused), "--base-model", YOLOX_MODEL]);
        args.extend_from_slice(option);
        let line = failed(&pedvision(&args));
        assert!(line.contains("retrains its class rows only"), "{line}");
        assert!(line.contains(option[0]), "{line}");
        assert!(!refused.exists());
    }
}

#[test]
fn retrain_at_another_input_size_writes_it_into_the_manifest() {
    // NanoDet-g's graph takes any multiple of 32: features, training and the
    // export check run at that size and resize mode, and the new manifest keeps them.
    let args = [
        "--input-size",
        "320",
        "--resize",
        "stretch",
        "--augment",
        "0",
        "--epochs",
        "4",
    ];
    let (_dir, _test, out, _) = retrain_on_synth(40, 1, &args);
    assert_trained(&json(&join(&out, "report.json")));
    let manifest = std::fs::read_to_string(join(&out, "retrained.toml")).unwrap();
    assert!(
        manifest.contains("width = 320")
            && manifest.contains("height = 320")
            && manifest.contains("resize = \"stretch\""),
        "{manifest}"
    );
}

#[test]
fn eval_scores_the_bundled_model_on_real_labelled_photos() {
    let voc = "/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc";
    assert!(
        Path::new(voc).exists(),
        "install labelme-examples (make setup)"
    );
    let dir = scratch();
    let report = join(dir.path(), "eval.json");
    let table = ok(&pedvision(&[
        "eval",
        "--data",
        voc,
        "--report",
        path_str(&report),
    ]));
    let eval = json(&report);
    assert_eq!(eval["images"], 3);
    let person = eval["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "person")
        .unwrap_or_else(|| panic!("no person row:\n{table}"));
    assert_eq!(person["boxes"], 6);
    // Six clearly visible people in three photos: a detector worth shipping finds
    // most of them; the numbers themselves are for the report, not the test.
    assert!(person["ap50"].as_f64().unwrap() > 0.5, "{table}");
    let mr = person["mr2"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mr), "{table}");
    assert!(table.contains("MR-2"), "{table}");

    // Without --report only the table is printed: nothing lands in the working folder.
    let cwd = scratch();
    let bare = std::process::Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["eval", "--data", voc])
        .current_dir(cwd.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("the pedvision binary runs");
    assert_eq!(
        ok(&bare),
        table.replace(&format!("report    {}\n", report.display()), "")
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "eval without --report wrote {left:?}");
}

#[test]
fn bad_data_fails_cleanly_and_writes_nothing() {
    let dir = scratch();
    let out = join(dir.path(), "model");
    let missing = failed(&pedvision(&[
        "retrain",
        "--data",
        "/nonexistent/data",
        "--out",
        path_str(&out),
    ]));
    assert!(missing.contains("no such file or folder"), "{missing}");

    // Only unusable items: one line naming the first problem.
    let data = join(dir.path(), "data");
    std::fs::create_dir_all(join(&data, "images")).unwrap();
    std::fs::create_dir_all(join(&data, "labels")).unwrap();
    std::fs::write(
        join(&data, "labels/x.txt"),
        "ball 0 0 0 1 1 5 5 0 0 0 0 0 0 0\n",
    )
    .unwrap();
    let empty = failed(&pedvision(&[
        "retrain",
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
    ]));
    assert!(
        empty.contains("no usable images") && empty.contains("x.txt"),
        "{empty}"
    );

    // Images but no boxes of any class.
    image::RgbImage::new(32, 32)
        .save(join(&data, "images/x.png"))
        .unwrap();
    std::fs::write(join(&data, "labels/x.txt"), "").unwrap();
    let nothing = failed(&pedvision(&[
        "retrain",
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
    ]));
    assert!(nothing.contains("no usable boxes"), "{nothing}");

    // A kept class the model does not have.
    std::fs::write(
        join(&data, "labels/x.txt"),
        "ball 0 0 0 1 1 20 20 0 0 0 0 0 0 0\n",
    )
    .unwrap();
    let keep = failed(&pedvision(&[
        "retrain",
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
        "--keep-classes",
        "unicorn",
    ]));
    assert!(keep.contains("\"unicorn\" is not a class"), "{keep}");
    assert!(!out.exists());

    // A low-rank update as wide as the convolution (128 channels) is no update.
    let rank = failed(&pedvision(&[
        "retrain",
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
        "--train-layers",
        "head",
        "--trunk-rank",
        "128",
    ]));
    assert!(rank.contains("--trunk-rank 128 is not below"), "{rank}");
    assert!(!out.exists());
    assert!(!Path::new(&format!("{}.partial", out.display())).exists());

    let eval = failed(&pedvision(&[
        "eval",
        "--data",
        path_str(&data),
        "--model",
        "/nonexistent.toml",
    ]));
    assert!(eval.contains("/nonexistent.toml"), "{eval}");

    // A report under a file, not a folder: refused before the evaluation.
    let under_file = join(&data, "labels/x.txt/eval.json");
    let report = failed(&pedvision(&[
        "eval",
        "--data",
        path_str(&data),
        "--report",
        path_str(&under_file),
    ]));
    assert!(report.contains("is a file"), "{report}");
}
