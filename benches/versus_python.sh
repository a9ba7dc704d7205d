#!/usr/bin/env bash
# pedvision against the usual Python loop given the same fast path, side by side:
# each round runs `pedvision bench --rounds 1` (default device and precision: auto)
# and benches/python_baseline.py with ONNX Runtime's OpenVINO provider (bf16 where
# the CPU has AMX or AVX-512 BF16, else fp32, as pedvision's auto does), in
# alternating order, on the same video, and prints both end-to-end fps and their
# ratio; the median ratio at the end. pedvision runs with `--tta none`: the usual
# loop runs each frame once, so both do the same work.
#
# Usage: benches/versus_python.sh [ROUNDS] [VIDEO]   (default 5, the demo clip;
#        needs a release build and, on first use, PyPI for the Python venv)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
video=${2:-media/vtest-200.avi}
pv=target/release/pedvision
[ -x "$pv" ] || { echo "versus_python.sh: build first: cargo build --release --locked" >&2; exit 1; }
precision=fp32
grep -qwE 'amx_bf16|avx512_bf16' /proc/cpuinfo && precision=bf16
threads=$(nproc)

ours() {
  "$pv" bench --rounds 1 --tta none --threads "$threads" --input "$video" --result-line 2>/dev/null \
    | sed -n 's/^bench-result: //p' | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["end_to_end_fps"], r["device"]+":"+r["precision"])'
}
theirs() {
  benches/python_baseline.sh openvino --precision "$precision" --threads "$threads" "$video" 2>/dev/null \
    | sed -n 's/^python-baseline-json: //p' | python3 -c 'import json,sys; print(json.load(sys.stdin)["e2e_fps"])'
}

ratios=()
for r in $(seq 1 "$rounds"); do
  if ((r % 2)); then a=$(ours); b=$(theirs); else b=$(theirs); a=$(ours); fi
  read -r fps config <<<"$a"
  ratio=$(python3 -c "print(f'{$fps / $b:.3f}')")
  ratios+=("$ratio")
  printf 'round %d: pedvision (%s) %.1f fps, Python loop (OpenVINO %s) %.1f fps, ratio %s\n' \
    "$r" "$config" "$fps" "$precision" "$b" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | python3 -c '
import sys; v=[float(x) for x in sys.stdin]; print(f"ratio pedvision / Python loop, end to end: median {v[len(v)//2]:.3f} (min {v[0]:.3f}, max {v[-1]:.3f}) over {len(v)} rounds")'
