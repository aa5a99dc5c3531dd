#!/usr/bin/env bash
# The main job on the bundled sample, from a fresh machine: set up the venv, look at the scan,
# simulate a clinician's sparse marks (3 labelled slices), segment the whole volume from them
# (SAM/walker pseudo-labels + a network trained in the background budget), and score the result
# against the expert labels.  Outputs go to ./out/demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh

CASE="${1:-hippocampus_001}"
IMG="napari_sparseseg/sample_data/hippocampus/imagesTr/$CASE.nii.gz"
GT="napari_sparseseg/sample_data/hippocampus/labelsTr/$CASE.nii.gz"
OUT="${SPARSESEG_DEMO_OUT:-out/demo}"
BUDGET="${SPARSESEG_DEMO_BUDGET:-45}"
mkdir -p "$OUT"

echo "== 1. the scan"
sparseseg info "$IMG"
echo "== 2. simulate a clinician: 3 fully labelled slices (background mark = 3)"
sparseseg simulate "$GT" --mode slices:3 --background-label 3 --seed 0 -o "$OUT/annotations.nii.gz" --overwrite
echo "== 3. segment the whole volume from those marks (budget ${BUDGET}s)"
sparseseg segment "$IMG" --annotations "$OUT/annotations.nii.gz" -o "$OUT/prediction.nii.gz" \
    --budget-seconds "$BUDGET" --save-model "$OUT/model.safetensors" --overwrite
echo "== 4. score against the expert labels"
sparseseg evaluate "$OUT/prediction.nii.gz" "$GT"
echo "done: open $IMG and $OUT/prediction.nii.gz in napari (napari $IMG $OUT/prediction.nii.gz)"
