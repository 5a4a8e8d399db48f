# What a learner needs (see README.md):
#   make lab            set up .venv if needed, copy the exercise versions of the lessons into
#                       workspace/ (once: never overwritten), then open JupyterLab there
#   make lab-solutions  open the solved lessons (a fresh copy in build/solutions/ each time)
# Teachers and contributors (a second environment, .venv-dev, with nbgrader and the test tools):
#   make test           ruff, the whole test suite (unit tests + nbval + the exercise versions +
#                       a real browser), and nbval once more with ATEN_CPU_CAPABILITY=default
#                       (other float kernels: the cheapest stand-in for another CPU)
#   make test-fast      the unit tests only (-m "not slow", property tests at half their
#                       examples; under 30 s): the edit loop
#   make exercises      rebuild exercises/ from notebooks/ after editing a lesson
#   make teach          JupyterLab on the solved lessons with nbgrader's tools
#   make student        nbgrader student versions (outputs cleared) in build/student/
#   make test-torch TORCH_VERSION=2.15.0   the suite under another PyTorch, in build/torch-VERSION
#   make test-load                         nbval with a busy loop on every core beside it
# Set-up runs again only when pyproject.toml changes (the stamp files below).

PYTHON ?= python3
# The learner's environment: the lessons, JupyterLab and nothing else (no teacher tooling).
VENV     ?= .venv
# Tests, benchmarks and teaching tools.
DEV_VENV ?= .venv-dev
# Where make lab puts the learner's own copies: git ignores it, so a pull never conflicts.
WORKSPACE ?= workspace
# PyTorch is installed first and pinned, so pip takes a CPU build where the machine offers one.
# On Linux without a local CPU wheel, pass the CPU index, e.g.
#   make lab TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH          ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Extra JupyterLab flags, e.g. LAB_ARGS="--no-browser --port 8890" (or --allow-root in a container).
LAB_ARGS ?=
BIN       := $(VENV)/bin
DEV       := $(DEV_VENV)/bin
STAMP     := $(VENV)/.installed
DEV_STAMP := $(DEV_VENV)/.installed
CHECK_PYTHON := import sys; assert sys.version_info >= (3, 10), f"Python 3.10+ is needed, found {sys.version.split()[0]}; set PYTHON=python3.11 (or similar)"

.PHONY: lab lab-solutions teach test test-fast lint exercises student benchmark clean test-torch test-load

$(STAMP): pyproject.toml
	@$(PYTHON) -c '$(CHECK_PYTHON)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	@# an older set-up put nbgrader here too; its menus do not belong in a learner's JupyterLab
	$(BIN)/python -m pip uninstall --quiet --yes nbgrader 2>/dev/null || true
	touch $@

$(DEV_STAMP): pyproject.toml
	@$(PYTHON) -c '$(CHECK_PYTHON)'
	test -x $(DEV)/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(DEV)/python -m pip install --quiet -e ".[lab,test,teach]"
	touch $@

lab: $(STAMP)
	@mkdir -p $(WORKSPACE)
	@# copy each lesson not there yet, and trust the copy: its saved outputs were made by this
	@# project, and JupyterLab draws saved widgets only in a trusted notebook (your own edits are
	@# signed as you save; a notebook you bring from elsewhere is left untrusted)
	@for f in exercises/*.ipynb; do \
	    copy="$(WORKSPACE)/$${f##*/}"; \
	    test -e "$$copy" || { cp "$$f" "$$copy" && $(BIN)/jupyter trust "$$copy" > /dev/null \
	                          && echo "new in $(WORKSPACE)/: $${f##*/}"; }; \
	done
	$(BIN)/jupyter lab $(LAB_ARGS) $(WORKSPACE)/

lab-solutions: $(STAMP)
	rm -rf build/solutions && mkdir -p build && cp -R notebooks build/solutions
	@$(BIN)/jupyter trust build/solutions/*.ipynb > /dev/null
	$(BIN)/jupyter lab $(LAB_ARGS) build/solutions/

teach: $(DEV_STAMP)
	$(DEV)/jupyter lab $(LAB_ARGS) notebooks/

lint: $(DEV_STAMP)
	$(DEV)/ruff check lessons_lib tests scripts benchmarks

# The browser test runs JupyterLab from the learner's environment, as make lab does.
test: lint $(STAMP)
	LEARNER_JUPYTER=$(abspath $(BIN))/jupyter $(DEV)/python -m pytest
	ATEN_CPU_CAPABILITY=default $(DEV)/python -m pytest notebooks

# Leaves out what is marked slow (nbval, notebook runs, nbgrader, browser, checkpoint retraining).
test-fast: $(DEV_STAMP)
	PROPERTY_EXAMPLES_SCALE=0.5 $(DEV)/python -m pytest tests -m "not slow" -q

exercises: $(DEV_STAMP)
	$(DEV)/python scripts/build_exercises.py

TORCH_VERSION ?= 2.15.0
test-torch:
	PYTHON=$(PYTHON) bash scripts/test_torch_version.sh $(TORCH_VERSION)

test-load: $(DEV_STAMP)
	PYTHON=$(DEV)/python bash scripts/test_under_load.sh

student: $(DEV_STAMP)
	$(DEV)/python scripts/build_student.py notebooks build/student

benchmark: $(DEV_STAMP)
	$(DEV)/python benchmarks/run_all.py
	$(DEV)/python benchmarks/pruning_results.py
	$(DEV)/python benchmarks/speed_size.py
	$(DEV)/python benchmarks/transformer_results.py
	$(DEV)/python benchmarks/cnn_results.py
	$(DEV)/python benchmarks/train_together.py

clean:
	rm -rf $(VENV) $(DEV_VENV) build
