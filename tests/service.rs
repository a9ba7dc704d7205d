//! `pedvision run` under systemd's notify protocol, checked against a real
//! notify socket the test listens on (a Unix datagram socket, as systemd's): READY=1
//! once the model and the stream are up, WATCHDOG=1 while frames flow and not once
//! the pipeline stalls (an inference stage hung by PEDVISION_FAULT=stall), and
//! STOPPING=1 when the run ends.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A run of the `test:ball` pattern under systemd's variables (a 400 ms watchdog),
/// its metadata in `dir`, and the notify socket it writes to, bound in `dir`.
struct NotifiedRun {
    socket: UnixDatagram,
    child: Child,
    metadata: std::path::PathBuf,
}

fn run_notified(dir: &Path, fault: Option<&str>, duration: Option<&str>) -> NotifiedRun {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let metadata = dir.join("m.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pedvision"));
    cmd.args(["run", "-i", "test:ball", "--no-video", "--metadata"])
        .arg(&metadata)
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(duration) = duration {
        cmd.args(["--duration", duration]);
    }
    if let Some(fault) = fault {
        cmd.env("PEDVISION_FAULT", fault);
    }
    let child = cmd.spawn().expect("pedvision starts");
    NotifiedRun {
        socket,
        child,
        metadata,
    }
}

/// Every message received until `span` passes or `run` exits, each line with when
/// it arrived.
fn listen(socket: &UnixDatagram, span: Duration, run: &mut Child) -> Vec<(Instant, String)> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + span;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut exited = None;
    while Instant::now() < end
        && exited.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(300))
    {
        if exited.is_none() && run.try_wait().unwrap().is_some() {
            exited = Some(Instant::now());
        }
        if let Ok(n) = socket.recv(&mut buf) {
            let now = Instant::now();
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                got.push((now, line.to_string()));
            }
        }
    }
    got
}

fn count(msgs: &[(Instant, String)], line: &str) -> usize {
    msgs.iter().filter(|(_, m)| m == line).count()
}

#[test]
fn readiness_watchdog_and_stopping_reach_a_real_notify_socket() {
    let dir = scratch();
    let NotifiedRun {
        socket,
        child: mut run,
        metadata: meta,
    } = run_notified(dir.path(), None, Some("4"));
    let msgs = listen(&socket, Duration::from_secs(60), &mut run);
    let status = run.wait().unwrap();
    assert!(status.success(), "run failed: {status}");
    let lines: Vec<&str> = msgs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(count(&msgs, "READY=1"), 1, "{lines:?}");
    let ready = lines.iter().position(|m| *m == "READY=1").unwrap();
    // Sent with the stream registered and up, not in the gap before it exists.
    assert_eq!(lines[ready + 1], "STATUS=running: 1 stream(s)", "{lines:?}");
    assert!(
        lines[..ready].iter().all(|m| *m != "STOPPING=1"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|m| m.starts_with("STATUS=running")),
        "{lines:?}"
    );
    // Pings every 200 ms over a run of 4 s: most of them, not one or two.
    let pings = count(&msgs, "WATCHDOG=1");
    assert!(pings >= 8, "only {pings} watchdog pings: {lines:?}");
    assert_eq!(
        lines.iter().rev().find(|m| !m.starts_with("STATUS")),
        Some(&"STOPPING=1")
    );
    assert!(read_jsonl(&meta).len() > 10, "frames were processed");
}

#[test]
fn a_stalled_pipeline_stops_feeding_the_watchdog() {
    let dir = scratch();
    // The inference stage hangs at its 20th batch; the source keeps delivering.
    let NotifiedRun {
        socket,
        child: mut run,
        ..
    } = run_notified(dir.path(), Some("stall:infer:20"), None);
    let started = Instant::now();
    let msgs = listen(&socket, Duration::from_secs(12), &mut run);
    let alive = run.try_wait().unwrap().is_none();
    run.kill().unwrap();
    run.wait().unwrap();
    let lines: Vec<&str> = msgs.iter().map(|(_, m)| m.as_str()).collect();
    assert!(alive, "the stalled run is still running");
    assert_eq!(count(&msgs, "READY=1"), 1, "{lines:?}");
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        !pings.is_empty(),
        "the watchdog was fed while frames flowed"
    );
    let last = *pings.last().unwrap();
    // Nothing for the last several watchdog periods: systemd would restart it.
    assert!(
        started.elapsed() - last.duration_since(started) >= Duration::from_secs(4),
        "pings went on after the stall: last at {:?} of {:?}",
        last.duration_since(started),
        started.elapsed()
    );
}
