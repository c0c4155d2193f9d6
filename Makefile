# Two entry points for a fresh machine: `make testnet` and `make test`.
# Everything is installed into the checkout: .venv for Python, node_modules for anvil and solc.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
# The relay's own environment (docs/relay.md): py-libp2p pins protobuf < 7, the core uses 7.
RELAY_VENV := .venv-relay
STAMP_RELAY := $(RELAY_VENV)/.installed
# The official dstack Python SDK's test suite (tests/sdk/), run against a live agent by the tests.
SDK_SUITE := build/sdk-suite
STAMP_SDK := $(SDK_SUITE)/.installed
# Pebble (a test ACME server) and Knot DNS (the authoritative server Pebble validates DNS-01
# against) come from Debian; installed once per machine. Neither runs as a system service: the
# tests and the testnet start their own unprivileged instances on free loopback ports.
PEBBLE := /usr/bin/pebble
# Headless Chromium and NSS's certutil, for the browser tests only (`make test`, not
# `make testnet`): Debian's packages too, installed once per machine when missing.
CHROMIUM := /usr/bin/chromium
CERTUTIL := /usr/bin/certutil
KNOTD := /usr/sbin/knotd
PYTEST_ARGS ?=

.PHONY: install sdk-suite test lint typecheck unit testnet bench clean

install: $(STAMP_PY) $(STAMP_NPM) $(STAMP_RELAY) $(PEBBLE) $(KNOTD)

sdk-suite: $(STAMP_SDK)

$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# fastecdsa (a py-libp2p dependency) builds from source against GMP: libgmp-dev from Debian.
$(STAMP_RELAY): relay/requirements.txt
	dpkg -s libgmp-dev >/dev/null 2>&1 || apt-get install -y --no-install-recommends libgmp-dev \
		|| (apt-get update && apt-get install -y --no-install-recommends libgmp-dev)
	test -x $(RELAY_VENV)/bin/python || $(PYTHON) -m venv $(RELAY_VENV)
	$(RELAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RELAY_VENV)/bin/python -m pip install --quiet -r relay/requirements.txt
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

$(KNOTD):
	test -x $@ || apt-get install -y --no-install-recommends knot \
		|| (apt-get update && apt-get install -y --no-install-recommends knot)

$(CHROMIUM) $(CERTUTIL):
	test -x $@ || apt-get install -y --no-install-recommends chromium libnss3-tools \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium libnss3-tools)

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

unit: install $(STAMP_SDK) $(CHROMIUM) $(CERTUTIL)
	$(VENV)/bin/pytest -n 2 --dist loadscope --durations=30 $(PYTEST_ARGS)

test: install lint typecheck unit

testnet: install
	$(VENV)/bin/tkms testnet up

bench: install
	$(PY) -m mpc.bench

clean:
	rm -rf $(VENV) $(RELAY_VENV) node_modules $(SDK_SUITE) .mypy_cache .ruff_cache .pytest_cache .hypothesis
