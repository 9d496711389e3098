#!/usr/bin/env bash
# Train the stem codecs of the next default model (spectral encoder + iSTFT decoder, TRAINING.md)
# on CPU, and measure them. Every step resumes: rerun after an interruption, or to continue a run
# in parts (STOP_AT=N trains up to step N and exits; the schedule is always that of STEPS).
#   usage: scripts/train_codecs.sh [WORK_DIR]     (default WORK_DIR: ./codec-work)
set -euo pipefail
WORK=${1:-codec-work}
MSG=${MSG:-musicgen-stem}
THREADS=${THREADS:-1}
STEPS=${STEPS:-4000}
SONGS=${SONGS:-300}
mkdir -p "$WORK"
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. Training songs (seed 0) and held-out songs of a seed never used for training (seed 1).
$MSG synth "$WORK/synth" --num-songs "$SONGS" --duration 30 --seed 0
$MSG synth "$WORK/heldout" --num-songs 8 --duration 30 --seed 1

# 2. One codec per stem (configs in scripts/codecs/): iSTFT decoder with integrated phase for all;
#    a waveform (SEANet) encoder for bass and other (1 s crops), the spectral encoder for drums
#    (0.5 s crops). Same loss and schedule; STOP_AT=N pauses every run at step N (rerun to go on).
for spec in bass:1.0 drums:0.5 other:1.0; do
  stem=${spec%%:*}; segment=${spec##*:}
  $MSG train-codec "$WORK/synth" --stem "$stem" --codec "$HERE/codecs/$stem.json" --out "$WORK/codec_$stem" \
    --steps "$STEPS" --warmup 100 --lr 5e-4 --segment "$segment" --batch-size 8 \
    --w-stft 1 --stft-scales 2048 4096 --mel-scales 512 1024 2048 \
    --log-every 25 --checkpoint-every 100 --val-every 500 --threads "$THREADS" --seed 0 \
    ${STOP_AT:+--stop-at "$STOP_AT"}
done

# 3. Fidelity on the held-out songs and the probe signals, beside the codecs shipped today.
python "$HERE/../benchmarks/codec_fidelity.py" --data "$WORK/heldout" --num-songs 8 --duration 10 \
  --model default --out "$WORK/fidelity" \
  --codec bass="$WORK/codec_bass/codec_bass.safetensors" \
  --codec drums="$WORK/codec_drums/codec_drums.safetensors" \
  --codec other="$WORK/codec_other/codec_other.safetensors"
