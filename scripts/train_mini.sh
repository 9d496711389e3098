#!/usr/bin/env bash
# Reproduce the shipped default model `mini` on a CPU (2 cores: about 1 h 30 min in all).
# Every step is resumable: rerun the script after an interruption and it continues.
#   usage: scripts/train_mini.sh [WORK_DIR]     (default WORK_DIR: ./mini-work)
set -euo pipefail
WORK=${1:-mini-work}
MSG=${MSG:-musicgen-stem}
THREADS=${THREADS:-2}
mkdir -p "$WORK"

# 1. 400 synthetic songs of 30 s, every stem rendered with FluidSynth (seed 0).
$MSG synth "$WORK/synth" --num-songs 400 --duration 30 --seed 0

# 2. One codec per stem (mini codec: n_filters 8, dimension 64, 1024 bins), 1500 steps each.
for spec in bass:1 drums:1 other:2; do
  stem=${spec%%:*}; nq=${spec##*:}
  $MSG train-codec "$WORK/synth" --stem "$stem" --n-q "$nq" --out "$WORK/codec_$stem" \
    --steps 1500 --warmup 100 --lr 5e-4 --log-every 25 --checkpoint-every 250 --val-every 500 \
    --threads "$THREADS" --seed 0
done

# 3. Assemble a model folder: the mini preset with the trained codecs and a fresh LM.
$MSG init "$WORK/init" --preset mini --seed 0 --force \
  --codec bass="$WORK/codec_bass/codec_bass.safetensors" \
  --codec drums="$WORK/codec_drums/codec_drums.safetensors" \
  --codec other="$WORK/codec_other/codec_other.safetensors"

# 4. Encode every song's stems into the token dataset.
$MSG prepare --input "$WORK/synth" --model "$WORK/init" --out "$WORK/tokens" --quiet

# 5. Train the LM: text-to-stems and masked-stem edit batches (half each), 10 s crops.
$MSG train-lm --model "$WORK/init" --data "$WORK/tokens" --out "$WORK/lm" \
  --steps "${LM_STEPS:-2000}" --batch-size 8 --lr 1e-3 --warmup 100 --ema-decay 0.995 \
  --log-every 10 --checkpoint-every 50 --validate-every 250 --num-threads "$THREADS" --seed 0

# 6. Ship it: the LM in float16 (loading upcasts to float32), codecs as trained.
python -c "import sys, torch; from musicgen_stem.modeldir import load_model, save_model; \
save_model(load_model(sys.argv[1]), sys.argv[2], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm/model" "${SHIP_TO:-$WORK/mini}"
echo "model: ${SHIP_TO:-$WORK/mini}"
