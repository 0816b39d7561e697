PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: run test ui install status clean lint bench docs browser

$(BIN)/stockml: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m stockml_core.features.compile
	touch $(BIN)/stockml

install: $(BIN)/stockml

run: install
	$(BIN)/stockml run

status: install
	$(BIN)/stockml status

# The suite on TEST_WORKERS pytest-xdist workers, one test module per unit of work (tests/conftest.py).
TEST_WORKERS ?= 2
test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25

ui: install
	$(BIN)/stockml init-home
	STOCKML_WEBSERVER_URL=http://127.0.0.1:3000 $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# The browser tests (tests/test_browser.py) drive Debian's Chromium through Playwright; without it they skip.
browser: install
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

lint: install
	$(BIN)/ruff check stockml_core stockml_assets tests benchmarks
	$(BIN)/ruff format --check stockml_core stockml_assets tests benchmarks

docs: install
	$(BIN)/python -m stockml_core.features.readme

bench: install
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf $(VENV) .dagster_home data/runtime
