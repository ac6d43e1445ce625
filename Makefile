# Every target builds its own environment from pyproject.toml when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-all reproduce reproduce-quick bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Fast test tier (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

## Every test, slow ones included.
test-all: $(STAMP)
	$(PY) -m pytest -q

## The main job.
reproduce: $(STAMP)
	$(VENV)/bin/molrg reproduce

reproduce-quick: $(STAMP)
	$(VENV)/bin/molrg reproduce --quick

## Speed benchmarks: each prints ratios against a baseline measured in the same run.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
