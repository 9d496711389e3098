#!/usr/bin/env bash
# Reproduce the shipped default model `mini` (TRAINING.md has the times): data and codecs on a CPU
# (2 cores), the LM on one GPU (6 min on an H200; LM_DEVICE=cpu works too: about 2 days on 2 cores).
# Every step resumes: rerun the script after an interruption and it continues.
#   usage: scripts/train_mini.sh [WORK_DIR]     (default WORK_DIR: ./mini-work)
# The three codec runs are independent: with more cores, run them in parallel (one thread each).
set -euo pipefail
WORK=${1:-mini-work}
MSG=${MSG:-musicgen-stem}
THREADS=${THREADS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"

# 1. 2700 synthetic songs of 30 s (seed 0): several soundfonts, sampled drum kits, a mix per stem.
#    The codecs train on the first 300 (as shipped: they were trained before the others existed).
$MSG synth "$WORK/synth300" --num-songs 300 --duration 30 --seed 0
[ -d "$WORK/synth" ] || cp -r "$WORK/synth300" "$WORK/synth"    # songs 0-299 are the same; add 2400
$MSG synth "$WORK/synth" --num-songs 2700 --duration 30 --seed 0 --workers 2

# 2. One codec per stem (scripts/codecs/): the parametric bass codec (YIN pitch, harmonic + noise
#    decoder; crops transposed by up to 7 semitones so every note E1..G3 has codes), the drums codec
#    (spectral encoder, iSTFT decoder; the 4000-step schedule stopped at 1900 as it was shipped) and
#    the parametric "other" codec (chroma encoder, tone bank). One thread each (deterministic).
COMMON=(--w-stft 1 --stft-scales 2048 4096 --mel-scales 512 1024 2048 --log-every 25 --checkpoint-every 100
  --val-every 500 --threads 1 --seed 0)
$MSG train-codec "$WORK/synth300" --stem bass --codec "$HERE/codecs/bass_harmonic.json" --out "$WORK/codec_bass" \
  --steps 1200 --warmup 50 --lr 1e-3 --segment 1.0 --batch-size 16 --pitch-shift 7 --w-l1 0 --w-commit 0 "${COMMON[@]}"
$MSG train-codec "$WORK/synth300" --stem drums --codec "$HERE/codecs/drums.json" --out "$WORK/codec_drums" \
  --steps 4000 --stop-at 1900 --warmup 100 --lr 5e-4 --segment 0.5 --batch-size 8 "${COMMON[@]}"
$MSG train-codec "$WORK/synth300" --stem other --codec "$HERE/codecs/other_tonal.json" --out "$WORK/codec_other" \
  --steps 1000 --warmup 50 --lr 1e-3 --segment 1.0 --batch-size 16 --w-l1 0 --w-commit 0 "${COMMON[@]}"

# 2b. Decoder fine-tunes (--freeze-codes: encoder and codebooks stay bit-exact, so the tokens of
#     step 4 are the same with or without them; the shipped run did them after the LM). Drums: mel
#     and STFT losses, two runs; other: + the chroma loss, three runs; bass: one run, on the codebook
#     filled in step 6 (the filled entries are ones the LM's tokens never use).
FT=(--freeze-codes --w-stft 1 --stft-scales 2048 4096 --mel-scales 512 1024 2048 --log-every 25
  --checkpoint-every 100 --threads 1)
$MSG train-codec "$WORK/synth300" --stem drums --codec "$HERE/codecs/drums.json" --out "$WORK/ft_drums" \
  --init-from "$WORK/codec_drums/codec_drums.safetensors" --steps 1500 --warmup 20 --lr 2e-4 --segment 0.5 \
  --batch-size 8 --val-every 500 --seed 0 "${FT[@]}"
$MSG train-codec "$WORK/synth300" --stem drums --codec "$HERE/codecs/drums.json" --out "$WORK/ft2_drums" \
  --init-from "$WORK/ft_drums/codec_drums.safetensors" --steps 3000 --warmup 50 --lr 3e-4 --segment 0.5 \
  --batch-size 8 --val-every 1000 --seed 1 "${FT[@]}"
OTHER=(--stem other --codec "$HERE/codecs/other_tonal.json" --warmup 20 --segment 1.0 --batch-size 16 --w-l1 0
  --w-commit 0)
$MSG train-codec "$WORK/synth300" "${OTHER[@]}" --out "$WORK/ft_other" --w-chroma 10 --steps 600 --lr 3e-4 \
  --init-from "$WORK/codec_other/codec_other.safetensors" --val-every 300 --seed 0 "${FT[@]}"
$MSG train-codec "$WORK/synth300" "${OTHER[@]}" --out "$WORK/ft2_other" --w-chroma 40 --steps 800 --lr 5e-4 \
  --init-from "$WORK/ft_other/codec_other.safetensors" --val-every 400 --seed 1 "${FT[@]}"
$MSG train-codec "$WORK/synth300" "${OTHER[@]}" --out "$WORK/ft3_other" --w-chroma 40 --steps 1200 --lr 5e-4 \
  --init-from "$WORK/ft2_other/codec_other.safetensors" --val-every 600 --seed 2 "${FT[@]}"

# 3. Assemble a model folder: the mini preset (MiniLM text + tempo and key tokens) with the trained
#    codecs and a fresh LM.
$MSG init "$WORK/init" --preset mini --seed 0 --force \
  --codec bass="$WORK/codec_bass/codec_bass.safetensors" \
  --codec drums="$WORK/ft2_drums/codec_drums.safetensors" \
  --codec other="$WORK/ft3_other/codec_other.safetensors"

# 4. Encode every song's stems into the token dataset.
$MSG prepare --input "$WORK/synth" --model "$WORK/init" --out "$WORK/tokens" --quiet

# 5. Train the LM: text-to-stems and masked-stem edit batches (half each), 10 s crops, batch 64,
#    dropout 0.1, bf16 on the GPU. (The shipped run prepared the same 2700 songs in five folders,
#    of 300, 300, 300, 900 and 900 songs, so its 54 validation songs and batch order differ from
#    this single folder's.)
$MSG train-lm --model "$WORK/init" --data "$WORK/tokens" --out "$WORK/lm" \
  --steps "${LM_STEPS:-5600}" --batch-size 64 --lr 1.5e-3 --warmup 200 --ema-decay 0.999 --dropout 0.1 \
  --log-every 50 --checkpoint-every 250 --validate-every 500 --device "${LM_DEVICE:-cuda}" \
  --num-threads "$THREADS" --seed 0

# 5b. Fine-tune for edits on the CPU (2 threads, 45 min): 70 % edit batches whose regenerated stems
#     read a history with half of its tokens random (--history-noise), so that the drums take their
#     phase from the kept stems. (The shipped run started from step 5's weights rounded to float16.)
$MSG train-lm --model "$WORK/lm/model" --data "$WORK/tokens" --out "$WORK/lm_edit" \
  --steps 2500 --batch-size 8 --lr 3e-4 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.7 --log-every 25 --checkpoint-every 100 --validate-every 1000 --device cpu \
  --num-threads "$THREADS" --seed 1

# 5c. Give the LM its beat grid (--beat-grid; zero at first) and fine-tune on the CPU (2 threads,
#     42 min): text batches read the grid of their caption's tempo from the song's first downbeat,
#     edit batches its 8th-note grid, so that text -> stems keeps the prompt's tempo and edits lock
#     to the kept stems' beat. (The shipped run's first 500 steps had no grid in edit batches.)
$MSG train-lm --model "$WORK/lm_edit/model" --data "$WORK/tokens" --out "$WORK/lm_grid" \
  --steps 3000 --batch-size 8 --lr 3e-4 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.5 --beat-grid --log-every 25 --checkpoint-every 100 --validate-every 1000 --device cpu \
  --num-threads "$THREADS" --seed 2

# 5d. 1500 more CPU steps (23 min): 60 % edit batches at a lower learning rate, so that edited
#     drums learn which 8ths of the grid are beats.
$MSG train-lm --model "$WORK/lm_grid/model" --data "$WORK/tokens" --out "$WORK/lm_grid2" \
  --steps 1500 --batch-size 8 --lr 2e-4 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.6 --log-every 25 --checkpoint-every 100 --validate-every 750 --device cpu \
  --num-threads "$THREADS" --seed 3

# 6. The LM in float16 (loading upcasts to float32), then the bass codebook filled on the note grid:
#    entries the LM's tokens never use get the timbres the codebook lacks on each note C1..G3
#    (every pure tone then comes back on its note); the LM reads each as the used code nearest it.
python -c "import sys, torch; from musicgen_stem.modeldir import load_model, save_model; \
save_model(load_model(sys.argv[1]), sys.argv[2], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm_grid2/model" "$WORK/lm_fp16"
python -m musicgen_stem.training.codebook "$WORK/lm_fp16" --tokens "$WORK/tokens" --out "$WORK/filled" --force

# 7. The bass decoder fine-tuned on the filled codebook (decoder only, as in 2b): the model before 8.
$MSG train-codec "$WORK/synth300" --stem bass --codec "$HERE/codecs/bass_harmonic.json" --out "$WORK/ft_bass" \
  --init-from "$WORK/filled/codec_bass.safetensors" --steps 2000 --warmup 50 --lr 5e-4 --segment 1.0 \
  --batch-size 16 --pitch-shift 7 --w-l1 0 --w-commit 0 --val-every 500 --seed 1 "${FT[@]}"
python -c "import sys, torch; from safetensors.torch import load_file; \
from musicgen_stem.modeldir import load_model, save_model; parts = load_model(sys.argv[1]); \
parts.codec.codecs['bass'].load_state_dict(load_file(sys.argv[2]), strict=True); \
save_model(parts, sys.argv[3], force=True, lm_dtype=torch.float16)" \
  "$WORK/filled" "$WORK/ft_bass/codec_bass.safetensors" "$WORK/mini8"

# 8. A second bass codebook: the bass codec grown (attack and finer bands in its latent, a second
#    codebook; --keep-codebooks 1 keeps every first-codebook code the LM learnt), the LM grown by
#    that stream (zero at first: `training/grow.py`), 900 songs tokenized with it (the shipped run:
#    songs 0-299, 300-599 and 600-899 in three folders, three processes of one thread each, 10 min),
#    and the new stream's output head trained alone (--train-heads 1: every other weight frozen, so
#    the old streams keep their probabilities; 2 threads, 8 min). Ship it.
$MSG train-codec "$WORK/synth300" --stem bass --codec "$HERE/codecs/bass_detail.json" --out "$WORK/grow_bass" \
  --init-from "$WORK/mini8/codec_bass.safetensors" --keep-codebooks 1 --steps 1200 --warmup 50 --lr 5e-4 \
  --segment 1.0 --batch-size 16 --pitch-shift 7 --w-l1 0 --w-commit 0 --w-stft 1 --stft-scales 512 2048 4096 \
  --mel-scales 512 1024 2048 --log-every 25 --checkpoint-every 100 --val-every 500 --threads "$THREADS" --seed 1
python -m musicgen_stem.training.grow "$WORK/mini8" --codec bass="$WORK/grow_bass/codec_bass.safetensors" \
  --out "$WORK/grown" --force
mkdir -p "$WORK/synth900"
for i in $(seq -f "%05g" 0 899); do ln -sfn "$(cd "$WORK/synth" && pwd)/song_$i" "$WORK/synth900/song_$i"; done
$MSG prepare --input "$WORK/synth900" --model "$WORK/grown" --out "$WORK/tokens_grown" --quiet
$MSG train-lm --model "$WORK/grown" --data "$WORK/tokens_grown" --out "$WORK/lm_heads" \
  --steps 800 --batch-size 8 --lr 1e-3 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.5 --train-heads 1 --log-every 25 --checkpoint-every 100 --validate-every 500 --device cpu \
  --num-threads "$THREADS" --seed 5
python -c "import sys, torch; from musicgen_stem.modeldir import load_model, save_model; \
save_model(load_model(sys.argv[1]), sys.argv[2], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm_heads/model" "$WORK/mini9"

# 9. A third codebook for the other stem, the same way: the other codec grown (attack, 12 band
#    levels and 4 flatnesses from a 2048-point STFT; --keep-codebooks 2), its decoder fine-tuned on
#    the frozen codes with the mel loss weighted up (--w-msspec 16 --w-stft 0), the LM grown by the
#    stream, 900 songs tokenized, and the new stream's head trained alone (--train-heads 5). The
#    fine-tune changes no code, so the tokens come from the grown codec and the decoder is swapped in.
$MSG train-codec "$WORK/synth300" --stem other --codec "$HERE/codecs/other_detail.json" --out "$WORK/grow_other" \
  --init-from "$WORK/mini9/codec_other.safetensors" --keep-codebooks 2 --steps 1200 --warmup 50 --lr 5e-4 \
  --segment 1.0 --batch-size 16 --w-l1 0 --w-commit 0 --w-chroma 40 --w-stft 1 --stft-scales 2048 4096 \
  --mel-scales 512 1024 2048 --log-every 25 --checkpoint-every 100 --val-every 400 --threads 1 --seed 1
$MSG train-codec "$WORK/synth300" --stem other --codec "$HERE/codecs/other_detail.json" --out "$WORK/ft_other9" \
  --init-from "$WORK/grow_other/codec_other.safetensors" --freeze-codes --steps 800 --warmup 20 --lr 3e-4 \
  --segment 1.0 --batch-size 16 --w-l1 0 --w-commit 0 --w-chroma 40 --w-msspec 16 --w-stft 0 \
  --stft-scales 2048 4096 --mel-scales 512 1024 2048 --log-every 25 --checkpoint-every 100 --val-every 400 \
  --threads 1 --seed 2
python -m musicgen_stem.training.grow "$WORK/mini9" --codec other="$WORK/grow_other/codec_other.safetensors" \
  --out "$WORK/grown9" --force
$MSG prepare --input "$WORK/synth900" --model "$WORK/grown9" --out "$WORK/tokens_grown9" --quiet
$MSG train-lm --model "$WORK/grown9" --data "$WORK/tokens_grown9" --out "$WORK/lm_heads9" \
  --steps 800 --batch-size 8 --lr 1e-3 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.5 --train-heads 5 --log-every 25 --checkpoint-every 100 --validate-every 500 --device cpu \
  --num-threads "$THREADS" --seed 6
python -c "import sys, torch; from safetensors.torch import load_file; \
from musicgen_stem.modeldir import load_model, save_model; parts = load_model(sys.argv[1]); \
parts.codec.codecs['other'].load_state_dict(load_file(sys.argv[2]), strict=True); \
save_model(parts, sys.argv[3], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm_heads9/model" "$WORK/ft_other9/codec_other.safetensors" "$WORK/mini10"

# 11. Chord conditioning: the chords of each synthetic song (its meta.json, read beside the tokens'
#     source) fed per step (--chords: a zero-initialised layer, learning at 10x the rate), every
#     weight fine-tuned; each song's chords dropped with probability 0.2 so the model also works
#     without. The shipped run tokenized 170 of the 300 songs (it was stopped to start training).
$MSG prepare --input "$WORK/synth300" --model "$WORK/mini10" --out "$WORK/tokens_chords" --quiet
$MSG train-lm --model "$WORK/mini10" --data "$WORK/tokens_chords" --out "$WORK/lm_chords" \
  --steps 1500 --batch-size 8 --lr 3e-4 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.6 --chords --steps-lr-scale 10 --checkpoint-every 250 --validate-every 500 --device cpu \
  --num-threads "$THREADS" --seed 5
python -c "import sys, torch; from musicgen_stem.modeldir import load_model, save_model; \
save_model(load_model(sys.argv[1]), sys.argv[2], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm_chords/model" "$WORK/mini11"

# 12. The chord fine-tune continued on more songs: 400 of the 2700 (songs 0-399), tokenized with
#     mini11 in two folders by two processes of one thread each (9 min), 2000 more steps at the same
#     rates (the shipped run: 41 min on 2 threads, evaluations and tests alongside part of the time).
mkdir -p "$WORK/synthA" "$WORK/synthB"
for i in $(seq -f "%05g" 0 199); do ln -sfn "$(cd "$WORK/synth" && pwd)/song_$i" "$WORK/synthA/song_$i"; done
for i in $(seq -f "%05g" 200 399); do ln -sfn "$(cd "$WORK/synth" && pwd)/song_$i" "$WORK/synthB/song_$i"; done
OMP_NUM_THREADS=1 $MSG prepare --input "$WORK/synthA" --model "$WORK/mini11" --out "$WORK/tokensA" --quiet &
OMP_NUM_THREADS=1 $MSG prepare --input "$WORK/synthB" --model "$WORK/mini11" --out "$WORK/tokensB" --quiet &
wait
$MSG train-lm --model "$WORK/mini11" --data "$WORK/tokensA" "$WORK/tokensB" --out "$WORK/lm_chords2" \
  --steps 2000 --batch-size 8 --lr 3e-4 --warmup 50 --ema-decay 0.99 --dropout 0 --history-noise 0.5 \
  --edit-prob 0.6 --chords --steps-lr-scale 10 --checkpoint-every 250 --validate-every 1000 --device cpu \
  --num-threads "$THREADS" --seed 7
python -c "import sys, torch; from musicgen_stem.modeldir import load_model, save_model; \
save_model(load_model(sys.argv[1]), sys.argv[2], force=True, lm_dtype=torch.float16)" \
  "$WORK/lm_chords2/model" "${SHIP_TO:-$WORK/mini}"
echo "model: ${SHIP_TO:-$WORK/mini}"
