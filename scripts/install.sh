#!/usr/bin/env bash
# Installs pedvision under ROOT (PREFIX with DESTDIR in front), the layout the
# binary searches at run time (src/resources.rs):
#   ROOT/bin/pedvision
#   ROOT/share/pedvision/{models,media,pipelines}/    manifests + graphs, demo clip, examples
#   ROOT/lib/pedvision/                               ONNX Runtime, CPU build (.ort/lib)
#   ROOT/lib/pedvision/openvino/                      ONNX Runtime with OpenVINO (.ort/openvino)
#   ROOT/share/man/man1/pedvision*.1                  one man page per subcommand
#   ROOT/share/{bash-completion,zsh,fish}/...         shell completions
#   ROOT/share/doc/pedvision/                         README and the bundled parts' licences
# Nothing outside ROOT is touched, and no path is compiled in: the tree can move.
# Usage: scripts/install.sh BIN ROOT      (make install / make deb call it)
set -euo pipefail
# Relative arguments are relative to where it was called from, not to the checkout.
BIN=$(realpath -m -- "${1:?usage: scripts/install.sh BIN ROOT}")
ROOT=$(realpath -m -- "${2:?usage: scripts/install.sh BIN ROOT}")
cd "$(dirname "$0")/.."
say() { printf 'install: %s\n' "$*" >&2; }

[ -x "$BIN" ] || { say "no executable at $BIN (build it first: cargo build --release)"; exit 1; }
for f in .ort/lib/libonnxruntime.so.1.31.1 .ort/lib/licenses/LICENSE; do
  [ -f "$f" ] || { say "missing $f: run scripts/setup.sh (make setup) first"; exit 1; }
done

install -D -m 0755 "$BIN" "$ROOT/bin/pedvision"

data="$ROOT/share/pedvision"
install -d "$data/models" "$data/media" "$data/pipelines"
for model in nanodet-g nanodet-g-int8 yolox-nano; do
  install -m 0644 "models/$model.toml" "models/$model.onnx" "$data/models/"
done
install -m 0644 models/README.md "$data/models/"
install -m 0644 media/vtest-200.avi media/README.md "$data/media/"
install -m 0644 pipelines/*.toml pipelines/README.md "$data/pipelines/"

# The libraries' real files only: the loader asks for the versioned names first.
lib="$ROOT/lib/pedvision"
install -d "$lib"
install -m 0644 .ort/lib/libonnxruntime.so.1.31.1 .ort/lib/libonnxruntime_providers_shared.so "$lib/"
doc="$ROOT/share/doc/pedvision"
install -d "$doc"
install -m 0644 .ort/lib/licenses/LICENSE "$doc/onnxruntime.LICENSE"
install -m 0644 .ort/lib/licenses/ThirdPartyNotices.txt "$doc/onnxruntime.ThirdPartyNotices.txt"
if [ -f .ort/openvino/libonnxruntime.so.1.24.1 ] && [ -f .ort/openvino/licenses/LICENSE ]; then
  install -d "$lib/openvino"
  find .ort/openvino -maxdepth 1 -type f -name '*.so*' -exec install -m 0644 {} "$lib/openvino/" \;
  install -m 0644 .ort/openvino/licenses/ThirdPartyNotices.txt \
    "$doc/onnxruntime-openvino.ThirdPartyNotices.txt"
else
  say "the OpenVINO build is not in .ort/openvino; installing the CPU build only"
fi
install -m 0644 README.md "$doc/README.md"
install -m 0644 models/README.md "$doc/models.README.md"
install -m 0644 packaging/copyright "$doc/LICENSES"

# Man pages and completions come from the binary's own clap definitions.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$BIN" manuals --out "$gen" >/dev/null
install -d "$ROOT/share/man/man1"
gzip -9n "$gen"/man1/*.1
install -m 0644 "$gen"/man1/*.1.gz "$ROOT/share/man/man1/"
install -D -m 0644 "$gen/completions/pedvision.bash" "$ROOT/share/bash-completion/completions/pedvision"
install -D -m 0644 "$gen/completions/_pedvision" "$ROOT/share/zsh/vendor-completions/_pedvision"
install -D -m 0644 "$gen/completions/pedvision.fish" "$ROOT/share/fish/vendor_completions.d/pedvision.fish"
say "installed under $ROOT"
