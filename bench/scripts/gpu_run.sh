#!/usr/bin/env bash
# One timed run on a many-core GPU machine: the seed-paper ablation and the cohort
# pretraining test side by side, each in its own process pool, results tarred into $1.
#
#   SPARSESEG_DATA=/path/to/data bash bench/scripts/gpu_run.sh OUT_DIR
#
# Both jobs share the GPU and the CPU cores (pseudo-labels are CPU work: the random walker), so their
# seconds are comparable within a job, not with the 2-core laptop numbers elsewhere in bench/.
# ABLATION_ARGS / COHORT_ARGS override the sizes (smoke runs on a CPU: see CONTRIBUTING.md).
set -u
OUT=${1:?usage: gpu_run.sh OUT_DIR}
RES=$(mktemp -d)
PY=${PYTHON:-python3}
ABL_LIMIT=${ABL_LIMIT:-300}
ABLATION_ARGS=${ABLATION_ARGS:---preset ablation --workers 10 --time-limit $ABL_LIMIT --device auto}
COHORT_ARGS=${COHORT_ARGS:---workers 5 --pretrain-steps 3000 --steps 150 --device auto}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
{
  date -u; getconf _NPROCESSORS_ONLN; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, monai, skimage; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__, 'skimage', skimage.__version__)"
  $PY -c "from napari_sparseseg.methods import load_all; print('methods', sorted(load_all()))"
} > "$RES/env.txt" 2>&1
cat "$RES/env.txt"
mkdir -p "$RES/ablation"
( $PY -m napari_sparseseg.cli bench $ABLATION_ARGS --fresh --out "$RES/ablation" --md "$RES/ablation/RESULTS.md" \
    --label "seed-paper ablation on a GPU machine (bench/scripts/gpu_run.sh)" > "$RES/ablation.log" 2>&1; echo "ablation rc $?" >> "$RES/ablation.log" ) &
ABL=$!
( $PY bench/scripts/bench_cohort.py $COHORT_ARGS --out "$RES/cohort_results" > "$RES/cohort.log" 2>&1; echo "cohort rc $?" >> "$RES/cohort.log" ) &
COH=$!
# progress lines while waiting (a remote run may hand back only the tail of stdout)
while kill -0 $ABL 2>/dev/null || kill -0 $COH 2>/dev/null; do
  sleep 30
  echo "[$(date -u +%T)] ablation rows: $(cat "$RES"/ablation/rows.jsonl 2>/dev/null | wc -l); cohort: $(grep -c '^{' "$RES/cohort.log")"
  tar czf "$OUT/results.tgz" -C "$RES" . 2>/dev/null  # partial results survive a timeout
done
tail -5 "$RES/ablation.log" "$RES/cohort.log"
rm -f "$RES"/*.safetensors
tar czf "$OUT/results.tgz" -C "$RES" .
cat "$RES/ablation/RESULTS.md" 2>/dev/null | head -60
cat "$RES/cohort_results.md" 2>/dev/null
