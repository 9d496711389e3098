"""`musicgen-stem prepare`: turn songs and multitrack folders into the LM's token dataset.

```
OUT/
  prepare.json     {"layout", "frame_rate", "sample_rate", "codec_model", "codec_hash", "version"}
  index.jsonl      one object per track: {"id", "tokens", "frames", "captions", "duration", "source",
                   "codec_hash"}
  tokens/<id>.npy  int16 [K, F]: codes of the whole track, all stems in layout order
  stems/<id>/      {bass,drums,other,vocals}.wav separated from a song (float wav, song's rate); cached
```

Inputs (several folders, searched recursively):
  * a folder holding `bass`, `drums` and `other` audio files (`vocals` optional; e.g. MUSDB tracks or
    `musicgen-stem synth` songs) is a multitrack: its stems are used as they are;
  * any other audio file is a song, separated with Demucs (once: `stems/<id>/` is reused).
Captions (each track may have none: it then trains unconditionally): a `<song>.txt` beside a song
(one caption per non-empty line), `captions.txt`/`caption.txt` or a `meta.json` ("caption" /
"captions") inside a multitrack folder, and `metadata.jsonl` lines {"path" or "file", "caption" or
"captions"} in any folder, paths relative to that folder.

Encoding: each stem is resampled to the codec rate and encoded whole-track-equivalently: the codec's
convolutional front end (everything before its LSTM) runs on `chunk_seconds` chunks with enough
context on both sides to cover its receptive field, and the LSTM and last layers run on the joined
latent. This gives the codes of encoding the whole track at once (`MusicGenStem.encode_stems`)
while the memory of the front end stays bounded by the chunk size.

Resuming: tokens are written atomically and their index line is appended after, so a killed run
continues where it stopped. Tracks whose index entry has the current `codec_hash` are skipped;
an OUT made with other codecs is refused unless `force` (then its tracks are re-encoded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from .. import separation as sep
from ..audio import convert_audio, load_audio
from ..devices import resolve_device
from ..errors import AudioError, ModelError, MusicGenStemError
from ..layout import StemLayout

__all__ = [
    "AUDIO_EXTENSIONS",
    "PREPARE_VERSION",
    "CodecBundle",
    "Track",
    "add_arguments",
    "codec_hash",
    "discover",
    "encode_track",
    "load_codecs",
    "prepare_dataset",
    "run",
]

PREPARE_VERSION = 1
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


# --------------------------------------------------------------------------------------------
# Codecs of a model folder
# --------------------------------------------------------------------------------------------
@dataclass
class CodecBundle:
    """The codecs of a model folder, enough to tokenize stems."""

    layout: StemLayout
    codec: nn.Module  # MultiStemCodec
    model_dir: Path
    hash: str
    device: torch.device

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.codec.frame_rate)


def codec_hash(files: Sequence[Path]) -> str:
    """sha256 over the codec weight files (in layout order)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_codecs(model_dir: PathLike, device: str | torch.device = "cpu") -> CodecBundle:
    """Load only the codecs of a model folder (ours or the released format)."""
    from ..modeldir import is_model_dir
    from ..modeldir import load_codecs as load_our_codecs
    from ..reference import is_reference_dir, load_reference_codecs

    path = Path(model_dir)
    if not path.is_dir():
        raise ModelError(f"--model '{path}' is not a folder; give a model folder (see `musicgen-stem init`)")
    dev = resolve_device(device)
    if is_model_dir(path):
        codecs = load_our_codecs(path, dev)
    elif is_reference_dir(path):
        codecs = load_reference_codecs(path, dev)
    else:
        raise ModelError(
            f"'{path}' is not a model folder (no config.json, no state_dict.bin); "
            "create one with `musicgen-stem init` or `musicgen-stem convert`"
        )
    if codecs.layout.card > 32768:
        raise ModelError(f"codebooks of {codecs.layout.card} entries do not fit the int16 token files")
    return CodecBundle(codecs.layout, codecs.codec, path, codec_hash(codecs.files), dev)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------
def encode_track(
    bundle: CodecBundle,
    stems: dict[str, tuple[torch.Tensor, int]],
    chunk_seconds: float = 30.0,
) -> np.ndarray:
    """{stem: (wav [C, T], sample_rate)} -> int16 codes [K, F] in layout order.

    Stems are converted to the codec's rate and channels, zero-padded to the longest (missing stems
    are silence) and encoded chunk by chunk (see the module docstring): the result equals
    `MusicGenStem.encode_stems` of the same audio.
    """
    codec = bundle.codec
    wavs = {
        s: convert_audio(w[None].float(), sr, codec.sample_rate, codec.channels)  # [1, C, T']
        for s, (w, sr) in stems.items()
    }
    length = max(w.shape[-1] for w in wavs.values())
    codes = []
    with torch.inference_mode():
        for stem in bundle.layout.stems:
            wav = torch.zeros(1, codec.channels, length)
            if stem in wavs:
                wav[..., : wavs[stem].shape[-1]] = wavs[stem]
            codes.append(codec.codecs[stem].encode(wav.to(bundle.device), chunk_seconds).cpu())
    out = torch.cat(codes, dim=1)[0]  # [K, F]
    return out.numpy().astype(np.int16)


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------
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
    """Tracks under the input folders, in a stable order (see the module docstring)."""
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


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Command line: musicgen-stem prepare
# --------------------------------------------------------------------------------------------
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
