# dagrun — developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
EXAMPLE ?= pipelines.images
BENCH_ARGS ?=

.PHONY: install run test test-fast test-313 bench lint clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,dask,ray]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dagrun run $(EXAMPLE)

# The whole suite on Python 3.11 (every start method), then once more on Python 3.13
# under its default start method, where a 3.13 interpreter is installed.
PY313 ?= $(shell for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 \
                  $$(command -v python3.13); do \
                  "$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed-dev

# The report's browser test drives Debian's chromium through Playwright (Playwright's own
# browser download is not used). Where it cannot be installed that one test is skipped.
browser:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium) >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the report's browser test will be skipped"

test: $(STAMP) browser
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-313

# The tests that start no process (no worker pool, no dagrun subprocess, no Dask or Ray):
# under a minute. A test here that starts one fails, asking for @pytest.mark.slow.
test-fast: $(STAMP)
	DAGRUN_TEST_FAST=1 $(PY) -m pytest -q -m "not slow"

$(STAMP313): pyproject.toml
	test -x $(VENV313)/bin/python || $(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install -q --upgrade pip
	$(VENV313)/bin/python -m pip install -q -e '.[dev,dask]'
	touch $@

test-313:
	@if [ -z "$(PY313)" ]; then echo "Python 3.13 is not installed here: the 3.13 pass is skipped"; \
	else $(MAKE) --no-print-directory $(STAMP313) && \
	DAGRUN_TEST_DEFAULT_METHOD=1 $(VENV313)/bin/python -m pytest -q; fi

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m tests.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dagrun tests pipelines
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(VENV313) .dagrun .pytest_cache .ruff_cache .mypy_cache
