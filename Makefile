# Two entry points for a fresh machine: `make testnet` and `make test`.
# Everything is installed into the checkout: .venv for Python, node_modules for anvil and solc.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# Pebble (a test ACME server) and its DNS test server come from Debian; installed once per machine.
PEBBLE := /usr/bin/pebble
# Headless Chromium and NSS's certutil (browser tests), Knot DNS (CAA served by a real DNS
# server): Debian's packages too, installed once per machine when missing.
CHROMIUM := /usr/bin/chromium
CERTUTIL := /usr/bin/certutil
KNOTD := /usr/sbin/knotd
PYTEST_ARGS ?=

.PHONY: install test lint typecheck unit testnet bench clean

install: $(STAMP_PY) $(STAMP_NPM) $(PEBBLE) $(CHROMIUM) $(CERTUTIL) $(KNOTD)

$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

$(PEBBLE):
	command -v pebble >/dev/null || apt-get install -y --no-install-recommends pebble \
		|| (apt-get update && apt-get install -y --no-install-recommends pebble)

$(CHROMIUM) $(CERTUTIL) $(KNOTD):
	test -x $@ || apt-get install -y --no-install-recommends chromium libnss3-tools knot \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium libnss3-tools knot)

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest -n 2 --dist loadscope $(PYTEST_ARGS)

test: install lint typecheck unit

testnet: install
	$(VENV)/bin/tkms testnet up

bench: install
	$(PY) -m mpc.bench

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
