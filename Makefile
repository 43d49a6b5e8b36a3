# One command per job; CI runs `make test`. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install browser serve test lint typecheck unit bench clean screenshots

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: install
	$(BIN)/wiz executor --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy src

unit: install browser
	$(BIN)/pytest

# Debian's Chromium, for the dashboard tests (Playwright drives it; never `playwright
# install`). Where apt cannot install it, those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium) || \
	  echo "make browser: chromium could not be installed; the dashboard tests will skip"

test: lint typecheck unit

# The dashboard's screenshots in docs/ (shown in the README), taken by its browser tests.
screenshots: install browser
	WIZ_DASHBOARD_SCREENSHOT=docs/dashboard.png WIZ_DASHBOARD_SCREENSHOTS=docs \
	  $(BIN)/pytest -q -p no:randomly tests/test_dashboard.py tests/test_dashboard_views.py

bench: install
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 \
	  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1) \
	  || echo "wrk could not be installed: the Python load generator will be used"
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
