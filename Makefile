# Quickstart on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AZURITE_DIR := tools/azurite
export SEI_HOME ?= $(CURDIR)/.sei
DEPS := pyproject.toml tests/fixtures/sei-transport-sqlite/pyproject.toml

.PHONY: install install-test floors concrete azurite js-client chromium page demo test test-main test-main-split test-floors test-concrete bench bench-batch bench-browser bench-concrete bench-trees bench-trees-batch example-concrete dist lint clean

# --no-compile: pip does not byte-compile every module it installs (three quarters of its CPU time for
# scikit-learn and pandas into a fresh venv); Python compiles each module the first time it is imported.
# Editable installs write the same in-tree *.egg-info: under `make -j` they take turns (flock, where the
# system has it); the rest of each environment's work runs side by side.
EDITABLE_LOCK := $(if $(shell command -v flock),flock $(CURDIR)/.editable-install.lock)
# The core and the local server (what `make demo` needs).
$(VENV)/.installed: $(DEPS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(EDITABLE_LOCK) $(PY) -m pip install --quiet --no-compile -e '.[serve,test]' -e tests/fixtures/sei-transport-sqlite
	$(PY) -m pip check
	touch $@

# Everything the tests use, the Azure SDKs of the built-in Azure plugins included, resolved in one install.
$(VENV)/.installed-test: $(DEPS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(EDITABLE_LOCK) $(PY) -m pip install --quiet --no-compile -e '.[serve,test,azure]' -e tests/fixtures/sei-transport-sqlite
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
	$(EDITABLE_LOCK) $(FLOORS_PY) -m pip install --quiet --no-compile -c tests/floors.txt -e '.[test]' -e tests/fixtures/sei-transport-sqlite
	$(FLOORS_PY) -m pip check
	touch $@

# The concrete-ml adapter (plugins/sei-adapter-concrete), a distribution of its own, in two environments:
# - CONCRETE_BUILD_VENV compiles models: Concrete ML 1.9 with its exact pins (numpy 1.26.4, scikit-learn
#   1.5.0, torch 2.3.1 with CUDA wheels: about 3.4 GB to download, 6.3 GB installed) beside SEI's core;
# - CONCRETE_VENV serves and calls them: SEI with every test extra, the sklearn adapters included, and
#   concrete-python 2.10 (numpy < 2) on torch 2.13.0 (2.5 GB installed). Which torch build pip takes
#   depends on the machine: this one has the CPU wheel (torch-2.13.0+cpu, 192 MB) in its pip find-links,
#   but on a stock machine PyPI's torch 2.13.0 brings CUDA 13 libraries and triton: 2.74 GB to download
#   (docs/concrete.md), unused, as concrete-python computes on the CPU. TORCH_INDEX=URL takes torch
#   from that index instead, e.g. `make concrete TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
CONCRETE_DIST := plugins/sei-adapter-concrete
CONCRETE_BUILD_VENV ?= .venv-concrete-build
CONCRETE_VENV ?= .venv-concrete
CONCRETE_PY := $(CONCRETE_VENV)/bin/python
$(CONCRETE_BUILD_VENV)/.installed: pyproject.toml $(CONCRETE_DIST)/pyproject.toml
	$(PYTHON) -m venv $(CONCRETE_BUILD_VENV)
	$(CONCRETE_BUILD_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EDITABLE_LOCK) $(CONCRETE_BUILD_VENV)/bin/python -m pip install --quiet --no-compile -e . -e '$(CONCRETE_DIST)[compile]'
	@# pip check, less one known false alarm: xgboost 1.6.2's wheel (py3-none-manylinux2014 by its file
	@# name) says cp39 inside, which pip >= 25 reports as "not supported on this platform"; it runs.
	$(CONCRETE_BUILD_VENV)/bin/python -m pip check | grep -vx 'xgboost 1.6.2 is not supported on this platform' | (! grep .)
	touch $@

$(CONCRETE_VENV)/.installed: $(DEPS) $(CONCRETE_DIST)/pyproject.toml
	$(PYTHON) -m venv $(CONCRETE_VENV)
	$(CONCRETE_PY) -m pip install --quiet --upgrade pip
	$(CONCRETE_PY) -m pip install --quiet --no-compile torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(EDITABLE_LOCK) $(CONCRETE_PY) -m pip install --quiet --no-compile -e '.[serve,test,azure]' -e $(CONCRETE_DIST) -e tests/fixtures/sei-transport-sqlite
	$(CONCRETE_PY) -m pip check
	touch $@

concrete: $(CONCRETE_BUILD_VENV)/.installed $(CONCRETE_VENV)/.installed

# Azurite, the Azure Storage emulator the azure-blob tests run against, at the versions of its lockfile.
$(AZURITE_DIR)/node_modules/.installed: $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	npm ci --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# The browser client's node-seal (clients/js), at the version of its lockfile; the browser tests serve it to Chromium.
JS_CLIENT_DIR := clients/js
$(JS_CLIENT_DIR)/node_modules/.installed: $(JS_CLIENT_DIR)/package.json $(JS_CLIENT_DIR)/package-lock.json
	npm ci --prefix $(JS_CLIENT_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# Chromium for the browser tests: the system's (CHROMIUM=path, else chromium or chromium-browser on PATH), else
# Debian's package through apt-get where apt-get and root are available; otherwise a clear failure.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
chromium:
	@if [ -n "$(CHROMIUM)" ] && [ -x "$(CHROMIUM)" ]; then echo "chromium: $(CHROMIUM)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && command -v chromium; \
	else echo "make chromium: no Chromium found (set CHROMIUM=/path/to/chromium, or install Debian's chromium package as root)" >&2; exit 1; fi

js-client: $(JS_CLIENT_DIR)/node_modules/.installed

# The browser page with the JS client and node-seal, as static files in build/page (docs/browser.md).
page: install js-client
	$(PY) tools/build_page.py build/page

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

azurite: $(AZURITE_DIR)/node_modules/.installed

floors: $(FLOORS_VENV)/.installed

demo: install
	$(PY) examples/demo.py

# The sdist and the wheel in dist/, checked by twine: `pip install 'dist/sei_framework-0.1.0-py3-none-any.whl[EXTRAS]'`
# on any machine (docs/install.md). build and twine are pinned in the test extra.
dist: install-test
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# Static checks, pinned in the test extra: ruff (rules in pyproject.toml) on all the Python in the tree, mypy on
# the core and the built-in plugins (its [tool.mypy] names them).
LINT_PATHS := sei_framework plugins score_template tests bench examples
lint: install-test
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(PY) -m mypy

# SEI_NO_SKIPS=1: everything the suite needs is installed here (Azurite, Redis, the Azure SDKs; the
# MNIST data and the tutorial's model ship in data/), so any skip fails the run (tests/no_skips.py).
# Three suites (the main one in two runs), a target each: `make test` runs lint, then them, one after the
# other; CI (.ci/run) runs `make -j4 --output-sync=target test`: the environments install side by side and each
# run starts as soon as its environment is ready, its output printed whole when it ends. Any failure fails it.
test: lint test-main test-main-split test-concrete test-floors

# The main suite in two pytest runs that share no test file, so that two cores can share it: the files of
# MAIN_SPLIT (fresh environments installed, Dask clusters, a notebook's kernel, services started per test) in
# one, the rest in the other. New test files land in the rest; move slow ones here to keep the two even.
MAIN_SPLIT := tests/test_aci.py tests/test_azure_blob.py tests/test_azureml_batch.py tests/test_azureml_online.py \
	tests/test_batch.py tests/test_batch_records.py tests/test_batch_security.py tests/test_container.py \
	tests/test_install.py tests/test_notebook.py tests/test_client_trust.py tests/test_local_service.py \
	tests/test_packed_service.py tests/test_tutorial_client.py tests/test_trees_service.py tests/test_browser_page.py
test-main: install-test azurite js-client chromium
	SEI_NO_SKIPS=1 $(PY) -m pytest $(addprefix --ignore=,$(MAIN_SPLIT))

test-main-split: install-test azurite js-client chromium
	SEI_NO_SKIPS=1 $(PY) -m pytest -p no:cacheprovider $(MAIN_SPLIT)

test-floors: floors
	SEI_NO_SKIPS=1 $(FLOORS_PY) -m pytest -p no:cacheprovider $(FLOORS_TESTS)

test-concrete: concrete
	SEI_NO_SKIPS=1 PYTHONPATH=$(CURDIR)/tests SEI_CONCRETE_PYTHON=$(CURDIR)/$(CONCRETE_BUILD_VENV)/bin/python $(CONCRETE_PY) -m pytest -p no:cacheprovider -p no_skips $(CONCRETE_DIST)/tests

bench: install
	$(PY) -m bench.mnist

# A million rows through sei batch encrypt, score (1 and 2 Dask workers) and decrypt; 10,000 MNIST rows batch vs online.
bench-batch: install
	$(PY) -m bench.batch

# A random forest served encrypted by the concrete-ml adapter, end to end (examples/concrete_trees.py).
example-concrete: concrete
	SEI_CONCRETE_PYTHON=$(CURDIR)/$(CONCRETE_BUILD_VENV)/bin/python $(CONCRETE_PY) examples/concrete_trees.py

# concrete-ml beside Concrete ML's own serving (predict(fhe="execute"), FHEModelServer.run), in one run.
# The JS client in Chromium beside the Python client: keys, encrypt/decrypt per row, the page's round trip.
bench-browser: install js-client chromium
	$(PY) -m bench.browser

bench-concrete: concrete
	SEI_CONCRETE_PYTHON=$(CURDIR)/$(CONCRETE_BUILD_VENV)/bin/python $(CONCRETE_PY) -m bench.concrete

# Tree ensembles on SEAL (trees engine) beside Concrete ML's predict(fhe="execute") and SEI's concrete-ml adapter.
bench-trees: install concrete
	SEI_CONCRETE_PYTHON=$(CURDIR)/$(CONCRETE_BUILD_VENV)/bin/python SEI_CONCRETE_SEI_PYTHON=$(CURDIR)/$(CONCRETE_PY) $(PY) -m bench.trees

# A 100,000-row trees-seal job through sei build and sei batch encrypt, score (1 and 2 workers), decrypt.
bench-trees-batch: install
	$(PY) -m bench.trees_batch

clean:
	rm -rf $(VENV) $(FLOORS_VENV) $(CONCRETE_VENV) $(CONCRETE_BUILD_VENV) .sei examples/models $(AZURITE_DIR)/node_modules $(JS_CLIENT_DIR)/node_modules dist
