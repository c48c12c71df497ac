# clacks-agent: `make run` runs the agent, `make test` runs the test suite.
# Both create the virtualenv in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= etc/clacks
TRIAL_JOBS ?= 2

.PHONY: venv run test lint check clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	# compat: twistd only scans real paths for drop-ins, so the default
	# (import-hook) editable mode would hide twisted/plugins/clacks_agent.py.
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/clacks-agent -c $(CONFIG) $(ARGS)

test: venv
	$(BIN)/python -m twisted.trial --jobs=$(TRIAL_JOBS) $(or $(TESTS),tests)

lint: venv
	$(BIN)/ruff check clacks tests twisted examples
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info

# Benchmarks (bench/README.md): the agent against raw txAMQP, aio-pika,
# nameko and a bare twisted.web resource on the local broker.  `make bench`
# prints the table and writes bench/results/latest.json and PNG plots;
# `make bench-smoke` is the seconds-long CI run of the same code.
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: bench bench-smoke bench-profile

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(ARGS)

bench-smoke: $(BENCH_STAMP)
	$(BIN)/python -m bench --smoke $(ARGS)

bench-profile: $(BENCH_STAMP)
	$(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python -m bench.profile $(ARGS)

# The reliability suite (tests/reliability, docs/reliability.md): real
# clacks-agent processes and private brokers under faults, SIGTERM during
# load, fuzzing, hostile callers; ends with the table of its figures.
# Needs RabbitMQ on 127.0.0.1:5672 (rabbitmq-server for the private nodes);
# about 3 minutes.  CLACKS_FUZZ_SECONDS (default 30) sets the fuzzing time.
RELIABILITY_RESULTS ?= build/reliability/results.jsonl

.PHONY: reliability

reliability: venv
	rm -f $(RELIABILITY_RESULTS)
	CLACKS_RELIABILITY=1 CLACKS_RELIABILITY_RESULTS=$(abspath $(RELIABILITY_RESULTS)) \
		$(BIN)/python -m twisted.trial --temp-directory=_trial_temp.reliability \
		$(or $(TESTS),tests.reliability); \
	status=$$?; \
	$(BIN)/python -m tests.reliability.report $(RELIABILITY_RESULTS) || status=1; \
	exit $$status
