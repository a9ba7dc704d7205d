#!/usr/bin/env bash
# Make models/nanodet-g-int8.onnx from models/nanodet-g.onnx with ONNX Runtime's static
# quantization (QDQ, per-channel QInt8 weights, QUInt8 activations, MinMax calibration
# on 40 frames of media/vtest-200.avi preprocessed as models/nanodet-g.toml says; the
# head Convs stay float; the input fixed at the manifest's 512×384), then
# measure its detection parity and speed against the fp32 model (tools/parity.py).
# Fixed frames, fixed settings, pinned versions: the output is the same file, byte for
# byte, from run to run on the same machine (models/README.md gives its sha256).
#
# Usage: models/quantize.sh [OUT.onnx]   (default: models/nanodet-g-int8.onnx)
# Needs: python3 with venv; downloads only from PyPI (into .venv-quantize/, git-ignored).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$here/nanodet-g-int8.onnx}
venv=${QUANTIZE_VENV:-$root/.venv-quantize}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 onnx==1.23.2 numpy==2.4.6 opencv-python-headless==5.0.0.93
fi

"$venv/bin/python" "$here/tools/quantize.py" "$here/nanodet-g.onnx" "$root/media/vtest-200.avi" "$out" \
  --method minmax --activations quint8 --exclude heads
sha256sum "$out"
stat -c '%s bytes' "$out"
"$venv/bin/python" "$here/tools/parity.py" "$here/nanodet-g.onnx" "$out" --video "$root/media/vtest-200.avi"
