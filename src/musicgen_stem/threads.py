"""How many CPU threads torch uses for a model: one for small models, unless the user chose.

A small LM's decoding step is a chain of tiny ops (a 5 M-parameter LM spends microseconds per
matmul); split over two OpenMP threads each op ends in a barrier, and on a machine whose cores are
shared with other work (a DAW, a training job) one thread waits for the other to be scheduled at
every barrier: mini's 10 s generation took 86 s on 2 threads and 5.2 s on one on a busy 2-core
machine (`benchmarks/threads.py`, docs/experiments.md). Large LMs (medium: 1.5 B parameters) are bound
by memory bandwidth and keep torch's default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import MusicGenStemError

__all__ = ["SMALL_LM_PARAMS", "THREAD_ENV", "choose_threads", "use_threads"]

#: LMs with fewer parameters than this run on one thread by default (tiny: 1.7 M, mini: 5.1 M).
SMALL_LM_PARAMS = 100_000_000
#: Variables by which a user sets the thread count outside our options (then it is left alone).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def choose_threads(
    lm_params: int,
    device: str | torch.device = "cpu",
    requested: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """The intra-op thread count to set for a model, or None to leave torch's choice.

    `requested` (e.g. `--threads`) wins; otherwise None on a GPU or when a `THREAD_ENV` variable is
    set in `env` (default: the process environment), 1 for an LM under `SMALL_LM_PARAMS`, else None.
    """
    if requested is not None:
        if int(requested) < 1:
            raise MusicGenStemError(f"--threads must be >= 1, got {requested}")
        return int(requested)
    env = os.environ if env is None else env
    if torch.device(device).type != "cpu" or any(env.get(v) for v in THREAD_ENV):
        return None
    return 1 if lm_params < SMALL_LM_PARAMS else None


def use_threads(model: Any, requested: int | None = None) -> int:
    """Apply `choose_threads` to a loaded `MusicGenStem` (before quantizing it: the count is of its
    float LM); returns the number of threads torch uses afterwards."""
    params = sum(p.numel() for p in model.lm.parameters())
    threads = choose_threads(params, model.device, requested)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
