//! Helpers shared by the integration tests: running the real `pedvision` binary,
//! checking outputs with independent tools (ffprobe from Debian's ffmpeg), and
//! reading metadata and golden files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media/vtest-40.avi");
pub const CLIP_FRAMES: usize = 40;
pub const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.toml");
pub const GOLDEN_ALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/vtest-40.all.jsonl"
);

/// Runs `pedvision` with `args`.
pub fn pedvision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the pedvision binary runs")
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pedvision failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, exactly one `error:` line on stderr,
/// no panic. Returns that line.
pub fn failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line, stderr:\n{stderr}"
    );
    errors[0].to_string()
}

/// Frames, width, height and frame rate of a video's first video stream, as
/// ffprobe decodes it (an independent decoder).
pub fn probe(path: &Path) -> (usize, u32, u32, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height,r_frame_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.trim().split(',').collect();
    assert_eq!(fields.len(), 4, "ffprobe said {text:?}");
    (
        fields[3].parse().unwrap(),
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].to_string(),
    )
}

/// A parsed metadata / golden file: one JSON value per line.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A detection as (class id, score, box).
pub type Det = (u64, f64, [f64; 4]);

pub fn detections(frame: &serde_json::Value) -> Vec<Det> {
    frame["detections"]
        .as_array()
        .expect("detections is an array")
        .iter()
        .map(|d| {
            let b = d["bbox"].as_array().unwrap();
            let bbox = std::array::from_fn(|i| b[i].as_f64().unwrap());
            (
                d["class_id"].as_u64().unwrap(),
                d["score"].as_f64().unwrap(),
                bbox,
            )
        })
        .collect()
}

pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Best IoU of `d` with a detection of the same class in `others`.
pub fn best_match(d: &Det, others: &[Det]) -> f64 {
    others
        .iter()
        .filter(|o| o.0 == d.0)
        .map(|o| iou(&d.2, &o.2))
        .fold(0.0, f64::max)
}

/// Writes a test clip with GStreamer's own elements:
/// `gst-launch-1.0 -q PIPELINE ! filesink location=PATH` (PIPELINE split on spaces,
/// so caps must not contain any).
pub fn make_media(path: &Path, pipeline: &str) {
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .args(["!", "filesink"])
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 runs (installed by scripts/setup.sh)");
    assert!(
        status.success(),
        "could not make {} with {pipeline}",
        path.display()
    );
}

/// A scratch folder removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test paths")
}

/// Files in `dir` (names only), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
