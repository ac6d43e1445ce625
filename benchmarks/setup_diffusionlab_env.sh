#!/usr/bin/env bash
# Create .venv-bench-dl/ (repo root): a Python 3.12 venv with diffusionlab 3.0.4,
# the last diffusionlab release that ships the closed-form `low_rank_gmm_x0`
# (removed in diffusionlab 4; 3.0.4 requires Python >= 3.12).
#
# Idempotent: re-running reuses the venv and only re-installs if the pinned
# versions are not already present.  Use: bash benchmarks/setup_diffusionlab_env.sh
#
# jax/jaxlib/numpy are pinned to the same versions as molrg's dev venv
# (jax 0.10.2, numpy 2.4.6) so the benchmark compares implementations, not
# JAX releases.  diffusionlab 3.0.4 only requires jax>=0.6.0; an unpinned
# resolve (when this script was written) gave jax 0.12.0.1 / numpy 2.5.5, which also installs.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.venv-bench-dl"

DIFFUSIONLAB_VERSION="3.0.4"
JAX_VERSION="0.10.2"
NUMPY_VERSION="2.4.6"

find_python312() {
    if [[ -n "${PYTHON312:-}" ]]; then
        echo "${PYTHON312}"; return 0
    fi
    local cand
    for cand in "$(command -v python3.12 || true)" \
                "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
                /root/.pyenv/versions/3.12*/bin/python3.12; do
        if [[ -n "${cand}" && -x "${cand}" ]] && "${cand}" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "${cand}"; return 0
        fi
    done
    return 1
}

if [[ ! -x "${VENV}/bin/python" ]]; then
    if ! PY312="$(find_python312)"; then
        echo "error: Python 3.12 not found (diffusionlab 3.0.4 needs Python >= 3.12)." >&2
        echo "       Put python3.12 on PATH, install it with pyenv, or set PYTHON312=/path/to/python3.12." >&2
        exit 1
    fi
    echo "Creating ${VENV} with ${PY312}"
    "${PY312}" -m venv "${VENV}"
fi

PY="${VENV}/bin/python"
if ! "${PY}" -c 'import sys; assert sys.version_info[:2] >= (3, 12)' 2>/dev/null; then
    echo "error: ${VENV} exists but is not Python >= 3.12; remove it and re-run." >&2
    exit 1
fi

want() {  # succeed iff the pinned versions are already installed
    "${PY}" - "$DIFFUSIONLAB_VERSION" "$JAX_VERSION" "$NUMPY_VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
dl, jx, np_ = sys.argv[1:]
ok = (version("diffusionlab") == dl and version("jax") == jx
      and version("jaxlib") == jx and version("numpy") == np_)
sys.exit(0 if ok else 1)
PYEOF
}

if want; then
    echo "${VENV} already has diffusionlab==${DIFFUSIONLAB_VERSION}, jax/jaxlib==${JAX_VERSION}, numpy==${NUMPY_VERSION}"
else
    "${PY}" -m pip install --disable-pip-version-check -q \
        "diffusionlab==${DIFFUSIONLAB_VERSION}" \
        "jax==${JAX_VERSION}" "jaxlib==${JAX_VERSION}" "numpy==${NUMPY_VERSION}"
fi

"${PY}" -c 'import jax, numpy, diffusionlab.distributions.gmm.low_rank_gmm as m; from importlib.metadata import version; print("ok: python", __import__("sys").version.split()[0], "diffusionlab", version("diffusionlab"), "jax", jax.__version__, "numpy", numpy.__version__)'
