#!/usr/bin/env bash
# Tracking quality against a Python ByteTrack (see benches/mot.py).
# Usage: benches/mot.sh [SEEDS]   (default 5; needs PyPI for the scratch venv)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-5}
venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "motmetrics==1.4.0" "supervision==0.25.1"
cargo build --release --locked
"$venv/bin/python" benches/mot.py --binary target/release/pedvision --seeds "$seeds"
