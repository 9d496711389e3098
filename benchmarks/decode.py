"""LM decoding speed: steps/s for a preset (random weights) with CFG, greedy and sampled.

    python benchmarks/decode.py --preset tiny medium-6cb --threads 2 --steps 30
    python benchmarks/decode.py --preset medium-6cb --batch 8 --quantize int8
    python benchmarks/decode.py --preset mini --threads 1 --quantize none int8 int4 --int4-group 32 128
    python benchmarks/decode.py --preset medium-6cb --layout onednn column row auto

--batch B decodes B items at once (2B rows with CFG); tokens/s = steps/s x B x streams.
Several --quantize modes (and int4 group sizes) are timed in one process, alternating rounds.

Also prints the memory-bandwidth bound: every decoding step reads all LM weights once, so
steps/s <= bandwidth / weight bytes (as stored: int8/int4 layers at their size; bandwidth measured
here by summing a large tensor).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from common import random_lm_

from musicgen_stem.generation import SamplingParams, generate_codes, text_task
from musicgen_stem.lm import StemLM
from musicgen_stem.lm.packing import LAYOUTS, fastest_layout, largest_projection, pack_for_decoding
from musicgen_stem.lm.quantize import INT4_GROUP_SIZES, MODES, quantize, weight_bytes
from musicgen_stem.presets import preset


def measure_bandwidth(gib: float = 2.0, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s (best of `repeats` sums over a `gib` GiB float32 tensor)."""
    x = torch.ones(int(gib * 2**30 / 4))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def build_lm(name: str, layout: str = "auto") -> StemLM:
    """The preset's LM with random weights, allocated once (no init pass over 7 GB), its CPU
    weights in `layout` ("auto": as MusicGenStem does, the fastest on this machine)."""
    cfg = preset(name)
    with torch.device("meta"):
        lm = StemLM(cfg.layout, cfg.lm)
    if layout == "auto":
        layout = fastest_layout(*largest_projection(lm))
        print(f"{name}: the load-time probe picks the {layout} layout")
    return pack_for_decoding(random_lm_(lm), layout)


def steps_per_second(
    lm: StemLM, steps: int, params: SamplingParams, batch: int = 1, text_len: int = 12
) -> float:
    """Steady-state decoding rate of a batch: 1 / the median time of a step over `steps` steps (the
    first step, the prefill, is excluded; the median ignores stalls caused by other processes)."""
    memory = torch.randn(batch, text_len, lm.cfg.dim)
    null = torch.zeros_like(memory)
    frames = steps + 1  # + delays, the loop runs a few more steps than frames
    stamps: list[float] = []
    generate_codes(
        lm,
        text_task(batch, lm.layout, frames).known(),
        memory,
        null,
        params,
        torch.Generator().manual_seed(0),
        callback=lambda done, total: stamps.append(time.perf_counter()),
    )
    return 1.0 / statistics.median(b - a for a, b in itertools.pairwise(stamps))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", nargs="+", default=["tiny", "medium-6cb"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="decoding steps to time per run")
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=1, help="items decoded at once (x2 rows with CFG)")
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=["none", *MODES],
        default=["none"],
        help="LM weights: none (float32), int8 or int4 (lm.quantize); several are compared",
    )
    parser.add_argument(
        "--int4-group", nargs="+", type=int, choices=INT4_GROUP_SIZES, default=[32], help="int4 group sizes"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are printed)")
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=[*LAYOUTS, "auto"],
        default=["auto"],
        help="CPU weight layouts to time (auto: the load-time probe's choice, as MusicGenStem)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bandwidth = measure_bandwidth()
    print(f"threads: {args.threads}   measured read bandwidth: {bandwidth / 1e9:.1f} GB/s")
    variants = [(m, g) for m in args.quantize for g in (args.int4_group if m == "int4" else [None])]
    for name, layout in itertools.product(args.preset, args.layout):
        lms = {}
        for mode, group in variants:  # each its own copy of random weights (speed does not depend on them)
            lm = build_lm(name, layout)
            if mode != "none":
                lm = quantize(lm, mode, group or 32)
            lms[mode if group is None else f"{mode} g{group}"] = lm
        fp32_bytes = sum(p.numel() * p.element_size() for p in next(iter(lms.values())).parameters())
        steps = args.steps if fp32_bytes > 1e9 else max(args.steps, 200)
        greedy: dict[str, list[float]] = {k: [] for k in lms}
        sampled: dict[str, list[float]] = {k: [] for k in lms}
        for r in range(args.rounds):  # alternate the variants: the machine's load drifts
            for key in list(lms)[:: 1 if r % 2 == 0 else -1]:
                greedy[key].append(
                    steps_per_second(
                        lms[key], steps, SamplingParams(use_sampling=False, cfg_coef=args.cfg), args.batch
                    )
                )
                sampled[key].append(
                    steps_per_second(
                        lms[key],
                        steps,
                        SamplingParams(use_sampling=True, top_k=250, cfg_coef=args.cfg),
                        args.batch,
                    )
                )
        for key, lm in lms.items():
            n_bytes = weight_bytes(lm)  # bytes read per step, as stored
            bound = bandwidth / n_bytes
            g, s = statistics.median(greedy[key]), statistics.median(sampled[key])
            per_step = args.batch * lm.layout.num_streams  # tokens decided per step
            print(
                f"{name:>12} ({key:>8}, {layout}): {n_bytes / 1e9:6.3f} GB of weights | "
                f"batch {args.batch} + CFG | "
                f"greedy {g:8.2f} steps/s ({g * per_step:8.1f} tokens/s) | "
                f"top-k 250 {s:8.2f} steps/s ({s * per_step:8.1f} tokens/s) | "
                f"bandwidth bound {bound:8.2f} steps/s ({100 * g / bound:.0f}% of bound)",
                flush=True,
            )
        del lms, lm


if __name__ == "__main__":
    main()
