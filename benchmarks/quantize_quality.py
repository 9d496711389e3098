"""How close the quantized LMs stay to float32: token agreement and KL, per quantization mode.

    python benchmarks/quantize_quality.py --out runs/quantize_quality.json
    python benchmarks/quantize_quality.py --models mini --modes int8 int4-g32 int4-g128 --steps 200

For each model (the shipped `mini`, trained weights; the released-format tiny fixture), the float32
LM decodes `--steps` frames greedily from a fixed text prompt (classifier-free guidance 3, no
sampling, no chord guide). Each quantized LM is then teacher-forced on those float32 tokens, so
that one early difference does not cascade: at every valid (stream, frame) position, given the
float32 prefix, its guided argmax is compared with float32's guided argmax (`agree`), and the mean
KL(fp32 || quantized) of the guided next-token distributions (temperature 1) is taken (`kl`).
`free_run` is the fraction of tokens equal when the quantized LM decodes on its own (a first
difference cascades; `first_diff` is the first frame that differs, or None).
`int8-ao` is the former `torch.ao.quantization.quantize_dynamic` path (deprecated in PyTorch),
kept here as a reference while this PyTorch still has it; `int8-vs-ao` compares int8 with it.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from musicgen_stem import MusicGenStem
from musicgen_stem.api.decoding import text_memories
from musicgen_stem.generation import SamplingParams, generate_codes, text_task
from musicgen_stem.generation.sampling import guide
from musicgen_stem.lm import StemLM
from musicgen_stem.lm.packing import unpack
from musicgen_stem.lm.quantize import quantize, weight_bytes

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ref6cb_tiny"
PROMPT = "upbeat funk groove with slap bass and tight drums, 110 bpm"
CFG = 3.0
MODES = ("int8", "int4-g32", "int4-g64", "int4-g128", "int8-ao")


def load(name: str) -> MusicGenStem:
    if name == "mini":
        return MusicGenStem.default(device="cpu")
    return MusicGenStem.from_pretrained(FIXTURE if name == "ref6cb_tiny" else name, device="cpu")


def quantize_ao(lm: StemLM) -> StemLM:
    """The former int8 path (fbgemm dynamic int8 through torch.ao.quantization), for reference."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    unpack(lm)
    lm.split_projections()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(lm, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return lm.eval()


def quantized(name: str, mode: str) -> StemLM:
    lm = load(name).lm
    if mode == "int8-ao":
        return quantize_ao(lm)
    kind, _, group = mode.partition("-g")
    return quantize(lm, kind, int(group) if group else 32)


@torch.no_grad()
def guided_logits(lm: StemLM, codes: torch.Tensor, mem: torch.Tensor, null: torch.Tensor) -> tuple:
    """Teacher-forced guided logits [K, T, card] of codes [1, K, T] and the mask [K, T] of positions
    that have a prediction."""
    logits, mask = lm.frame_logits(torch.cat([codes, codes]), torch.cat([mem, null]))  # [2, K, T, card]
    return guide(logits[0].float(), logits[1].float(), CFG), mask


@torch.no_grad()
def greedy(lm: StemLM, frames: int, mem: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    params = SamplingParams(use_sampling=False, cfg_coef=CFG)
    return generate_codes(lm, text_task(1, lm.layout, frames).known(), mem, null, params).cpu()  # [1, K, T]


def compare(ref: torch.Tensor, out: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Agreement of argmaxes and mean KL(ref || out) over valid positions; ref, out [K, T, card]."""
    logp, logq = F.log_softmax(ref[mask], -1), F.log_softmax(out[mask], -1)  # [N, card]
    kl = (logp.exp() * (logp - logq)).sum(-1)
    agree = (ref[mask].argmax(-1) == out[mask].argmax(-1)).float().mean()
    return {"agree": agree.item(), "kl": kl.mean().item(), "kl_max": kl.max().item()}


def evaluate(name: str, modes: list[str], steps: int) -> list[dict]:
    model = load(name)
    mem, null = (m.clone() for m in text_memories(model.text, [PROMPT]))  # [1, L, D] each
    lm = model.lm
    torch.manual_seed(0)
    codes = greedy(lm, steps, mem, null)  # the float32 tokens every mode is forced on
    ref, mask = guided_logits(lm, codes, mem, null)
    rows = [{"model": name, "mode": "fp32", "weight_mb": weight_bytes(lm) / 1e6, **compare(ref, ref, mask)}]
    rows[0].update(free_run=1.0, first_diff=None)
    forced = {}
    for mode in modes:
        try:
            qlm = quantized(name, mode)
        except (ImportError, RuntimeError) as e:  # int8-ao once PyTorch drops torch.ao.quantization
            print(f"{name} {mode}: skipped ({str(e).splitlines()[0]})")
            continue
        t0 = time.perf_counter()
        forced[mode], _ = guided_logits(qlm, codes, mem, null)
        free = greedy(qlm, steps, mem, null)
        same = free == codes  # [1, K, T]
        differs = (~same).any(1)[0].nonzero()
        row: dict = {"model": name, "mode": mode}
        if mode != "int8-ao":  # its fbgemm-packed weights are not parameters: not counted
            row["weight_mb"] = weight_bytes(qlm) / 1e6
        row.update(compare(ref, forced[mode], mask), free_run=same.float().mean().item())
        row.update(first_diff=int(differs[0]) if len(differs) else None, seconds=time.perf_counter() - t0)
        rows.append(row)
    if "int8" in forced and "int8-ao" in forced:
        rows.append({"model": name, "mode": "int8-vs-ao", **compare(forced["int8-ao"], forced["int8"], mask)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["mini", "ref6cb_tiny"], help="mini, ref6cb_tiny or a path"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=500, help="frames decoded greedily by float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for name in args.models for row in evaluate(name, args.modes, args.steps)]
    print(f"teacher-forced on float32's greedy tokens ({args.steps} frames, CFG {CFG}, prompt {PROMPT!r})")
    head = ("model", "mode", "weights MB", "agree", "mean KL", "max KL", "free run")
    print("{:>12} {:>10} {:>10} {:>7} {:>9} {:>8} {:>8} first diff".format(*head))
    for r in rows:
        mb = f"{r['weight_mb']:10.2f}" if "weight_mb" in r else f"{'':>10}"
        free = f"{r['free_run']:8.3f} {r['first_diff']}" if "free_run" in r else ""
        kl = f"{r['kl']:9.2e} {r['kl_max']:8.2e}"
        print(f"{r['model']:>12} {r['mode']:>10} {mb} {r['agree']:7.4f} {kl} {free}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"steps": args.steps, "cfg": CFG, "prompt": PROMPT, "rows": rows}, indent=1)
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
