# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# constraints.txt pins every package to the version CI tested; `make upgrade` refreshes it.
CONSTRAINTS := constraints.txt
# trackeval (dev only) without its dependencies: it requires opencv-python, a second cv2 beside
# the opencv-python-headless the project uses
TRACKEVAL := trackeval

.PHONY: install upgrade demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,export]"
	$(BIN)/python -m pip install --quiet --no-deps -c $(CONSTRAINTS) $(TRACKEVAL)
	touch $(STAMP)

# Resolve the newest versions within pyproject.toml's bounds in a clean virtualenv and write its
# `pip freeze` (without the project, pip and setuptools) to constraints.txt; then run `make test`.
upgrade:
	rm -rf .venv-upgrade
	$(PYTHON) -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install --quiet --upgrade pip
	.venv-upgrade/bin/python -m pip install --quiet -e ".[dev,export]"
	.venv-upgrade/bin/python -m pip install --quiet --no-deps $(TRACKEVAL)
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-upgrade/bin/python -m pip freeze --exclude-editable \
		| grep -v -i -E '^(pip|setuptools|wheel)=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-upgrade
	rm -f $(STAMP)

demo: install
	$(BIN)/hvps demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check hvps_lightning tests benchmarks notebooks

test: install lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -m "not slow" -x -q

bench: install
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .venv-upgrade .pytest_cache .ruff_cache .mypy_cache
