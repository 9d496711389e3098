#!/usr/bin/env bash
# GPU check, one command, under 10 minutes on one GPU (random weights, nothing to download):
#   1. generation and an edit with the tiny and medium-6cb shapes in float32, bfloat16 and
#      float16, eager and compiled (CUDA graphs): steps/s, real-time factor, graphs compiled,
#      bf16/fp16 tokens and teacher-forced logits against float32, kept stems bit-exact;
#   2. 30 steps of LM and codec training under bf16 autocast;
#   3. torchrun with NCCL on 1 GPU: both trainers with DDP, then FSDP2, then a rerun (resume).
#   usage: scripts/gpu_check.sh [WORK_DIR]    (default: a fresh temporary folder)
#   MEDIUM_COMPILE="bfloat16 float16" widens the compiled medium-6cb runs (2 min of compiling each);
#   PRESETS=tiny skips the medium-6cb shapes, TINY_COMPILE=bfloat16 compiles tiny in one dtype only
#   (a 4-minute check); PYTHON picks the interpreter; DEVICE=cpu DTYPES=float32 TINY_COMPILE="" is a
#   dry run of the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d -t gpu-check-XXXX)}
MEDIUM_COMPILE=${MEDIUM_COMPILE:-bfloat16}
PRESETS=${PRESETS:-tiny medium-6cb}
TINY_COMPILE=${TINY_COMPILE-float32 bfloat16 float16}
DTYPES=${DTYPES:-float32 bfloat16 float16}
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo "[gpu-check] work folder: $WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
start=$(date +%s)

# 1. generation (benchmarks/gpu_check.py imports benchmarks/common.py: run from there)
(cd benchmarks && $PY gpu_check.py generate --presets tiny --dtypes $DTYPES --compile-dtypes $TINY_COMPILE --device "$DEVICE")
if [[ " $PRESETS " == *" medium-6cb "* ]]; then
  (cd benchmarks && $PY gpu_check.py generate --presets medium-6cb --dtypes $DTYPES --compile-dtypes $MEDIUM_COMPILE --device "$DEVICE")
fi

# 2. training under bf16 autocast (also writes the tiny model, tokens and songs used below)
(cd benchmarks && $PY gpu_check.py train --work "$WORK" --steps 30 --device "$DEVICE")

# 3. NCCL on one GPU: the commands of README/TRAINING.md with --nproc_per_node=1
LM=(--model "$WORK/model" --data "$WORK/tokens" --steps 10 --batch-size 8 --log-every 5
    --checkpoint-every 5 --validate-every 10 --valid-fraction 0.25 --valid-batches 1 --device "$DEVICE")
CODEC=("$WORK/songs" --stem bass --codec mini --steps 10 --batch-size 8 --segment 0.5 --log-every 5
       --checkpoint-every 5 --val-every 10 --device "$DEVICE")
for mode in ddp fsdp; do
  fsdp=""; [ "$mode" = fsdp ] && fsdp=--fsdp
  run=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m)
  "${run[@]}" musicgen_stem.training.lm "${LM[@]}" --out "$WORK/lm_$mode" $fsdp
  "${run[@]}" musicgen_stem.training.lm "${LM[@]}" --out "$WORK/lm_$mode" $fsdp --steps 15  # resumes at 10
  "${run[@]}" musicgen_stem.training.codec "${CODEC[@]}" --out "$WORK/codec_$mode" $fsdp
  echo "[gpu-check] torchrun NCCL $mode: LM and codec trained, LM resumed"
done
"$PY" - "$WORK" <<'EOF'
import sys, torch
work = sys.argv[1]
for mode in ("ddp", "fsdp"):
    lm = torch.load(f"{work}/lm_{mode}/checkpoint.pt", weights_only=True)
    codec = torch.load(f"{work}/codec_{mode}/checkpoint.pt", weights_only=True)
    assert lm["step"] == 15 and codec["step"] == 10, (lm["step"], codec["step"])
a, b = (torch.load(f"{work}/lm_{m}/checkpoint.pt", weights_only=True)["lm"] for m in ("ddp", "fsdp"))
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print(f"[gpu-check] LM after 15 steps, FSDP vs DDP (1 GPU): max parameter difference {diff:.2e}")
EOF
echo "[gpu-check] all done in $(( $(date +%s) - start )) s"
