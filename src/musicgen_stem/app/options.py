"""The options of `musicgen-stem app` and their defaults (torch-free: `--help` answers at once)."""

from __future__ import annotations

import argparse

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_PORT",
    "DEFAULT_QUEUE",
    "DEFAULT_TTL",
    "add_arguments",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_QUEUE = 8
DEFAULT_MAX_DURATION = 30.0  # seconds of audio a job may ask for
DEFAULT_MAX_UPLOAD_MB = 50.0  # per uploaded file
DEFAULT_TTL = 3600.0  # seconds after which an idle session's files are deleted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musicgen-stem app`: the model options, where to listen, logins, limits."""
    from ..commands.options import add_model_options

    add_model_options(parser)  # --model, --device, --dtype, --quantize, --compile, --text-encoder
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="a login (repeatable); needed to listen beyond 127.0.0.1. Prefer --auth-file or the "
        "MUSICGEN_STEM_AUTH variable: a command line is visible to other users of this machine",
    )
    parser.add_argument("--auth-file", default=None, metavar="FILE", help="logins, one USER:PASS a line")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond 127.0.0.1 without a login (anyone who can reach it can use it)",
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        default=DEFAULT_MAX_DURATION,
        help=f"longest generation or edited audio, seconds (default {DEFAULT_MAX_DURATION:g})",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest uploaded file, MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--queue", type=int, default=DEFAULT_QUEUE, help=f"jobs that may wait (default {DEFAULT_QUEUE})"
    )
    parser.add_argument(
        "--separator",
        default="htdemucs",
        help="separator for song edits, chosen here only: a Demucs name or weights file (.th read "
        "without running code, or .safetensors); 'none' turns song edits off (default htdemucs)",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=DEFAULT_TTL,
        help=f"seconds after which an idle session's files are deleted (default {DEFAULT_TTL:g})",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="where sessions' results are written, in OUTPUT_DIR/sessions (default: a temporary folder)",
    )
