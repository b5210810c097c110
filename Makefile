# Nexus content jobs: `make run` serves the embedded default, `make test` runs every test.
SHELL := /bin/bash
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	echo $$p; break; fi; done)

.PHONY: run test setup migrate cluster bench screenshots clean
WEB ?= 2
WORKERS ?= 2

setup: $(STAMP)

$(STAMP): requirements.txt
	@if [ -z "$(PYTHON)" ]; then \
		echo "Nexus content jobs needs Python 3.11 or newer; found: $$(python3 --version 2>&1 || echo none)." >&2; \
		echo "Install Python 3.11+ (or run: make PYTHON=/path/to/python3.11 ...)." >&2; exit 1; fi
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput -v 0

run: migrate
	PORT=$(PORT) $(PY) manage.py serve --port $(PORT)

# Pass 1: the embedded default (SQLite, in-memory layer). Pass 2, when DATABASE_URL or REDIS_URL
# is set: the whole suite again on PostgreSQL and Redis, fault tests included.
test: $(STAMP)
	@bash scripts/ensure-chromium
	@echo "== pass 1: embedded default (SQLite, in-memory channel layer)"
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest $(PYTEST_ARGS)
	@if [ -n "$${DATABASE_URL:-}$${REDIS_URL:-}" ]; then \
		echo "== pass 2: PostgreSQL ($${DATABASE_URL:-unset}) and Redis ($${REDIS_URL:-unset})"; \
		PY=$(PY) bash scripts/check-services && \
		NEXUS_CHANNEL_PREFIX=nexus-test-$$$$ $(PY) -m pytest $(PYTEST_ARGS); \
	else echo "(pass 2 on PostgreSQL and Redis runs when DATABASE_URL and REDIS_URL are set)"; fi

cluster: $(STAMP)
	@WEB=$(WEB) WORKERS=$(WORKERS) PORT=$(PORT) bash scripts/cluster

# Benchmarks (quick: a few minutes; FULL=1: full sizes). Writes bench/RESULTS.md and bench/latency.png
# (FULL=1: bench/RESULTS-full.md and bench/latency-full.png).
bench: $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	FULL=$(FULL) $(PY) bench/run.py

# The README's screenshots of the web console, taken anew by its browser test.
screenshots: $(STAMP)
	@bash scripts/ensure-chromium
	env -u DATABASE_URL -u REDIS_URL NEXUS_SCREENSHOTS=docs/screenshots $(PY) -m pytest -n 0 tests/e2e/test_console.py -k reach_100_percent

clean:
	rm -rf $(VENV) var .pytest_cache
