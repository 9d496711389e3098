"""The command line of `musicgen-stem prepare` (its help text is the package docstring)."""

from __future__ import annotations

import argparse

from ...errors import MusicGenStemError
from .dataset import prepare_dataset
from .options import add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    """Run `musicgen-stem prepare`; returns the exit code."""
    if args.chunk_seconds <= 0:
        raise MusicGenStemError(f"--chunk-seconds must be > 0, got {args.chunk_seconds}")
    counts = prepare_dataset(
        args.input,
        args.model,
        args.out,
        separator=args.separator,
        device=args.device,
        force=args.force,
        progress=not args.quiet,
        chunk_seconds=args.chunk_seconds,
    )
    print(
        f"{args.out}: {counts['tracks']} track(s): {counts['encoded']} encoded, {counts['cached']} already "
        f"done, {counts['separated']} separated, {counts['failed']} skipped (unreadable)"
    )
    return 0
