#!/usr/bin/env bash
# Live-source figures for the README and the closing notes, measured side by side:
#   (a) capture-to-metadata latency of a live 10 fps source (768x576 test pattern),
#       against the model's single-frame inference time (pedvision bench);
#   (b) how many live 768x576 @ 10 fps RTSP streams (the demo clip served by
#       tests/support/rtsp_server.py, every client on one shared mount) run in real
#       time without drops, and the total fps when overloaded, against the
#       inference-only fps at the same batch size.
# Usage: benches/live.sh [SECONDS_PER_RUN] [MAX_STREAMS]   (release build first: make bench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
max=${2:-6}
bin=./target/release/pedvision
batch=4

echo "== single-frame and batch-$batch inference (pedvision bench, inference-only passes)"
$bin bench --log-level error --rounds 1 | grep -E "inference only|round"
$bin bench --log-level error --rounds 1 --batch $batch | grep -E "round"

echo "== (a) latency, live test source 768x576 @ 10 fps, batch 1, ${secs}s"
$bin run --log-level error -i "test:ball?width=768&height=576&fps=10" --duration "$secs" --no-video --no-metadata | grep -E "^stream|^processed"

echo "== (b) N live RTSP streams of the demo clip, batch $batch, ${secs}s each"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/python3 tests/support/rtsp_server.py "$port" --file "$PWD/media/vtest-200.avi" > /tmp/pedvision-live-bench-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
sleep 2
for n in $(seq 1 "$max"); do
  inputs=()
  for _ in $(seq 1 "$n"); do inputs+=(-i "rtsp://127.0.0.1:$port/stream0"); done
  echo "-- $n stream(s)"
  $bin run --log-level error "${inputs[@]}" --batch $batch --duration "$secs" --no-video --no-metadata \
    | grep -E "^processed|^stream|^batches"
done
