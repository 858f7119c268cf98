# The two commands a newcomer needs: `make lab` and `make test`.
# Both build .venv first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Jupyter refuses to start as root unless told that is intended.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: install lab lint test test-fast workshop demo bench crosscheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dashnb needs Python 3.10 or newer; set PYTHON=python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lab]'
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/python -m jupyterlab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(ROOT_FLAG)

# Presenter mode: the lab's panel alone, large type, offline (the dashnb-presenter template in
# share/jupyter drops Voila's font CDN links and the notebook's prose).
workshop: $(STAMP)
	JUPYTER_PATH=$(CURDIR)/share/jupyter $(BIN)/voila --Voila.ip=127.0.0.1 --template=dashnb-presenter notebooks/workshop.ipynb

# Lint, format and types: quick, so `make test` runs them first.
LINTED := dashnb tests benchmarks notebooks/conftest.py
lint: $(STAMP)
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m ruff format --check $(LINTED)
	$(BIN)/python -m mypy

# Every test: lint, the doctests of every module, then unit, integration, real-kernel, OkHttp,
# nbval over the notebooks (each executed once) and browser. The doctests run on their own:
# --doctest-modules would also import tests/conftest.py and notebooks/conftest.py, two modules
# both named "conftest".
test: lint
	$(BIN)/python -m pytest dashnb --doctest-modules -q
	$(BIN)/python -m pytest tests notebooks $(NBVAL)

# Everything but the slow, kernel, browser and java (OkHttp) tests: the inner loop while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m 'not slow and not kernel and not browser and not java'

demo: $(STAMP)
	$(BIN)/python -m dashnb bench

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Real OkHttp (as the Java SDK configures it) beside dashnb; records notebooks/data/crosscheck.json.
# Needs javac and OkHttp 3.x jars (Debian: default-jdk-headless libokhttp-java libokio-java).
crosscheck: $(STAMP)
	$(BIN)/python benchmarks/crosscheck.py

clean:
	rm -rf $(VENV) build *.egg-info
