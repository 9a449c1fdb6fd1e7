# Everything a fresh clone needs, with only Python 3 and make:
#   make test   create .venv, install, lint, type-check, run the tests, then the matrix
#   make matrix the tests on the oldest and newest botocore and on aiobotocore (noxfile.py)
#   make demo   offline end-to-end demo (local GitLab-like issuer + local STS)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: all test lint typecheck pytest matrix demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint examples/aws/cloudformation.yaml

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Each session has its own virtualenv under .nox/, reused by later runs.
matrix: $(STAMP)
	$(BIN)/nox

test: lint typecheck pytest matrix

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .nox build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
