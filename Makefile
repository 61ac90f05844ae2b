# The commands the README names. Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 1

.PHONY: install run test test-js lint fmt e2e bench bench-quick clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m chat serve --workers $(WORKERS)

# The browser-side modules first (node --test), then pytest, whose summary comes last.
# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	node --test tests/js/
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$status

test-js:
	node --test tests/js/

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
