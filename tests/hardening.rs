//! Defects found by running pedvision against real servers and by reading its code
//! (issue 10), each reproduced through the real binary: a camera that comes back
//! at another size, pipeline-file values that skipped validation, credentials in
//! logs, outputs called complete after a failure, a recording over HTTP that was
//! "reconnected", and stages that panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// The share of a decoded frame's pixels that are saturated green, the colour of
/// an all-zero YUV buffer: what a frame written into the wrong layout shows.
fn green_share(video: &Path, frame: usize) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("select=eq(n\\,{frame})"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "ffmpeg");
    let px = out.stdout.chunks_exact(3);
    let n = px.len() as f64;
    px.filter(|p| p[1] > 100 && p[0] < 60 && p[2] < 60).count() as f64 / n
}

#[test]
fn a_camera_that_comes_back_at_another_size_keeps_a_correct_video() {
    let dir = scratch();
    let (video, meta) = (dir.path().join("cam.mp4"), dir.path().join("cam.jsonl"));
    let port = free_port();
    let mut server = rtsp_server_with(port, &["--size", "768x576"]);
    let url = format!("rtsp://127.0.0.1:{port}/stream0");
    let out_port = free_port().to_string();
    let restream = format!("rtsp://127.0.0.1:{out_port}/stream0");
    let run = pedvision_bg(&[
        "run",
        "-i",
        &url,
        "-o",
        path_str(&video),
        "-m",
        path_str(&meta),
        "--reconnect-delay",
        "200",
        "--duration",
        "16",
        "--rtsp-out",
        &out_port,
    ]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(probe_rtsp(&restream).as_deref(), Ok("h264,768,576"));
    server.kill().unwrap();
    let _ = server.wait();
    let mut server = rtsp_server_with(port, &["--size", "384x288"]);
    // The re-stream follows the camera to its new size, once the source has
    // noticed the loss and reconnected (slower on a loaded CI machine: polled,
    // within the run's 16 s).
    let restarted = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let mut seen = probe_rtsp(&restream);
    while seen.as_deref() != Ok("h264,384,288") && restarted.elapsed() < Duration::from_secs(9) {
        std::thread::sleep(Duration::from_millis(500));
        seen = probe_rtsp(&restream);
    }
    assert_eq!(seen.as_deref(), Ok("h264,384,288"));
    let out = run.wait_with_output().unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    ok(&out);
    let lines = read_jsonl(&meta);
    let sizes: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| (l["width"].as_u64().unwrap(), l["height"].as_u64().unwrap()))
        .collect();
    let first_small = sizes.iter().position(|s| *s == (384, 288));
    assert!(
        sizes[0] == (768, 576) && first_small.is_some(),
        "both sizes reached the metadata"
    );
    let (frames, w, h, _) = probe(&video);
    assert_eq!(
        (frames, w, h),
        (lines.len(), 768, 576),
        "one file at the first size"
    );
    // The frames after the change are scaled into the picture, not drawn in its
    // corner on a green canvas.
    assert!(green_share(&video, first_small.unwrap() + 2) < 0.02);
    assert!(green_share(&video, frames - 1) < 0.02);
    // The timeline runs on across the reconnection: no restart at 0.
    let pts: Vec<u64> = lines
        .iter()
        .map(|l| l["pts_ns"].as_u64().unwrap())
        .collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "pts_ns increases");
    assert!(
        lines
            .iter()
            .all(|l| l["captured_unix_ns"].as_u64().is_some())
    );
}

/// Runs `pipeline` (a pipeline file's text) and returns the error line.
fn failing_pipeline(dir: &Path, pipeline: &str) -> String {
    let file = dir.join("p.toml");
    std::fs::write(&file, pipeline).unwrap();
    let line = failed(&pedvision(&["run", "--config", path_str(&file)]));
    assert!(!dir.join("out").exists(), "nothing written");
    line
}

#[test]
fn pipeline_file_values_are_checked_like_flags() {
    let dir = scratch();
    let head = format!("inputs = [\"{CLIP}\"]\n[outputs]\nvideo = \"out/v.mp4\"\n");
    for (section, key, value) in [
        ("batching", "size", "0"),
        ("batching", "size", "65535"),
        ("model", "conf", "1.5"),
        ("model", "iou", "0"),
        ("reconnect", "stall_timeout_s", "-1"),
        ("tracking", "buffer_s", "-2"),
        ("rtsp", "transport", "\"pigeon\""),
    ] {
        let text = format!("{head}\n[{section}]\n{key} = {value}\n");
        let line = failing_pipeline(dir.path(), &text);
        assert!(
            line.contains(&format!("[{section}] {key}")) && line.contains("line 6"),
            "{section}.{key} = {value}: {line}"
        );
    }
    let line = failing_pipeline(dir.path(), &format!("duration_s = -3\n{head}"));
    assert!(
        line.contains("duration_s") && line.contains("line 1"),
        "{line}"
    );
}

/// Everything `pedvision` printed.
fn printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn credentials_never_reach_logs_errors_or_the_printed_config() {
    let dead = free_port();
    let inputs = [
        (
            format!("rtsp://127.0.0.1:{dead}/live?user=admin&password=hunter2"),
            ["admin", "hunter2"],
        ),
        (
            format!("rtsp://bob:pa/ss@127.0.0.1:{dead}/x"),
            ["bob", "pa/ss"],
        ),
    ];
    for (input, secrets) in &inputs {
        let out = pedvision(&[
            "run",
            "-i",
            input,
            "--no-video",
            "--no-metadata",
            "--reconnect-attempts",
            "2",
            "--reconnect-delay",
            "50",
        ]);
        let text = printed(&out);
        failed(&out);
        assert!(
            text.contains("127.0.0.1"),
            "the input is still named: {text}"
        );
        for s in secrets {
            assert!(!text.contains(s), "{s} leaked:\n{text}");
        }
        let out = pedvision(&[
            "run",
            "-i",
            input,
            "--print-config",
            "--mqtt",
            "mqtt://mq:s3cr3t@127.0.0.1:1",
        ]);
        let text = ok(&out);
        for s in secrets.iter().chain(&["s3cr3t"]) {
            assert!(!text.contains(s), "{s} leaked in --print-config:\n{text}");
        }
    }
}

#[test]
fn metrics_labels_hide_credentials() {
    let dead = free_port();
    let metrics = free_port();
    let input = format!("rtsp://127.0.0.1:{dead}/live?token=hunter2");
    let run = pedvision_bg(&[
        "run",
        "-i",
        &input,
        "--no-video",
        "--no-metadata",
        "--metrics",
        &metrics.to_string(),
        "--duration",
        "4",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let scraped = loop {
        let s = scrape_text(metrics).unwrap_or_default();
        if s.contains("stream=") || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = run.wait_with_output();
    assert!(scraped.contains("token=***"), "{scraped}");
    assert!(!scraped.contains("hunter2"), "{scraped}");
}

#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;

    /// Runs with a fault injected; returns the output and how long it took.
    fn run_with_fault(fault: &str, args: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_pedvision"))
            .args(args)
            .env("PEDVISION_FAULT", fault)
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        (out, started.elapsed())
    }

    #[test]
    fn outputs_stay_incomplete_when_a_later_stage_fails() {
        let dir = scratch();
        let (video, meta) = (dir.path().join("v.mp4"), dir.path().join("m.jsonl"));
        let (out, _) = run_with_fault(
            "fail:post:15",
            &[
                "run",
                "-i",
                CLIP,
                "-o",
                path_str(&video),
                "-m",
                path_str(&meta),
            ],
        );
        let line = failed(&out);
        assert!(line.contains("PEDVISION_FAULT"), "{line}");
        assert!(
            !video.exists() && !meta.exists(),
            "{:?}",
            files_in(dir.path())
        );
        let kept = dir.path().join("v.incomplete.mp4");
        assert_eq!(
            probe(&kept).0,
            15,
            "the 15 frames processed are kept, marked"
        );
    }

    #[test]
    fn a_panicking_stage_stops_live_sources_and_exits_1() {
        for (fault, stage) in [
            ("panic:source:1", "source"),
            ("panic:infer:3", "infer"),
            ("panic:post:5", "post"),
        ] {
            let dir = scratch();
            let video = dir.path().join("{stream}.mp4");
            let (out, took) = run_with_fault(
                fault,
                &[
                    "run",
                    "-i",
                    "test:ball",
                    "-i",
                    "test:smpte",
                    "-o",
                    path_str(&video),
                    "--no-metadata",
                    "--duration",
                    "60",
                ],
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{fault}: {stderr}");
            assert!(took < Duration::from_secs(20), "{fault}: took {took:?}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{fault}: {stderr}");
            assert!(
                errors[0].contains(&format!("the {stage} stage panicked")),
                "{fault}: {}",
                errors[0]
            );
            assert!(
                !stderr.contains("RUST_BACKTRACE"),
                "no raw panic dump: {stderr}"
            );
            let names = files_in(dir.path());
            assert!(
                names
                    .iter()
                    .all(|n| !n.ends_with("0.mp4") && !n.ends_with("1.mp4")),
                "{names:?}"
            );
        }
    }
}

#[test]
fn a_truncated_recording_over_http_is_not_reconnected() {
    let dir = scratch();
    truncated_mp4(dir.path());
    let (mut server, port) = http_server(dir.path());
    let meta = dir.path().join("m.jsonl");
    let started = Instant::now();
    let out = pedvision(&[
        "run",
        "-i",
        &format!("http://127.0.0.1:{port}/cut.mp4"),
        "--no-video",
        "-m",
        path_str(&meta),
        "--duration",
        "40",
    ]);
    server.kill().unwrap();
    let _ = server.wait();
    let line = failed(&out);
    assert!(line.contains("truncated"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it ended by itself"
    );
    let lines = read_jsonl(&dir.path().join("m.incomplete.jsonl"));
    assert!(
        lines.len() < 50,
        "decoded once, not again from the start: {}",
        lines.len()
    );
}
