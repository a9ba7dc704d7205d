#!/usr/bin/env bash
# The shipping checks `make test` runs after the Rust tests: the tree of
# `make install` moved to another prefix still runs on its own resources; the Debian
# package builds (cargo-deb), installs with dpkg -i, runs /usr/bin/pedvision from
# another working directory with HOME unset, passes `systemd-analyze verify`, and is
# removed leaving nothing but its configuration. The dpkg steps need root (CI is)
# and a machine without pedvision installed (a real install, its user and its
# /var/lib/pedvision are never touched); elsewhere they are reported as skipped.
# Ends with "package: N passed, N failed, N skipped".
# Uses a dev build (no fault injection) to stay quick; `make deb` builds a release.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT_DIR=$PWD
passed=0
failed=0
skipped=0
work=$(mktemp -d)
installed_here=0
cleanup() {
  # Only the package this script installed is removed.
  if ((installed_here)) && dpkg-query -W pedvision >/dev/null 2>&1; then
    dpkg --purge pedvision >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

check() { # check NAME COMMAND...: runs COMMAND, counts and reports the outcome
  local name=$1
  shift
  if "$@" >"$work/last.log" 2>&1; then
    passed=$((passed + 1))
    echo "package: ok      $name"
  else
    failed=$((failed + 1))
    echo "package: FAILED  $name"
    sed 's/^/    /' "$work/last.log" | tail -40
  fi
}

# A run of BIN with no arguments (the demo clip into ./out) in a fresh folder, with
# HOME unset and nothing of the checkout on PATH; the outputs must be complete.
runs_the_demo_elsewhere() {
  local bin=$1 dir
  dir=$(mktemp -d -p "$work")
  (cd "$dir" && env -u HOME -u PEDVISION_MODEL -u PEDVISION_DATA_DIR -u ORT_DYLIB_PATH \
    PATH=/usr/bin:/bin "$bin" run --duration 4) || return 1
  [ -s "$dir/out/vtest-200.mp4" ] && [ -s "$dir/out/vtest-200.jsonl" ] || { ls -R "$dir"; return 1; }
  frames=$(wc -l <"$dir/out/vtest-200.jsonl")
  [ "$frames" -gt 5 ] || { echo "only $frames metadata lines"; return 1; }
  ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
    -of csv=p=0 "$dir/out/vtest-200.mp4" | grep -qx "$frames" || { echo "MP4 frames != $frames"; return 1; }
  ! ls "$dir"/out/*incomplete* 2>/dev/null
}

# doctor names the resources' places; each line asked for must come from WHERE.
found_beside() {
  local bin=$1 where=$2
  out=$(cd "$work" && env -u HOME PATH=/usr/bin:/bin "$bin" doctor --device cpu 2>&1)
  echo "$out"
  for what in "model manifest" "demo clip" "pipeline files" "ONNX Runtime CPU build"; do
    echo "$out" | grep -E "^ok +$what" | grep -qF "$where" || { echo "-> $what not in $where"; return 1; }
  done
}

echo "package: building a dev binary without test features"
cargo build --locked -q || exit 1
BIN=$ROOT_DIR/target/debug/pedvision

# 1. make install's tree, moved after installing.
scripts/install.sh "$BIN" "$work/a/opt/pv" 2>"$work/install.log" || { cat "$work/install.log"; exit 1; }
mv "$work/a" "$work/b"
check "a moved install tree finds its own model, clip, pipelines and ONNX Runtime" \
  found_beside "$work/b/opt/pv/bin/pedvision" "$work/b/opt/pv/"
check "a moved install tree runs the demo from another folder with HOME unset" \
  runs_the_demo_elsewhere "$work/b/opt/pv/bin/pedvision"
check "man pages for every subcommand, and completions" \
  bash -c "ls '$work/b/opt/pv/share/man/man1/pedvision-run.1.gz' '$work/b/opt/pv/share/man/man1/pedvision-fleet-cameras-add.1.gz' \
    '$work/b/opt/pv/share/bash-completion/completions/pedvision' && zcat '$work/b/opt/pv/share/man/man1/pedvision-run.1.gz' | grep -q 'input'"

# 2. The Debian package.
rm -rf target/stage
scripts/install.sh "$BIN" target/stage/usr 2>>"$work/install.log" || exit 1
deb=target/debian/pedvision-test.deb
check "cargo deb builds the package" \
  cargo deb --no-build --locked --profile dev --strip --fast --output "$deb"
contents=$(dpkg-deb -c "$deb" 2>/dev/null | awk '{print $6}')
has() { for f in "$@"; do grep -qx "\./$f" <<<"$contents" || { echo "missing $f"; return 1; }; done; }
check "the package holds the binary, models, libraries, unit, licences and config" \
  has usr/bin/pedvision usr/share/pedvision/models/nanodet-g.toml usr/share/pedvision/models/nanodet-g.onnx \
    usr/share/pedvision/models/yolox-nano.onnx usr/share/pedvision/media/vtest-200.avi \
    usr/lib/pedvision/libonnxruntime.so.1.31.1 usr/lib/systemd/system/pedvision@.service \
    usr/share/doc/pedvision/LICENSES usr/share/doc/pedvision/onnxruntime.LICENSE \
    usr/share/doc/pedvision/models.README.md etc/pedvision/example.toml
check "the package depends on GStreamer's plugins and libraries" \
  bash -c "dpkg-deb -f '$deb' Depends | tee /dev/stderr | grep -q gstreamer1.0-plugins-good && dpkg-deb -f '$deb' Depends | grep -q libgstreamer1.0-0"

# Installed, or removed with its configuration kept: someone's, not ours to purge.
known=$(dpkg-query -W -f='${db:Status-Status}' pedvision 2>/dev/null)
if [ "$(id -u)" -ne 0 ] || { [ -n "$known" ] && [ "$known" != not-installed ]; }; then
  skipped=$((skipped + 9))
  echo "package: skipped dpkg -i, the installed binary, systemd-analyze, dpkg -r and --purge" \
    "(they need root, and no pedvision installed on this machine)"
else
  installed_here=1
  check "dpkg -i installs it" dpkg -i "$deb"
  check "/usr/bin/pedvision finds the packaged resources" found_beside /usr/bin/pedvision /usr/
  check "/usr/bin/pedvision runs the demo from another folder with HOME unset" \
    runs_the_demo_elsewhere /usr/bin/pedvision
  check "the service user exists" getent passwd pedvision
  # As if installed without its GStreamer plugins (dpkg -i --force-depends): doctor
  # names what is missing and the apt-get line that installs it, and exits 1.
  no_plugins() {
    local empty out
    empty=$(mktemp -d -p "$work")
    out=$(env GST_REGISTRY_1_0="$empty/registry.bin" GST_PLUGIN_SYSTEM_PATH_1_0="$empty" \
      GST_PLUGIN_PATH_1_0="$empty" /usr/bin/pedvision doctor --device cpu 2>&1) && return 1
    echo "$out"
    echo "$out" | grep -q "^MISSING element x264enc" &&
      echo "$out" | grep -q "^install what is missing with: apt-get install .*gstreamer1.0-plugins-ugly"
  }
  check "doctor of the installed binary names missing plugins and the apt-get line" no_plugins
  check "the unit passes systemd-analyze verify" \
    bash -c "out=\$(systemd-analyze verify pedvision@example.service 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
  files=$(dpkg-query -L pedvision | while read -r f; do [ -f "$f" ] && echo "$f"; done)
  check "dpkg -r removes it" dpkg -r pedvision
  left() {
    local f bad=0
    for f in $files; do
      case $f in /etc/*) [ -f "$f" ] || { echo "configuration $f removed"; bad=1; } ;;
                 *) [ -e "$f" ] && { echo "left behind: $f"; bad=1; } ;; esac
    done
    dpkg-query -W -f='${Status}\n' pedvision | grep -q "config-files" || bad=1
    return $bad
  }
  check "nothing is left but the configuration" left
  check "dpkg --purge removes the configuration and the user" \
    bash -c "dpkg --purge pedvision && [ ! -e /etc/pedvision/example.toml ] && ! getent passwd pedvision"
fi
echo "package: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
