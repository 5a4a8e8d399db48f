#!/usr/bin/env bash
# Run the test suite (unit tests + nbval over every notebook) under another PyTorch release.
#
#   bash scripts/test_torch_version.sh 2.15.0            # or: make test-torch TORCH_VERSION=2.15.0
#   bash scripts/test_torch_version.sh 2.4.0 notebooks   # extra arguments go to pytest
#
# It builds a throwaway virtual environment in build/torch-VERSION (kept, so a second run starts
# at once), installs torch==VERSION from the package index (on Linux that is the CUDA build,
# several GB; it runs on the CPU), then the series from a wheel of this working tree, as a Colab
# set-up cell would, and runs pytest against it. The browser test is left to `make test`.
set -euo pipefail
VERSION="${1:?usage: $0 TORCH_VERSION [pytest arguments...]}"
shift
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="build/torch-$VERSION"

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "torch==$VERSION"
# A wheel, not an editable install: the kernels import lessons_lib from site-packages.
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install --quiet ".[test]"
"$VENV/bin/python" -c 'import torch; print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")'
"$VENV/bin/python" -m pytest --deselect tests/integration/test_browser.py "$@"
