#!/usr/bin/env python3
"""Capture-to-metadata latency of live streams around a model switch.

    benches/swap_latency.py [--binary target/release/pedvision] [--cameras 2]
                            [--seconds 40] [--swap-to MANIFEST] [--size 640x480]

Starts the real RTSP test server (tests/support/rtsp_server.py) with N live
cameras (10 fps), runs `pedvision run --api` on them, polls GET /streams every
0.5 s for the latency of each stream's last two-second window (p99 and max,
computed by the post stage from every frame's capture time), and switches the
model half-way through with POST /model. By default the model switched in is a
renamed copy of the bundled manifest (the same network, so only the switch
itself is measured); --swap-to names another manifest (one made by `retrain`).

Prints, per stream, the median p99 of the windows before the switch, the worst
p99 and max of the windows that overlap the switch and the 6 s after it, and
their ratio. Standard library only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from api_client import call, free_port, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def renamed_manifest(directory):
    text = open(os.path.join(ROOT, "models", "nanodet-g.toml")).read()
    text = text.replace('name = "nanodet-g"', 'name = "nanodet-g-switched"', 1)
    onnx = os.path.join(ROOT, "models", "nanodet-g.onnx")
    text = text.replace('onnx = "nanodet-g.onnx"', f'onnx = "{onnx}"')
    path = os.path.join(directory, "switched.toml")
    open(path, "w").write(text)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pedvision"))
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--swap-to", default=None)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    scratch = tempfile.mkdtemp(prefix="swap-latency-")
    target = args.swap_to or renamed_manifest(scratch)
    rtsp_port, api_port = free_port(), free_port()
    server = subprocess.Popen(
        ["/usr/bin/python3", os.path.join(ROOT, "tests", "support", "rtsp_server.py"),
         str(rtsp_port), "--mounts", str(args.cameras), "--size", args.size],
        stdout=subprocess.PIPE)
    server.stdout.readline()
    command = [args.binary, "run", "--api", str(api_port), "--no-video", "--no-metadata",
               "--device", args.device, "--precision", "fp32"]
    for i in range(args.cameras):
        command += ["--input", f"rtsp://127.0.0.1:{rtsp_port}/stream{i}"]
    run = subprocess.Popen(command, stderr=open(os.path.join(scratch, "run.log"), "w"))
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_ready(base)
        started = time.time()
        windows = {i: [] for i in range(args.cameras)}  # (time seen, p99, max)
        swap_at = swap_done = None
        while time.time() - started < args.seconds:
            now = time.time() - started
            if swap_at is None and now >= args.seconds / 2:
                swap_at = now
                status, body = call("POST", base + "/model", {"path": target})
                swap_done = time.time() - started
                if status != 200:
                    sys.exit(f"switch refused: {status} {body}")
                print(f"switched to {body['name']} at {swap_at:.1f} s "
                      f"(answered after {swap_done - swap_at:.2f} s)")
            _, streams = call("GET", base + "/streams")
            for s in streams:
                w = s.get("latency")
                if w is None:
                    continue
                seen = windows[s["id"]]
                if not seen or (seen[-1][1], seen[-1][2]) != (w["p99_ms"], w["max_ms"]):
                    seen.append((now, w["p99_ms"], w["max_ms"]))
            time.sleep(0.5)
    finally:
        run.send_signal(2)
        run.wait(timeout=60)
        server.kill()
    for i, seen in windows.items():
        # A window is seen up to 0.5 s after it ends and covers the 2 s before.
        before = [p99 for t, p99, _ in seen if t < swap_at]
        during = [(p99, mx) for t, p99, mx in seen if swap_at <= t <= swap_done + 6.5]
        if not before or not during:
            print(f"stream {i}: not enough windows")
            continue
        base_p99 = statistics.median(before[-8:])
        worst_p99 = max(p for p, _ in during)
        worst_max = max(m for _, m in during)
        print(f"stream {i}: p99 before {base_p99:.0f} ms (median of {len(before[-8:])} windows); "
              f"around the switch worst p99 {worst_p99:.0f} ms, worst max {worst_max:.0f} ms; "
              f"ratio {worst_p99 / base_p99:.2f}")


if __name__ == "__main__":
    main()
