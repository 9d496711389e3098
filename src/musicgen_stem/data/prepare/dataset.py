"""`prepare_dataset`: the token dataset folder (layout, resuming: see the package docstring), its
atomic writes and its index."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ... import __version__
from ... import separation as sep
from ...errors import AudioError, MusicGenStemError
from .tokens import encode_track, load_codecs
from .tracks import AUDIO_EXTENSIONS, PathLike, _load_stems, discover

__all__ = ["PREPARE_VERSION", "prepare_dataset"]

PREPARE_VERSION = 1


def _write_json_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_tokens(path: Path, codes: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, codes)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_index(path: Path) -> dict[str, dict[str, Any]]:
    """{id: entry} of an index.jsonl (a line cut by a kill is ignored; the last entry of an id wins)."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries[entry["id"]] = entry
    return entries


def _check_out(out: Path, info: dict[str, Any], force: bool) -> None:
    """Refuse an OUT folder prepared with other codecs or another layout unless `force`."""
    if out.exists() and not out.is_dir():
        raise MusicGenStemError(f"--out '{out}' is a file; give a folder path")
    meta = out / "prepare.json"
    if not meta.is_file():
        return
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = {}
    changed = [k for k in ("codec_hash", "layout") if old.get(k) != info[k]]
    if changed and not force:
        raise MusicGenStemError(
            f"'{out}' was prepared with other codecs ({' and '.join(changed)} differ: "
            f"{str(old.get('codec_hash'))[:12]} vs {info['codec_hash'][:12]}); use another --out, "
            "or pass --force to re-encode its tracks with this model"
        )


def prepare_dataset(
    inputs: Sequence[PathLike],
    model_dir: PathLike,
    out: PathLike,
    separator: PathLike | nn.Module = sep.DEFAULT_SEPARATOR,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
    chunk_seconds: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Build (or continue) the token dataset in `out`; returns counts
    {"tracks", "encoded", "cached", "separated", "failed"}.

    The separator is loaded only when a song's stems are not cached yet. Unreadable tracks are
    skipped with a warning; it is an error only when no track at all is usable.
    """
    from tqdm.auto import tqdm

    def warn(msg: str) -> None:
        (log or (lambda m: tqdm.write(m, file=sys.stderr)))(f"warning: {msg}")

    out = Path(out)
    device = sep.default_device(device)
    bundle = load_codecs(model_dir, device)
    info = {
        "layout": bundle.layout.to_dict(),
        "frame_rate": bundle.frame_rate,
        "sample_rate": bundle.sample_rate,
        "codec_model": str(Path(model_dir).resolve()),
        "codec_hash": bundle.hash,
        "version": __version__,
        "format_version": PREPARE_VERSION,
    }
    _check_out(out, info, force)
    tracks = discover(inputs, exclude=out, warn=warn)
    if not tracks:
        raise AudioError(
            f"no audio found in {', '.join(str(p) for p in inputs)}; give folders of songs "
            f"({', '.join(AUDIO_EXTENSIONS[:4])}...) or of bass/drums/other stems"
        )
    (out / "tokens").mkdir(parents=True, exist_ok=True)
    _write_json_atomic(out / "prepare.json", json.dumps(info, indent=2) + "\n")
    index_path = out / "index.jsonl"
    old = {
        k: e
        for k, e in _read_index(index_path).items()
        if e.get("codec_hash") == bundle.hash and (out / str(e.get("tokens", ""))).is_file()
    }
    # Start from a consistent index: only entries that are valid now (others will be redone).
    _write_json_atomic(index_path, "".join(json.dumps(e) + "\n" for e in old.values()))

    model_cache: list[nn.Module] = []

    def separator_model() -> nn.Module:
        if not model_cache:
            model_cache.append(sep.load_separator(separator, device=device))
        return model_cache[0]

    counts = {"tracks": len(tracks), "encoded": 0, "cached": 0, "separated": 0, "failed": 0}
    entries: dict[str, dict[str, Any]] = {}
    bar = tqdm(tracks, desc="prepare", unit="track", disable=not progress)
    with open(index_path, "a", encoding="utf-8") as index:
        for track in bar:
            bar.set_postfix_str(track.id[:40])
            if track.id in old:
                entry = {**old[track.id], "captions": track.captions, "source": str(track.source)}
                entries[track.id] = entry
                counts["cached"] += 1
                continue
            try:
                was_cached = (out / "stems" / track.id / "bass.wav").is_file()
                stems, duration = _load_stems(track, out, separator_model, device, progress)
                if track.kind == "song" and not was_cached:
                    counts["separated"] += 1
                codes = encode_track(bundle, stems, chunk_seconds)  # [K, F]
            except AudioError as exc:
                warn(f"skipping {track.source}: {exc}")
                counts["failed"] += 1
                continue
            rel = f"tokens/{track.id}.npy"
            _save_tokens(out / rel, codes)
            entry = {
                "id": track.id,
                "tokens": rel,
                "frames": int(codes.shape[-1]),
                "captions": track.captions,
                "duration": round(float(duration), 6),
                "source": str(track.source),
                "kind": track.kind,
                "codec_hash": bundle.hash,
            }
            index.write(json.dumps(entry) + "\n")
            index.flush()
            os.fsync(index.fileno())
            entries[track.id] = entry
            counts["encoded"] += 1
    bar.close()
    # Final index: this run's tracks in input order, then valid entries of earlier runs.
    final = [entries[t.id] for t in tracks if t.id in entries]
    final += [e for k, e in old.items() if k not in entries]
    _write_json_atomic(index_path, "".join(json.dumps(e) + "\n" for e in final))
    if not final:
        raise AudioError(f"none of the {len(tracks)} track(s) found could be read; see the warnings above")
    return counts
