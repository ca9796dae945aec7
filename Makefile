# Two entry points for a newcomer: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test bench lint system-deps system-test-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# graphviz's `dot` renders SVG/PNG diagrams; installed with apt-get where missing (we are root).
system-deps:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "installing graphviz (dot) with apt-get"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; }

# The HTML report and the web view are checked in headless Chromium (Playwright drives Debian's
# chromium: the `playwright` package comes with the dev extra, no browser download).
system-test-deps: system-deps
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium with apt-get (report screenshot test)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get (shared limits tests)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

demo: system-deps $(VENV)/.installed
	$(BIN)/dagagents demo --out $(DEMO_OUT)

test: system-test-deps $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks.compare

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check dagagents tests benchmarks graphs
	$(BIN)/ruff format --check dagagents tests benchmarks graphs
	$(BIN)/mypy dagagents

clean:
	rm -rf $(VENV) .dagagents $(DEMO_OUT)
