//! Helpers shared by the integration tests: running the real `pedvision` binary,
//! checking outputs with independent tools (ffprobe from Debian's ffmpeg), and
//! reading metadata and golden files.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media/vtest-40.avi");
pub const CLIP_FRAMES: usize = 40;
pub const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.toml");
/// The second bundled detector family, and its golden file (yolox_reference.py).
pub const YOLOX_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox-nano.toml");
pub const GOLDEN_YOLOX_ALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/vtest-40.yolox.all.jsonl"
);
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

pub const RTSP_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rtsp_server.py");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the test RTSP server and waits until it listens.
pub fn rtsp_server(port: u16) -> Child {
    rtsp_server_with(port, &[])
}

pub fn rtsp_server_with(port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new("/usr/bin/python3")
        .arg(RTSP_SERVER)
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with python3-gi (scripts/setup.sh)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the RTSP server did not start");
    child
}

/// Starts `pedvision` in the background with stdout/stderr captured.
pub fn pedvision_bg(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn by_stream(lines: &[serde_json::Value], stream: u64) -> Vec<&serde_json::Value> {
    lines.iter().filter(|l| l["stream_id"] == stream).collect()
}

/// A real MQTT broker (Debian's mosquitto) on 127.0.0.1, with persistence so a
/// persistent subscriber's session survives a restart, as a production broker's
/// would.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a broker whose config, log and database live in `dir`; `extra` is
    /// added to its config file.
    pub fn start_with(dir: &Path, extra: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        // Run as root, mosquitto drops to the `mosquitto` user: let it write here.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\n{extra}\n",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        let mut broker = Self {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops it the way a service manager would (SIGTERM: it saves its database).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            child.wait().unwrap();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends a signal to a child process with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// `mosquitto_sub` (QoS 1, persistent session `id`) writing `topic message` lines
/// to a file.
pub struct Subscriber {
    child: Child,
    pub out: PathBuf,
}

impl Subscriber {
    pub fn start(broker: &Mosquitto, topic: &str, id: &str, out: PathBuf) -> Self {
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-q", "1", "-c", "-i", id, "-t", topic, "-v"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (mosquitto-clients)");
        // Until its subscription exists, messages would not be queued for it: publish
        // probes until one comes through.
        let probe = format!("{}probe", topic.trim_end_matches('#'));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &broker.port.to_string(),
                    "-t",
                    &probe,
                    "-m",
                    "probe",
                ])
                .status()
                .expect("mosquitto_pub (mosquitto-clients)");
            std::thread::sleep(std::time::Duration::from_millis(200));
            if std::fs::read_to_string(&out)
                .unwrap_or_default()
                .contains(&probe)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto_sub never subscribed"
            );
        }
        Self { child, out }
    }

    /// `(topic, payload)` lines received so far.
    pub fn messages(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    /// Waits until `done` holds for the messages, or `secs` pass.
    pub fn wait_for(
        &self,
        secs: u64,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if done(&m) || std::time::Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one retained message on `topic`, read by a fresh `mosquitto_sub`.
pub fn retained(broker: &Mosquitto, topic: &str) -> String {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", topic, "-C", "1", "-W", "5", "--retained-only"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Frame indices per stream id from `(topic, JSON)` messages under `prefix/`, in
/// arrival order.
pub fn frames_by_stream(
    messages: &[(String, String)],
    prefix: &str,
) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let mut out: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for (topic, payload) in messages {
        let Some(stream) = topic.strip_prefix(&format!("{prefix}/")) else {
            continue;
        };
        let Ok(stream) = stream.parse::<u64>() else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_str(payload).unwrap_or_else(|e| panic!("bad JSON on {topic}: {e}"));
        assert_eq!(
            v["stream_id"], stream,
            "{topic} carries another stream's frame"
        );
        out.entry(stream)
            .or_default()
            .push(v["frame_index"].as_u64().unwrap());
    }
    out
}

/// Drops repeated frames (at-least-once delivery), keeping first arrivals in order.
pub fn first_arrivals(indices: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    indices
        .iter()
        .copied()
        .filter(|i| seen.insert(*i))
        .collect()
}

/// Scrapes a Prometheus endpoint with a real HTTP client (Python's urllib) and
/// returns `metric{labels} value` lines as (series, value).
pub fn scrape(port: u16) -> Vec<(String, f64)> {
    scrape_text(port)
        .expect("the metrics endpoint answers")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

/// The metrics endpoint's text exposition, or `None` while it does not answer.
pub fn scrape_text(port: u16) -> Option<String> {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process killed (and reaped) when the guard goes, even if a test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's labelme-examples: under /usr/share/doc, or unpacked into .cache/ by
/// scripts/setup.sh where the image excludes /usr/share/doc.
pub fn labelme_examples() -> PathBuf {
    let installed = Path::new("/usr/share/doc/labelme-examples/examples");
    let unpacked = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.cache/labelme-examples/usr/share/doc/labelme-examples/examples"
    ));
    [installed, unpacked]
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("labelme-examples is missing: run scripts/setup.sh (make setup)"))
        .to_path_buf()
}

/// `run` over the test clip writing only metadata, to `meta`, plus `extra` flags.
pub fn clip_metadata_args<'a>(meta: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--input",
        CLIP,
        "--no-video",
        "--metadata",
        path_str(meta),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs [`clip_metadata_args`], asserts success, and returns the metadata lines.
pub fn clip_metadata(meta: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    ok(&pedvision(&clip_metadata_args(meta, extra)));
    read_jsonl(meta)
}

/// A real HTTP server (Python's http.server) serving `dir` on 127.0.0.1; returns it
/// and its port once it accepts connections.
pub fn http_server(dir: &Path) -> (Child, u16) {
    let port = free_port();
    let server = Command::new("/usr/bin/python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "http.server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, port)
}

/// A 5 s, 50-frame MP4 (index up front, so a cut file still declares its full
/// duration) in `dir`, cut to 60% of its bytes: `dir/cut.mp4`.
pub fn truncated_mp4(dir: &Path) -> PathBuf {
    let full = dir.join("full.mp4");
    make_media(
        &full,
        "videotestsrc num-buffers=50 pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! x264enc ! mp4mux faststart=true",
    );
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    cut
}

/// ffprobe (an independent RTSP client) on `url`: `codec,width,height` of its
/// video, or its error text.
pub fn probe_rtsp(url: &str) -> Result<String, String> {
    // On a loaded 2-core machine a first probe can end before it has decoded a
    // frame and report a size of 0×0 (seen in CI): probe again, a few times.
    let mut result = probe_rtsp_once(url);
    for _ in 0..3 {
        match &result {
            Ok(s) if s.ends_with(",0,0") => result = probe_rtsp_once(url),
            _ => break,
        }
    }
    result
}

fn probe_rtsp_once(url: &str) -> Result<String, String> {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-analyzeduration",
            "10000000",
            "-select_streams",
            "v:0",
        ])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .output()
        .unwrap();
    if probe.status.success() {
        Ok(String::from_utf8_lossy(&probe.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&probe.stderr).into_owned())
    }
}
