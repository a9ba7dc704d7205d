//! The control API and SIGHUP against a real run: a real HTTP client (ureq), the
//! real RTSP test server, files, test patterns, and a model made by `retrain`.
//! The oracles are the metadata file, ffprobe and /proc.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media/vtest-200.avi");
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.toml");
const ONNX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g.onnx");

/// One request; the status and the body (JSON where there is one).
fn http(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, Value) {
    let mut request = ureq::request(method, url).timeout(Duration::from_secs(120));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => request
            .set("Content-Type", "application/json")
            .send_string(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

struct Api {
    base: String,
}

impl Api {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        http("GET", &format!("{}{path}", self.base), None, None)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        http("POST", &format!("{}{path}", self.base), Some(&body), None)
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        http("DELETE", &format!("{}{path}", self.base), None, None)
    }

    /// Waits for `/readyz` to answer 200.
    fn wait_ready(&self, run: &mut Child) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = run.try_wait() {
                panic!("the run exited early: {status}");
            }
            let ready = ureq::get(&format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok();
            if ready {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `ok` holds for stream `id`'s status.
    fn wait_stream(&self, id: u32, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, s) = self.get(&format!("/streams/{id}"));
            if status == 200 && ok(&s) {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "stream {id} never {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A run that is killed if the test fails before it stops it.
struct Run(Child);

impl std::ops::Deref for Run {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Stops a run with SIGINT and returns its exit code and stderr.
fn interrupt(mut run: Run) -> (Option<i32>, String) {
    signal(&run, "INT");
    wait_with_timeout(&mut run, Duration::from_secs(120))
}

fn wait_with_timeout(run: &mut Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = run.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        if started.elapsed() > limit {
            let _ = run.kill();
            panic!("the run did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The frame indices of `stream`'s records, in file order.
fn indices(lines: &[Value], stream: u64) -> Vec<u64> {
    by_stream(lines, stream)
        .iter()
        .map(|l| l["frame_index"].as_u64().unwrap())
        .collect()
}

/// A copy of the bundled manifest under another name (same network).
fn renamed_manifest(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(MODEL).unwrap();
    let text = text.replacen("name = \"nanodet-g\"", &format!("name = {name:?}"), 1);
    let text = text.replace("onnx = \"nanodet-g.onnx\"", &format!("onnx = {ONNX:?}"));
    assert!(text.contains(name));
    let path = join(dir, &format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_with_api(api: u16, args: &[&str]) -> Run {
    let port = api.to_string();
    let mut all = vec![
        "run",
        "--api",
        &port,
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ];
    all.extend_from_slice(args);
    Run(pedvision_bg(&all))
}

#[test]
fn streams_and_a_retrained_model_change_while_the_run_goes_on() {
    let dir = scratch();
    let d = |name: &str| join(dir.path(), name);
    // A model made by `retrain` (a short one: what matters is that it is real).
    ok(&pedvision(&[
        "synth",
        "--out",
        path_str(&d("data")),
        "--images",
        "24",
        "--frames",
        "0..100",
    ]));
    ok(&pedvision(&[
        "retrain",
        "--data",
        path_str(&d("data")),
        "--out",
        path_str(&d("site")),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]));
    let retrained = d("site").join("retrained.toml");
    let retrained_name = std::fs::read_to_string(&retrained)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = ")
                .map(|n| n.trim_matches('"').to_string())
        })
        .unwrap();
    assert_ne!(retrained_name, "nanodet-g");
    let clip = d("clip.mp4");
    make_media(
        &clip,
        "videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! x264enc ! mp4mux",
    );
    let rtsp_port = free_port();
    let mut rtsp = Run(rtsp_server(rtsp_port));

    let port = free_port();
    let api = Api::new(port);
    let pattern = format!("{}/{{stream}}-{{name}}.mp4", dir.path().display());
    let metadata = d("m.jsonl");
    let mut run = run_with_api(
        port,
        &[
            "--input",
            DEMO,
            "--output",
            &pattern,
            "--metadata",
            path_str(&metadata),
        ],
    );
    api.wait_ready(&mut run);
    let camera = format!("rtsp://127.0.0.1:{rtsp_port}/stream0");
    let (status, body) = api.post("/streams", &json!({ "input": camera }));
    assert_eq!((status, &body["id"]), (201, &json!(1)), "{body}");
    let (status, body) = api.post(
        "/streams",
        &json!({ "input": path_str(&clip), "output": path_str(&d("clip-out.mp4")) }),
    );
    assert_eq!((status, &body["id"]), (201, &json!(2)), "{body}");

    // The model switches while both files are part-way through.
    api.wait_stream(0, "reached frame 30", |s| {
        s["frames"].as_u64().unwrap() >= 30
    });
    let (status, body) = api.post("/model", &json!({ "path": path_str(&retrained) }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], retrained_name.as_str());
    assert_eq!(api.get("/model").1["name"], retrained_name.as_str());

    // The camera goes; its MP4 is final as soon as DELETE answers.
    api.wait_stream(1, "ran", |s| s["frames"].as_u64().unwrap() >= 15);
    let (status, body) = api.delete("/streams/1");
    assert_eq!(status, 204, "{body}");
    let camera_mp4 = files_in(dir.path())
        .into_iter()
        .find(|f| f.starts_with("1-") && f.ends_with(".mp4"))
        .expect("the removed stream's MP4 under its final name");
    assert_eq!(api.get("/streams/1").0, 404);

    api.wait_stream(0, "ended", |s| s["state"] == "ended");
    api.wait_stream(2, "ended", |s| s["state"] == "ended");
    let (code, err) = interrupt(run);
    assert_eq!(code, Some(0), "{err}");
    rtsp.kill().ok();
    rtsp.wait().ok();

    let lines = read_jsonl(&metadata);
    // Every frame of both files, once, in order.
    assert_eq!(indices(&lines, 0), (0..200).collect::<Vec<_>>());
    assert_eq!(indices(&lines, 2), (0..90).collect::<Vec<_>>());
    // One switch, between two batches: every record after the first one by the
    // new model is by the new model, in every stream.
    let models: Vec<&str> = lines.iter().map(|l| l["model"].as_str().unwrap()).collect();
    let first_new = models
        .iter()
        .position(|m| *m == retrained_name)
        .expect("records by the new model");
    assert!(first_new > 0, "records by the first model");
    assert!(models[..first_new].iter().all(|m| *m == "nanodet-g"));
    assert!(
        models[first_new..].iter().all(|m| *m == retrained_name),
        "a record by the old model after the switch"
    );
    let stream0: Vec<&str> = by_stream(&lines, 0)
        .iter()
        .map(|l| l["model"].as_str().unwrap())
        .collect();
    assert!(stream0.contains(&"nanodet-g") && stream0.contains(&retrained_name.as_str()));
    // The removed camera's MP4 plays and holds exactly its records' frames.
    let (frames, ..) = probe(&join(dir.path(), &camera_mp4));
    let records = by_stream(&lines, 1).len();
    assert!(records >= 15, "{records}");
    assert_eq!(frames, records, "MP4 frames vs metadata records");
    let (frames, ..) = probe(&d("clip-out.mp4"));
    assert_eq!(frames, 90);
}

#[test]
fn the_api_refuses_bad_requests_with_json_errors_and_the_run_goes_on() {
    let dir = scratch();
    let port = free_port();
    let api = Api::new(port);
    let metadata = join(dir.path(), "m.jsonl");
    let small = renamed_manifest(dir.path(), "small-input");
    let text = std::fs::read_to_string(&small)
        .unwrap()
        .replacen("width = 512", "width = 320", 1);
    std::fs::write(&small, text).unwrap();
    // No input: the run starts idle.
    let mut run = run_with_api(
        port,
        &[
            "--max-streams",
            "1",
            "--no-video",
            "--metadata",
            path_str(&metadata),
        ],
    );
    api.wait_ready(&mut run);
    assert_eq!(api.get("/healthz").0, 200);
    assert_eq!(api.get("/streams"), (200, json!([])));

    let error = |(status, body): (u16, Value)| {
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        status
    };
    let raw = |body: &str| http("POST", &format!("{}/streams", api.base), Some(body), None);
    assert_eq!(error(raw("{bad")), 400);
    assert_eq!(error(raw("{\"inputs\": \"test:ball\"}")), 400);
    assert_eq!(error(raw("[]")), 400);
    assert_eq!(error(api.post("/streams", &json!({ "input": "" }))), 400);
    assert_eq!(
        error(api.post("/streams", &json!({ "input": "/no/such/clip.mp4" }))),
        400
    );
    assert_eq!(
        error(api.post("/streams", &json!({ "input": "test:ball?width=abc" }))),
        400
    );
    assert_eq!(
        error(api.post("/streams", &json!({ "input": "test:nosuchpattern" }))),
        400
    );
    assert_eq!(
        error(api.post(
            "/streams",
            &json!({ "input": "test:ball", "output": "out/x.avi" })
        )),
        400
    );
    // A stream whose source fails is that stream's failure, not the run's.
    let junk = join(dir.path(), "junk.mp4");
    std::fs::write(&junk, "not a video").unwrap();
    let (status, body) = api.post("/streams", &json!({ "input": path_str(&junk) }));
    assert_eq!((status, &body["id"]), (201, &json!(0)), "{body}");
    let failed = api.wait_stream(0, "failed", |s| s["state"] == "failed");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert_eq!(api.delete("/streams/0").0, 204);
    assert_eq!(api.get("/streams"), (200, json!([])));
    assert_eq!(
        error(api.post(
            "/streams",
            &json!({ "input": "test:ball", "output": "a.mp4", "no_video": true })
        )),
        400
    );
    let (status, body) = api.post(
        "/streams",
        &json!({ "input": "test:ball?width=160&height=120" }),
    );
    assert_eq!((status, &body["id"]), (201, &json!(1)), "{body}");
    assert_eq!(
        error(api.post("/streams", &json!({ "input": "test:smpte" }))),
        409
    );
    for path in ["/streams/7", "/streams/abc", "/nope"] {
        assert_eq!(error(api.get(path)), 404, "{path}");
    }
    assert_eq!(error(api.delete("/streams/7")), 404);
    assert_eq!(
        error(http(
            "PUT",
            &format!("{}/streams", api.base),
            Some("{}"),
            None
        )),
        405
    );
    // A model that cannot replace the live one leaves it running.
    let (status, body) = api.post("/model", &json!({ "path": path_str(&small) }));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("320×384"),
        "{body}"
    );
    assert_eq!(
        error(api.post("/model", &json!({ "path": "/no/model.toml" }))),
        422
    );
    assert_eq!(error(api.post("/model", &json!({ "file": "x" }))), 400);
    assert_eq!(api.get("/model").1["name"], "nanodet-g");
    // Lines: a bad one is refused, a good one counts, names are unique.
    let line = json!({ "name": "door", "points": [[0.0, 0.5], [1.0, 0.5]] });
    assert_eq!(
        error(api.post("/lines", &json!({ "name": "bad", "points": [[0.0, 0.5]] }))),
        400
    );
    assert_eq!(api.post("/lines", &line).0, 201);
    assert_eq!(error(api.post("/lines", &line)), 409);
    assert_eq!(api.get("/lines").1[0]["name"], "door");
    assert_eq!(error(api.delete("/lines/window")), 404);
    assert_eq!(api.delete("/lines/door").0, 204);
    assert_eq!(api.get("/lines"), (200, json!([])));
    let zone = json!({ "name": "hall", "points": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]] });
    assert_eq!(api.post("/zones", &zone).0, 201);
    assert_eq!(api.get("/zones").1[0]["name"], "hall");
    // The description, and the metrics on the same port.
    let (status, doc) = api.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["paths"]["/streams"]["post"].is_object(), "{doc}");
    // DNS rebinding: a page whose name resolves to 127.0.0.1 names itself.
    let rebound = ureq::get(&format!("{}/streams", api.base))
        .set("Host", "attacker.example")
        .call();
    assert!(
        matches!(rebound, Err(ureq::Error::Status(403, _))),
        "{rebound:?}"
    );
    let (status, metrics) = api.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("pedvision_frames_processed"),
        "{metrics}"
    );
    // Still running, and the one stream still flows.
    let s = api.wait_stream(1, "ran", |s| s["frames"].as_u64().unwrap() >= 5);
    assert_eq!(s["state"], "running");
    let (code, err) = interrupt(run);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("a stream failed; the run went on"), "{err}");
    let lines = read_jsonl(&metadata);
    assert!(by_stream(&lines, 1).len() >= 5);
    assert!(lines.iter().all(|l| l["model"] == "nanodet-g"));
}

#[test]
fn a_non_loopback_api_needs_a_token_and_checks_it() {
    let port = free_port();
    let bind = format!("0.0.0.0:{port}");
    let out = pedvision(&["run", "--api", &bind, "--no-video", "--no-metadata"]);
    let line = failed(&out);
    assert!(line.contains("--api-token-env"), "{line}");
    let spawn = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pedvision"));
        command
            .args(["run", "--api", &bind, "--api-token-env", "PV_API_TOKEN"])
            .args(["--no-video", "--no-metadata", "--device", "cpu"])
            .env_remove("PV_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            command.env("PV_API_TOKEN", t);
        }
        command.spawn().unwrap()
    };
    let mut unset = spawn(None);
    let (code, err) = wait_with_timeout(&mut unset, Duration::from_secs(60));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("PV_API_TOKEN is not set"), "{err}");

    let mut run = Run(spawn(Some("s3cret")));
    let api = Api::new(port);
    api.wait_ready(&mut run);
    let url = format!("{}/streams", api.base);
    assert_eq!(http("GET", &url, None, None).0, 401);
    assert_eq!(http("GET", &url, None, Some("wrong")).0, 401);
    assert_eq!(http("GET", &url, None, Some("s3cret")), (200, json!([])));
    let add = json!({ "input": "test:ball" }).to_string();
    assert_eq!(http("POST", &url, Some(&add), None).0, 401);
    assert_eq!(api.get("/healthz").0, 200, "probes need no token");
    let (code, err) = interrupt(run);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sighup_applies_the_pipeline_file_while_the_run_goes_on() {
    let dir = scratch();
    let port = free_port();
    let api = Api::new(port);
    let site = renamed_manifest(dir.path(), "nanodet-g-site");
    let metadata = join(dir.path(), "m.jsonl");
    let file = join(dir.path(), "p.toml");
    let write = |input: &str, model: &str| {
        let text = format!(
            "inputs = [{input:?}]\n[model]\npath = {model:?}\ndevice = \"cpu\"\nprecision = \"fp32\"\n\
             [outputs]\nno_video = true\nmetadata = {:?}\n[api]\nbind = \"{port}\"\n",
            path_str(&metadata)
        );
        std::fs::write(&file, text).unwrap();
    };
    write("test:ball?width=160&height=120", MODEL);
    let mut run = Run(pedvision_bg(&["run", "--config", path_str(&file)]));
    api.wait_ready(&mut run);
    api.wait_stream(0, "ran", |s| s["frames"].as_u64().unwrap() >= 5);

    write("test:smpte?width=160&height=120", path_str(&site));
    signal(&run, "HUP");
    api.wait_stream(1, "ran", |s| s["frames"].as_u64().unwrap() >= 5);
    let started = Instant::now();
    while api.get("/streams/0").0 != 404 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stream 0 stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    while api.get("/model").1["name"] != "nanodet-g-site" {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "model not switched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    api.wait_stream(1, "ran on the new model", |s| {
        s["frames"].as_u64().unwrap() >= 20
    });
    // A file that no longer parses changes nothing.
    std::fs::write(&file, "inputs = [").unwrap();
    signal(&run, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.get("/streams/1").1["state"], "running");
    let (code, err) = interrupt(run);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("pipeline file not applied"), "{err}");
    let lines = read_jsonl(&metadata);
    let first: Vec<&Value> = by_stream(&lines, 0);
    assert!(first.len() >= 5 && first.iter().all(|l| l["model"] == "nanodet-g"));
    let second: Vec<&Value> = by_stream(&lines, 1);
    assert_eq!(second.last().unwrap()["model"], "nanodet-g-site");
}

/// Threads and resident memory of a process, from /proc.
fn threads_and_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Threads:"), field("VmRSS:"))
}

#[test]
fn two_hundred_streams_come_and_go_while_two_files_lose_nothing() {
    let dir = scratch();
    let clips: Vec<PathBuf> = (0..2)
        .map(|i| {
            let clip = join(dir.path(), &format!("c{i}.mp4"));
            make_media(
                &clip,
                "videotestsrc num-buffers=400 pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 ! x264enc ! mp4mux",
            );
            clip
        })
        .collect();
    let port = free_port();
    let api = Api::new(port);
    let metadata = join(dir.path(), "m.jsonl");
    let mut run = run_with_api(
        port,
        &[
            "--input",
            path_str(&clips[0]),
            "--input",
            path_str(&clips[1]),
            "--no-video",
            "--metadata",
            path_str(&metadata),
            "--batch",
            "4",
        ],
    );
    api.wait_ready(&mut run);
    let cycle = |i: usize| {
        let input = "test:ball?width=64&height=48&fps=30";
        let (status, body) = api.post("/streams", &json!({ "input": input }));
        assert_eq!(status, 201, "cycle {i}: {body}");
        let id = body["id"].as_u64().unwrap();
        let (status, body) = api.delete(&format!("/streams/{id}"));
        assert_eq!(status, 204, "cycle {i}: {body}");
    };
    for i in 0..5 {
        cycle(i);
    }
    let before = threads_and_rss_kib(run.id());
    let started = Instant::now();
    for i in 0..200 {
        cycle(i);
    }
    let took = started.elapsed();
    // Let what the last stream started wind down.
    std::thread::sleep(Duration::from_millis(500));
    let after = threads_and_rss_kib(run.id());
    let files: Vec<String> = (0..2)
        .map(|id| {
            let s = api.get(&format!("/streams/{id}")).1;
            format!("{} after {} frames", s["state"], s["frames"])
        })
        .collect();
    eprintln!(
        "200 add/remove cycles in {:.1} s; threads {} -> {}, RSS {} -> {} KiB; file streams at the end: {}",
        took.as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1,
        files.join(", ")
    );
    assert!(after.0 <= before.0 + 2, "threads {before:?} -> {after:?}");
    assert!(
        after.1 < before.1 + 64 * 1024,
        "RSS grew from {} to {} KiB",
        before.1,
        after.1
    );
    assert_eq!(api.get("/streams").1.as_array().unwrap().len(), 2);
    api.wait_stream(0, "ended", |s| s["state"] == "ended");
    api.wait_stream(1, "ended", |s| s["state"] == "ended");
    let (code, err) = interrupt(run);
    assert_eq!(code, Some(0), "{err}");
    let lines = read_jsonl(&metadata);
    for stream in [0, 1] {
        assert_eq!(indices(&lines, stream), (0..400).collect::<Vec<_>>());
    }
}
