# The two commands of the README: `make run` (the demo) and `make test` (all tests).
# Each does the set-up it needs first (scripts/setup.sh is idempotent).

CARGO ?= cargo
RUN_ARGS ?=

.PHONY: setup run test bench golden lint clean install deb release

setup:
	scripts/setup.sh

## Process the bundled demo clip into out/ (annotated MP4 + JSON Lines).
run: setup
	$(CARGO) build --release --locked
	./target/release/pedvision run $(RUN_ARGS)

## Unit and integration tests (real GStreamer, real ONNX Runtime, real media).
## fault-injection lets the tests make a stage fail or panic (PEDVISION_FAULT).
## Then the shipping checks (tests/package/check.sh): make install's tree moved,
## the Debian package built, installed, run and removed (dpkg steps as root).
test: setup
	scripts/setup.sh --packaging
	$(CARGO) test --locked --features fault-injection
	tests/package/check.sh

## End-to-end vs inference-only fps on the demo clip (release build).
bench: setup
	$(CARGO) build --release --locked
	./target/release/pedvision bench $(RUN_ARGS)

## Regenerate tests/golden/ with the independent Python reference (needs PyPI).
golden:
	tests/reference/make_golden.sh

## Install under PREFIX (DESTDIR in front, for staging): the binary, models, demo
## clip, example pipelines, ONNX Runtime, man pages and completions. The tree can
## be moved: nothing in it names its own location. BIN: another build to install.
PREFIX ?= /usr/local
DESTDIR ?=
BIN ?= target/release/pedvision

release:
	$(CARGO) build --release --locked

install: $(if $(filter target/release/pedvision,$(BIN)),release)
	scripts/install.sh "$(BIN)" "$(DESTDIR)$(PREFIX)"

## The Debian package (cargo-deb, installed here by scripts/setup.sh --packaging):
## target/debian/pedvision_VERSION_amd64.deb. DEB_FLAGS: e.g. --fast.
DEB_FLAGS ?=
deb: release
	scripts/setup.sh --packaging
	rm -rf target/stage
	scripts/install.sh target/release/pedvision target/stage/usr
	$(CARGO) deb --no-build --locked --strip $(DEB_FLAGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked --features fault-injection -- -D warnings

clean:
	rm -rf out target .ort
