#!/usr/bin/env bash
# The study benchmark on a GPU machine, in two sittings because the data travel in two parts:
#   bash bench/scripts/gpu_study.sh hippo   # installs the carried wheels, unpacks part A, runs hippocampus
#   bash bench/scripts/gpu_study.sh acdc    # unpacks part B, runs the ACDC tuning + learning curve
# Results: $OUT/rows_<phase>.tgz (one JSON per job) and $OUT/README_<phase>.md.
set -u
PHASE=${1:?hippo or acdc}
OUTDIR=${OUT:-/tmp/out}
mkdir -p "$OUTDIR" /tmp/data
if [ ! -d /tmp/site/monai ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
[ -d .devA/data ] && cp -rT .devA/data /tmp/data
[ -d .devB/data ] && cp -rT .devB/data /tmp/data
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi -L; nproc
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ "$PHASE" = hippo ]; then
  ARGS="--hippo-budget ${HIPPO_BUDGET:-45} --per-scan-steps 100 --time-limit ${LIMIT:-200}"
else
  ARGS="--budget ${BUDGET:-120} --finetune-steps 100 --per-scan-steps 200 --time-limit ${LIMIT:-400}"
fi
python3 bench/scripts/bench_study.py --data /tmp/data --out /tmp/study_$PHASE --only $PHASE --workers ${WORKERS:-12} \
  --threads 1 --device auto $ARGS 2>&1 | tee "$OUTDIR/log_$PHASE.txt"
tar czf "$OUTDIR/rows_$PHASE.tgz" -C /tmp/study_$PHASE rows $(cd /tmp/study_$PHASE && ls chosen.json meta.json 2>/dev/null)
cp /tmp/study_$PHASE/README.md "$OUTDIR/README_$PHASE.md" 2>/dev/null
cat "$OUTDIR/README_$PHASE.md" 2>/dev/null | head -60
