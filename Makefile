# One way to run it, one way to test it. Everything installs into .venv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-postgres lint format bench clean vendor

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py ensure_demo_user --url http://$(HOST):$(PORT)/
	$(BIN)/daphne -b $(HOST) -p $(PORT) chatplatform.asgi:application

# Node packages for the AG-UI client test, from package-lock.json (skipped without npm).
NPM := $(shell command -v npm)
node_modules/.installed-stamp: package-lock.json
	@if [ -n "$(NPM)" ]; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the @ag-ui/client test will be skipped"; fi

test: install node_modules/.installed-stamp
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The in-process suite again with PostgreSQL as the database (CI runs this too);
# end-to-end tests pick their database themselves and already cover PostgreSQL.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
test-postgres: install
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest -p no:cacheprovider \
		-m "not e2e and not postgres" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chatplatform agents realtime
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every bench, then the targets table from the figures they recorded (one run's only).
bench: install
	rm -f bench/figures.json
	$(BIN)/python bench/latency_calculate.py
	$(BIN)/python bench/idle_wake.py
	$(BIN)/python bench/sessions.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/layers.py
	$(BIN)/python bench/idle_connections.py
	$(BIN)/python bench/socket_memory.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/latency_breakdown.py
	$(BIN)/python bench/latency_breakdown.py --postgres
	$(BIN)/python bench/production.py
	$(BIN)/python bench/floor.py
	$(BIN)/python bench/inputs.py
	$(BIN)/python bench/targets.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The page's Markdown renderer and sanitiser are committed in chatplatform/static/vendor/
# (make run needs no npm); this refreshes them from package-lock.json.
vendor:
	npm ci --no-audit --no-fund
	cp node_modules/marked/lib/marked.umd.js node_modules/marked/lib/marked.umd.js.map \
		node_modules/dompurify/dist/purify.min.js node_modules/dompurify/dist/purify.min.js.map \
		chatplatform/static/vendor/
	cp node_modules/marked/LICENSE chatplatform/static/vendor/marked.LICENSE
	cp node_modules/dompurify/LICENSE chatplatform/static/vendor/dompurify.LICENSE
