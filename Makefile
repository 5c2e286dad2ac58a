# optim_lab: every target creates/uses the virtualenv in $(VENV) and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-slow lint parity goldens bench results clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.parity: $(VENV)/.test
	$(PIP) install -e '.[parity]'
	touch $@

## The default demo: grokking slice -> results/grokking/{summary.md,curves.png}
demo: $(VENV)/.base
	$(PY) -m experiments.grokking_demo

## The default test suite (no torch, no network)
test: $(VENV)/.test
	$(PY) -m pytest -q

## Lint (ruff: pycodestyle, pyflakes, import order; config in pyproject.toml)
lint: $(VENV)/.test
	$(PY) -m ruff check optim_lab experiments tests benchmarks

## Long checks (the spec's few-minute CPU checks)
test-slow: $(VENV)/.test
	$(PY) -m pytest -q -m slow

## Live parity against the torch reference packages (torch==2.13.0 CPU)
parity: $(VENV)/.parity
	$(PY) -m pytest -q -m parity

## Regenerate tests/golden/*.npz from the pinned reference packages
goldens: $(VENV)/.parity
	$(PY) tests/golden/generate.py

## Benchmarks -> results/benchmarks.md
bench: $(VENV)/.base
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.optimizer_update
	$(PY) -m benchmarks.lm_step
	$(PY) -m benchmarks.sweep

## Every results/ table and plot
results: demo bench
	$(PY) -m experiments.grokking_demo --with_float64

clean:
	rm -rf $(VENV) runs
