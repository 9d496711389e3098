"""`musicgen-stem transcribe`: the notes of stems (an output folder, or one audio file) as MIDI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .options import UsageError

__all__ = ["add_arguments", "cmd_transcribe"]

KINDS = ("bass", "drums", "other")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif", ".m4a", ".opus")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="an output folder (its stems, tempo and chords) or one audio file")
    p.add_argument("--out", "-o", required=True, help="the MIDI file to write (.mid)")
    p.add_argument(
        "--stem",
        choices=KINDS,
        default=None,
        help="what an audio file holds: bass (one line), drums (kick, snare, hi-hat) or other (chords, "
        "melodies); default: from its name, else other",
    )
    p.add_argument("--bpm", type=float, default=None, help="the tempo (default: meta.json's, else estimated)")
    p.add_argument(
        "--quantize-grid",
        type=int,
        default=None,
        metavar="N",
        help="snap note starts and ends to 1/N notes of the beat grid (4, 8, 16 or 32)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing MIDI file")


def _inputs(path: Path, stem: str | None) -> tuple[dict[str, Path], dict[str, Any]]:
    """{kind: audio file} and the folder's meta.json (or {})."""
    if path.is_dir():
        files = {p.stem: p for p in sorted(path.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
        found = {k: files[k] for k in KINDS if k in files}
        if not found:
            raise UsageError(
                f"'{path}' holds no bass, drums or other audio file; give an output folder or a file"
            )
        meta_path = path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        except (OSError, ValueError):
            meta = {}
        return found, meta if isinstance(meta, dict) else {}
    if not path.is_file():
        raise UsageError(f"'{path}' does not exist; give an output folder or an audio file")
    kind = stem or next((k for k in KINDS if k in path.stem.lower()), "other")
    return {kind: path}, {}


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe each stem by its kind and write one type-1 MIDI file, atomically."""
    out = Path(args.out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise UsageError(f"--out '{out}' must end in .mid")
    if out.exists() and not args.force:
        raise UsageError(f"'{out}' exists; pass --force to replace it")
    if args.quantize_grid is not None and args.quantize_grid not in (4, 8, 16, 32):
        raise UsageError(f"--quantize-grid must be 4, 8, 16 or 32, got {args.quantize_grid}")
    if args.bpm is not None and not 20 <= args.bpm <= 400:
        raise UsageError(f"--bpm {args.bpm:g} is out of range: give a tempo between 20 and 400")
    files, meta = _inputs(Path(args.input), args.stem)

    from ..audio import load_audio
    from ..conditioning.attributes import parse_attributes
    from ..conditioning.chords import ChordChart, ChordError
    from ..dsp import beat_phase, estimate_tempo, onset_strength
    from ..notes.midi import stems_midi, transcribe
    from ..notes.quantize import quantize
    from ..safeio import io_reason, make_temp_sibling

    began = time.time()
    stems = {}
    for kind, f in files.items():
        wav, sr = load_audio(f)  # [C, T]
        stems[kind] = (wav.numpy(), sr)
    notes = {kind: transcribe(kind, x, sr) for kind, (x, sr) in stems.items()}
    bpm = args.bpm or (meta.get("beat_grid") or {}).get("bpm")
    bpm = bpm or parse_attributes(meta.get("model_prompt") or meta.get("prompt")).tempo
    mix = sum(x.mean(0)[: min(len(y.mean(0)) for y, _ in stems.values())] for x, _ in stems.values())
    sr = next(iter(stems.values()))[1]
    envelope = onset_strength(mix, sr)
    bpm = bpm or (round(estimate_tempo(envelope)) or 120.0)
    if args.quantize_grid:
        grid = meta.get("beat_grid") or {}
        first = grid.get("first_beat") or 0.0 if grid.get("bpm") == bpm else beat_phase(envelope, bpm)
        notes = {k: quantize(n, bpm, first, args.quantize_grid) for k, n in notes.items()}
    try:
        chart = ChordChart.from_json(meta["chords"]) if meta.get("chords") else None
    except (ChordError, KeyError, TypeError, ValueError):
        chart = None
    midi = stems_midi(notes, bpm, chart)
    try:
        tmp = make_temp_sibling(out, "mid")
        try:
            midi.save(tmp / out.name)
            os.replace(tmp / out.name, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise UsageError(f"cannot write '{out}': {io_reason(exc)}") from None
    counts = ", ".join(f"{len(n)} {k}" for k, n in notes.items())
    print(f"wrote {out} ({counts} notes at {bpm:g} bpm, {time.time() - began:.1f} s)")
    return 0
