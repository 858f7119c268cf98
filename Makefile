# The two commands a newcomer needs: `make lab` and `make test`.
# Both build .venv first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Jupyter refuses to start as root unless told that is intended.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# nbval's outputs sanitizer and the hook that fails a cell printing a key live in tests/, out of the
# folder learners browse in JupyterLab.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_keys

.PHONY: install lab lint test test-fast workshop demo bench crosscheck clean

install: $(STAMP)

# One line per phase instead of pip's few hundred; pip's own output goes to .venv/install.log,
# and its last lines are shown if it fails.
INSTALL_LOG := $(VENV)/install.log

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dashnb needs Python 3.10 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || { echo "dashnb: [1/3] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "dashnb: [2/3] updating pip (log: $(INSTALL_LOG))"
	@$(BIN)/python -m pip install --upgrade pip > $(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); exit 1; }
	@echo "dashnb: [3/3] installing dashnb, the SDKs, JupyterLab and the test tools (1-2 minutes the first time)"
	@$(BIN)/python -m pip install --progress-bar off -e '.[test,lab]' >> $(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); exit 1; }
	@touch $(STAMP)
	@echo "dashnb: installed into $(VENV)"

# The project's lab: no "get notified about Jupyter news?" popup (dashnb/_jupyter/etc/jupyter/labconfig holds
# JupyterLab setting defaults), warnings only, so the URL to open is the last thing printed.
# `make lab OFFLINE=1` keeps every call on the embedded emulator even with DASHSCOPE_API_KEY set.
lab: export JUPYTER_CONFIG_PATH := $(CURDIR)/dashnb/_jupyter/etc/jupyter
ifdef OFFLINE
lab: export DASHNB_OFFLINE := $(OFFLINE)
endif
lab: $(STAMP)
	@echo "dashnb: starting JupyterLab$(if $(OFFLINE), offline (DASHNB_OFFLINE=$(OFFLINE)),); open the http://127.0.0.1 URL below (Ctrl-C stops it)"
	@$(BIN)/python -m jupyterlab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks --log-level=WARN $(ROOT_FLAG)

# Presenter mode: the lab's panel alone, large type, offline (the dashnb-presenter template in
# dashnb/_jupyter/share/jupyter drops Voila's font CDN links and the notebook's prose). A room has no key to
# spend: DASHNB_OFFLINE keeps every call on this machine, key or no key.
workshop: export DASHNB_OFFLINE := 1
workshop: $(STAMP)
	JUPYTER_PATH=$(CURDIR)/dashnb/_jupyter/share/jupyter $(BIN)/voila --Voila.ip=127.0.0.1 --template=dashnb-presenter notebooks/workshop.ipynb

# Lint, format and types: quick, so `make test` runs them first.
LINTED := dashnb tests benchmarks
lint: $(STAMP)
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m ruff format --check $(LINTED)
	$(BIN)/python -m mypy

# The test tiers, one folder each (CONTRIBUTING.md says which test goes where). The socket tiers
# run on two workers: their tests mostly wait on emulated round trips, not on the CPU.
XDIST := -n 2 --dist loadfile
FAST  := -m 'not slow and not kernel and not browser and not java'

# Every test, in an order that fails fast: lint, the doctests of every module (on their own, so
# that --doctest-modules does not import the test modules), pure unit tests, the emulator and
# client tiers on two workers, then real kernels, OkHttp, nbval over the notebooks (each executed
# once) and the browser.
test: lint
	$(BIN)/python -m pytest dashnb --doctest-modules -q
	$(BIN)/python -m pytest tests/unit -q
	$(BIN)/python -m pytest tests/emulator tests/clients $(XDIST) -q --durations=10
	$(BIN)/python -m pytest tests/kernel tests/java notebooks $(NBVAL) -q --durations=10
	$(BIN)/python -m pytest tests/browser -q --durations=5

# The inner loop while editing: unit, then emulator and clients without the slow tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q
	$(BIN)/python -m pytest tests/emulator tests/clients $(FAST) $(XDIST) -q

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
