"""Evaluation material: song folders with one audio file per stem and an optional meta.json.

A song folder holds `bass.wav`, `drums.wav`, `other.wav` (any of .wav/.flac/.ogg/.mp3) and, for the
synthetic songs (`musicgen-stem synth`), `meta.json` with the ground truth (beats, chords, key...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..audio import convert_audio, load_audio
from ..errors import MusicGenStemError

__all__ = ["AUDIO_EXTENSIONS", "Song", "find_songs", "load_song"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Song:
    """Stems {stem: [C, T]} at `sample_rate` (all the same length), its folder and ground truth."""

    name: str
    path: Path
    stems: dict[str, torch.Tensor]
    sample_rate: int
    meta: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return next(iter(self.stems.values())).shape[-1] / self.sample_rate

    @property
    def caption(self) -> str | None:
        if not self.meta:
            return None
        cap = self.meta.get("caption") or (self.meta.get("captions") or [None])[0]
        return str(cap) if cap else None


def _stem_file(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _has_stems(folder: Path, stems: Sequence[str]) -> bool:
    return all(_stem_file(folder, s) is not None for s in stems)


def find_songs(
    data: str | os.PathLike[str], stems: Sequence[str], num_songs: int | None = None
) -> list[Path]:
    """Song folders under `data` (itself, or its sorted sub-folders) that have every stem in `stems`."""
    root = Path(data)
    if not root.is_dir():
        raise MusicGenStemError(f"'{root}' is not a folder; give a folder of songs (one sub-folder per song)")
    if _has_stems(root, stems):
        found = [root]
    else:
        found = [p for p in sorted(root.iterdir()) if p.is_dir() and _has_stems(p, stems)]
    if not found:
        raise MusicGenStemError(
            f"no song folders with {', '.join(f'{s}.wav' for s in stems)} in '{root}'; make some with "
            "`musicgen-stem synth` or `musicgen-stem separate`"
        )
    return found[:num_songs] if num_songs else found


def load_song(
    folder: str | os.PathLike[str],
    stems: Sequence[str],
    sample_rate: int,
    channels: int = 1,
    duration: float | None = None,
) -> Song:
    """Load the stems of a song folder at `sample_rate`/`channels`, cut to the first `duration` seconds
    (all padded to the longest stem); missing stems are silence and listed in `missing`."""
    folder = Path(folder)
    wavs: dict[str, torch.Tensor] = {}
    missing = []
    for stem in stems:
        f = _stem_file(folder, stem)
        if f is None:
            missing.append(stem)
            continue
        wav, sr = load_audio(f)
        wavs[stem] = convert_audio(wav, sr, sample_rate, channels)
    if not wavs:
        raise MusicGenStemError(f"'{folder}' has none of the stems {', '.join(stems)}")
    length = max(w.shape[-1] for w in wavs.values())
    if duration is not None:
        length = min(length, max(1, round(duration * sample_rate)))
    out = {}
    for stem in stems:
        w = wavs.get(stem, torch.zeros(channels, length))[..., :length]
        out[stem] = torch.nn.functional.pad(w, (0, length - w.shape[-1]))
    meta = None
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise MusicGenStemError(f"cannot read '{meta_path}': {exc}; fix or remove it") from exc
    return Song(folder.name, folder, out, sample_rate, meta, missing)
