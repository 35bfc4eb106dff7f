# The two commands a new user types: `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all deps build demo test lint unit

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace

demo: build
	@scripts/demo.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

# Every test, as CI runs them. Tests that need root or hardware say why they skip.
test: lint build
	CARGO=$(CARGO) scripts/cargo-test.sh --workspace --release --no-fail-fast
