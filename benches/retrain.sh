#!/usr/bin/env bash
# Retrain benchmark (issue 4's goal): feature extraction images/s, head training
# time for N images x 30 epochs, the whole retrain's wall time and peak memory.
# Usage: benches/retrain.sh [IMAGES=200] [EPOCHS=30] [RETRAIN OPTIONS...]
#   (builds a release binary; BIN=path/to/pedvision skips that, e.g. to compare two
#   builds back to back), e.g. benches/retrain.sh 200 30 --train-layers head
# Every epoch runs (--patience above the epoch count); with --val-split 0 all N
# images train and validation is on the same images, which counts its cost too.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-200}
EPOCHS=${2:-30}
shift $(( $# < 2 ? $# : 2 ))
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=./target/release/pedvision
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$BIN synth --out "$work/data" --images "$IMAGES" --sizes 48..144 >/dev/null
start=$(date +%s.%N)
/usr/bin/time -f "peak RSS %M KiB" $BIN --log-level warn retrain --data "$work/data" --out "$work/model" \
  --epochs "$EPOCHS" --patience $((EPOCHS + 1)) --val-split 0 "$@" 2>"$work/time.txt"
end=$(date +%s.%N)
cat "$work/time.txt"
python3 - "$work/model/report.json" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"images {r['train_images']}, epochs run {r['epochs_run']}")
print(f"feature extraction {r['feature_seconds']:.1f} s = {r['feature_images_per_second']:.1f} images/s")
print(f"head training {r['train_seconds']:.1f} s ({r['train_seconds'] / max(r['epochs_run'], 1):.2f} s/epoch)")
print(f"whole retrain (process wall time) {wall:.1f} s; peak memory {r['peak_memory_mib']:.0f} MiB")
PY
