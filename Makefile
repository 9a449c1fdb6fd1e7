# Everything a fresh clone needs, with only Python 3 and make:
#   make demo        offline end-to-end demo (local GitLab-like issuer + local STS); installs
#                    only what the demo needs
#   make test        create .venv, install everything, lint, type-check, check the built wheel
#                    and sdist, then run the tests in the matrix
#   make matrix      the tests on the oldest and newest botocore and on aiobotocore (noxfile.py)
#   make pytest      the tests once, in .venv (newest botocore): the quick loop while editing
#   make dist-check  build the wheel and sdist, check their metadata, install the wheel into a
#                    fresh venv and run it

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# pip >= 25.1 installs the dependency groups of pyproject.toml (`--group`).
PIP_STAMP  := $(VENV)/.pip-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
STAMP      := $(VENV)/.installed-stamp
DIST_VENV  := build/dist-check-venv
MATRIX     := oldest newest aiobotocore

.PHONY: all test lint typecheck pytest matrix $(MATRIX:%=matrix-%) dist-check demo bench clean

all: test

$(PIP_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	@touch $@

# The demo imports the package from the checkout (PYTHONPATH): no build, only the fakes' needs.
$(DEMO_STAMP): pyproject.toml $(PIP_STAMP)
	$(BIN)/python -m pip install --quiet --group demo
	@touch $@

$(STAMP): pyproject.toml $(PIP_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[testing,django]' --group dev
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint examples/aws/cloudformation.yaml

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Each session has its own virtualenv under .nox/, reused by later runs. They are installed
# one after another (editable installs write into the checkout), then their test runs go at
# once: the suite spends much of its time waiting on local servers and subprocesses, so two
# cores run three sessions in about the time of the longest. Each session's output is shown
# when it ends. The `newest` session runs the tests of the built sdist (see noxfile.py).
matrix: $(STAMP)
	$(BIN)/nox --install-only
	@$(MAKE) --no-print-directory -j3 --output-sync=target $(MATRIX:%=matrix-%)

$(MATRIX:%=matrix-%): matrix-%: $(STAMP)
	$(BIN)/nox --no-install -s $*

# The wheel goes into a venv without pip (fast to create); this venv's pip installs it there.
dist-check: $(STAMP)
	rm -rf dist $(DIST_VENV)
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(PYTHON) -m venv --without-pip $(DIST_VENV)
	$(BIN)/python -m pip --python $(DIST_VENV)/bin/python install --quiet dist/*.whl
	$(DIST_VENV)/bin/python -c "import gitlab_botocore"
	$(DIST_VENV)/bin/gitlab-botocore --help > /dev/null
	@echo "dist-check: wheel and sdist OK; the wheel installs, imports and runs"

# The matrix's `newest` session runs the whole suite on the newest botocore (from the sdist),
# so `make test` does not run it a second time in .venv.
test: lint typecheck dist-check matrix

demo: $(DEMO_STAMP)
	@PYTHONPATH=. $(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .nox build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
