"""CPU threads for small models: text -> stems with 1 and 2 torch threads, quiet and with a core kept busy.

    python benchmarks/threads.py                              # tiny and mini, 10 s, 5 runs each
    python benchmarks/threads.py --preset mini --runs 3 --seconds 5

Each run generates `--seconds` of all stems (batch 1, CFG 3, top-k 250, fp32 on CPU) and is timed
from the call to its return; the figure is the median over `--runs`. Runs alternate between the
thread counts so that a change in the machine's load hits every setting alike. "busy" runs have a
competing process spinning on one core for their whole duration (what a DAW or another job does to
a laptop's cores). `tiny` has random weights (the `tiny` preset); `mini` is the shipped model.

The load already on the machine (other jobs) is printed with the results: "quiet" means no extra
competing process, not an idle machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from musicgen_stem import MusicGenStem

DESCRIPTION = "funky drums with a slap bass line and warm electric piano chords"


@dataclass
class Result:
    preset: str
    lm_params: int
    threads: int
    load: str  # "quiet" or "busy"
    seconds: float  # audio generated per run
    runs: list[float]  # wall seconds per run

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (< 1: faster than real time)."""
        return self.median / self.seconds


def _spin(stop: Any) -> None:
    """Keep one core busy until `stop` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


@contextmanager
def busy_core(enabled: bool):
    """A process spinning on one core while the block runs (nothing when not `enabled`)."""
    if not enabled:
        yield
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_spin, args=(stop,), daemon=True)
    proc.start()
    time.sleep(0.5)  # let it start spinning
    try:
        yield
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def load(preset: str) -> MusicGenStem:
    if preset == "mini":
        model = MusicGenStem.default(device="cpu")
    else:
        model = MusicGenStem.from_config(preset, device="cpu")
    model.set_generation_params(use_sampling=True, top_k=250, cfg_coef=3.0)
    return model


def generate_seconds(model: MusicGenStem, seconds: float, threads: int, seed: int) -> float:
    """Wall seconds of one text -> stems generation of `seconds` with `threads` torch threads."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    model.generate([DESCRIPTION], seed=seed, duration=seconds)
    return time.perf_counter() - start


def bench(preset: str, seconds: float, runs: int, thread_counts: list[int], loads: list[str]) -> list[Result]:
    model = load(preset)
    lm_params = sum(p.numel() for p in model.lm.parameters())
    results = []
    for state in loads:
        timings: dict[int, list[float]] = {n: [] for n in thread_counts}
        with busy_core(state == "busy"):
            for n in thread_counts:  # warm-up: oneDNN primitives, caches, the thread pool's size
                generate_seconds(model, 0.5, n, seed=0)
            for i in range(runs):
                for n in thread_counts if i % 2 == 0 else thread_counts[::-1]:
                    timings[n].append(generate_seconds(model, seconds, n, seed=i))
        for n in thread_counts:
            r = Result(preset, lm_params, n, state, seconds, timings[n])
            results.append(r)
            print(
                f"{preset:>5} ({lm_params / 1e6:.1f} M LM params) {state:>5}, {n} thread(s): "
                f"median {r.median:6.2f} s (RTF {r.rtf:.2f}; runs {', '.join(f'{t:.1f}' for t in r.runs)})",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per generation")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per setting (the median is reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    parser.add_argument("--loads", nargs="+", choices=["quiet", "busy"], default=["quiet", "busy"])
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"torch {torch.__version__}, default threads {torch.get_num_threads()}",
        flush=True,
    )
    results = [r for p in args.preset for r in bench(p, args.seconds, args.runs, args.threads, args.loads)]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        rows = [{**asdict(r), "median": r.median, "rtf": r.rtf} for r in results]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
