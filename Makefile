# Quickstart on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AZURITE_DIR := tools/azurite
export SEI_HOME ?= $(CURDIR)/.sei
DEPS := pyproject.toml tests/fixtures/sei-transport-sqlite/pyproject.toml

.PHONY: install install-test floors azurite demo test bench bench-batch clean

# The core and the local server (what `make demo` needs).
$(VENV)/.installed: $(DEPS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[serve,test]' -e tests/fixtures/sei-transport-sqlite
	$(PY) -m pip check
	touch $@

# Everything the tests use, the Azure SDKs of the built-in Azure plugins included, resolved in one install.
$(VENV)/.installed-test: $(DEPS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[serve,test,azure]' -e tests/fixtures/sei-transport-sqlite
	$(PY) -m pip check
	touch $@ $(VENV)/.installed

# The lowest versions pyproject.toml allows (tests/floors.txt), for the tests that need no server or cloud SDK.
FLOORS_VENV ?= .venv-floors
FLOORS_PY := $(FLOORS_VENV)/bin/python
FLOORS_TESTS := tests/test_linear.py tests/test_model_files.py tests/test_packed_kernel.py tests/test_packed_accuracy.py \
	tests/test_adapter_inputs.py tests/test_key_pairs.py tests/test_keyring.py tests/test_config.py tests/test_plugins.py
$(FLOORS_VENV)/.installed: $(DEPS) tests/floors.txt
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_PY) -m pip install --quiet --upgrade pip
	$(FLOORS_PY) -m pip install --quiet -c tests/floors.txt -e '.[test]' -e tests/fixtures/sei-transport-sqlite
	$(FLOORS_PY) -m pip check
	touch $@

# Azurite, the Azure Storage emulator the azure-blob tests run against, at the versions of its lockfile.
$(AZURITE_DIR)/node_modules/.installed: $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	npm ci --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

azurite: $(AZURITE_DIR)/node_modules/.installed

floors: $(FLOORS_VENV)/.installed

demo: install
	$(PY) examples/demo.py

# SEI_NO_SKIPS=1: everything the suite needs is installed here (Azurite, Redis, the Azure SDKs,
# ../shared beside the clone), so any skip fails the run (tests/no_skips.py).
test: install-test azurite floors
	SEI_NO_SKIPS=1 $(PY) -m pytest
	SEI_NO_SKIPS=1 $(FLOORS_PY) -m pytest -p no:cacheprovider $(FLOORS_TESTS)

bench: install
	$(PY) -m bench.mnist

# A million rows through sei batch encrypt, score (1 and 2 Dask workers) and decrypt; 10,000 MNIST rows batch vs online.
bench-batch: install
	$(PY) -m bench.batch

clean:
	rm -rf $(VENV) $(FLOORS_VENV) .sei examples/models $(AZURITE_DIR)/node_modules
