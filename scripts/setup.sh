#!/usr/bin/env bash
# Create .venv (if missing) and install the lab with its test extras.
# torch: install the CPU build first when torch is missing, so that the package's
# own range requirement (torch>=2.2) does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q torch==2.13.0 || .venv/bin/pip install -q "torch>=2.2"
fi
.venv/bin/pip install -q -e ".[test]"
