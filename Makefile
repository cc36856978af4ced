# The two commands: `make run` (set up and serve on 127.0.0.1:8000 with a worker) and
# `make test` (set up and run every test, browser tests included).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(CURDIR)/.data
export DATA_DIR

.PHONY: run test test-sqlite test-scale servers setup venv migrate demo browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the requirement files change.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

$(DATA_DIR)/secret_key:
	mkdir -p $(DATA_DIR)
	$(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

setup: venv $(DATA_DIR)/secret_key
	SECRET_KEY=$$(cat $(DATA_DIR)/secret_key) $(BIN)/python manage.py migrate --noinput
	SECRET_KEY=$$(cat $(DATA_DIR)/secret_key) $(BIN)/python manage.py seed_demo
	SECRET_KEY=$$(cat $(DATA_DIR)/secret_key) $(BIN)/python manage.py collectstatic --noinput --verbosity 0
	SECRET_KEY=$$(cat $(DATA_DIR)/secret_key) $(BIN)/python manage.py check

# Procfile.dev: both processes restart when a file in app/ or pipelines/ changes (watchfiles);
# Procfile (production, the image) never reloads.
run: setup
	@echo "Serving on http://127.0.0.1:8000 with a Huey worker (Ctrl-C stops both; edits reload them)."
	SECRET_KEY=$$(cat $(DATA_DIR)/secret_key) HTTPS=0 HOST=127.0.0.1 PORT=8000 PATH=$(CURDIR)/$(BIN):$$PATH \
		$(BIN)/honcho start -f Procfile.dev

# Debian's chromium for the browser tests (Playwright cannot download its own here).
browser:
	@if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests…"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null; \
		else echo "chromium is missing and cannot be installed here (needs root and apt-get): browser tests will be skipped, or fail when CI=true."; fi; \
	fi

# PostgreSQL and Redis for the scale-out half of the suite (Debian's packages; the tests
# start throwaway servers of their own on loopback and stop them by PID).
servers:
	@missing=""; ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing for the PostgreSQL + Redis tests…"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
		else echo "$$missing missing and cannot be installed here (needs root and apt-get)"; exit 1; fi; \
	fi

# The layer contract first (pyproject.toml, docs/architecture.md), then the whole suite
# twice: on SQLite files with Huey's SQLite queue (one machine), and on a throwaway
# PostgreSQL and Redis (several machines). `make test-sqlite` / `make test-scale` run one.
test: setup browser servers
	$(BIN)/lint-imports --no-cache
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-scale

test-sqlite:
	@echo "== the suite on SQLite + Huey's SQLite queue"
	env -u DATA_DIR $(BIN)/python -m pytest $(PYTEST_ARGS)

test-scale:
	@echo "== the suite on PostgreSQL + Redis"
	env -u DATA_DIR $(BIN)/python -m tests.servers -- $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv servers
	$(BIN)/python bench/step_overhead.py --shape chain --n 100
	$(BIN)/python bench/step_overhead.py --shape fanout --n 100
	$(BIN)/python bench/step_overhead.py --backend postgres --shape chain --n 100 --modes floor,sync,worker,worker_thread
	$(BIN)/python bench/step_overhead.py --backend postgres --shape fanout --n 1000 --processes 3 --modes floor,worker
	$(BIN)/python bench/predict_latency.py --trees 10

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
