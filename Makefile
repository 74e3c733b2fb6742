# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test migrate

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when pyproject.toml changes, so repeated runs start at once.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY) $(VENV)/.npm
	$(PY) -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

# The dashboard's charting library (uPlot, package.json), from the npm registry at install time and
# served by Django from node_modules (settings.STATICFILES_DIRS): never a CDN. Node and npm from Debian if missing.
$(VENV)/.npm: package.json package-lock.json | $(PY)
	command -v npm >/dev/null 2>&1 || apt-get install -y nodejs npm || (apt-get update && apt-get install -y nodejs npm)
	npm ci --omit=dev --no-audit --no-fund
	touch $@

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --noinput

# Daphne's per-request access log costs ~0.2 ms of CPU per proxied request (every
# proxied call is logged by the gateway anyway): off unless ACCESS_LOG=1.
ACCESS_LOG ?= 0
DAPHNE_FLAGS = $(if $(filter 1,$(ACCESS_LOG)),-v 1,-v 0)

serve: migrate $(VENV)/.npm
	@echo "Serving on http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	$(VENV)/bin/daphne $(DAPHNE_FLAGS) -b $(HOST) -p $(PORT) heliconeproj.asgi:application

# The production layout on one machine (docs/operations.md "Production"): WEB_PROCESSES daphne processes
# sharing one listening socket on HOST:PORT, WRITER_PROCESSES log writers and the alert evaluator,
# under supervisord. Needs DATABASE_URL (PostgreSQL), REDIS_URL and SECRET_KEY in the environment.
WEB_PROCESSES ?= 2
WRITER_PROCESSES ?= 1
PROD_VAR_DIR = $(abspath $(or $(VAR_DIR),var))
.PHONY: prod

prod: $(VENV)/.installed $(VENV)/.npm
	@case "$$DATABASE_URL" in postgres*) ;; *) echo "make prod: set DATABASE_URL=postgres://user:password@host:port/name (PostgreSQL)" >&2; exit 2;; esac
	@test -n "$$REDIS_URL" || { echo "make prod: set REDIS_URL=redis://host:port/db" >&2; exit 2; }
	rm -rf $(PROD_VAR_DIR)/prometheus && mkdir -p $(PROD_VAR_DIR)/prometheus $(PROD_VAR_DIR)/log $(PROD_VAR_DIR)/static
	DEBUG=$${DEBUG:-0} VAR_DIR=$(PROD_VAR_DIR) $(PY) manage.py migrate --noinput
	@echo "Serving on http://$(HOST):$(PORT)/: $(WEB_PROCESSES) daphne, $(WRITER_PROCESSES) log writer(s), alerts; logs in $(PROD_VAR_DIR)/log (Ctrl-C stops all)"
	PATH="$(abspath $(VENV))/bin:$$PATH" DEBUG=$${DEBUG:-0} VAR_DIR=$(PROD_VAR_DIR) HOST=$(HOST) PORT=$(PORT) \
	  WEB_PROCESSES=$(WEB_PROCESSES) WRITER_PROCESSES=$(WRITER_PROCESSES) DAPHNE_FLAGS="$(DAPHNE_FLAGS)" \
	  LOG_WRITER_IN_PROCESS=0 ALERTS_EMBEDDED=0 PROMETHEUS_MULTIPROC_DIR=$(PROD_VAR_DIR)/prometheus \
	  exec $(VENV)/bin/supervisord -c supervisord.conf

# Debian's headless Chromium and its driver for the browser test (never a downloaded browser).
$(VENV)/.browser: | $(PY)
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium chromium-driver)
	touch $@

# wrk for the benchmark's smoke test.
$(VENV)/.wrk: | $(PY)
	command -v wrk >/dev/null 2>&1 || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	touch $@

# Debian's tinyproxy: the forward proxy the upstream-network tests start (HTTPS_PROXY / HTTP_PROXY).
$(VENV)/.tinyproxy: | $(PY)
	command -v tinyproxy >/dev/null 2>&1 || apt-get install -y tinyproxy || (apt-get update && apt-get install -y tinyproxy)
	touch $@

test: $(VENV)/.installed-dev $(VENV)/.npm $(VENV)/.browser $(VENV)/.wrk $(VENV)/.tinyproxy
	$(PY) -m pytest $(PYTEST_ARGS)

# The overhead benchmark (issue #8, see docs/benchmark.md): a few minutes, both setups
# (scaled needs PostgreSQL and Redis on 127.0.0.1); prints a table, writes bench/results/*.json.
# Unpinned, as users run it (load, mock and daphne share the cores), plus pinned rows of the
# plain chat (BENCH_ARGS=--no-pinned-rows or BENCH_PIN=0 leaves them out) and a SIGKILL run.
# bench-smoke runs every scenario for a second, embedded only, to prove the harness works.
.PHONY: bench bench-smoke
WRK_INSTALL = command -v wrk >/dev/null 2>&1 || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)

bench: $(VENV)/.installed-dev
	@$(WRK_INSTALL)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: $(VENV)/.installed-dev
	@$(WRK_INSTALL)
	$(PY) -m bench.run --smoke $(BENCH_ARGS)

# The analytics benchmark (issue #17, docs/benchmark.md): LOGS logs of one org over 30 days on a fresh
# PostgreSQL database (helicone_bench_analytics; ANALYTICS_ARGS=--sqlite for SQLite): rollup build,
# size, P50/P95 of every aggregate page and API, writer rows/s with rollups, purge rate.
.PHONY: bench-analytics
LOGS ?= 1000000
bench-analytics: $(VENV)/.installed-dev
	$(PY) -m bench.analytics --logs $(LOGS) $(ANALYTICS_ARGS)

# The ClickHouse analytics benchmark (issue #18, docs/benchmark.md): LOGS logs of one org over 30 days
# generated straight into a real ClickHouse server (chdb-core, var/bench-clickhouse), accounts in
# PostgreSQL (helicone_bench_clickhouse): disk per million logs, P50/P95 of every aggregate page and
# API, the writer's inserts per second.
.PHONY: bench-clickhouse
bench-clickhouse: $(VENV)/.installed-dev
	$(PY) -m bench.analytics_clickhouse --logs $(LOGS) $(CLICKHOUSE_ARGS)

# The soak test (issue #9, docs/reliability.md): 10 minutes of mixed traffic through two daphne
# processes (PostgreSQL database helicone_soak, recreated; Redis db 3); writes bench/results/soak-*.json.
.PHONY: soak
soak: $(VENV)/.installed-dev
	$(PY) -m bench.soak $(SOAK_ARGS)
