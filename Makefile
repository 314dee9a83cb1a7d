# Switchyard: `make run` starts the whole stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap run test test-fast test-scaleout test-security lint format clean bench bench-history chaos

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Front-end libraries of the web UI come from npm (package-lock.json), served from node_modules.
NPM_STAMP := node_modules/.installed
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

# The UI tests drive Debian's Chromium through Playwright (never `playwright install`).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "warning: $(CHROMIUM) is missing; the UI tests need it: sudo apt-get install chromium"; \
	fi

# tests/ops verifies the systemd units with `systemd-analyze verify`.
SYSTEMD_ANALYZE := /usr/bin/systemd-analyze
$(SYSTEMD_ANALYZE):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; \
	else \
		echo "warning: $(SYSTEMD_ANALYZE) is missing; tests/ops needs it: sudo apt-get install systemd"; \
	fi

## Create the virtualenv and install everything (idempotent).
bootstrap: $(STAMP) $(NPM_STAMP) $(CHROMIUM) $(SYSTEMD_ANALYZE)

## Run web + control worker + beat + a local agent on SQLite and the bundled Redis.
run: bootstrap
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py runstack

## Run the whole suite against PostgreSQL and Redis on 127.0.0.1 (override with env vars).
test: bootstrap
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/switchyard} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/0} \
	$(PY) -m pytest $(PYTEST_ARGS)

## The suite without the end-to-end tests that start real processes.
test-fast: bootstrap
	$(MAKE) test PYTEST_ARGS="-m 'not e2e' $(PYTEST_ARGS)"

## The end-to-end tests on a scaled-out stack: two web processes, two control workers with beat.
test-scaleout: bootstrap
	SWITCHYARD_E2E_SCALE=2 $(MAKE) test PYTEST_ARGS="-m e2e $(PYTEST_ARGS)"

## The security suites (RBAC, API fuzzing, webhooks, SSRF, injection, secrets, hostile output).
test-security: bootstrap
	$(MAKE) test PYTEST_ARGS="tests/security $(PYTEST_ARGS)"

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: bootstrap
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf var/*.sqlite3* var/celerybeat-schedule* var/agent.json

## Benchmarks against the real stack (PostgreSQL + Redis on 127.0.0.1); prints one line each.
bench: bootstrap
	$(PY) -m bench.run $(BENCH_ARGS)

## Analytics, list and detail latency on 1M executions / 5M jobs (BENCH_HISTORY_DATABASE_URL).
bench-history: bootstrap
	$(PY) -m bench.history $(BENCH_ARGS)

## Fault injection against real processes (docs/reliability.md); LONG=1 for hundreds of faults.
chaos: bootstrap
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
	$(PY) -m chaos.run $(if $(LONG),--long) $(CHAOS_ARGS)
