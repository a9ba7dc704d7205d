//! The binary's edges: `pedvision doctor` on this machine and on one whose
//! GStreamer has no plugins, `--log-format json`, a closed stdout, and where the
//! model is found (PEDVISION_MODEL, PEDVISION_DATA_DIR).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn doctor_finds_everything_setup_installed() {
    let out = pedvision(&[
        "doctor",
        "-i",
        "camera:0",
        "-i",
        "rtsp://127.0.0.1:1/x",
        "-i",
        "test:",
        "--rtsp-out",
    ]);
    let stdout = ok(&out);
    for want in [
        "ok      GStreamer 1.",
        "ok      element x264enc",
        "ok      element v4l2src",
        "ok      element rtspsrc",
        "ok      element rtph264pay",
        "ok      CPU ",
        "ok      cpu: ONNX Runtime 1.31.1 at ",
        "ok      cpu fp32: loads nanodet-g",
        "ok      cpu int8: loads nanodet-g-int8",
        "ok      openvino: ONNX Runtime 1.24.1 at ",
        "ok      openvino fp32: loads nanodet-g",
        "ok      openvino int8: loads nanodet-g-int8",
        "ok      --device auto --precision auto runs as ",
        "everything a run with these options needs is here",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("MISSING"), "{stdout}");
}

#[test]
fn doctor_names_missing_plugins_and_the_command_that_installs_them() {
    let dir = scratch();
    // A GStreamer that finds no plugins at all.
    let out = Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["doctor", "--log-level", "warn"])
        .env("GST_REGISTRY_1_0", dir.path().join("registry.bin"))
        .env("GST_PLUGIN_SYSTEM_PATH_1_0", dir.path())
        .env("GST_PLUGIN_PATH_1_0", dir.path())
        .output()
        .unwrap();
    let line = failed(&out);
    assert!(line.contains("problem(s) found"), "{line}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MISSING element x264enc"), "{stdout}");
    assert!(
        stdout.contains("apt-get install ") && stdout.contains("gstreamer1.0-plugins-ugly"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      cpu fp32: loads"),
        "ONNX Runtime is still found: {stdout}"
    );
}

#[test]
fn doctor_reports_a_provider_the_run_needs_but_cannot_load() {
    // make setup installs no CUDA build: asking for CUDA must be a problem, not a
    // silent fall-back. Nor does the CPU provider run bf16.
    let out = pedvision(&["doctor", "--device", "cuda"]);
    failed(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MISSING --device cuda"), "{stdout}");
    let out = pedvision(&["doctor", "--device", "cpu", "--precision", "bf16"]);
    failed(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MISSING --device cpu --precision bf16"),
        "{stdout}"
    );
    assert!(stdout.contains("cpu bf16: not supported here"), "{stdout}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = pedvision(&[
        "run",
        "-i",
        CLIP,
        "--no-video",
        "--no-metadata",
        "--log-format",
        "json",
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        stderr.contains(r#""message":"source opened""#) && stderr.contains(r#""stream":0"#),
        "{stderr}"
    );
}

#[test]
fn closed_stdout_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["doctor", "--log-level", "error"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -0`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

/// `bench` runs every pass, including the zero-cost detector's (no outputs at all),
/// for both model families. It once panicked in the post stage when decoding the
/// zero-cost detector's empty outputs.
#[test]
fn bench_runs_every_pass_for_both_families() {
    for model in [MODEL, YOLOX_MODEL] {
        let stdout = ok(&pedvision(&[
            "bench", "--input", CLIP, "--model", model, "--rounds", "1", "--warmup", "1",
        ]));
        for pass in [
            "inference only",
            "zero-cost detector",
            "end to end",
            "metadata only",
        ] {
            assert!(stdout.contains(pass), "{model}: {stdout}");
        }
        assert!(stdout.contains("median fps"), "{stdout}");
    }
}

#[test]
fn a_model_named_by_the_environment_that_is_missing_is_one_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["run", "-i", CLIP, "--no-video", "--no-metadata"])
        .env("PEDVISION_MODEL", "/nonexistent/pedvision/m.toml")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let line = failed(&out);
    assert!(
        line.contains("/nonexistent/pedvision/m.toml")
            && line.contains("not found; searched:")
            && line.contains("PEDVISION_MODEL"),
        "{line}"
    );
}

#[test]
fn a_data_folder_from_the_environment_comes_before_the_checkout() {
    // A data folder with only the model in it: the model comes from there, the demo
    // clip from further down the order.
    let dir = scratch();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    for file in ["nanodet-g.toml", "nanodet-g.onnx"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(file);
        std::fs::copy(from, models.join(file)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["doctor", "--device", "cpu"])
        .env("PEDVISION_DATA_DIR", dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with("ok") && l.contains(what))
            .unwrap_or_else(|| panic!("no {what} line in:\n{stdout}"))
            .to_string()
    };
    let model = line("model manifest");
    assert!(
        model.contains(&dir.path().display().to_string())
            && model.ends_with("(from PEDVISION_DATA_DIR)"),
        "{model}"
    );
    assert!(
        !line("demo clip").contains("PEDVISION_DATA_DIR"),
        "{stdout}"
    );
}
