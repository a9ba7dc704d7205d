#!/usr/bin/env bash
# Detector speed side by side: `pedvision bench` on the demo clip for each model (and
# input size), one round each in alternating order, ROUNDS times; prints the median
# inference-only and end-to-end fps and each one's ratio to the first entry.
# Usage: benches/models.sh [ROUNDS=3]   (BIN=path/to/pedvision to skip the release build)
# Entries: "MANIFEST[@SIZE][+TTA]" (TTA: `--tta none|flip`); override with
# MODELS="a.toml b.toml@512 a.toml+none ...".
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MODELS=${MODELS:-"models/nanodet-g.toml models/nanodet-g.toml+none models/yolox-nano.toml models/yolox-nano.toml@512 models/yolox-nano.toml@640"}
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=./target/release/pedvision
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "$ROUNDS"); do
  for entry in $MODELS; do
    plain=${entry%+*}
    tta=$([ "$entry" != "$plain" ] && echo "--tta ${entry##*+}" || true)
    model=${plain%@*}
    size=$([ "$plain" != "$model" ] && echo "--input-size ${plain#*@}" || true)
    # shellcheck disable=SC2086
    "$BIN" --log-level warn bench --model "$model" $size $tta --rounds 1 --warmup 2 \
      | sed -n 's/^median fps: inference only \([0-9.]*\), zero-cost detector [0-9.]*, end to end \([0-9.]*\).*/\1 \2/p' \
      >> "$work/$(echo "$entry" | tr '/@+' '___')"
  done
done
python3 - "$work" $MODELS <<'PY'
import statistics, sys, os
work, entries = sys.argv[1], sys.argv[2:]
rows = []
for e in entries:
    name = e.replace("/", "_").replace("@", "_").replace("+", "_")
    vals = [tuple(map(float, l.split())) for l in open(os.path.join(work, name))]
    rows.append((e, statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals), len(vals)))
base_inf, base_e2e = rows[0][1], rows[0][2]
print(f"{'model':<36} {'inference fps':>14} {'ratio':>6} {'end-to-end fps':>15} {'ratio':>6} rounds")
for e, inf, e2e, n in rows:
    print(f"{e:<36} {inf:>14.1f} {inf / base_inf:>6.2f} {e2e:>15.1f} {e2e / base_e2e:>6.2f} {n}")
PY
