#!/usr/bin/env bash
# Soak test: does a long run hold its memory, file descriptors and threads?
#
#   benches/soak.sh MINUTES [OUT_DIR]        (release build first: make bench)
#
# Four live sources for MINUTES minutes: two RTSP streams from the test server
# (tests/support/rtsp_server.py), which is killed and restarted every RESTART_S
# seconds (default 180) so both streams reconnect, and two live test patterns;
# annotated MP4s, JSON Lines, Prometheus metrics and MQTT (a local mosquitto) on.
# Every SAMPLE_S seconds (default 60) it samples pedvision's resident memory
# (VmRSS), open file descriptors and threads into OUT_DIR/soak.csv, then prints
# the verdict: the goal is RSS at the end within 5% of minute 2, and no growth in
# descriptors or threads.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: benches/soak.sh MINUTES [OUT_DIR]}
out=${2:-out/soak}
restart_s=${RESTART_S:-180}
sample_s=${SAMPLE_S:-60}
bin=./target/release/pedvision
mkdir -p "$out"
rm -f "$out"/*.mp4 "$out"/*.jsonl "$out"/soak.csv
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rtsp_port=$(free_port)
mqtt_port=$(free_port)
metrics_port=$(free_port)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mqtt_port" > "$out/mosquitto.conf"
mosquitto -c "$out/mosquitto.conf" > "$out/mosquitto.log" 2>&1 &
pids+=($!)

start_server() {
  /usr/bin/python3 tests/support/rtsp_server.py "$rtsp_port" --mounts 2 --fps 5 > "$out/rtsp.log" 2>&1 &
  server=$!
}
start_server
sleep 2

"$bin" run --log-level warn \
  -i "rtsp://127.0.0.1:$rtsp_port/stream0" -i "rtsp://127.0.0.1:$rtsp_port/stream1" \
  -i "test:ball?width=320&height=240&fps=5" -i "test:smpte?width=320&height=240&fps=5" \
  -o "$out/{stream}.mp4" -m "$out/metadata.jsonl" --batch 4 \
  --metrics "$metrics_port" --mqtt "mqtt://127.0.0.1:$mqtt_port" --mqtt-spool "$out/spool" \
  --reconnect-delay 200 --reconnect-max-delay 2 \
  --duration $((minutes * 60 + 20)) > "$out/run.out" 2> "$out/run.err" &
run=$!
pids+=($run)

echo "minute,rss_kib,fds,threads,frames" > "$out/soak.csv"
started=$(date +%s)
next_restart=$((started + restart_s))
next_sample=$((started + sample_s))
minute=0
while kill -0 "$run" 2>/dev/null && [ "$minute" -lt "$minutes" ]; do
  sleep 1
  now=$(date +%s)
  if [ "$now" -ge "$next_restart" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    sleep 2
    start_server
    next_restart=$((now + restart_s))
  fi
  if [ "$now" -ge "$next_sample" ]; then
    minute=$((minute + 1))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$run/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$run/status")
    fds=$(ls "/proc/$run/fd" | wc -l)
    frames=$(python3 -c 'import sys,urllib.request; t=urllib.request.urlopen(sys.argv[1],timeout=5).read().decode(); print(int(sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith("pedvision_frames_processed_total"))))' "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null || echo "?")
    echo "$minute,$rss,$fds,$threads,$frames" | tee -a "$out/soak.csv"
    next_sample=$((next_sample + sample_s))
  fi
done
# Stop as a service manager would; the outputs are finalised.
kill -INT "$run" 2>/dev/null || true
wait "$run" || echo "pedvision exited with $?"
kill "$server" 2>/dev/null || true
tail -n 12 "$out/run.out"

python3 - "$out/soak.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if len(rows) < 3:
    sys.exit("too few samples for a verdict")
two, end = rows[1], rows[-1]
growth = (int(end["rss_kib"]) - int(two["rss_kib"])) / int(two["rss_kib"])
fds = [int(r["fds"]) for r in rows[1:]]
threads = [int(r["threads"]) for r in rows[1:]]
print(f"RSS minute 2 {int(two['rss_kib'])/1024:.1f} MiB, minute {end['minute']} {int(end['rss_kib'])/1024:.1f} MiB: {growth:+.1%} (goal within ±5%)")
print(f"file descriptors min {min(fds)} max {max(fds)} (minute 2: {fds[0]}, end: {fds[-1]})")
print(f"threads min {min(threads)} max {max(threads)} (minute 2: {threads[0]}, end: {threads[-1]})")
# "No growth": the typical count (median) of the last five samples is no higher
# than that of the first five. Single samples swing with the RTSP reconnections
# (a source that is reconnecting holds fewer sockets and threads than a connected
# one); a leak of one per reconnection moves the median.
median = lambda xs: sorted(xs)[len(xs) // 2]
fds_ok = median(fds[-5:]) <= median(fds[:5])
threads_ok = median(threads[-5:]) <= median(threads[:5])
print(f"median fds first five {median(fds[:5])}, last five {median(fds[-5:])}; median threads {median(threads[:5])}, {median(threads[-5:])}")
ok = abs(growth) <= 0.05 and fds_ok and threads_ok
print("verdict:", "PASS" if ok else "FAIL")
PY
