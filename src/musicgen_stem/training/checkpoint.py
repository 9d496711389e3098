"""Atomic, resumable training checkpoints.

A checkpoint is one `torch.save` file holding plain containers and tensors (loadable with
`weights_only=True`): the step, model/optimizer/scheduler/EMA states and the run's settings.
It is written to a temporary file in the same folder, flushed to disk, then renamed over the old
one, so a run killed at any moment leaves either the previous or the new checkpoint, never a
half-written file. Randomness is re-seeded from (seed, step, rank) at every step, so a resumed run
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import MusicGenStemError
from ..safeio import fsync_dir, held_signals, io_reason

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` atomically to `path` (the previous checkpoint stays until the new one is on
    disk); a full disk or a read-only folder is a one-line `MusicGenStemError`."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        with held_signals():
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise MusicGenStemError(
            f"cannot write checkpoint '{path}': {io_reason(exc)}; check free space and permissions "
            "(the previous checkpoint is kept)"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state saved at `path`, or None if there is none yet."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or damaged file: the user decides what to do with it
        raise MusicGenStemError(
            f"cannot resume from '{path}': {type(e).__name__}: {e}; move it away to start afresh"
        ) from None


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one training step on one rank (the same after a resume)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


def seed_step(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Re-seed torch's global RNG (dropout, masking) for this step; also return a generator for data."""
    s = step_seed(seed, step, rank)
    torch.manual_seed(s)
    return torch.Generator().manual_seed(s)
