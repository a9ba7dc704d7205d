//! The pipeline files in pipelines/: each one parses, prints back with
//! `--print-config`, and runs, with only the machine-specific parts (inputs, ports,
//! output folders) replaced by flags — which also shows that flags win over files.
//! Stand-ins: a live test pattern for the camera (and fakevideosink for its window),
//! the test RTSP server for the cameras, Debian's mosquitto for the broker.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn example(name: &str) -> String {
    format!("{}/pipelines/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The effective configuration, parsed back.
fn print_config(args: &[&str]) -> toml::Table {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--print-config");
    let text = ok(&pedvision(&all));
    text.parse()
        .unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{text}"))
}

#[test]
fn every_example_parses_and_prints_back() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    for file in &files {
        let effective = print_config(&["--config", path_str(file)]);
        let inputs = effective["inputs"].as_array().unwrap();
        assert!(!inputs.is_empty(), "{}", file.display());
        // Every section is there, filled in.
        for section in [
            "model",
            "batching",
            "outputs",
            "rtsp",
            "reconnect",
            "tracking",
        ] {
            assert!(
                effective[section].is_table(),
                "{}: no [{section}]",
                file.display()
            );
        }
        assert!(effective["model"]["conf"].is_float());
    }
}

#[test]
fn flags_override_the_file_and_paths_follow_it() {
    let file = example("file-to-mp4.toml");
    let c = print_config(&["--config", &file, "--conf", "0.6", "-i", CLIP]);
    let conf = c["model"]["conf"].as_float().unwrap();
    assert!((conf - 0.6).abs() < 1e-6, "flag wins: {conf}");
    assert_eq!(
        c["model"]["classes"].as_str(),
        Some("person"),
        "file value kept"
    );
    assert_eq!(c["inputs"].as_array().unwrap()[0].as_str(), Some(CLIP));
    // Relative paths in the file are relative to the file.
    let video = c["outputs"]["video"].as_str().unwrap();
    assert!(video.ends_with("pipelines/../out/{name}.mp4"), "{video}");
    let model = c["model"]["path"].as_str().unwrap();
    assert!(Path::new(model).is_file(), "{model}");
    // A password in an input URL is not printed back.
    let c = print_config(&[
        "--config",
        &file,
        "-i",
        "rtsp://admin:hunter2@10.0.0.9/live",
    ]);
    let shown = c["inputs"].as_array().unwrap()[0].as_str().unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_line() {
    let dir = scratch();
    let bad = join(dir.path(), "bad.toml");
    std::fs::write(
        &bad,
        "inputs = [\"clip.mp4\"]\n\n[outputs]\nvidoe = \"x.mp4\"\n",
    )
    .unwrap();
    let line = failed(&pedvision(&["run", "--config", path_str(&bad)]));
    assert!(line.contains("line 4") && line.contains("vidoe"), "{line}");
    assert!(line.contains(path_str(&bad)), "{line}");
    std::fs::write(&bad, "[model]\ndevice = \"gpu\"\n").unwrap();
    let line = failed(&pedvision(&["run", "--config", path_str(&bad)]));
    assert!(
        line.contains("[model] device \"gpu\" is not one of auto, cpu, openvino, cuda, tensorrt"),
        "{line}"
    );
    let line = failed(&pedvision(&["run", "--config", "/nonexistent/p.toml"]));
    assert!(
        line.contains("cannot read pipeline file /nonexistent/p.toml"),
        "{line}"
    );
}

/// Runs example `name` on the test clip with its outputs in `dir`; checks the MP4
/// and the JSONL have every frame; returns stdout and the JSONL lines.
fn run_example_on_clip(name: &str, dir: &std::path::Path) -> (String, Vec<serde_json::Value>) {
    let video = format!("{}/{{name}}.mp4", dir.display());
    let meta = join(dir, "clip.jsonl");
    let stdout = ok(&pedvision(&[
        "run",
        "--config",
        &example(name),
        "-i",
        CLIP,
        "-o",
        &video,
        "-m",
        path_str(&meta),
    ]));
    assert_eq!(probe(&join(dir, "vtest-40.mp4")).0, CLIP_FRAMES);
    let lines = read_jsonl(&meta);
    assert_eq!(lines.len(), CLIP_FRAMES);
    (stdout, lines)
}

#[test]
fn file_to_mp4_example_runs() {
    let dir = scratch();
    let (_, lines) = run_example_on_clip("file-to-mp4.toml", dir.path());
    // classes = "person" from the file.
    assert!(lines.iter().flat_map(detections).all(|d| d.0 == 0));
}

#[test]
fn door_counter_example_counts_what_its_events_say() {
    let dir = scratch();
    let (stdout, lines) = run_example_on_clip("door-counter.toml", dir.path());
    let events: Vec<&serde_json::Value> = lines
        .iter()
        .flat_map(|l| l["events"].as_array().unwrap())
        .collect();
    let count = |kind: &str, key: &str, value: &str| {
        events
            .iter()
            .filter(|e| e["type"] == kind && e[key] == value)
            .count()
    };
    // The summary's counts are the events' counts.
    let summary = format!(
        "line walkway (stream 0): down {}, up {}",
        count("line_crossed", "direction", "down"),
        count("line_crossed", "direction", "up")
    );
    assert!(stdout.contains(&summary), "{summary}\n{stdout}");
    let entered = count("zone_entered", "zone", "corner");
    let left = count("zone_left", "zone", "corner");
    let zone = format!(
        "zone corner (stream 0): {entered} entered, {left} left, {} inside",
        entered - left
    );
    assert!(stdout.contains(&zone), "{zone}\n{stdout}");
    // Every event names a track that some detection of the run carries.
    for e in &events {
        let id = e["track_id"].as_u64().unwrap();
        assert!(
            lines
                .iter()
                .flat_map(|l| l["detections"].as_array().unwrap())
                .any(|d| d["track_id"] == id),
            "{e}"
        );
    }
}

#[test]
fn camera_display_example_runs_with_a_stand_in_camera_and_window() {
    let dir = scratch();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["run", "--config", &example("camera-display.toml")])
        .args([
            "-i",
            "test:ball?width=320&height=240&fps=10",
            "--duration",
            "3",
        ])
        .env("PEDVISION_VIDEO_SINK", "fakevideosink")
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("nothing written"), "{stdout}");
    let processed: u64 = stdout
        .split(" frames processed")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(processed >= 15, "{stdout}");
    assert!(
        files_in(dir.path()).is_empty(),
        "the example writes nothing"
    );
}

#[test]
fn rtsp_to_mqtt_example_runs_against_local_cameras_and_broker() {
    let dir = scratch();
    let rtsp_port = free_port();
    let _cameras = KillOnDrop(rtsp_server_with(rtsp_port, &["--mounts", "2"]));
    let broker = Mosquitto::start(dir.path());
    let sub = Subscriber::start(
        &broker,
        "site/entrance/#",
        "pipelines-sub",
        join(dir.path(), "sub.txt"),
    );
    let restream = free_port();
    let metrics = free_port();
    let cam = |i: u32| format!("rtsp://127.0.0.1:{rtsp_port}/stream{i}");
    let spool = join(dir.path(), "spool");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["run", "--config", &example("rtsp-to-mqtt.toml")])
        .args([
            "-i",
            &cam(0),
            "-i",
            &cam(1),
            "--mqtt",
            &broker.url(),
            "--mqtt-spool",
            path_str(&spool),
        ])
        .args([
            "--rtsp-out",
            &restream.to_string(),
            "--metrics",
            &metrics.to_string(),
            "--duration",
            "6",
        ])
        .env("MQTT_PASSWORD", "unused-by-an-anonymous-broker")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The sink's metrics move while it runs.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let series = scrape(metrics);
    let value = |name: &str| series.iter().find(|(s, _)| s == name).map(|(_, v)| *v);
    assert_eq!(value("pedvision_mqtt_connected"), Some(1.0), "{series:?}");
    assert!(
        value("pedvision_mqtt_messages_acknowledged_total").unwrap_or(0.0) > 0.0,
        "{series:?}"
    );
    let out = run.wait_with_output().unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.contains(&format!(
            "stream 1 was served at rtsp://127.0.0.1:{restream}/stream1"
        )),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("mqtt:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(summary.contains("0 left in the spool"), "{summary}");
    let got = sub.wait_for(10, |m| {
        let by = frames_by_stream(m, "site/entrance");
        by.len() == 2
    });
    let by = frames_by_stream(&got, "site/entrance");
    for stream in [0u64, 1] {
        let frames = first_arrivals(by.get(&stream).map(Vec::as_slice).unwrap_or_default());
        assert!(
            frames.len() >= 10,
            "stream {stream}: {} frames on MQTT",
            frames.len()
        );
        assert!(
            frames.windows(2).all(|w| w[0] < w[1]),
            "stream {stream} out of order"
        );
    }
    // topic_prefix comes from the file.
    assert!(
        got.iter()
            .any(|(t, p)| t == "site/entrance/status" && p == "online")
    );
}

#[test]
fn folder_batch_example_runs_over_a_folder() {
    let dir = scratch();
    let videos = join(dir.path(), "videos");
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::copy(CLIP, join(&videos, "a.avi")).unwrap();
    std::fs::copy(CLIP, join(&videos, "b.avi")).unwrap();
    std::fs::write(join(&videos, "notes.txt"), "not a video").unwrap();
    let outputs = join(dir.path(), "out");
    let pattern = format!("{}/{{stream}}-{{name}}.mp4", outputs.display());
    let meta = join(&outputs, "metadata.jsonl");
    let stdout = ok(&pedvision(&[
        "run",
        "--config",
        &example("folder-batch.toml"),
        "-i",
        path_str(&videos),
        "-o",
        &pattern,
        "-m",
        path_str(&meta),
    ]));
    assert_eq!(probe(&join(&outputs, "0-a.mp4")).0, CLIP_FRAMES);
    assert_eq!(probe(&join(&outputs, "1-b.mp4")).0, CLIP_FRAMES);
    let lines = read_jsonl(&meta);
    assert_eq!(by_stream(&lines, 0).len(), CLIP_FRAMES);
    assert_eq!(by_stream(&lines, 1).len(), CLIP_FRAMES);
    // batching.size = 4 from the file: frames of both files share batches.
    assert!(stdout.contains("×4"), "{stdout}");
    // An empty folder is a clear error.
    let empty = join(dir.path(), "empty");
    std::fs::create_dir_all(&empty).unwrap();
    let line = failed(&pedvision(&[
        "run",
        "--config",
        &example("folder-batch.toml"),
        "-i",
        path_str(&empty),
    ]));
    assert!(line.contains("has no video files"), "{line}");
}
