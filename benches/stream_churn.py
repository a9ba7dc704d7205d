#!/usr/bin/env python3
"""Streams coming and going through the control API while file streams run.

    benches/stream_churn.py [--binary target/release/pedvision] [--cycles 200]
                            [--frames 3000]

Makes two H.264 clips of FRAMES frames (320x240, videotestsrc, gst-launch-1.0),
runs `pedvision run --api` on them (no video, metadata to a scratch folder), and
once both are running adds and removes a test-pattern stream CYCLES times
(POST /streams, then DELETE, which answers once the stream's outputs are final).
Reports the time per cycle, the process's threads and resident memory (from
/proc) before and after the cycles, whether the files were still running when the
cycles ended, and, once the files have ended, whether their metadata holds every
frame exactly once and in order. Standard library only.
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


def proc_status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    return int(fields["Threads"]), int(fields["VmRSS"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pedvision"))
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    scratch = tempfile.mkdtemp(prefix="stream-churn-")
    clips = []
    for i in range(2):
        clip = os.path.join(scratch, f"c{i}.mp4")
        subprocess.run(
            ["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={args.frames}", "pattern=ball",
             "!", "video/x-raw,width=320,height=240,framerate=25/1", "!", "x264enc",
             "speed-preset=ultrafast", "!", "mp4mux", "!", "filesink", f"location={clip}"],
            check=True)
        clips.append(clip)
    port = free_port()
    metadata = os.path.join(scratch, "m.jsonl")
    command = [args.binary, "run", "--api", str(port), "--no-video", "--metadata", metadata,
               "--device", args.device, "--precision", "fp32", "--batch", "4"]
    for clip in clips:
        command += ["--input", clip]
    run = subprocess.Popen(command, stderr=open(os.path.join(scratch, "run.log"), "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)

        def cycle():
            status, body = call("POST", base + "/streams",
                                {"input": "test:ball?width=64&height=48&fps=30"})
            assert status == 201, body
            t = time.time()
            status, body = call("DELETE", base + f"/streams/{body['id']}")
            assert status == 204, body
            return time.time() - t

        for _ in range(5):
            cycle()
        before = proc_status(run.pid)
        started = time.time()
        removals = [cycle() for _ in range(args.cycles)]
        took = time.time() - started
        time.sleep(0.5)
        after = proc_status(run.pid)
        files = [call("GET", base + f"/streams/{i}")[1] for i in range(2)]
        print(f"{args.cycles} cycles in {took:.1f} s ({1000 * took / args.cycles:.0f} ms each; "
              f"DELETE answered in median {1000 * statistics.median(removals):.0f} ms, "
              f"max {1000 * max(removals):.0f} ms)")
        print(f"threads {before[0]} -> {after[0]}; RSS {before[1] / 1024:.1f} -> "
              f"{after[1] / 1024:.1f} MiB")
        for f in files:
            print(f"file stream {f['id']}: {f['state']} at frame {f['frames']} when the cycles ended")
        while any(call("GET", base + f"/streams/{i}")[1]["state"] != "ended" for i in range(2)):
            time.sleep(0.5)
    finally:
        run.send_signal(2)
        run.wait(timeout=120)
    records = [json.loads(line) for line in open(metadata)]
    for i in range(2):
        got = [r["frame_index"] for r in records if r["stream_id"] == i]
        print(f"file stream {i}: {len(got)} records, every frame once and in order: "
              f"{got == list(range(args.frames))}")


if __name__ == "__main__":
    main()
