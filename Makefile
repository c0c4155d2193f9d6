# Two entry points for a fresh machine: `make testnet` and `make test`.
# Everything is installed into the checkout: .venv for Python, node_modules for anvil and solc.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# The official dstack Python SDK's test suite (tests/sdk/), run against a live agent by the tests.
SDK_SUITE := build/sdk-suite
STAMP_SDK := $(SDK_SUITE)/.installed
# Pebble (a test ACME server) and its DNS test server come from Debian; installed once per machine.
PEBBLE := /usr/bin/pebble
PYTEST_ARGS ?=

.PHONY: install sdk-suite test lint typecheck unit testnet bench clean

install: $(STAMP_PY) $(STAMP_NPM) $(PEBBLE)

sdk-suite: $(STAMP_SDK)

$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

$(STAMP_SDK): tests/sdk/requirements.txt tests/sdk/sdist.txt
	rm -rf $(SDK_SUITE)
	$(PYTHON) -m venv $(SDK_SUITE)/venv
	$(SDK_SUITE)/venv/bin/python -m pip install --quiet -r tests/sdk/requirements.txt
	$(SDK_SUITE)/venv/bin/python -m pip download --quiet --no-deps --no-binary :all: \
		--require-hashes -r tests/sdk/sdist.txt -d $(SDK_SUITE)
	tar -xzf $(SDK_SUITE)/dstack_sdk-0.5.4.tar.gz -C $(SDK_SUITE)
	touch $@

$(PEBBLE):
	command -v pebble >/dev/null || apt-get install -y --no-install-recommends pebble \
		|| (apt-get update && apt-get install -y --no-install-recommends pebble)

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

unit: install $(STAMP_SDK)
	$(VENV)/bin/pytest -n 2 --dist loadscope $(PYTEST_ARGS)

test: install lint typecheck unit

testnet: install
	$(VENV)/bin/tkms testnet up

bench: install
	$(PY) -m mpc.bench

clean:
	rm -rf $(VENV) node_modules $(SDK_SUITE) .mypy_cache .ruff_cache .pytest_cache .hypothesis
