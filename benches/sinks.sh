#!/usr/bin/env bash
# Cost of the operational sinks: end-to-end fps with and without Prometheus metrics
# + the MQTT sink (to a local mosquitto), alternated in one process.
# Usage: benches/sinks.sh [ROUNDS=5] [extra bench flags]   (builds a release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
shift || true
cargo build --release --locked -q
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chmod 777 "$work"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
./target/release/pedvision --log-level warn bench --rounds "$ROUNDS" --with-sinks "mqtt://127.0.0.1:$port" "$@"
