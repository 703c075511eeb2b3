# Every target installs what it needs into .venv first, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py
# The port `make run` and `make serve` use; set STUDIO_PORT in the environment to change it.
STUDIO_PORT ?= 8000
# SQLite cannot create the folder its database lives in; same default as studio/settings.py.
DATA_DIR := $(or $(STUDIO_DATA_DIR),var)

.PHONY: run migrate demo serve test test-fast lint fmt bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Seeds the demo (once), then serves it in the foreground; Ctrl-C stops it.
run: demo
	$(MANAGE) serve --port $(STUDIO_PORT)

migrate: $(STAMP)
	mkdir -p $(DATA_DIR)
	$(MANAGE) migrate --noinput

demo: migrate
	$(MANAGE) demo --port $(STUDIO_PORT)

serve: migrate
	$(MANAGE) serve --port $(STUDIO_PORT)

test: $(STAMP)
	$(BIN)/pytest -m "slow or not slow"

test-fast: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(MANAGE) check
	mkdir -p $(DATA_DIR)
	$(MANAGE) makemigrations --check --dry-run

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
