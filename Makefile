# Wattrail: the two commands are `make demo` and `make test`. Everything else is a step of theirs.
# On a fresh Debian/Ubuntu machine (root) they install what is missing: python3-venv, Mosquitto (and its clients),
# socat, and PostgreSQL 17 + TimescaleDB (from apt, or a cached Debian 13 root on Debian 12).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SERVICES := $(VPY) scripts/services
PYTEST_ARGS ?=

.PHONY: help venv browser-install services-install services-up services-down services-status lint typecheck \
        test test-unit test-explore demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@if [ ! -x $(VPY) ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
	      rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	    else echo "error: '$(PYTHON) -m venv' failed; install python3-venv" >&2; exit 1; fi; }; \
	fi
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install Wattrail with its dev tools

services-install: venv  ## install/build the services' software (apt, Debian 13 root), start nothing
	$(SERVICES) install

services-up: venv  ## start TimescaleDB and TLS Mosquitto (idempotent); `scripts/services env` for DSNs
	$(SERVICES) up

services-down:  ## stop the services `make services-up` started
	@if [ -x $(VPY) ]; then $(SERVICES) down; else python3 scripts/services down; fi

services-status: venv
	$(SERVICES) status

browser-install:  ## headless Chromium + playwright-core for the dashboard's browser tests
	scripts/browser install

lint: venv  ## ruff over everything
	$(VENV)/bin/ruff check .

typecheck: venv  ## mypy over every package (pydantic plugin), --strict on protocols and security
	$(VENV)/bin/mypy protocols security edge cloud firmware_sim wattrail

test-unit: venv  ## only the pure, fast tests
	$(VPY) -m pytest tests/unit -q $(PYTEST_ARGS)

# `make test` runs hypothesis derandomized (profile "ci", tests/conftest.py); this looks for new
# failures with fresh random examples each run. Pin what it finds as an @example (README, Tests).
test-explore: venv  ## unit tests with new random hypothesis examples, many more of them
	HYPOTHESIS_PROFILE=explore $(VPY) -m pytest -q tests/unit $(PYTEST_ARGS)

# The test session starts its own private services on free ports (tests/conftest.py) and
# removes them afterwards; `services-install` only makes sure the software is there.
test: venv services-install browser-install lint typecheck  ## everything: lint, types, unit, integration, e2e
	$(VPY) -m pytest -q $(PYTEST_ARGS)
	@echo "== analytics kernels again as plain Python (NUMBA_DISABLE_JIT=1), as their references see them"
	NUMBA_DISABLE_JIT=1 $(VPY) -m pytest -q -p no:cacheprovider tests/unit/analytics

demo: venv services-up  ## run the platform on a simulated grid (grows with each issue)
	$(VPY) -m wattrail.demo

bench: venv services-up  ## run every benchmark under bench/ and print the figures
	$(VPY) -m pip install -q -e '.[bench]'
	$(VPY) bench/report.py $(BENCH_ARGS)

clean:  ## remove caches (not the services' data: `scripts/services down --purge` does that)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
