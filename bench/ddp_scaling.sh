#!/usr/bin/env bash
# Multi-GPU scaling of `medcne fit --nproc N` on ONE machine with several GPUs (no venv needed:
# python3 with torch and PYTHONPATH=src). For N in 1 2 4 8 (up to the GPUs present) it trains the
# same short stage-1 schedule at the same GLOBAL batch (1024, the paper's) and reports the views/s
# of the epochs after the first (history.csv, rank 0's view of the global batch), the speed-up over
# N=1 and the efficiency (speed-up / N); then the largest N again without synced BatchNorm, so the
# cost of syncing shows. Summary in $OUT/ddp_scaling.md (or build/ddp-scaling/).
#
#   bash bench/ddp_scaling.sh                      # GPUs; data: .device-data/bloodmnist28.npz, else
#                                                  # the bundled sample tiled to 17,092 images
#   DEVICE=cpu NPROCS="1 2" WIDTH=4 BATCH=64 EPOCHS=3 SUBSET=512 PY=.venv/bin/python \
#     bash bench/ddp_scaling.sh                    # a dry run of the script on a CPU (gloo)
#
# Knobs (environment): NPROCS, EPOCHS (default 6), BATCH (1024), WIDTH (64), PRESET (rotate),
# SUBSET (all), DEVICE (cuda), EXTRA (more `medcne fit` options, e.g. "--compile").
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT_DIR=${OUT:-build/ddp-scaling}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-6}; BATCH=${BATCH:-1024}; WIDTH=${WIDTH:-64}; PRESET=${PRESET:-rotate}; EXTRA=${EXTRA:-}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/ddp_scaling.md"

if [ "$DEVICE" = cuda ]; then
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  if [ "${GPUS:-0}" -lt 2 ]; then
    echo "bench/ddp_scaling.sh: needs a machine with 2 or more GPUs; this one has ${GPUS:-0} (skipped)" | tee "$SUMMARY"
    exit 0
  fi
  DEFAULT_NPROCS=$(for n in 1 2 4 8 16; do [ "$n" -le "$GPUS" ] && printf '%s ' "$n"; done)
  MACHINE=$(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | sed 's/^ *//' | paste -sd,)
else
  DEFAULT_NPROCS="1 2"
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per process, as torchrun sets it
  MACHINE="$(nproc) CPU cores ($DEVICE, gloo), load average $(cut -d' ' -f1 /proc/loadavg)"
fi
NPROCS=${NPROCS:-$DEFAULT_NPROCS}

DATA=.device-data/bloodmnist28.npz
if [ ! -f "$DATA" ]; then
  DATA="$OUT_DIR/tiled-sample.npz"
  [ -f "$DATA" ] || "$PY" - "$DATA" <<'EOF'
import sys
import numpy as np
from medcne.datasets import load_sample
s = load_sample()
reps = -(-17092 // len(s))
idx = np.arange(reps * len(s))[:17092] % len(s)
np.savez(sys.argv[1], images=s.images[idx], labels=s.labels[idx])
EOF
  [ -f "$DATA" ] || { echo "bench/ddp_scaling.sh: could not write $DATA (see above)"; exit 0; }
fi
SUB=${SUBSET:+--subset $SUBSET}

run() {  # run NAME NPROC OPTIONS...: one fit; prints its median views/s after the first epoch
  local name=$1 n=$2; shift 2
  local out="$OUT_DIR/$name"
  if ! timeout 1200 "$PY" -m medcne fit "$DATA" $SUB --out "$out" --overwrite --nproc "$n" --device "$DEVICE" \
       --epochs "$EPOCHS,0,1" --warmup 1,0,0 --batch-size "$BATCH" --width "$WIDTH" --preset "$PRESET" \
       $EXTRA "$@" > "$out.log" 2>&1; then
    echo "failed (see $out.log)"; return
  fi
  "$PY" - "$out/history.csv" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r['stage'] == 'pretrain']  # stage 3's one epoch: the map
print(f"{statistics.median(float(r['views_per_s']) for r in rows[1:] or rows):.0f}")
EOF
}

{
  echo "# medcne fit --nproc N: scaling at a global batch of $BATCH"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $MACHINE; data $DATA ${SUBSET:+(subset $SUBSET)};"
  echo "ResNet18 width $WIDTH, preset $PRESET, $EPOCHS stage-1 epochs (views/s: median of epochs 2..$EPOCHS) $EXTRA"
  echo
  echo "| processes | views/s | speed-up | efficiency |"
  echo "|---:|---:|---:|---:|"
} | tee "$SUMMARY"
BASE=""
for n in $NPROCS; do
  V=$(run "n$n" "$n" | tail -1)
  if [[ "$V" =~ ^[0-9]+$ ]]; then
    [ -z "$BASE" ] && BASE=$V
    awk -v n="$n" -v v="$V" -v b="$BASE" 'BEGIN { printf "| %d | %d | %.2f | %.2f |\n", n, v, v / b, v / b / n }'
  else
    echo "| $n | $V | | |"
  fi
done | tee -a "$SUMMARY"
LAST=$(echo $NPROCS | awk '{print $NF}')
if [ "$LAST" -gt 1 ]; then
  V=$(run "n$LAST-no-sync-bn" "$LAST" --no-sync-bn | tail -1)
  echo "| $LAST, --no-sync-bn | $V | | |" | tee -a "$SUMMARY"
fi
echo "(logs and run folders in $OUT_DIR)" | tee -a "$SUMMARY"
exit 0
