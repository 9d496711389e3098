"""Tracks of the input folders: discovery (songs, multitrack folders, their captions) and reading a
track's stems (a song is separated once, into a cache)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import separation as sep
from ...audio import load_audio
from ...errors import AudioError, ModelError

__all__ = ["AUDIO_EXTENSIONS", "STEM_NAMES", "Track", "discover"]

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".wma",
    ".webm",
    ".mp4",
)
STEM_NAMES = ("bass", "drums", "other")
PathLike = str | os.PathLike


@dataclass
class Track:
    """One training example: a song to separate or a folder of stems."""

    id: str
    source: Path  # the song file or the multitrack folder
    kind: str  # "song" or "multitrack"
    captions: list[str] = field(default_factory=list)
    stems: dict[str, Path] = field(default_factory=dict)  # multitrack: {stem: file}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "track"


def _track_id(root: Path, path: Path) -> str:
    """Stable id: slug of `<input name>/<relative path>` + 8 hex of the absolute path."""
    rel = f"{root.name}/{path.relative_to(root).as_posix()}" if path != root else root.name
    digest = hashlib.sha1(path.resolve().as_posix().encode()).hexdigest()[:8]
    return f"{_slug(rel)}-{digest}"


def _is_audio(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")


def _stem_files(folder: Path) -> dict[str, Path] | None:
    """{stem: file} when `folder` holds bass, drums and other audio files (vocals optional)."""
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if _is_audio(f) and f.stem.lower() in (*STEM_NAMES, "vocals") and f.stem.lower() not in found:
            found[f.stem.lower()] = f
    return found if all(s in found for s in STEM_NAMES) else None


def _as_captions(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [c.strip() for c in value if isinstance(c, str) and c.strip()]


def _read_metadata(folder: Path, warn: Callable[[str], None]) -> dict[Path, list[str]]:
    """{resolved path: captions} from `folder/metadata.jsonl` (missing file: empty)."""
    meta = folder / "metadata.jsonl"
    out: dict[Path, list[str]] = {}
    if not meta.is_file():
        return out
    for n, line in enumerate(meta.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            rel = entry.get("path", entry.get("file"))
        except (json.JSONDecodeError, AttributeError):
            warn(f"{meta}:{n}: not a JSON object; line ignored")
            continue
        if not isinstance(rel, str):
            continue
        caps = _as_captions(entry.get("captions")) or _as_captions(entry.get("caption"))
        out.setdefault((folder / rel).resolve(), []).extend(caps)
    return out


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return _as_captions(path.read_text(encoding="utf-8", errors="replace").splitlines())


def _folder_captions(folder: Path) -> list[str]:
    caps: list[str] = []
    meta = folder / "meta.json"
    if meta.is_file():
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            if isinstance(d, dict):
                caps = _as_captions(d.get("captions")) or _as_captions(d.get("caption"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    return caps + _read_lines(folder / "captions.txt") + _read_lines(folder / "caption.txt")


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def discover(
    inputs: Sequence[PathLike], exclude: PathLike | None = None, warn: Callable[[str], None] | None = None
) -> list[Track]:
    """Tracks under the input folders, in a stable order (see the package docstring)."""
    warn = warn or (lambda msg: None)
    excluded = Path(exclude).resolve() if exclude is not None else None
    tracks: list[Track] = []
    seen: set[Path] = set()
    for given in inputs:
        root = Path(given)
        if not root.is_dir():
            raise AudioError(f"--input '{root}' is not a folder; give folders of songs or stems")
        metadata: dict[Path, list[str]] = {}
        stack = [root]
        while stack:
            folder = stack.pop()
            if excluded is not None and folder.resolve() == excluded:
                continue
            metadata.update(_read_metadata(folder, warn))
            stems = _stem_files(folder)
            if stems is not None:
                key = folder.resolve()
                if key not in seen:
                    seen.add(key)
                    caps = _folder_captions(folder) + metadata.get(key, [])
                    tracks.append(Track(_track_id(root, folder), folder, "multitrack", _unique(caps), stems))
                continue  # stems, mix.wav etc. of a multitrack are not songs
            children = sorted(folder.iterdir())
            for f in children:
                if _is_audio(f) and f.resolve() not in seen:
                    seen.add(f.resolve())
                    caps = _read_lines(f.with_suffix(".txt")) + metadata.get(f.resolve(), [])
                    tracks.append(Track(_track_id(root, f), f, "song", _unique(caps)))
            stack.extend(reversed([d for d in children if d.is_dir() and not d.name.startswith(".")]))
    return tracks


def _load_stems(
    track: Track, out: Path, separator: Callable[[], nn.Module], device: str | None, progress: bool
) -> tuple[dict[str, tuple[torch.Tensor, int]], float]:
    """{stem: (wav [C, T], sr)} of a track (separating a song once, cached) and its duration (s)."""
    if track.kind == "multitrack":
        stems = {s: load_audio(track.stems[s]) for s in STEM_NAMES}
        duration = max(w.shape[-1] / sr for w, sr in stems.values())
        return stems, duration
    cache = out / "stems" / track.id
    if not all((cache / f"{s}.wav").is_file() for s in sep.SOURCES):
        wav, sr = load_audio(track.source)  # [C, T]
        if wav.shape[0] > 2:
            wav = wav[:2]
        sources = sep.separate(separator(), wav, sr, device=device, progress=progress)
        missing = [s for s in sep.SOURCES if s not in sources]
        if missing:
            raise ModelError(f"the separator gave no {missing} source(s); use htdemucs")
        if cache.exists():  # an incomplete cache folder (should not happen: it is renamed into place)
            import shutil

            shutil.rmtree(cache)
        sep.write_sources(cache, {s: sources[s] for s in sep.SOURCES}, sr)
    stems = {s: load_audio(cache / f"{s}.wav") for s in STEM_NAMES}
    duration = max(w.shape[-1] / sr for w, sr in stems.values())
    return stems, duration
