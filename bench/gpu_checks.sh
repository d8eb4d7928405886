#!/usr/bin/env bash
# The GPU checks of issues 3-5 in one short run, for a machine with CUDA
# (e.g. the device tool: `run` with this script, timeout ~400 s). Uses the
# bundled sample only (../shared does not travel). Needs the .venv built by `make`.
set -u
PY=${PY:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== augmentation views/s on CUDA (goal: >= 1,000,000 at 28x28)"
timeout 150 $PY bench/augment.py --device cuda --sizes 28 96 --seconds 3 --ref-images 2048
echo "== share of a training step making the views (goal: < 10%)"
timeout 120 $PY bench/step_share.py --device cuda --width 64 --batch-size 1024 --steps 20 --profile
echo "== GPU paths of the test suite (bf16, channels_last, CUDA augmentation)"
timeout 200 $PY -m pytest -q -rs tests/test_augment_kernel.py tests/test_estimator.py tests/test_metrics.py -k "cuda or torch_path" 2>&1 | tail -5
echo "== silhouette on CUDA against the CPU kernel"
timeout 60 $PY bench/silhouette.py --n 50000 --big 0 --device cuda
