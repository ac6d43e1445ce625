# Every target builds its own environment from pyproject.toml when it is missing, at the exact
# versions of constraints.txt (the ones the README's numbers were measured with).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONSTRAINTS := constraints.txt
DOCS_STAMP  := $(VENV)/.installed-docs

.PHONY: test test-all reproduce reproduce-quick bench docs upgrade-env clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

## Fast test tier (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

## Every test, slow ones included (the docs build among them: it needs the docs extra).
test-all: $(DOCS_STAMP)
	$(PY) -m pytest -q

## The main job.
reproduce: $(STAMP)
	$(VENV)/bin/molrg reproduce --jobs 2

reproduce-quick: $(STAMP)
	$(VENV)/bin/molrg reproduce --quick --jobs 2

## Speed benchmarks: each prints ratios against a baseline measured in the same run.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[docs]'
	touch $(DOCS_STAMP)

## The documentation site (docs/_build/html): theory, tutorials (executed), catalogue, API.
## Strict: a warning or a tutorial error fails the build.
docs: $(DOCS_STAMP)
	$(PY) -m sphinx -W --keep-going -E -q -b html docs docs/_build/html

## Re-resolve every dependency to its newest allowed version in a scratch venv and rewrite
## constraints.txt; the next make target reinstalls .venv from it. Rerun the tests and
## `make reproduce`, then commit constraints.txt with the README's new numbers.
upgrade-env:
	rm -rf .venv-upgrade
	$(PYTHON) -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install --quiet --upgrade pip
	.venv-upgrade/bin/python -m pip install --quiet -e '.[test,docs]'
	{ echo "# Exact versions of every dependency of molrg (core, test and docs extras): make installs"; \
	  echo "# .venv with pip install -c constraints.txt. Written by make upgrade-env on $$(date -u +%Y-%m-%d)"; \
	  echo "# with $$(.venv-upgrade/bin/python --version) on $$(uname -sm)."; \
	  .venv-upgrade/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-upgrade

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build docs/_generated
