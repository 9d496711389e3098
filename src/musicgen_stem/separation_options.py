"""The options of `musicgen-stem separate` and `convert-separator`, and the separator names they
share with `separation` (torch-free: `--help` answers at once)."""

from __future__ import annotations

import argparse

__all__ = [
    "BITS",
    "DEFAULT_SEPARATOR",
    "KNOWN_FILES",
    "SOURCES",
    "VOCALS",
    "add_arguments",
    "add_convert_arguments",
    "add_separator_arguments",
]

#: The sources a separator must produce (Demucs's four), in the order of the files we write.
SOURCES: tuple[str, ...] = ("bass", "drums", "other", "vocals")
#: The source no model generates: an edit of a song passes it through untouched.
VOCALS = "vocals"

DEFAULT_SEPARATOR = "htdemucs"
#: Single-file weights of the known pretrained names (what `get_model` fetches from the legacy repo).
KNOWN_FILES: dict[str, str] = {
    "htdemucs": "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/955717e8-8726e21a.th",
}
#: `--bits` -> soundfile subtype of the separated stems.
BITS = {"float": "FLOAT", "24": "PCM_24"}


def add_separator_arguments(parser: argparse.ArgumentParser) -> None:
    """--separator and --device (shared with `musicgen-stem prepare`)."""
    file = KNOWN_FILES[DEFAULT_SEPARATOR].rsplit("/", 1)[1]
    parser.add_argument(
        "--separator",
        default=DEFAULT_SEPARATOR,
        metavar="PATH",
        help=f"Demucs weights: a pretrained name (downloaded when online, default {DEFAULT_SEPARATOR}) or "
        f"a local .th / .safetensors file or folder; offline, download {file} (the URL is in the "
        "error message) and pass its path",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `musicgen-stem separate SONG [SONG ...] --out DIR`."""
    parser.add_argument("songs", nargs="+", metavar="SONG", help="audio files to separate (any format)")
    parser.add_argument("--out", "-o", required=True, help="output folder; writes OUT/<song>/<source>.wav")
    add_separator_arguments(parser)
    parser.add_argument("--force", action="store_true", help="replace existing OUT/<song> folders")
    parser.add_argument("--bits", choices=sorted(BITS), default="float", help="WAV sample format")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `musicgen-stem convert-separator SRC DST`."""
    parser.add_argument("src", help="Demucs weights file (.th, e.g. 955717e8-8726e21a.th)")
    parser.add_argument("dst", help="the .safetensors file to write")
    parser.add_argument("--force", action="store_true", help="replace an existing DST")
