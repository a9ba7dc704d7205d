#!/usr/bin/env bash
# Regenerate tests/golden/*.jsonl with the independent Python reference
# (tests/reference/nanodet_reference.py and yolox_reference.py: OpenCV decode, numpy,
# Python onnxruntime).
# Needs python3 with venv and access to PyPI. Never generate goldens with pedvision.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${REFERENCE_VENV:-$root/.venv-reference}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 numpy==2.4.6 opencv-python-headless==5.0.0.93
fi
"$venv/bin/python" "$root/tests/reference/nanodet_reference.py" \
  "$root/models/nanodet-g.onnx" "$root/media/vtest-40.avi" "$root/tests/golden/vtest-40.all.jsonl" \
  --manifest "$root/models/nanodet-g.toml" --conf 0.35 --iou 0.5
"$venv/bin/python" "$root/tests/reference/yolox_reference.py" \
  "$root/models/yolox-nano.onnx" "$root/media/vtest-40.avi" "$root/tests/golden/vtest-40.yolox.all.jsonl" \
  --manifest "$root/models/yolox-nano.toml" --conf 0.35 --iou 0.5
echo "wrote tests/golden/vtest-40.all.jsonl and vtest-40.yolox.all.jsonl"
