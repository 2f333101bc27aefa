#!/usr/bin/env bash
# The BUS-BRA recipe runs of docs/recipes.md, each trained on the authors' 5-fold split with
# test fold K (default 1) and scored on that test fold: without and with test-time mirroring,
# and on lesion-free views of the same test images (a crop beside each lesion, empty truth).
#
#   bash tools/busbra_recipes.sh BUSBRA_DIR [OUT] [RECIPE...]
#
# BUSBRA_DIR is the data set as downloaded (Images/, Masks/, bus_data.csv, 5-fold-cv.csv);
# OUT defaults to runs/recipes; RECIPE names rows of the table below (default: all). Each
# run's folder holds metrics.csv (per-epoch times), eval/ (the test fold), eval-tta/ and
# eval-lesion-free/; `train` and `eval` print what they did. On a 2-core CPU through
# lavapipe one 16-epoch run at 64x64, F 4 takes about 30 minutes (session 14's build).
set -euo pipefail
DATA=${1:?usage: busbra_recipes.sh BUSBRA_DIR [OUT] [RECIPE...]}
OUT=${2:-runs/recipes}
shift $(( $# >= 2 ? 2 : 1 ))
BIN=${BIN:-target/release/rca-gpu}
FOLD=${FOLD:-1}
COMMON="--data $DATA --fold $FOLD --size 64 --width 4 --batch 4 --bn-momentum 0.9"

declare -A RECIPES=(
    [base16]="--epochs 16"
    [lesionfree16]="--epochs 16 --lesion-free 0.25"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(base16 lesionfree16)
for name in "${names[@]}"; do
    extra=${RECIPES[$name]:?unknown recipe $name (known: ${!RECIPES[*]})}
    run="$OUT/$name"
    # shellcheck disable=SC2086
    "$BIN" train $COMMON $extra --out "$run"
    ck="$run/best.safetensors"
    "$BIN" eval --checkpoint "$ck" --out "$run/eval"
    "$BIN" eval --checkpoint "$ck" --tta --out "$run/eval-tta"
    "$BIN" eval --checkpoint "$ck" --lesion-free-views --out "$run/eval-lesion-free"
done
