#!/usr/bin/env bash
# Person accuracy on real footage: `pedvision eval` on 48 hand-checked frames of
# OpenCV's vtest.avi (294 people, 11 ignore regions; benches/real_footage/README.md
# says how they were labelled), for both detectors, both resize modes and several
# input sizes, with and without test-time flip. Prints one table: person AP@0.5,
# AP@[.5:.95] and MR⁻² per entry, on all 48 frames and on each half (frames 12+33k
# and 28+33k), so that a difference can be checked against the spread between
# halves; and AP@0.5 and MR⁻² on the 12 frames that lie in the demo clip (the first
# 200), the hardest stretch of the video.
#
# Usage: benches/real_footage.sh   (BIN=path/to/pedvision to skip the release build;
#        VTEST=path/to/vtest.avi to skip the download; ENTRIES="..." to choose rows)
# An entry is MANIFEST[:RESIZE][@WxH][+TTA]: the manifest as it is, scored with
# `eval --resize RESIZE` and `--tta TTA`, and through a copy with the input size
# changed for @WxH.
# Needs: ffmpeg, apt-get (downloads Debian's opencv-doc package for vtest.avi).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ENTRIES=${ENTRIES:-"models/nanodet-g.toml models/nanodet-g.toml+none \
models/nanodet-g.toml:stretch@416x416+none models/nanodet-g.toml:letterbox@416x416+none \
models/nanodet-g.toml@512x512+none models/nanodet-g.toml@576x448+none \
models/nanodet-g.toml@576x448 models/nanodet-g.toml@640x480+none \
models/nanodet-g.toml@640x480 models/nanodet-g.toml:stretch@512x512+none \
models/yolox-nano.toml models/yolox-nano.toml+flip models/yolox-nano.toml@512x384 \
models/yolox-nano.toml@640x640"}
VTEST_SHA256=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=$root/target/release/pedvision
fi
work=$(mktemp -d)
copies=()
trap 'rm -rf "$work" "${copies[@]}"' EXIT

if [ -z "${VTEST:-}" ]; then
  (cd "$work" && apt-get download -q opencv-doc >/dev/null 2>&1) || {
    echo "real_footage.sh: could not download Debian's opencv-doc (set VTEST=path/to/vtest.avi)" >&2
    exit 1
  }
  dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb |
    tar -x -C "$work" ./usr/share/doc/opencv-doc/examples/data/vtest.avi
  VTEST=$work/usr/share/doc/opencv-doc/examples/data/vtest.avi
fi
echo "$VTEST_SHA256  $VTEST" | sha256sum --check --quiet

# The labelled frames, by frame number (counted from 0 in decode order).
for half in a b demo; do
  mkdir -p "$work/$half/images" "$work/$half/labels"
done
for label in benches/real_footage/labels/vt*.txt; do
  name=$(basename "$label" .txt)
  n=$((10#${name#vt}))
  half=$([ $(((n - 12) % 33)) -eq 0 ] && echo a || echo b)
  ffmpeg -v error -y -i "$VTEST" -vf "select=eq(n\,$n)" -vsync 0 -frames:v 1 "$work/$half/images/$name.png"
  cp "$label" "$work/$half/labels/"
  if [ "$n" -lt 200 ]; then
    cp "$work/$half/images/$name.png" "$work/demo/images/"
    cp "$label" "$work/demo/labels/"
  fi
done
mkdir -p "$work/all/images" "$work/all/labels"
cp "$work"/[ab]/images/* "$work/all/images/"
cp "$work"/[ab]/labels/* "$work/all/labels/"

# Prints "AP50 AP MR2" for person: score MANIFEST DATA [eval flags].
score() {
  "$BIN" --log-level warn eval --model "$1" --data "$2" "${@:3}" | awk '$1 == "person" {print $4, $5, $6}'
}
printf '%-44s %24s %14s %14s %20s\n' "entry" "all 48: AP@.5 AP MR-2" "half a: AP@.5" "half b: AP@.5" "demo 12: AP@.5 MR-2"
i=0
for entry in $ENTRIES; do
  i=$((i + 1))
  base=${entry%%[:@+]*}
  rest=${entry#"$base"}
  tta=$(echo "$rest" | sed -n 's/.*+\([a-z]*\)$/\1/p')
  rest=${rest%+*}
  resize=$(echo "$rest" | sed -n 's/^:\([a-z]*\).*/\1/p')
  size=$(echo "$rest" | sed -n 's/.*@\([0-9]*x[0-9]*\)$/\1/p')
  flags=()
  [ -z "$resize" ] || flags+=(--resize "$resize")
  [ -z "$tta" ] || flags+=(--tta "$tta")
  manifest=$root/$base
  if [ -n "$size" ]; then
    # --input-size is square only: a copy with the size changed, beside the
    # original so that its relative `onnx` path still holds.
    manifest=$(dirname "$root/$base")/.real-footage-$$-$i.toml
    copies+=("$manifest")
    awk -v size="$size" '
      BEGIN { split(size, wh, "x") }
      /^\[/ { section = $0 }
      section == "[input]" && /^width *=/ { print "width = " wh[1]; next }
      section == "[input]" && /^height *=/ { print "height = " wh[2]; next }
      { print }
    ' "$root/$base" >"$manifest"
  fi
  all=$(score "$manifest" "$work/all" "${flags[@]}")
  a=$(score "$manifest" "$work/a" "${flags[@]}" | cut -d' ' -f1)
  b=$(score "$manifest" "$work/b" "${flags[@]}" | cut -d' ' -f1)
  demo=$(score "$manifest" "$work/demo" "${flags[@]}" | cut -d' ' -f1,3)
  printf '%-44s %24s %14s %14s %20s\n' "$entry" "$all" "$a" "$b" "$demo"
done
