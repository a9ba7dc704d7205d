# The two commands of the README: `make run` (the demo) and `make test` (all tests).
# Each does the set-up it needs first (scripts/setup.sh is idempotent).

CARGO ?= cargo
RUN_ARGS ?=

.PHONY: setup run test bench golden lint clean

setup:
	scripts/setup.sh

## Process the bundled demo clip into out/ (annotated MP4 + JSON Lines).
run: setup
	$(CARGO) build --release --locked
	./target/release/pedvision run $(RUN_ARGS)

## Unit and integration tests (real GStreamer, real ONNX Runtime, real media).
## fault-injection lets the tests make a stage fail or panic (PEDVISION_FAULT).
test: setup
	$(CARGO) test --locked --features fault-injection

## End-to-end vs inference-only fps on the demo clip (release build).
bench: setup
	$(CARGO) build --release --locked
	./target/release/pedvision bench $(RUN_ARGS)

## Regenerate tests/golden/ with the independent Python reference (needs PyPI).
golden:
	tests/reference/make_golden.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked --features fault-injection -- -D warnings

clean:
	rm -rf out target .ort
