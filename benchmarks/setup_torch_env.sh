#!/usr/bin/env bash
# Builds .venv-bench-torch: PyTorch 2.13.0 (CPU build, whose wheel this machine holds) for the
# training-throughput baseline. Never a dependency of molrg itself. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench-torch
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0')" 2>/dev/null; then
  exit 0
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0" numpy
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
