# Vigil's front end. `make test` is what CI runs (.ci/run calls it).

CARGO ?= cargo
EVENTS ?= 3000000

.PHONY: all build test lint fmt fmt-check fuzz clippy rules-test bench bench-rules bench-pipeline quickstart services-up services-down services-status clean

all: build

build:
	$(CARGO) build --workspace --all-targets

## test: formatting, lints, dev services, then every test (unit, rule cases, engine
## properties, integration tests against NATS and Postgres, end to end)
test: fmt-check clippy services-up
	$(CARGO) test --workspace

## services-up: install and start NATS (JetStream) and PostgreSQL on loopback, data in var/
services-up:
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

services-status:
	bash scripts/services.sh status

## lint: formatting and clippy, warnings are errors
lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all
	$(CARGO) run -q -p vigil-cli -- fmt rules

fmt-check:
	$(CARGO) fmt --all -- --check

## fuzz: the parser's fuzz target for FUZZ_SECONDS (default 600); needs `cargo install cargo-fuzz`
FUZZ_SECONDS ?= 600
fuzz:
	mkdir -p dsl/fuzz/corpus/parse
	cd dsl && $(CARGO) fuzz run parse -s none fuzz/corpus/parse tests/corpus/valid -- -max_total_time=$(FUZZ_SECONDS)

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## rules-test: the rule test cases beside every shipped rule
rules-test:
	$(CARGO) run -q -p vigil-cli -- test rules cli/tests/semantics

## bench: engine vs the hand-written baseline at 1 and 2 workers (see docs/benchmarks.md)
bench:
	bash benches/run.sh --events $(EVENTS)

## bench-rules: 1 rule vs 51, 61 and 66 (single-event, aggregations, sequences), see docs/benchmarks.md
bench-rules:
	bash benches/rule_mix.sh

## bench-pipeline: the service path (RAW -> alerts, latency, HTTP ingest) beside the JetStream wall
bench-pipeline:
	bash benches/pipeline.sh

## quickstart: the README's first command
quickstart:
	$(CARGO) run -q -p vigil-cli --release -- run --rules rules --input examples/auth.jsonl

clean: services-down
	$(CARGO) clean
	rm -rf var
