#!/usr/bin/env bash
# The GPU goals in ONE call on a bare GPU machine (no venv, no network): its own
# python3 with PYTHONPATH=src. About 4-6 minutes on one H100/H200; on a machine
# without a GPU every GPU section says it was skipped, in one line, and it exits 0.
#
#   bash bench/gpu_checks.sh                 # summary in $OUT/ (or build/gpu-checks/)
#   device tool: run "bash bench/gpu_checks.sh" with timeout_s 420; for real BloodMNIST
#   first copy ../shared/data/bloodmnist28.npz into .device-data/ and carry ".device-data".
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export OMP_WAIT_POLICY=PASSIVE
OUT_DIR=${OUT:-build/gpu-checks}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
timeout 330 "$PY" bench/gpu_checks.py --out "$OUT_DIR" || echo "bench/gpu_checks.py: exit $? (see above)"
echo "## CUDA tests (they skip, each with its reason, without a GPU)" | tee -a "$OUT_DIR/gpu_checks.md"
timeout 150 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu_contract.py tests/test_augment_kernel.py \
  tests/test_estimator.py tests/test_metrics.py -k "cuda or torch_path" 2>&1 | tail -12 | tee -a "$OUT_DIR/gpu_checks.md"
# torchrun with one process on the GPU (the --nproc 1 path), and 2 processes sharing the GPU over gloo (synced BatchNorm)
timeout 120 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_distributed.py -k cuda 2>&1 | tail -4 | tee -a "$OUT_DIR/gpu_checks.md"
exit 0
