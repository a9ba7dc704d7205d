//! The MQTT sink against a real broker (Debian's mosquitto, started here on a free
//! loopback port) and a real subscriber (mosquitto_sub): the broker is stopped and
//! restarted mid-run, pedvision is killed with SIGKILL while the broker is away,
//! and every frame still arrives — at least once, first arrivals in order per
//! stream.

mod common;

use std::time::Duration;

use common::*;

const LIVE: &str = "test:ball?width=320&height=240&fps=10";

/// `run` of the test clip to MQTT only (no video, no metadata file).
fn clip_to_mqtt(url: &str, prefix: &str, spool: &std::path::Path) -> Vec<String> {
    let args = [
        "run",
        "-i",
        CLIP,
        "--no-video",
        "--no-metadata",
        "--mqtt",
        url,
        "--mqtt-topic-prefix",
        prefix,
        "--mqtt-spool",
        path_str(spool),
    ];
    args.iter().map(|a| a.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn every_frame_arrives_in_order_across_a_broker_restart() {
    let dir = scratch();
    let mut broker = Mosquitto::start(dir.path());
    let sub = Subscriber::start(
        &broker,
        "pv/#",
        "pv-restart-sub",
        join(dir.path(), "sub.txt"),
    );
    let jsonl = join(dir.path(), "frames.jsonl");
    let spool = join(dir.path(), "spool");
    let run = pedvision_bg(&[
        "run",
        "-i",
        CLIP,
        "-i",
        LIVE,
        "--batch",
        "2",
        "--no-video",
        "--metadata",
        path_str(&jsonl),
        "--mqtt",
        &broker.url(),
        "--mqtt-topic-prefix",
        "pv",
        "--mqtt-spool",
        path_str(&spool),
        // Long enough for the 40-frame file to finish on a loaded 2-core machine
        // despite the outage, with one view a frame (test-time flip's doubled
        // inference left it 36 frames short of 40 there).
        "--tta",
        "none",
        "--duration",
        "12",
    ]);
    std::thread::sleep(Duration::from_millis(2500));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MQTT broker unreachable"),
        "the outage went unnoticed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);

    // What was processed, from the metadata file written in the same run.
    let frames = read_jsonl(&jsonl);
    let total = frames.len();
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("mqtt:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        summary.starts_with(&format!("mqtt: {total} queued, {total} acknowledged")),
        "{summary}"
    );
    assert!(
        summary.contains("0 left in the spool, 0 dropped"),
        "{summary}"
    );

    let got = sub.wait_for(30, |m| {
        let by = frames_by_stream(m, "pv");
        by.values().map(|v| first_arrivals(v).len()).sum::<usize>() >= total
    });
    let by = frames_by_stream(&got, "pv");
    for stream in [0u64, 1] {
        let want: Vec<u64> = by_stream(&frames, stream)
            .iter()
            .map(|f| f["frame_index"].as_u64().unwrap())
            .collect();
        let first = first_arrivals(by.get(&stream).map(Vec::as_slice).unwrap_or_default());
        assert_eq!(
            first, want,
            "stream {stream}: first arrivals differ from the frames processed"
        );
    }
    assert_eq!(by_stream(&frames, 0).len(), CLIP_FRAMES);
    assert!(
        by_stream(&frames, 1).len() > 30,
        "the live stream ran through the outage"
    );
    // Retained status: online while running, offline after a clean stop.
    assert_eq!(retained(&broker, "pv/status"), "offline");
    assert!(got.iter().any(|(t, p)| t == "pv/status" && p == "online"));
}

#[test]
fn the_spool_survives_a_crash_and_is_delivered_by_the_next_run() {
    let dir = scratch();
    let spool = join(dir.path(), "spool");
    // No broker yet: everything goes to the spool. Then SIGKILL, mid-write if so.
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let crashed = pedvision_bg(&[
        "run",
        "-i",
        LIVE,
        "--no-video",
        "--no-metadata",
        "--mqtt",
        &url,
        "--mqtt-topic-prefix",
        "old",
        "--mqtt-spool",
        path_str(&spool),
    ]);
    std::thread::sleep(Duration::from_secs(5));
    signal(&crashed, "KILL");
    let crashed = crashed.wait_with_output().unwrap();
    assert!(!crashed.status.success());

    let broker_dir = join(dir.path(), "broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Mosquitto::start(&broker_dir);
    let sub = Subscriber::start(&broker, "#", "pv-crash-sub", join(dir.path(), "sub.txt"));
    let run = pedvision(&strs(&clip_to_mqtt(&broker.url(), "new", &spool)));
    let stdout = ok(&run);
    let summary = stdout.lines().find(|l| l.starts_with("mqtt:")).unwrap();
    let recovered: u64 = summary
        .split(", ")
        .find(|p| p.ends_with("recovered from an earlier run"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        recovered >= 10,
        "the crashed run spooled {recovered} frames: {summary}"
    );
    assert!(summary.contains("0 left in the spool"), "{summary}");

    let got = sub.wait_for(30, |m| {
        let new = frames_by_stream(m, "new");
        new.get(&0)
            .is_some_and(|v| first_arrivals(v).len() == CLIP_FRAMES)
    });
    let old = frames_by_stream(&got, "old");
    let old = first_arrivals(old.get(&0).map(Vec::as_slice).unwrap_or_default());
    // Every spooled frame, in order. The live source may have dropped frames
    // while inference could not keep up (drop-oldest), so the indices can skip;
    // what was spooled must not.
    assert_eq!(
        old.len() as u64,
        recovered,
        "the crashed run's frames, whole: {old:?}"
    );
    assert!(
        old.windows(2).all(|w| w[0] < w[1]),
        "the crashed run's frames, in order: {old:?}"
    );
    let new = frames_by_stream(&got, "new");
    assert_eq!(
        first_arrivals(&new[&0]),
        (0..CLIP_FRAMES as u64).collect::<Vec<_>>()
    );
    // The old frames went out before the new ones (status messages aside).
    let last_old = got.iter().rposition(|(t, _)| t == "old/0").unwrap();
    let first_new = got.iter().position(|(t, _)| t == "new/0").unwrap();
    assert!(last_old < first_new);
}

#[test]
fn a_lost_acknowledgement_marker_costs_repeats_not_a_stall() {
    let dir = scratch();
    let spool = join(dir.path(), "spool");
    let broker_dir = join(dir.path(), "broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let mut broker = Mosquitto::start(&broker_dir);
    ok(&pedvision(&strs(&clip_to_mqtt(&broker.url(), "a", &spool))));
    // With the broker away, the next run's 40 records wait in a new segment; the
    // delivered one is deleted.
    broker.stop();
    let mut args = clip_to_mqtt(&broker.url(), "b", &spool);
    args.extend(["--mqtt-drain-timeout".into(), "0".into()]);
    let out = ok(&pedvision(&strs(&args)));
    assert!(out.contains("40 left in the spool"), "{out}");
    // The acknowledgement marker is lost (a crash before it reached the disk):
    // the spool's first record (41) is now far above what it says was delivered.
    std::fs::remove_file(spool.join("acked")).unwrap();
    broker.restart();
    let sub = Subscriber::start(&broker, "#", "pv-lost-ack", join(dir.path(), "sub.txt"));
    let out = ok(&pedvision(&strs(&clip_to_mqtt(&broker.url(), "c", &spool))));
    let summary = out.lines().find(|l| l.starts_with("mqtt:")).unwrap();
    assert!(summary.contains("0 left in the spool"), "{summary}");
    let got = sub.wait_for(30, |m| {
        let c = frames_by_stream(m, "c");
        c.get(&0)
            .is_some_and(|v| first_arrivals(v).len() == CLIP_FRAMES)
    });
    for prefix in ["b", "c"] {
        let by = frames_by_stream(&got, prefix);
        assert_eq!(
            first_arrivals(by.get(&0).map(Vec::as_slice).unwrap_or_default()),
            (0..CLIP_FRAMES as u64).collect::<Vec<_>>(),
            "{prefix}: every frame, in order"
        );
    }
    // Every message names its run and place, so a consumer can drop repeats.
    let ids: std::collections::HashSet<(String, u64)> = got
        .iter()
        .filter(|(t, _)| t == "c/0")
        .map(|(_, p)| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            (
                v["run_id"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), CLIP_FRAMES, "one id per frame record");
}

#[test]
fn a_bad_broker_url_or_missing_password_fails_before_running() {
    let bad = failed(&pedvision(&[
        "run",
        "-i",
        CLIP,
        "--mqtt",
        "tcp://127.0.0.1:1883",
    ]));
    assert!(bad.contains("--mqtt") && bad.contains("mqtt://"), "{bad}");
    let env = failed(&pedvision(&[
        "run",
        "-i",
        CLIP,
        "--mqtt",
        "mqtt://127.0.0.1:1",
        "--mqtt-username",
        "u",
        "--mqtt-password-env",
        "PEDVISION_TEST_UNSET_VARIABLE",
    ]));
    assert!(
        env.contains("PEDVISION_TEST_UNSET_VARIABLE is not set"),
        "{env}"
    );
}

#[test]
fn username_and_password_are_used() {
    let dir = scratch();
    let passwd = join(dir.path(), "passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c", path_str(&passwd), "camera", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    let broker_dir = join(dir.path(), "broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Per-listener auth: this listener needs a password.
    let broker = Mosquitto::start_with(
        &broker_dir,
        &format!(
            "per_listener_settings false\npassword_file {}",
            passwd.display()
        ),
    );
    let spool = join(dir.path(), "spool");
    let with = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pedvision"))
            .args(clip_to_mqtt(&broker.url(), "pedvision", &spool))
            .args([
                "--mqtt-username",
                "camera",
                "--mqtt-password-env",
                "PV_TEST_MQTT_PASSWORD",
                "--mqtt-drain-timeout",
                "3",
            ])
            .env("PV_TEST_MQTT_PASSWORD", password)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let good = ok(&with("s3cret"));
    assert!(
        good.contains(&format!("{CLIP_FRAMES} acknowledged")),
        "{good}"
    );
    // A wrong password: the run goes on, the broker refuses, messages stay spooled.
    let bad = with("wrong");
    let stdout = ok(&bad);
    assert!(
        stdout.contains(&format!("{CLIP_FRAMES} left in the spool")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("MQTT broker unreachable"));
}

#[test]
fn doctor_checks_the_configured_broker() {
    let dir = scratch();
    let broker = Mosquitto::start(dir.path());
    let config = format!("{}/pipelines/rtsp-to-mqtt.toml", env!("CARGO_MANIFEST_DIR"));
    let up = pedvision(&["doctor", "--config", &config, "--mqtt", &broker.url()]);
    let stdout = ok(&up);
    assert!(
        stdout.contains(&format!(
            "ok      MQTT broker 127.0.0.1:{} accepts connections",
            broker.port
        )),
        "{stdout}"
    );
    // The file's RTSP output asks for the RTSP payloader.
    assert!(stdout.contains("rtph264pay"), "{stdout}");
    let down = format!("mqtt://127.0.0.1:{}", free_port());
    let out = pedvision(&["doctor", "--config", &config, "--mqtt", &down]);
    let line = failed(&out);
    assert!(line.contains("1 problem(s) found"), "{line}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSING MQTT broker"));
}

/// Makes a CA and a server certificate for 127.0.0.1 with openssl; returns the CA.
fn make_certificates(dir: &std::path::Path) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pedvision test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    use std::os::unix::fs::PermissionsExt;
    for f in ["server.key", "server.pem", "ca.pem"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir.join("ca.pem")
}

#[test]
fn tls_to_a_broker_with_a_private_ca() {
    let dir = scratch();
    let certs = join(dir.path(), "certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = make_certificates(&certs);
    let broker_dir = join(dir.path(), "broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Mosquitto::start_with(
        &broker_dir,
        &format!(
            "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key",
            certs.display()
        ),
    );
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let spool = join(dir.path(), "spool");
    let mut args = clip_to_mqtt(&url, "tls", &spool);
    args.extend([
        "--mqtt-tls-ca".to_string(),
        path_str(&ca).to_string(),
        "--mqtt-drain-timeout".into(),
        "5".into(),
    ]);
    let stdout = ok(&pedvision(&strs(&args)));
    assert!(
        stdout.contains(&format!("{CLIP_FRAMES} acknowledged")),
        "{stdout}"
    );
    // Without the CA the broker's certificate is not trusted: nothing is delivered.
    let mut untrusted = clip_to_mqtt(&url, "tls", &join(dir.path(), "spool2"));
    untrusted.extend(["--mqtt-drain-timeout".to_string(), "2".into()]);
    let out = pedvision(&strs(&untrusted));
    let stdout = ok(&out);
    assert!(
        stdout.contains(&format!("{CLIP_FRAMES} left in the spool")),
        "{stdout}"
    );
}
