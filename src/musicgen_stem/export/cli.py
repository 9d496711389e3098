"""The command line of `musicgen-stem export SRC_OUTPUT_FOLDER --out DIR` (its help text is the
package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import OutputExistsError
from .spec import FORMATS, ZIP_FILE

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `musicgen-stem export SRC_OUTPUT_FOLDER --out DIR`."""
    parser.add_argument("src", metavar="SRC_OUTPUT_FOLDER", help="a musicgen-stem output folder")
    parser.add_argument("--out", "-o", required=True, help="stem pack folder to write (must be new or empty)")
    parser.add_argument("--format", choices=FORMATS, default="wav", help="audio format of the stem files")
    parser.add_argument(
        "--bits",
        choices=["16", "24", "float", "double"],
        default=None,
        help="sample format: 16/24/float/double (wav), 16/24 (flac); none for mp3 (320 kbps CBR); unset: 24",
    )
    parser.add_argument(
        "--rate", type=int, default=None, help="output sample rate, e.g. 44100 or 48000; unset: keep"
    )
    parser.add_argument(
        "--channels", type=int, choices=[1, 2], default=None, help="1 (mono) or 2 (stereo); unset: keep"
    )
    parser.add_argument(
        "--song", default=None, metavar="FILE", help="the original song of an edit: its sha256 is recorded"
    )
    parser.add_argument(
        "--zip", action="store_true", help=f"also write OUT/{ZIP_FILE} (stem files, mix, stems.json)"
    )
    parser.add_argument(
        "--stem-mp4",
        action="store_true",
        help="also write OUT/<name>.stem.mp4 (Native Instruments STEMS: master + drums, bass, other, vocals)",
    )
    parser.add_argument("--force", action="store_true", help="replace the files of an existing pack folder")


def run(args: argparse.Namespace) -> int:
    """Run `musicgen-stem export`; returns the exit code."""
    from .. import outputs
    from .pack import export_stem_pack

    src_path, out = Path(args.src), Path(args.out)
    src = outputs.read_stems_folder(src_path)
    src_r, out_r = src_path.resolve(), out.resolve()
    if out_r == src_r or src_r.is_relative_to(out_r):
        raise OutputExistsError(
            f"--out '{out}' would hold the source folder '{src_path}'; choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out '{out}' is a file; give a folder path")
    stems = src.load_stems()
    result = export_stem_pack(
        out,
        stems,
        src.sample_rate,
        fmt=args.format,
        bit_depth=args.bits,
        out_rate=args.rate,
        rates={n: src.rate_of(n) for n in stems},  # unset --rate: the pack at the highest
        channels=args.channels,
        meta=src.meta,
        zip=args.zip,
        stem_mp4=args.stem_mp4,
        force=args.force,
        source_song=args.song,
    )
    more = " and more" if args.zip or args.stem_mp4 else ""
    print(
        f"{src_path} -> {result.out_dir} ({sum(1 for _ in result.out_dir.iterdir())} files: "
        f"{len(result.files)} audio, the sidecar, stems.mid{more}; gain {result.gain:.4g})",
        file=sys.stdout,
    )
    return 0
