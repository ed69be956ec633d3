# Two commands on a fresh machine with Python 3.11:
#   make run   - virtual environment + medimg, then the dashboard on http://localhost:8501 (this computer only)
#   make test  - test dependencies, then format check, lint, layer contracts, types and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test check lint types pytest bench clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("medimg needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Listens on localhost only: single-user mode (no sign-in) is allowed only there. To serve other
# computers, configure sign-in (README, "Who can use the dashboard") and run streamlit with
# --server.address 0.0.0.0 yourself.
run: $(VENV)/.installed
	$(BIN)/streamlit run app.py --server.address localhost --server.port $(PORT)

test: $(VENV)/.installed-test lint types pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

types: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	MEDIMG_RAISE=1 $(BIN)/python -m pytest -n 2 --dist loadgroup

bench: $(VENV)/.installed-test
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
