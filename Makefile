# The commands the README names. Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Serving needs the package and uvloop; testing and linting add their tools on top, once.
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed-dev
# Quiet: setuptools' banner about editable installs of a flat layout (a UserWarning from the
# build) is advice for packagers, not news for someone installing a server.
PIP_INSTALL := PYTHONWARNINGS=ignore::UserWarning \
	$(BIN)/pip install --quiet --disable-pip-version-check --root-user-action=ignore
WORKERS ?= 1

.PHONY: install install-dev run test test-js lint fmt e2e bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

$(RUN_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[fast]'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PIP_INSTALL) -e '.[fast,dev]'
	touch $(STAMP)

# What serving needs (make run); make test and make lint add the test and lint tools.
install: $(RUN_STAMP)

install-dev: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m chat serve --workers $(WORKERS)

# The browser-side modules first (test-js: their node --test unit tests, the one place they
# run), then pytest, whose summary comes last.
# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP) test-js
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$status

# The browser modules' logic that needs no DOM (static/protocol.js, resume.js, outbox.js, ...).
test-js:
	node --test tests/js/*.test.mjs

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

# The load benchmark (bench/README.md): real server on CPU 0, load generator on CPU 1, ~3 minutes.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var/screenshots .pytest_cache .mypy_cache .ruff_cache
