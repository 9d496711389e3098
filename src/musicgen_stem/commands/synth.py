"""`musicgen-stem synth`: render a synthetic multi-stem dataset (`data.synth`, imported when run)."""

from __future__ import annotations

import argparse
import time

from .options import UsageError

__all__ = ["cmd_synth"]


def cmd_synth(args: argparse.Namespace) -> int:
    """Check the song count and length, then render the songs (resumable, deterministic by seed)."""
    from ..data.synth import synth_dataset

    if args.num_songs < 1:
        raise UsageError(f"--num-songs must be >= 1, got {args.num_songs}")
    if not 0 < args.duration <= 600:
        raise UsageError(f"--duration must be between 0 and 600 seconds, got {args.duration}")
    start = time.time()
    folders = synth_dataset(
        args.out,
        args.num_songs,
        seed=args.seed,
        duration=args.duration,
        soundfont=args.soundfont,
        force=args.force,
        num_workers=max(1, args.workers),
    )
    print(f"{len(folders)} songs in {args.out} ({time.time() - start:.1f} s)")
    return 0
