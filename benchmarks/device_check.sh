#!/usr/bin/env bash
# One prepared run on an accelerator machine (a GPU or TPU host with jax, optax, scipy,
# matplotlib, pytest, pytest-xdist and hypothesis installed): the same code as on CPU.
#   1. the devices and versions;
#   2. the 16-seed ensemble, one vmapped program vs 16 sequential runs (bench_training);
#   3. the core benchmark (posterior + denoiser vs the bare matmuls, on the accelerator);
#   4. P1's Fig. 3 at paper scale (200 epochs = 75,000 steps per network, 5 x 9,000 test);
#   5. the fast test tier, in float64, on the accelerator.
# Logs go to $OUT (default /tmp/molrg-device). Each step has its own time limit, so one slow
# step cannot hide the others. Usage: bash benchmarks/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/molrg-device}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false MOLRG_CACHE_DIR=off
{ nvidia-smi -L 2>/dev/null; $PY -c "import jax, optax; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"
echo "== bench_training (ensemble)"; timeout 90 $PY benchmarks/bench_training.py --ensemble-only --quick 2>&1 | tee "$OUT/bench_training.txt"
echo "== bench_core"; timeout 60 $PY benchmarks/bench_core.py --quick 2>&1 | tee "$OUT/bench_core.txt"
echo "== fig3_trained, paper scale"
( time timeout 150 $PY -m molrg.cli run fig3_trained --set epochs=200 --set test_size=9000 \
    --out /tmp/molrg-device-results --fig-dir /tmp/molrg-device-figures ) 2>&1 | tail -n 40 | tee "$OUT/fig3.txt"
echo "== pytest (fast tier)"
timeout 220 $PY -m pytest -m "not slow" -q -n 8 -p no:cacheprovider 2>&1 | tail -n 80 | tee "$OUT/pytest.txt"
