# Quickstart on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export SEI_HOME ?= $(CURDIR)/.sei

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml tests/fixtures/sei-transport-sqlite/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[serve,test]' -e tests/fixtures/sei-transport-sqlite
	$(PY) -m pip check
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m bench.mnist

clean:
	rm -rf $(VENV) .sei examples/models
