#!/usr/bin/env bash
# Soak test: does rca-gpu keep its memory flat and lose nothing over a long run?
#
#   bash tools/soak.sh [BIN] [OUT]      (BIN default target/release/rca-gpu, OUT /tmp/rca-soak)
#
# 1. infer over IMAGES images (default 2000): phantoms at mixed sizes (64 to 512 px, some
#    not square), every 50th file corrupt, with --skip-bad; checks that every good image got
#    its mask, probability and overlay and that every corrupt one was named.
# 2. a TRAIN_EPOCHS-epoch (default 200) training run at 32x32, F 2, 8 phantoms.
# Each process's resident memory (VmRSS, which on lavapipe includes the "GPU" buffers) is
# sampled every 0.5 s into OUT/<phase>_rss.csv (seconds, MiB); the summary lines give the
# first, peak and last sample and the growth between the end of the first and the last
# fifth of the run.
set -euo pipefail
BIN=${1:-target/release/rca-gpu}
OUT=${2:-/tmp/rca-soak}
IMAGES=${IMAGES:-2000}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-200}
BIN=$(realpath "$BIN")
rm -rf "$OUT"; mkdir -p "$OUT/images"

sample() { # pid csv: VmRSS every 0.5 s until the process ends
    local pid=$1 csv=$2 t0; t0=$(date +%s%N)
    echo "seconds,rss_mib" > "$csv"
    while kill -0 "$pid" 2>/dev/null; do
        local kb; kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        [ -n "$kb" ] && echo "$((ms / 1000)).$(printf %03d $((ms % 1000))),$((kb / 1024))" >> "$csv"
        sleep 0.5
    done
}
summary() { # csv phase
    python3 - "$1" "$2" <<'EOF'
import csv, sys
rows = [(float(r["seconds"]), int(r["rss_mib"])) for r in csv.DictReader(open(sys.argv[1]))]
n = len(rows); fifth = max(1, n // 5)
early = max(m for _, m in rows[:fifth]); late = max(m for _, m in rows[-fifth:])
print(f"{sys.argv[2]}: {n} samples over {rows[-1][0]:.0f} s; RSS first {rows[0][1]} MiB, "
      f"peak {max(m for _, m in rows)} MiB, last {rows[-1][1]} MiB; "
      f"max of the first fifth {early} MiB, of the last fifth {late} MiB ({late - early:+d} MiB)")
EOF
}

# The images: phantoms of several sizes, a few corrupt files among them.
model_dir="$OUT/model"
"$BIN" train --epochs 1 --out "$model_dir" > "$OUT/model.log" 2>&1
sizes=(64 96 128 200 256 512)
per=$(( (IMAGES + ${#sizes[@]} - 1) / ${#sizes[@]} ))
for s in "${sizes[@]}"; do
    "$BIN" synth --out "$OUT/synth_$s" --count "$per" --size "$s" --seed "$s" > /dev/null 2>&1
done
i=0; bad=0
for f in "$OUT"/synth_*/*/*.png; do
    case "$f" in *_mask*) continue ;; esac
    [ "$i" -ge "$IMAGES" ] && break
    if [ $((i % 50)) -eq 49 ]; then
        head -c 300 "$f" > "$OUT/images/img_$i.png"; bad=$((bad + 1))
    else
        cp "$f" "$OUT/images/img_$i.png"
    fi
    i=$((i + 1))
done
echo "soak: $i images, $bad of them corrupt"

"$BIN" infer --checkpoint "$model_dir/best.safetensors" --skip-bad --out "$OUT/pred" "$OUT/images" \
    > "$OUT/infer.log" 2>&1 &
pid=$!; sample "$pid" "$OUT/infer_rss.csv"; wait "$pid"
masks=$(ls "$OUT/pred" | grep -c '_mask.png$' || true)
named=$(grep -c '^warning: skipped: .*img_.*\.png' "$OUT/infer.log" || true)
echo "infer: $masks masks written for $((i - bad)) good images; $named of the $bad corrupt files named as skipped"
[ "$masks" -eq $((i - bad)) ] && [ "$named" -eq "$bad" ] || { echo "soak: images were lost"; exit 1; }
summary "$OUT/infer_rss.csv" infer

"$BIN" train --size 32 --width 2 --phantoms 8 --batch 2 --epochs "$TRAIN_EPOCHS" --early-stop 100000 \
    --out "$OUT/train" > "$OUT/train.log" 2>&1 &
pid=$!; sample "$pid" "$OUT/train_rss.csv"; wait "$pid"
epochs=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$OUT/train/metrics.json")
echo "train: $epochs epochs recorded"
summary "$OUT/train_rss.csv" train
