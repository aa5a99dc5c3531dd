#!/usr/bin/env bash
# The full benchmark (`sparseseg bench`, preset `full`) on a 16-core GPU machine, results in
# bench/results/full and bench/results/full/RESULTS.md of this working copy; the JSON, the report and the log are
# copied into $1 every 30 s so a timeout still leaves every finished row behind.  Only 6 files go to $1:
# a GPU machine may hand back only a few files per run (the plots are regenerated from the JSON with --report-only).
#
#   SPARSESEG_DATA=/path/to/data bash bench/scripts/gpu_bench_full.sh OUT_DIR [extra bench args]
#
# Why a GPU machine: the seed-paper methods train for 200 steps on 42 (case, setting) pairs; on the
# 2-core laptop that is many hours (RESULTS.md extrapolates it), here about 8 minutes with 14 workers.
set -u
OUT=${1:?usage: gpu_bench_full.sh OUT_DIR [extra bench args]}
shift
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-14}
LIMIT=${LIMIT:-330}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p bench/results/full "$OUT"
{
  date -u; getconf _NPROCESSORS_ONLN; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, monai, skimage; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__, 'skimage', skimage.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
( $PY -m napari_sparseseg.cli bench --workers "$WORKERS" --time-limit "$LIMIT" --device auto ${FRESH---fresh} \
    --out bench/results/full --md bench/results/full/RESULTS.md "$@" > "$OUT/bench.log" 2>&1; echo "bench rc $?" >> "$OUT/bench.log" ) &
PID=$!
while kill -0 $PID 2>/dev/null; do
  sleep 30
  echo "[$(date -u +%T)] rows: $(cat bench/results/full/rows.jsonl 2>/dev/null | wc -l), active: $(cat bench/results/full/active.jsonl 2>/dev/null | wc -l), $(grep -c 'done:' "$OUT/bench.log") jobs done"
  cp bench/results/full/rows.jsonl bench/results/full/active.jsonl bench/results/full/results.json "$OUT/" 2>/dev/null
done
cp bench/results/full/rows.jsonl bench/results/full/active.jsonl bench/results/full/results.json bench/results/full/RESULTS.md "$OUT/" 2>/dev/null
grep -v "^\[worker" "$OUT/bench.log" | tail -15
