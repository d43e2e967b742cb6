# wirestream — the two commands of the README, plus the developer targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Separate stamps: `make run` installs the runtime only; the test stack (brokers, linters)
# and the test-only decoder plugin come with the developer targets.
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
PCAP ?= fixtures/pcaps/own_nginx_keepalive_multi.pcap

.PHONY: run test kafka lint format bench fuzz clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(TEST_STAMP): $(RUNTIME_STAMP) tests/plugins/pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]' -e tests/plugins
	touch $(TEST_STAMP)

## make run: install, then replay a bundled capture and print its decoded records (no broker needed)
run: $(RUNTIME_STAMP)
	$(BIN)/wirestream replay $(PCAP)

## make kafka: fetch Apache Kafka's jars with Maven into ~/.cache/wirestream (once; needs a JDK >= 17 and mvn)
kafka: $(TEST_STAMP)
	$(BIN)/python -m devkafka fetch

## make test: install the test dependencies and run the whole suite (starts its own Apache Kafka)
test: $(TEST_STAMP) kafka
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make bench: long benchmarks (needs tshark/tcpflow for the comparisons; see bench/README.md):
## replay vs tshark/tcpflow + scaling (writes docs/benchmarks.md and .png), floods, Kafka mode
bench: $(TEST_STAMP) kafka
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/floods.py
	$(BIN)/python bench/kafka_bench.py

## make fuzz: long fuzzing runs (hypothesis with many examples; atheris targets: see fuzz/)
fuzz: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[fuzz]'
	WIRESTREAM_FUZZ_EXAMPLES=5000 $(BIN)/python fuzz/run_fuzz.py hypothesis

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
