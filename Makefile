# dagrun — developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
EXAMPLE ?= pipelines.images
BENCH_ARGS ?=

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dagrun run $(EXAMPLE)

test: $(STAMP)
	$(PY) -m pytest -q

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m tests.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dagrun tests pipelines

clean:
	rm -rf $(VENV) .dagrun .pytest_cache .ruff_cache
