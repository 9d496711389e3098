"""The options of `musicgen-stem prepare` (torch-free: `--help` answers at once)."""

from __future__ import annotations

import argparse

from ...separation_options import add_separator_arguments

__all__ = ["add_arguments"]


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
    add_separator_arguments(parser)
    parser.add_argument(
        "--force", action="store_true", help="accept an OUT made with other codecs: re-encode its tracks"
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=30.0, help="audio encoded per chunk (same codes, less memory)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
