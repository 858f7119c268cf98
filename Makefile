# The commands a newcomer needs: `make lab` (the learner's install: the [lab] extra only) and `make test`
# (the contributor's: every extra). Each builds .venv first, and again when pyproject.toml or the extras change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One stamp per set of extras, named after them: changing a list below reinstalls.
LAB_EXTRAS := lab
ALL_EXTRAS := test,lab,dev,docs
comma  := ,
LAB_STAMP := $(VENV)/.installed-$(subst $(comma),+,$(LAB_EXTRAS))
STAMP     := $(VENV)/.installed-$(subst $(comma),+,$(ALL_EXTRAS))
# nbval's outputs sanitizer and the hook that fails a cell printing a key live in tests/, out of the
# folder learners browse in JupyterLab.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_keys

.PHONY: install lab lint test test-fast nbval workshop docs dist demo bench crosscheck clean

install: $(STAMP)

# One line per phase instead of pip's few hundred; pip's own output goes to .venv/install.log,
# and its last lines are shown if it fails.
INSTALL_LOG := $(VENV)/install.log

# $* is the stamp's extras, "+"-separated.
$(VENV)/.installed-%: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dashnb needs Python 3.10 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || { echo "dashnb: [1/3] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "dashnb: [2/3] updating pip (log: $(INSTALL_LOG))"
	@$(BIN)/python -m pip install --upgrade pip > $(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); exit 1; }
	@echo "dashnb: [3/3] installing dashnb with [$(subst +,$(comma),$*)] (a minute or two the first time)"
	@$(BIN)/python -m pip install --progress-bar off -e '.[$(subst +,$(comma),$*)]' >> $(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); exit 1; }
	@touch $@
	@echo "dashnb: installed into $(VENV)"

# The notebooks in place, with the project's lab settings (`dashnb lab`: no news popup, warnings only,
# the URL last). `make lab OFFLINE=1` keeps every call on the embedded emulator even with DASHSCOPE_API_KEY set.
ifdef OFFLINE
lab: export DASHNB_OFFLINE := $(OFFLINE)
endif
lab: $(LAB_STAMP)
	@$(BIN)/dashnb lab notebooks

# Presenter mode (`dashnb workshop`): the lab's panel alone, large type, offline.
workshop: $(LAB_STAMP)
	@$(BIN)/dashnb workshop

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
# client tiers on two workers, then real kernels (with packaging: the notebooks run under nbval
# once, as a user gets them, copied out of the wheel installed with [lab] into a fresh venv by
# tests/kernel/test_distribution.py), OkHttp, and the browser (with the docs site).
test: lint
	$(BIN)/python -m pytest dashnb --doctest-modules -q
	$(BIN)/python -m pytest tests/unit -q
	$(BIN)/python -m pytest tests/emulator tests/clients $(XDIST) -q --durations=10
	$(BIN)/python -m pytest tests/kernel tests/java -q --durations=10
	$(BIN)/python -m pytest tests/browser -q --durations=5

# The notebooks under nbval where they are: the quick loop while editing one.
nbval: $(STAMP)
	$(BIN)/python -m pytest notebooks $(NBVAL)

# The static site (README, the executed notebooks, the API reference, CONTRIBUTING) in build/docs;
# any warning (a broken link, a notebook with an error or unexecuted cell) fails it.
# The wheel and the sdist in dist/: the wheel is what `pip install 'dashnb-*.whl[lab]'` takes.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

DOCS_OUT ?= build/docs
docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going -q -c docs -d $(DOCS_OUT)-doctrees . $(DOCS_OUT)
	@echo "dashnb: the site is in $(DOCS_OUT) (open $(DOCS_OUT)/index.html, or serve it: python -m http.server -b 127.0.0.1 -d $(DOCS_OUT))"

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
	rm -rf $(VENV) build dist *.egg-info
