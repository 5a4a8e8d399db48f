# Two commands a learner needs (see README.md):
#   make lab    set up .venv if needed, then open JupyterLab on notebooks/
#   make test   set up .venv if needed, then run ruff, the whole test suite (unit tests + nbval),
#               and nbval once more with ATEN_CPU_CAPABILITY=default (other float kernels: the
#               cheapest stand-in for another CPU)
# For contributors:
#   make test-torch TORCH_VERSION=2.15.0   the suite under another PyTorch, in build/torch-VERSION
#   make test-load                         nbval with a busy loop on every core beside it
# Set-up runs again only when pyproject.toml changes (the stamp file below).

PYTHON ?= python3
VENV   ?= .venv
# PyTorch is installed first and pinned, so pip takes a CPU build where the machine offers one.
# On Linux without a local CPU wheel, pass the CPU index, e.g.
#   make lab TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH          ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Extra JupyterLab flags, e.g. LAB_ARGS="--no-browser --port 8890" (or --allow-root in a container).
LAB_ARGS ?=
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test lint student benchmark clean test-torch test-load

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), f"Python 3.10+ is needed, found {sys.version.split()[0]}; set PYTHON=python3.11 (or similar)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	touch $@

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS) notebooks/

lint: $(STAMP)
	$(BIN)/ruff check lessons_lib tests scripts benchmarks

test: lint
	$(BIN)/python -m pytest
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest notebooks

TORCH_VERSION ?= 2.15.0
test-torch:
	PYTHON=$(PYTHON) bash scripts/test_torch_version.sh $(TORCH_VERSION)

test-load: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/test_under_load.sh

student: $(STAMP)
	$(BIN)/python scripts/build_student.py notebooks build/student

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/pruning_results.py
	$(BIN)/python benchmarks/speed_size.py
	$(BIN)/python benchmarks/transformer_results.py
	$(BIN)/python benchmarks/train_together.py

clean:
	rm -rf $(VENV) build
