# Two entry points for a fresh machine: `make testnet` and `make test`.
# Everything is installed into the checkout: .venv for Python, node_modules for anvil and solc.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# Pebble (a test ACME server) and Knot DNS (the authoritative server Pebble validates DNS-01
# against) come from Debian; installed once per machine. Neither runs as a system service: the
# tests and the testnet start their own unprivileged instances on free loopback ports.
PEBBLE := /usr/bin/pebble
KNOTD := /usr/sbin/knotd
PYTEST_ARGS ?=

.PHONY: install test lint typecheck unit testnet bench clean

install: $(STAMP_PY) $(STAMP_NPM) $(PEBBLE) $(KNOTD)

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

$(KNOTD):
	command -v knotd >/dev/null || apt-get install -y --no-install-recommends knot \
		|| (apt-get update && apt-get install -y --no-install-recommends knot)

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
