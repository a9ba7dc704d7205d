//! Bad input through the real binary: each case gives exactly one `error:` line that
//! names the problem, exit status 1, no panic, and no file under the final output
//! names that looks complete but is not.

mod common;

use std::path::Path;

use common::*;

/// Runs with outputs in `dir` and returns the error line.
fn run_failing(dir: &Path, extra: &[&str]) -> String {
    let video = dir.join("out.mp4");
    let meta = dir.join("out.jsonl");
    let mut args = vec![
        "run",
        "--output",
        path_str(&video),
        "--metadata",
        path_str(&meta),
    ];
    args.extend_from_slice(extra);
    let line = failed(&pedvision(&args));
    assert!(
        !video.exists() && !meta.exists(),
        "no final outputs after a failure: {:?}",
        files_in(dir)
    );
    line
}

#[test]
fn missing_input() {
    let dir = scratch();
    let line = run_failing(dir.path(), &["--input", "/nonexistent/clip.mp4"]);
    assert_eq!(line, "error: input not found: /nonexistent/clip.mp4");
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn text_file_named_mp4() {
    let dir = scratch();
    let fake = dir.path().join("notes.mp4");
    std::fs::write(&fake, "these are meeting notes, not a video\n".repeat(50)).unwrap();
    let line = run_failing(dir.path(), &["--input", path_str(&fake)]);
    assert!(
        line.starts_with(&format!("error: cannot decode {}", fake.display())),
        "{line}"
    );
    assert_eq!(
        files_in(dir.path()),
        ["notes.mp4"],
        "nothing else left behind"
    );
}

#[test]
fn truncated_video_processes_what_decodes_then_fails() {
    let dir = scratch();
    let cut = truncated_mp4(dir.path());

    let line = run_failing(dir.path(), &["--input", path_str(&cut)]);
    assert!(
        line.contains("ended early") && line.contains("truncated"),
        "{line}"
    );
    assert!(
        line.contains("out.incomplete.mp4") && line.contains("out.incomplete.jsonl"),
        "{line}"
    );
    // What did decode was processed, finalised and kept under a name that says so.
    let lines = read_jsonl(&dir.path().join("out.incomplete.jsonl"));
    assert!(
        lines.len() >= 10 && lines.len() < 50,
        "{} frames",
        lines.len()
    );
    let (frames, w, h, _) = probe(&dir.path().join("out.incomplete.mp4"));
    assert_eq!(
        (frames, w, h),
        (lines.len(), 320, 240),
        "the kept MP4 is playable and holds every processed frame"
    );
    assert!(
        line.contains(&format!("the {} frames processed", lines.len())),
        "{line}"
    );
}

#[test]
fn audio_only_file() {
    let dir = scratch();
    let audio = dir.path().join("voice.mp4");
    make_media(
        &audio,
        "audiotestsrc num-buffers=20 ! audioconvert ! avenc_aac ! mp4mux",
    );
    let line = run_failing(dir.path(), &["--input", path_str(&audio)]);
    assert_eq!(
        line,
        format!("error: {} has no video stream", audio.display())
    );
}

/// A copy of the bundled manifest in `dir`, edited by `edit`, pointing at `onnx`.
fn manifest_copy(dir: &Path, onnx: &Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(MODEL).unwrap();
    let text = text.replace(
        "onnx = \"nanodet-g.onnx\"",
        &format!("onnx = {:?}", onnx.display().to_string()),
    );
    let path = dir.join("model.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn bundled_onnx() -> std::path::PathBuf {
    Path::new(MODEL).with_extension("onnx")
}

#[test]
fn missing_manifest() {
    let dir = scratch();
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--model", "/nonexistent/model.toml"],
    );
    assert!(
        line.starts_with("error: model manifest not found: /nonexistent/model.toml"),
        "{line}"
    );
}

#[test]
fn missing_model_file() {
    let dir = scratch();
    let manifest = manifest_copy(dir.path(), &dir.path().join("gone.onnx"), |t| t);
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--model", path_str(&manifest)],
    );
    assert_eq!(
        line,
        format!(
            "error: model file not found: {}",
            dir.path().join("gone.onnx").display()
        )
    );
}

#[test]
fn corrupt_model_file() {
    let dir = scratch();
    let onnx = dir.path().join("corrupt.onnx");
    let mut bytes = std::fs::read(bundled_onnx()).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&onnx, bytes).unwrap();
    let manifest = manifest_copy(dir.path(), &onnx, |t| t);
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--model", path_str(&manifest)],
    );
    assert!(
        line.starts_with(&format!("error: cannot load model {}", onnx.display())),
        "{line}"
    );
}

#[test]
fn manifest_that_does_not_match_the_model() {
    let dir = scratch();
    let onnx = bundled_onnx();
    let wrong_input = manifest_copy(dir.path(), &onnx, |t| {
        t.replace("name = \"input_1:0\"", "name = \"images\"")
    });
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--model", path_str(&wrong_input)],
    );
    assert!(
        line.contains(
            "does not match its manifest: no input named \"images\" (the model has: input_1:0)"
        ),
        "{line}"
    );

    // Three labels for a model with 80 class channels.
    let wrong_labels = manifest_copy(dir.path(), &onnx, |t| {
        let start = t.find("labels = [").unwrap();
        let end = start + t[start..].find(']').unwrap() + 1;
        format!(
            "{}labels = [\"person\", \"bicycle\", \"car\"]{}",
            &t[..start],
            &t[end..]
        )
    });
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--model", path_str(&wrong_labels)],
    );
    assert!(
        line.contains("output \"cls_s8\" has shape") && line.contains("[batch, 3072, 3]"),
        "{line}"
    );
}

/// A model whose outputs do not fit the declared family; a manifest with an
/// unknown family or resize mode; an input size the graph does not take.
#[test]
fn family_resize_and_input_size_that_do_not_fit() {
    let dir = scratch();
    let run = |model: &Path, extra: &[&str]| {
        let mut args = vec!["--input", CLIP, "--model", path_str(model)];
        args.extend_from_slice(extra);
        run_failing(dir.path(), &args)
    };
    // NanoDet-g's graph declared as a YOLOX model.
    let yolox_text = std::fs::read_to_string(YOLOX_MODEL).unwrap();
    let as_yolox = dir.path().join("as-yolox.toml");
    std::fs::write(
        &as_yolox,
        yolox_text
            .replace(
                "onnx = \"yolox-nano.onnx\"",
                &format!("onnx = {:?}", bundled_onnx().display().to_string()),
            )
            .replace("name = \"images\"", "name = \"input_1:0\""),
    )
    .unwrap();
    let line = run(&as_yolox, &[]);
    assert!(
        line.contains("does not match its manifest: no output named \"output\""),
        "{line}"
    );
    let line = run(
        &manifest_copy(dir.path(), &bundled_onnx(), |t| {
            t.replace("\"nanodet\"", "\"ssd\"")
        }),
        &[],
    );
    assert!(
        line.contains("unknown variant `ssd`, expected `nanodet` or `yolox`"),
        "{line}"
    );
    let line = run(
        &manifest_copy(dir.path(), &bundled_onnx(), |t| {
            t.replace("resize = \"letterbox\"", "resize = \"fit\"")
        }),
        &[],
    );
    assert!(
        line.contains("unknown variant `fit`, expected `stretch` or `letterbox`"),
        "{line}"
    );
    let line = run(
        &manifest_copy(dir.path(), &bundled_onnx(), |t| {
            t.replace("tta = \"flip\"", "tta = \"rotate\"")
        }),
        &[],
    );
    assert!(
        line.contains("unknown variant `rotate`, expected `none` or `flip`"),
        "{line}"
    );
    // The same mistake in a pipeline file's [model] table.
    let pipeline = dir.path().join("tta.toml");
    std::fs::write(&pipeline, "[model]\ntta = \"rotate\"\n").unwrap();
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--config", path_str(&pipeline)],
    );
    assert!(
        line.contains("tta") && line.contains("\"rotate\" is not one of none, flip"),
        "{line}"
    );
    // The INT8 graph is fixed at 512×384, the size it was calibrated at (NanoDet-g's
    // and YOLOX-Nano's take any multiple of 32).
    let int8 = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g-int8.toml");
    let line = run(Path::new(int8), &["--input-size", "640"]);
    assert!(
        line.contains("has shape")
            && line.contains("a graph with a fixed input size runs only at that size"),
        "{line}"
    );
    let line = run(Path::new(YOLOX_MODEL), &["--input-size", "500"]);
    assert!(
        line.contains("multiple of the largest stride (32)"),
        "{line}"
    );
}

#[test]
fn unknown_class_name() {
    let dir = scratch();
    let line = run_failing(
        dir.path(),
        &["--input", CLIP, "--classes", "person,unicorn"],
    );
    assert!(line.contains("unknown class \"unicorn\""), "{line}");
}

#[test]
fn output_path_that_cannot_be_written() {
    let dir = scratch();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let video = blocker.join("out.mp4");
    let out = pedvision(&[
        "run",
        "--input",
        CLIP,
        "--output",
        path_str(&video),
        "--no-metadata",
    ]);
    let line = failed(&out);
    assert!(
        line.starts_with(&format!("error: cannot write {}", video.display())),
        "{line}"
    );
    let meta = blocker.join("out.jsonl");
    let line = failed(&pedvision(&clip_metadata_args(&meta, &[])));
    assert!(
        line.starts_with(&format!("error: cannot write {}", meta.display())),
        "{line}"
    );
}

#[test]
fn missing_onnx_runtime_library_names_the_fix() {
    let line = failed(&pedvision(&[
        "run",
        "--input",
        CLIP,
        "--no-video",
        "--no-metadata",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
    ]));
    assert!(
        line.contains("ONNX Runtime library not found") && line.contains("make setup"),
        "{line}"
    );
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let out = pedvision(&["run", "--conf", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not between 0 and 1"));
    let out = pedvision(&["run", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    for command in ["run", "eval", "bench"] {
        let out = pedvision(&[command, "--tta", "rotate"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("none") && stderr.contains("flip"),
            "{stderr}"
        );
    }
}
