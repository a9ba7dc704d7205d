//! People over time, end to end: a generated video where a real pedestrian (cut
//! from the demo clip) walks known paths, through the real binary, checked in the
//! JSON Lines, on a real MQTT broker (mosquitto) and in the Prometheus metrics.
//!
//! Expected counts, frames and dwell times are computed here from the paths and
//! from the person's box in the demo clip's golden file, not from pedvision.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Frame size and rate of the generated video.
const W: u32 = 768;
const H: u32 = 576;
const FPS: f64 = 10.0;
/// Frames with walkers, then a still tail that leaves time to scrape the metrics.
const MOVING: u32 = 70;
const TAIL: u32 = 130;
/// The tile cut from the demo clip's first frame, and the person's box in it (from
/// tests/golden: [639.82, 239.28, 684.3, 324.28] in the frame).
const TILE: (u32, u32, u32, u32) = (630, 230, 64, 104);
const FEET_X: f64 = (639.82 + 684.3) / 2.0 - 630.0;
const FEET_Y: f64 = 324.28 - 230.0;

/// Tile positions (top-left) of the walkers in frame `i`: A walks down at x=150,
/// B walks up at x=330, C walks right along y=250 through the zone.
fn walkers(i: u32) -> Vec<(char, i64, i64)> {
    let i = i as i64;
    let mut out = Vec::new();
    if i < 45 {
        out.push(('A', 150, 40 + 10 * i));
    }
    if (10..55).contains(&i) {
        out.push(('B', 330, 460 - 10 * (i - 10)));
    }
    if (20..MOVING as i64).contains(&i) {
        out.push(('C', 400 + 6 * (i - 20), 250));
    }
    out
}

/// The line across the left half at y = 288 (fractions), and the zone (pixels).
const LINE: &str = "door:0.05,0.5,0.55,0.5:in,out";
const LINE_Y: f64 = 288.0;
const ZONE: &str = "hall:520,200,640,200,640,500,520,500";
const ZONE_X: (f64, f64) = (520.0, 640.0);

/// First frame at which walker `who`'s feet satisfy `past`.
fn first_frame(who: char, past: impl Fn(f64, f64) -> bool) -> u64 {
    (0..MOVING)
        .find(|&i| {
            walkers(i)
                .iter()
                .any(|&(w, x, y)| w == who && past(x as f64 + FEET_X, y as f64 + FEET_Y))
        })
        .unwrap() as u64
}

/// Writes the video with ffmpeg from PNG frames drawn here.
fn make_scene(dir: &Path) -> std::path::PathBuf {
    let first = dir.join("first.png");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i", CLIP, "-frames:v", "1"])
        .arg(&first)
        .status()
        .unwrap();
    assert!(status.success());
    let frame0 = image::open(&first).unwrap().to_rgb8();
    let tile = image::imageops::crop_imm(&frame0, TILE.0, TILE.1, TILE.2, TILE.3).to_image();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..MOVING + TAIL {
        let mut f = image::RgbImage::from_pixel(W, H, image::Rgb([120, 120, 120]));
        for (_, x, y) in walkers(i.min(MOVING)) {
            image::imageops::overlay(&mut f, &tile, x, y);
        }
        f.save(frames.join(format!("{i:04}.png"))).unwrap();
    }
    let video = dir.join("scene.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "10", "-i"])
        .arg(frames.join("%04d.png"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "0"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    video
}

fn events(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .flat_map(|l| l["events"].as_array().unwrap().clone())
        .collect()
}

fn metric(samples: &[(String, f64)], key: &str) -> f64 {
    samples
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in the metrics"))
}

#[test]
fn crossings_and_dwell_arrive_in_jsonl_mqtt_and_metrics() {
    let dir = scratch();
    let video = make_scene(dir.path());
    let broker = Mosquitto::start(dir.path());
    let sub = Subscriber::start(&broker, "pv/#", "people-sub", join(dir.path(), "sub.txt"));
    let meta = join(dir.path(), "scene.jsonl");
    let port = free_port();
    let port_s = port.to_string();
    let spool = join(dir.path(), "spool");
    let run = KillOnDrop(pedvision_bg(&[
        "run",
        "-i",
        path_str(&video),
        "-o",
        path_str(&join(dir.path(), "scene-out.mp4")),
        "-m",
        path_str(&meta),
        "--line",
        LINE,
        "--zone",
        ZONE,
        "--metrics",
        &port_s,
        "--mqtt",
        &broker.url(),
        "--mqtt-topic-prefix",
        "pv",
        "--mqtt-spool",
        path_str(&spool),
    ]));
    // Scrape once every walker is done (frame MOVING + 5) but before the still
    // tail ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let samples = loop {
        assert!(std::time::Instant::now() < deadline, "no metrics in time");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Ok(s) = std::panic::catch_unwind(|| scrape(port)) else {
            continue;
        };
        let processed = s
            .iter()
            .find(|(k, _)| k.starts_with("pedvision_frames_processed_total"))
            .map_or(0.0, |(_, v)| *v);
        if processed >= f64::from(MOVING + 5) {
            break s;
        }
    };
    let mut run = run;
    let status = run.0.wait().unwrap();
    assert!(status.success());

    // JSON Lines: every frame, the exact events in order.
    let lines = read_jsonl(&meta);
    assert_eq!(lines.len(), (MOVING + TAIL) as usize);
    assert!(lines.iter().all(|l| l["schema_version"] == 2));
    let ev = events(&lines);
    let kinds: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap();
            (t, e["direction"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("line_crossed", "in"),
            ("zone_entered", ""),
            ("line_crossed", "out"),
            ("zone_left", "")
        ],
        "{ev:#?}"
    );
    // A's feet pass y=288 going down, B's going up; hysteresis may confirm the
    // crossing up to two frames later.
    let a_cross = first_frame('A', |_, y| y > LINE_Y);
    let b_cross = first_frame('B', |_, y| y < LINE_Y);
    let c_in = first_frame('C', |x, _| x > ZONE_X.0);
    let c_out = first_frame('C', |x, _| x > ZONE_X.1);
    for (e, raw) in [
        (&ev[0], a_cross),
        (&ev[1], c_in),
        (&ev[2], b_cross),
        (&ev[3], c_out),
    ] {
        let at = e["frame_index"].as_u64().unwrap();
        assert!(
            (raw..=raw + 2).contains(&at),
            "event at {at}, crossing at {raw}: {e}"
        );
        assert_eq!(e["class"], "person");
        assert_eq!(e["stream_id"], 0);
        // The event's frame carries it, and its record has the event's track.
        let record = &lines[at as usize];
        assert!(record["events"].as_array().unwrap().contains(e));
    }
    let dwell = ev[3]["dwell_s"].as_f64().unwrap();
    let expected = (c_out - c_in) as f64 / FPS;
    assert!(
        (dwell - expected).abs() <= 1.0 / FPS + 1e-6,
        "dwell {dwell} s, expected {expected} s"
    );
    // Three walkers, three different tracks; the zone's enter and leave are C's.
    let ids: Vec<u64> = [&ev[0], &ev[1], &ev[2]]
        .iter()
        .map(|e| e["track_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ev[1]["track_id"], ev[3]["track_id"]);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // Each walker keeps one id from its second detection on.
    for walker_id in &ids {
        let frames: Vec<u64> = lines
            .iter()
            .filter(|l| {
                l["detections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["track_id"].as_u64() == Some(*walker_id))
            })
            .map(|l| l["frame_index"].as_u64().unwrap())
            .collect();
        assert!(
            frames.len() >= 30,
            "track {walker_id} seen in {} frames",
            frames.len()
        );
    }

    // MQTT: the same events, in order, on pv/0/events.
    let is_event = |t: &str| t.ends_with("/events");
    let got = sub.wait_for(30, |m| m.iter().filter(|(t, _)| is_event(t)).count() >= 4);
    let mqtt: Vec<Value> = got
        .iter()
        .filter(|(topic, _)| is_event(topic))
        .map(|(topic, payload)| {
            assert_eq!(topic, "pv/0/events");
            serde_json::from_str(payload).unwrap()
        })
        .collect();
    assert_eq!(mqtt, ev, "MQTT events equal the JSONL events");

    // Metrics, scraped after the last event.
    let line = |d: &str| {
        format!(
            "pedvision_line_crossings_total{{stream=\"0\",line=\"door\",direction=\"{d}\",class=\"person\"}}"
        )
    };
    assert_eq!(metric(&samples, &line("in")), 1.0);
    assert_eq!(metric(&samples, &line("out")), 1.0);
    let zone = "{stream=\"0\",zone=\"hall\",class=\"person\"}";
    assert_eq!(
        metric(&samples, &format!("pedvision_zone_occupancy{zone}")),
        0.0
    );
    assert_eq!(
        metric(
            &samples,
            &format!("pedvision_zone_dwell_seconds_count{zone}")
        ),
        1.0
    );
    assert!(
        (metric(&samples, &format!("pedvision_zone_dwell_seconds_sum{zone}")) - dwell).abs() < 1e-9
    );
}

#[test]
fn summary_counts_and_the_tracker_can_be_switched_off() {
    let dir = scratch();
    let video = make_scene(dir.path());
    let meta = join(dir.path(), "a.jsonl");
    let out = pedvision(&[
        "run",
        "-i",
        path_str(&video),
        "--no-video",
        "-m",
        path_str(&meta),
        "--line",
        LINE,
        "--zone",
        ZONE,
    ]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("line door (stream 0): in 1, out 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("zone hall (stream 0): 1 entered, 1 left, 0 inside at the end"),
        "{stdout}"
    );

    let off = join(dir.path(), "off.jsonl");
    ok(&pedvision(&[
        "run",
        "-i",
        path_str(&video),
        "--no-video",
        "-m",
        path_str(&off),
        "--tracker",
        "none",
    ]));
    let tracked = read_jsonl(&meta);
    let untracked = read_jsonl(&off);
    for (a, b) in tracked.iter().zip(&untracked) {
        assert_eq!(b["events"].as_array().unwrap().len(), 0);
        let (da, db) = (
            a["detections"].as_array().unwrap(),
            b["detections"].as_array().unwrap(),
        );
        assert_eq!(
            da.len(),
            db.len(),
            "tracking does not change what is detected"
        );
        for (x, y) in da.iter().zip(db) {
            assert_eq!(x["bbox"], y["bbox"]);
            assert!(y["track_id"].is_null());
        }
    }
    let e = failed(&pedvision(&[
        "run",
        "-i",
        path_str(&video),
        "--no-video",
        "--no-metadata",
        "--tracker",
        "none",
        "--line",
        LINE,
    ]));
    assert!(e.contains("need a tracker"), "{e}");
}

#[test]
fn bad_rules_are_one_clear_error_naming_the_rule() {
    let dir = scratch();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-i", CLIP, "--no-video", "--no-metadata"];
        args.extend_from_slice(extra);
        pedvision(&args)
    };
    for (extra, want) in [
        (
            vec!["--line", "door:0.5,0.5,0.5,0.5"],
            "line \"door\": its two points are the same",
        ),
        (
            vec!["--line", "door:0.1,0.5,0.9"],
            "--line \"door:0.1,0.5,0.9\": a line has 4 coordinates",
        ),
        (
            vec!["--zone", "q:0,0,1,1"],
            "zone \"q\": a polygon needs at least 3 points, got 2",
        ),
        (
            vec!["--zone", "bow:0,0,1,1,1,0,0,1"],
            "zone \"bow\": the polygon crosses itself",
        ),
    ] {
        let e = failed(&run(&extra));
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    // Pixels past the frame are found when the stream's size is known: exit 1, no
    // output pretending to be complete.
    let meta = join(dir.path(), "px.jsonl");
    let e = failed(&pedvision(&[
        "run",
        "-i",
        CLIP,
        "--no-video",
        "-m",
        path_str(&meta),
        "--line",
        "door:10,10,900,10",
    ]));
    assert!(
        e.contains("line \"door\": point (900, 10) is outside stream 0's 768x576 frame"),
        "{e}"
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
    // A rule for a stream that does not exist, from a pipeline file.
    let file = join(dir.path(), "p.toml");
    std::fs::write(
        &file,
        format!("inputs = [\"{CLIP}\"]\n[[lines]]\nname = \"door\"\nstream = 3\npoints = [[0.1, 0.5], [0.9, 0.5]]\n"),
    )
    .unwrap();
    let e = failed(&pedvision(&[
        "run",
        "--config",
        path_str(&file),
        "--no-video",
        "--no-metadata",
    ]));
    assert!(
        e.contains("line \"door\": stream 3 does not exist (the run has 1 input"),
        "{e}"
    );
    std::fs::write(
        &file,
        "[[zones]]\nname = \"z\"\npoints = [[0, 0]]\ncolour = 1\n",
    )
    .unwrap();
    let e = failed(&pedvision(&["run", "--config", path_str(&file)]));
    assert!(e.contains("line 4") && e.contains("colour"), "{e}");
}

#[test]
fn lines_and_zones_print_back_as_a_pipeline_file() {
    let out = pedvision(&[
        "run",
        "--print-config",
        "--line",
        LINE,
        "--zone",
        ZONE,
        "--tracker",
        "sort",
    ]);
    let text = ok(&out);
    assert!(
        text.contains("[[lines]]") && text.contains("[[zones]]"),
        "{text}"
    );
    assert!(text.contains("tracker = \"sort\""), "{text}");
    let dir = scratch();
    let file = join(dir.path(), "back.toml");
    std::fs::write(&file, &text).unwrap();
    let again = ok(&pedvision(&[
        "run",
        "--print-config",
        "--config",
        path_str(&file),
    ]));
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        text.lines().skip(1).collect::<Vec<_>>(),
        "the printed file reads back to itself"
    );
}

/// Two people on MOTChallenge detections: one walks right, one walks left and is
/// hidden for 8 frames (no detections) while they pass; each keeps one id.
#[test]
fn track_subcommand_on_mot_detections() {
    let dir = scratch();
    let det = join(dir.path(), "det.txt");
    let mut text = String::new();
    for f in 1..=60u32 {
        let x = 50.0 + 8.0 * f as f64;
        text += &format!("{f},-1,{x:.1},100,40,100,0.9,-1,-1,-1\n");
        if !(25..33).contains(&f) {
            let x = 600.0 - 8.0 * f as f64;
            text += &format!("{f},-1,{x:.1},140,40,100,0.8,-1,-1,-1\n");
        }
    }
    std::fs::write(&det, &text).unwrap();
    let result = join(dir.path(), "result.txt");
    let stdout = ok(&pedvision(&[
        "track",
        "-d",
        path_str(&det),
        "-o",
        path_str(&result),
        "--fps",
        "25",
    ]));
    assert!(
        stdout.contains("tracked 60 frames, 112 detections: 2 tracks"),
        "{stdout}"
    );
    let rows: Vec<Vec<f64>> = std::fs::read_to_string(&result)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 10 && r[7] == -1.0));
    // Rows of the walker at y=100 all carry one id; the other walker's another.
    let ids_at = |top: f64| -> std::collections::BTreeSet<u64> {
        rows.iter()
            .filter(|r| (r[3] - top).abs() < 10.0)
            .map(|r| r[1] as u64)
            .collect()
    };
    assert_eq!(ids_at(100.0).len(), 1);
    assert_eq!(ids_at(140.0).len(), 1);
    assert_ne!(ids_at(100.0), ids_at(140.0));

    // A malformed line: its number, exit 1, no result file.
    std::fs::write(&det, "1,-1,10,10,5,5,0.9\n2,-1,10,oops,5,5,0.9\n").unwrap();
    let bad = join(dir.path(), "bad.txt");
    let e = failed(&pedvision(&[
        "track",
        "-d",
        path_str(&det),
        "-o",
        path_str(&bad),
    ]));
    assert!(e.contains("line 2: top \"oops\" is not a number"), "{e}");
    assert!(!bad.exists());
}
