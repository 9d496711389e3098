"""The command line of `musicgen-stem prepare` (its help text is the package docstring)."""

from __future__ import annotations

import argparse

from ... import separation as sep
from ...errors import MusicGenStemError
from .dataset import prepare_dataset

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `musicgen-stem prepare --input DIR [--input DIR ...] --model DIR --out OUT`."""
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        required=True,
        metavar="DIR",
        help="folder of songs (any audio format, captions in <song>.txt or metadata.jsonl) or of "
        "multitrack folders (bass/drums/other files); repeatable",
    )
    parser.add_argument("--model", "-m", required=True, help="model folder whose codecs define the tokens")
    parser.add_argument("--out", "-o", required=True, help="dataset folder (created; re-running resumes)")
    sep.add_separator_arguments(parser)
    parser.add_argument(
        "--force", action="store_true", help="accept an OUT made with other codecs: re-encode its tracks"
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=30.0, help="audio encoded per chunk (same codes, less memory)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


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
