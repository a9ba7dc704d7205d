#!/usr/bin/env bash
# The Python baseline (benches/python_baseline.py) in a pinned venv per provider.
#
# Usage: benches/python_baseline.sh cpu|openvino [ARGS...]
#   cpu       onnxruntime's CPU execution provider        (venv .venv-bench-cpu)
#   openvino  onnxruntime-openvino's OpenVINO EP on the CPU (venv .venv-bench-openvino)
# ARGS go to python_baseline.py, e.g.
#   benches/python_baseline.sh cpu --threads 2 --rounds 3
#   benches/python_baseline.sh openvino --precision bf16 --threads 2 --rounds 3
# Each venv is made on first use (needs PyPI); onnxruntime and onnxruntime-openvino
# both install the `onnxruntime` module, hence one venv each.
set -euo pipefail

usage() {
  sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//'
}

provider=${1:-}
case "$provider" in
  cpu) runtime="onnxruntime==1.31.1" ;;
  openvino) runtime="onnxruntime-openvino==1.24.1" ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    if [ -z "$provider" ]; then
      echo "python_baseline.sh: missing provider (cpu or openvino)" >&2
    else
      echo "python_baseline.sh: unknown provider '$provider' (expected cpu or openvino)" >&2
    fi
    usage >&2
    exit 2
    ;;
esac
shift

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-bench-$provider"
pins="$runtime numpy==2.4.6 opencv-python-headless==5.0.0.93"
# The stamp records the pins the venv was made with: a missing, half-made or
# differently pinned venv is (re)installed.
stamp="$venv/.pedvision-pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$pins" ]; then
  echo "python_baseline.sh: setting up $venv ($pins)" >&2
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # $pins is a list of pinned requirements
  "$venv/bin/pip" install -q --disable-pip-version-check $pins
  echo "$pins" >"$stamp"
fi

exec "$venv/bin/python" "$root/benches/python_baseline.py" --provider "$provider" "$@"
