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
