#!/usr/bin/env bash
# Creates the separate TRL environment that benchmarks/trl_benchmark.py runs in.
#
#   bash benchmarks/setup_trl_env.sh [VENV_PATH]     # default: .venv-trl
#
# TRL is not a rewardjax dependency, so it lives in its own venv. torch is pinned to 2.13.0, the
# CPU build (a CPU-only wheel; other versions may pull the multi-GB CUDA build). Idempotent:
# re-running reuses the venv and only installs what is missing.
set -euo pipefail

VENV="${1:-.venv-trl}"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" -c "import torch, transformers, trl, datasets, accelerate" 2>/dev/null; then
  echo "TRL environment ready in $VENV (already installed)"
else
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first, alone, so that trl's requirements cannot pick another build. Where no CPU wheel
  # is at hand, point PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index to avoid the CUDA build.
  "$VENV/bin/python" -m pip install --quiet "$TORCH"
  "$VENV/bin/python" -m pip install --quiet "$TORCH" trl transformers datasets accelerate
fi
"$VENV/bin/python" - <<'EOF'
import torch, transformers, trl
print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
EOF
