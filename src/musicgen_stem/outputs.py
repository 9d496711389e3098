"""The output folder every generation / edit writes, and reading it back.

A stems folder holds::

    <stem>.wav ...   one file per stem, in stem order (normally bass.wav, drums.wav, other.wav)
    mix.wav          the plain sum of the stems (exactly, on the PCM grid)
    codes.npy        int64 tokens [K, T_frames]
    meta.json        the caller's meta + sample_rate, duration, num_samples, channels, stems,
                     gain, subtype (pretty-printed UTF-8)

`--batch N` writes one such folder per variation: `out_dir/var_00`, `out_dir/var_01`, ...
(two digits, more when N > 100), each with `variation` in its meta.

Nothing is normalised per stem and nothing is clipped: when integer PCM is written and the mix
or a stem peaks above `PEAK_LIMIT`, one shared gain scales all stems and the mix (recorded as
`gain` in meta.json; divide by it to get the model's raw levels). Each stem is rounded to the
PCM grid first and the mix is the sum of the rounded stems, so mix.wav == sum of the stem files.

Writes are atomic: everything goes to a temporary sibling folder `.tmp-<name>-<random>` which
is then renamed into place; on failure it is removed. An existing non-empty folder is never
touched unless `force=True`, and then only the entries we write are replaced.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audio
from .errors import MusicGenStemError, OutputExistsError

__all__ = [
    "CODES_FILE",
    "META_FILE",
    "MIX_NAME",
    "PEAK_LIMIT",
    "StemsFolder",
    "StemsItem",
    "batch_folder_name",
    "read_stems_folder",
    "write_batch_folders",
    "write_stems_folder",
]

PEAK_LIMIT = 0.999
MIX_NAME = "mix"
CODES_FILE = "codes.npy"
META_FILE = "meta.json"
AUDIO_EXT = ".wav"

PathLike = str | os.PathLike
Audio = torch.Tensor | np.ndarray


@dataclass
class StemsItem:
    """One variation to write: stems {name: [C, T]}, codes [K, T_frames] and meta."""

    stems: Mapping[str, Audio]
    codes: np.ndarray | torch.Tensor
    meta: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Preparing one folder's content (pure, no I/O)
# --------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    audio: dict[str, np.ndarray]  # name -> [C, T] float64 on the output grid; stems then mix
    codes: np.ndarray  # [K, T_frames] int64
    meta_json: str


def _check_stem_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or name == MIX_NAME:
        raise ValueError(f"invalid stem name {name!r}: use a non-empty name other than {MIX_NAME!r}")
    if any(sep in name for sep in ("/", "\\", os.sep)) or name != name.strip():
        raise ValueError(f"invalid stem name {name!r}: it must be a plain file name")
    return name


def _to_codes(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any integer [K, T] array/tensor -> int64 numpy [K, T]."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"codes must be an integer array shaped [K, T], got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")


def _prepare(
    stems: Mapping[str, Audio],
    sample_rate: int,
    codes: np.ndarray | torch.Tensor,
    meta: Mapping[str, Any],
    subtype: str,
    extra_meta: Mapping[str, Any] | None = None,
) -> _Prepared:
    """Validate, pad to equal length, apply the shared gain, round to the grid, build meta."""
    if subtype not in audio.SUBTYPES:
        raise ValueError(f"unsupported subtype {subtype!r}; use one of {list(audio.SUBTYPES)}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if not stems:
        raise ValueError("no stems to write")
    arrays: dict[str, np.ndarray] = {}
    for name, wav in stems.items():
        x = wav.detach().to("cpu", torch.float64).numpy() if isinstance(wav, torch.Tensor) else wav
        x = np.asarray(x, dtype=np.float64)  # [C, T]
        if x.ndim != 2:
            raise ValueError(f"stem {name!r} must be shaped [C, T], got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"stem {name!r} contains NaN or infinite samples")
        arrays[_check_stem_name(name)] = x
    channels = {x.shape[0] for x in arrays.values()}
    if len(channels) != 1:
        raise ValueError(f"all stems need the same channel count, got {sorted(channels)}")
    num_samples = max(x.shape[-1] for x in arrays.values())
    if num_samples == 0:
        raise ValueError("stems have zero samples")
    # Pad shorter stems with zeros at the end (never crop).
    arrays = {n: np.pad(x, ((0, 0), (0, num_samples - x.shape[-1]))) for n, x in arrays.items()}

    gain = 1.0
    if subtype in audio.PCM_SUBTYPES:
        mix = sum(arrays.values())
        peak = max(float(np.abs(a).max()) for a in [mix, *arrays.values()])
        if peak > PEAK_LIMIT:
            gain = PEAK_LIMIT / peak
    out = {n: audio.pcm_round(x * gain, subtype) for n, x in arrays.items()}  # [C, T] each
    out[MIX_NAME] = sum(out.values())  # exact sum of the grid values -> written exactly

    full_meta = dict(meta)
    full_meta.update(extra_meta or {})
    full_meta.update(
        sample_rate=int(sample_rate),
        duration=round(num_samples / sample_rate, 6),
        num_samples=int(num_samples),
        channels=int(next(iter(channels))),
        stems=list(arrays),
        gain=gain,
        subtype=subtype,
    )
    try:
        meta_json = json.dumps(
            full_meta, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta cannot be written as JSON: {exc}") from exc
    return _Prepared(audio=out, codes=_to_codes(codes), meta_json=meta_json + "\n")


def _write_prepared(folder: Path, prep: _Prepared, sample_rate: int, subtype: str) -> None:
    """Write one prepared stems folder's files into the (existing, empty) `folder`."""
    for name, wav in prep.audio.items():
        audio.save_audio(folder / f"{name}{AUDIO_EXT}", wav, sample_rate, subtype)
    np.save(folder / CODES_FILE, prep.codes, allow_pickle=False)
    (folder / META_FILE).write_text(prep.meta_json, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Atomic placement
# --------------------------------------------------------------------------------------------
def _check_target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise OutputExistsError(f"'{out_dir}' already exists and is not a folder; choose another --out")
        if not force and any(out_dir.iterdir()):
            raise OutputExistsError(f"'{out_dir}' already exists; choose another --out or pass --force")


def _commit(tmp: Path, out_dir: Path, force: bool) -> None:
    """Move the finished `tmp` folder to `out_dir` (or its entries into it, with force)."""
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # an empty folder counts as free
    if not (out_dir.exists() or out_dir.is_symlink()):
        try:
            os.rename(tmp, out_dir)
            return
        except OSError:
            if not (out_dir.exists() or out_dir.is_symlink()):
                raise
    _check_target(out_dir, force)  # it may have appeared meanwhile
    # force: replace only our entries, each by a rename; old ones are parked in tmp then deleted.
    parked = tmp / ".replaced"
    parked.mkdir()
    for entry in sorted(p for p in tmp.iterdir() if p != parked):
        target = out_dir / entry.name
        if target.exists() or target.is_symlink():
            os.rename(target, parked / entry.name)
        os.rename(entry, target)
    shutil.rmtree(tmp, ignore_errors=True)


def _make_temp_sibling(out_dir: Path) -> Path:
    """Create `.tmp-<name>-<random>` next to `out_dir` (plain mkdir: default permissions)."""
    for _ in range(100):
        tmp = out_dir.parent / f".tmp-{out_dir.name}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary folder name next to '{out_dir}'")


def _write_atomic(out_dir: PathLike, force: bool, fill: Callable[[Path], None]) -> Path:
    """Create a temp sibling of `out_dir`, let `fill(tmp_dir)` write into it, then commit."""
    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = _make_temp_sibling(out_dir)
    except OSError as exc:
        raise MusicGenStemError(
            f"cannot create output folder '{out_dir}': {exc.strerror or exc}; check the path and permissions"
        ) from exc
    try:
        fill(tmp)
        _commit(tmp, out_dir, force)
    except OSError as exc:
        raise MusicGenStemError(
            f"cannot write output folder '{out_dir}': {exc.strerror or exc}; check free space and permissions"
        ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------------------------
# Public writers
# --------------------------------------------------------------------------------------------
def write_stems_folder(
    out_dir: PathLike,
    stems: Mapping[str, Audio],
    sample_rate: int,
    codes: np.ndarray | torch.Tensor,
    meta: Mapping[str, Any],
    *,
    force: bool = False,
    subtype: str = "PCM_16",
) -> Path:
    """Write one stems folder (see module docstring) atomically; returns `out_dir`.

    `stems`: {name: [C, T]} in stem order; `codes`: integer [K, T_frames]. Raises
    `OutputExistsError` if `out_dir` is non-empty and `force` is False.
    """
    prep = _prepare(stems, sample_rate, codes, meta, subtype)
    return _write_atomic(out_dir, force, lambda tmp: _write_prepared(tmp, prep, sample_rate, subtype))


def batch_folder_name(index: int, count: int) -> str:
    """Subfolder name of variation `index` among `count`: var_00, var_01, ... (zero-padded)."""
    return f"var_{index:0{max(2, len(str(count - 1)))}d}"


def write_batch_folders(
    out_dir: PathLike,
    items: Sequence[StemsItem | tuple[Mapping[str, Audio], np.ndarray | torch.Tensor, Mapping[str, Any]]],
    sample_rate: int,
    *,
    force: bool = False,
    subtype: str = "PCM_16",
) -> list[Path]:
    """Write `out_dir/var_00`, `out_dir/var_01`, ... (one stems folder per item), all atomically.

    `items`: `StemsItem`s or `(stems, codes, meta)` tuples, same rules as `write_stems_folder`.

    Each variation gets its own shared gain and `variation` / `batch_size` in its meta. Returns the
    variation folders in order.
    """
    if not items:
        raise ValueError("no variations to write")
    items = [it if isinstance(it, StemsItem) else StemsItem(*it) for it in items]
    n = len(items)
    preps = [
        _prepare(it.stems, sample_rate, it.codes, it.meta, subtype, {"variation": i, "batch_size": n})
        for i, it in enumerate(items)
    ]
    names = [batch_folder_name(i, n) for i in range(n)]

    def fill(tmp: Path) -> None:
        for name, prep in zip(names, preps, strict=True):
            (tmp / name).mkdir()
            _write_prepared(tmp / name, prep, sample_rate, subtype)

    out = _write_atomic(out_dir, force, fill)
    return [out / name for name in names]


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------
@dataclass
class StemsFolder:
    """A stems folder read back: `codes` int64 [K, T_frames], `meta` (meta.json) and its `path`."""

    path: Path
    codes: np.ndarray
    meta: dict[str, Any]

    @property
    def stems(self) -> list[str]:
        return list(self.meta["stems"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    def audio_path(self, name: str) -> Path:
        return self.path / f"{name}{AUDIO_EXT}"

    def load_stems(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Load stems (default: all, in order; `"mix"` allowed) as {name: [C, T] float32}.

        Levels are as written, i.e. with `meta["gain"]` applied.
        """
        names = self.stems if names is None else list(names)
        out: dict[str, torch.Tensor] = {}
        for name in names:
            if name not in self.stems and name != MIX_NAME:
                raise MusicGenStemError(
                    f"'{self.path}' has no stem {name!r}; choose among {self.stems + [MIX_NAME]}"
                )
            wav, sr = audio.load_audio(self.audio_path(name))
            if sr != self.sample_rate:
                raise MusicGenStemError(
                    f"'{self.audio_path(name)}' is at {sr} Hz but meta.json says {self.sample_rate} Hz; "
                    "regenerate the folder"
                )
            out[name] = wav
        return out

    def load_mix(self) -> torch.Tensor:
        """mix.wav as [C, T] float32."""
        return self.load_stems([MIX_NAME])[MIX_NAME]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_stems_folder(path: PathLike) -> StemsFolder:
    """Read a stems folder's codes and meta (audio is loaded on demand with `load_stems`)."""
    path = Path(path)
    if not path.is_dir():
        what = "not found" if not path.exists() else "not a folder"
        raise MusicGenStemError(f"cannot read '{path}': {what}; give a musicgen-stem output folder")
    bad = f"'{path}' is not a musicgen-stem output folder"
    codes_path, meta_path = path / CODES_FILE, path / META_FILE
    for p in (codes_path, meta_path):
        if not p.is_file():
            hint = "give the output folder of a generation or edit"
            if any(c.is_dir() and (c / p.name).is_file() for c in path.glob("var_*")):
                hint = "it is a batch folder: give one of its var_NN subfolders"
            raise MusicGenStemError(f"{bad}: {p.name} missing; {hint}")
    try:
        codes = np.load(codes_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MusicGenStemError(
            f"{bad}: {CODES_FILE} is unreadable ({_one_line(exc)}); regenerate the folder"
        ) from exc
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise MusicGenStemError(
            f"{bad}: {CODES_FILE} must hold integers shaped [K, T], got {codes.dtype} {codes.shape}; "
            "regenerate the folder"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MusicGenStemError(
            f"{bad}: {META_FILE} is not valid JSON ({_one_line(exc)}); regenerate the folder"
        ) from exc
    if not isinstance(meta, dict):
        raise MusicGenStemError(f"{bad}: {META_FILE} must hold a JSON object; regenerate the folder")
    stems, sr = meta.get("stems"), meta.get("sample_rate")
    if not (isinstance(stems, list) and stems and all(isinstance(s, str) and s for s in stems)):
        raise MusicGenStemError(f"{bad}: {META_FILE} lacks a valid 'stems' list; regenerate the folder")
    if not (isinstance(sr, int) and not isinstance(sr, bool) and sr > 0):
        raise MusicGenStemError(f"{bad}: {META_FILE} lacks a valid 'sample_rate'; regenerate the folder")
    return StemsFolder(path=path, codes=codes.astype(np.int64, copy=False), meta=meta)
