"""The output folder every generation / edit writes, and reading it back.

A stems folder holds::

    <stem>.wav ...   one file per stem, in stem order (normally bass.wav, drums.wav, other.wav)
    mix.wav          the plain sum of the stems (exactly, on the PCM grid)
    codes.npy        int64 tokens [K, T_frames]
    stems.mid        the notes of every stem (`notes.midi`: transcribed from the stems, at the
                     tempo the model read, with the chord chart it read)
    meta.json        the caller's meta + sample_rate (the mix's), sample_rates (each file's),
                     duration, num_samples (the mix's), channels, stems, gain, subtype
                     (pretty-printed UTF-8)

`--batch N` writes one such folder per variation: `out_dir/var_00`, `out_dir/var_01`, ...
(two digits, more when N > 100), each with `variation` in its meta.

Nothing is normalised per stem and nothing is clipped: when integer PCM is written and the mix
or a stem peaks above `PEAK_LIMIT`, one shared gain scales all stems and the mix (recorded as
`gain` in meta.json; divide by it to get the model's raw levels). Each stem is rounded to the
PCM grid first and the mix is the sum of the rounded stems, so mix.wav == sum of the stem files.

Each file has its own rate (`rates`; by default every stem at `sample_rate`): kept stems at
theirs, new stems at the rate they were made at; the mix at the highest of them, the stems at
other rates resampled to it (julius) before they are summed.

Kept audio (`kept`: a user's stems, separated stems, vocals) is different: it is written back
exactly as read (`samples.Samples`: same samples, rate, channels and sample format) and never
scaled. The new stems are written in `subtype` (scaled only if one of them would clip in integer
PCM) and the mix, their sum with the kept stems, too; if `subtype` cannot hold the mix, only
mix.wav is scaled, by `mix_gain` (meta.json). meta.json lists each file's sample format
(`subtypes`) and the `kept` stems.

Writes never lose data (`safeio.replace_dir`): everything goes to a temporary sibling folder
`.tmp-<name>-<random>`, flushed to disk, then renamed into place; on failure it is removed. An
existing non-empty folder is never touched unless `force=True`; then the new folder takes its
place in one swap, with the old folder's other entries linked into it, and the old version is
deleted only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
import numpy as np
import torch

from . import audio
from .conditioning.attributes import parse_attributes
from .conditioning.chords import ChordChart, ChordError
from .errors import MusicGenStemError, OutputExistsError
from .notes.midi import midi_of_stems
from .safeio import make_temp_sibling, replace_dir
from .samples import Samples, write_samples

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
MIDI_FILE = "stems.mid"
AUDIO_EXT = ".wav"

PathLike = str | os.PathLike
Audio = torch.Tensor | np.ndarray


@dataclass
class StemsItem:
    """One variation to write: stems {name: [C, T]}, codes [K, T_frames], meta, and the stems
    to write exactly as read (`kept`, see the module docstring)."""

    stems: Mapping[str, Audio]
    codes: np.ndarray | torch.Tensor
    meta: Mapping[str, Any] = field(default_factory=dict)
    kept: Mapping[str, Samples] = field(default_factory=dict)
    rates: Mapping[str, int] = field(default_factory=dict)  # stems not named: at the folder's rate


# --------------------------------------------------------------------------------------------
# Preparing one folder's content (pure, no I/O)
# --------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    audio: dict[str, np.ndarray | Samples]  # name -> [C, T] float64 on the output grid, or kept samples
    subtypes: dict[str, str]  # name -> sample format of its file; stems then mix
    codes: np.ndarray  # [K, T_frames] int64
    meta_json: str
    midi: mido.MidiFile
    rates: dict[str, int]  # name -> sample rate of its file; stems then mix


def _check_stem_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or name == MIX_NAME:
        raise ValueError(f"invalid stem name {name!r}: use a non-empty name other than {MIX_NAME!r}")
    bad_char = any(sep in name for sep in ("/", "\\", ":", os.sep)) or not name.isprintable()
    if bad_char or name != name.strip() or len(name) > 100:
        raise ValueError(f"invalid stem name {name[:40]!r}: it must be a plain file name")
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
    kept: Mapping[str, Samples] | None = None,
    rates: Mapping[str, int] | None = None,
) -> _Prepared:
    """Validate, pad to equal length, apply the gains, round to the grid, build meta. `rates`:
    {stem: its file's rate} (default: `sample_rate`; a kept stem's: its own)."""
    if subtype not in audio.SUBTYPES:
        raise ValueError(f"unsupported subtype {subtype!r}; use one of {list(audio.SUBTYPES)}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if not stems:
        raise ValueError("no stems to write")
    kept = dict(kept or {})
    unknown = [n for n in [*kept, *(rates or {})] if n not in stems]
    if unknown:
        raise ValueError(f"kept stem(s) or rate(s) {unknown} are not among the stems {list(stems)}")
    own = {n: kept[n].sample_rate if n in kept else sample_rate for n in stems}
    rate_of = {n: int((rates or {}).get(n, own[n])) for n in stems}
    if any(r <= 0 for r in rate_of.values()):
        raise ValueError(f"sample rates must be > 0, got {rate_of}")
    arrays: dict[str, np.ndarray] = {}
    for name, wav in stems.items():
        if name in kept:
            if kept[name].sample_rate != rate_of[name]:
                raise ValueError(f"kept stem {name!r} is at {kept[name].sample_rate} Hz, not {rate_of[name]}")
            wav = kept[name].to_float64()
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
    mix_rate = max(rate_of.values())
    seconds = max(x.shape[-1] / rate_of[n] for n, x in arrays.items())
    frames = {n: round(seconds * rate_of[n]) for n in arrays}  # each stem's length at its rate
    num_samples = round(seconds * mix_rate)
    if num_samples == 0:
        raise ValueError("stems have zero samples")
    # Pad shorter stems with zeros at the end (never crop).
    arrays = {n: np.pad(x, ((0, 0), (0, frames[n] - x.shape[-1]))) for n, x in arrays.items()}

    out, gain, mix_gain = _levels(arrays, kept, subtype, frames, rate_of)
    subtypes = {n: kept[n].subtype if n in kept else subtype for n in out}
    rate_of[MIX_NAME] = mix_rate

    full_meta = dict(meta)
    full_meta.update(extra_meta or {})
    full_meta.update(
        sample_rate=int(mix_rate),
        sample_rates=dict(rate_of),
        duration=round(num_samples / mix_rate, 6),
        num_samples=int(num_samples),
        channels=int(next(iter(channels))),
        stems=list(arrays),
        gain=gain,
        subtype=subtype,
    )
    if kept or len(set(rate_of.values())) > 1:
        full_meta.update(mix_gain=mix_gain)
    if kept:
        full_meta.update(kept=list(kept), subtypes=subtypes)
    try:
        meta_json = json.dumps(
            full_meta, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta cannot be written as JSON: {exc}") from exc
    midi = result_midi(arrays, {n: rate_of[n] for n in arrays}, full_meta)
    return _Prepared(out, subtypes, _to_codes(codes), meta_json + "\n", midi, rate_of)


def result_midi(
    stems: Mapping[str, np.ndarray], sample_rate: int | Mapping[str, int], meta: Mapping[str, Any]
) -> mido.MidiFile:
    """`stems.mid` of a result's stems {name: [C, T]} at `sample_rate` (or {name: rate}): at the
    tempo and with the chord chart its meta says the model read."""
    return midi_of_stems(stems, sample_rate, *tempo_and_chords(meta))


def tempo_and_chords(meta: Mapping[str, Any]) -> tuple[float | None, ChordChart | None]:
    """The tempo (bpm) and chord chart a result's meta says the model read (None: not known)."""
    grid = meta.get("beat_grid") or {}
    bpm = grid.get("bpm") or parse_attributes(meta.get("model_prompt") or meta.get("prompt")).tempo
    try:
        chart = ChordChart.from_json(meta["chords"]) if meta.get("chords") else None
    except (ChordError, KeyError, TypeError, ValueError):
        chart = None
    return bpm, chart


def _levels(
    arrays: dict[str, np.ndarray],
    kept: dict[str, Samples],
    subtype: str,
    num_samples: int | Mapping[str, int],
    rates: Mapping[str, int] | None = None,
) -> tuple[dict[str, np.ndarray | Samples], float, float]:
    """The files' content (stems then mix), the new stems' gain and the mix's own gain.

    `num_samples`: every stem's length, or {stem: its length}; `rates`: {stem: rate} when they
    differ (the mix is then at the highest, see `mix_at`). Without kept audio at one rate one
    shared gain keeps every file and the mix in range (mix = exact sum of the files). Kept samples
    are never scaled: a gain applies to the new stems only if one of them would clip, and to the
    mix file only if the mix would."""
    pcm = subtype in audio.PCM_SUBTYPES
    one_rate = len(set((rates or {}).values())) <= 1
    exact = one_rate and not kept  # the mix file is the exact sum of the stem files
    new = {n: x for n, x in arrays.items() if n not in kept}
    loud = [*new.values()] + ([sum(arrays.values())] if exact else [])
    peak = max((float(np.abs(a).max()) for a in loud), default=0.0)
    gain = PEAK_LIMIT / peak if pcm and peak > PEAK_LIMIT else 1.0
    out: dict[str, np.ndarray | Samples] = {}
    floats: dict[str, np.ndarray] = {}
    for name, x in arrays.items():
        if name in kept:
            frames = num_samples if isinstance(num_samples, int) else num_samples[name]
            out[name] = kept[name].padded(frames)
            floats[name] = x
        else:
            out[name] = audio.pcm_round(x * gain, subtype)  # [C, T]
            floats[name] = out[name]
    # exact sum of the grid values -> written exactly when nothing is kept
    mix = sum(floats.values()) if one_rate else mix_at(floats, rates or {})
    mix_gain = 1.0
    if not exact:
        mix_peak = float(np.abs(mix).max())
        mix_gain = PEAK_LIMIT / mix_peak if pcm and mix_peak > PEAK_LIMIT else 1.0
        mix = audio.pcm_round(mix * mix_gain, subtype)
    out[MIX_NAME] = mix
    return out, gain, mix_gain


def mix_at(stems: Mapping[str, np.ndarray], rates: Mapping[str, int]) -> np.ndarray:
    """The sum of stems {name: [C, T]} at rates {name: rate} that differ: at the highest rate, each
    stem at another resampled to it (julius), all as long as the longest in seconds."""
    rate = max(rates[n] for n in stems)
    seconds = max(x.shape[-1] / rates[n] for n, x in stems.items())
    length = round(seconds * rate)
    mix = np.zeros((next(iter(stems.values())).shape[0], length))
    for name, x in stems.items():
        if rates[name] != rate:
            x = audio.convert_audio(torch.from_numpy(x), rates[name], rate, x.shape[0]).numpy()
        n = min(length, x.shape[-1])
        mix[:, :n] += x[:, :n]
    return mix


def _write_prepared(folder: Path, prep: _Prepared, subtype: str) -> None:
    """Write one prepared stems folder's files into the (existing, empty) `folder`."""
    for name, wav in prep.audio.items():
        path = folder / f"{name}{AUDIO_EXT}"
        if isinstance(wav, Samples):
            write_samples(path, wav)
        else:
            audio.save_audio(path, wav, prep.rates[name], prep.subtypes[name])
    np.save(folder / CODES_FILE, prep.codes, allow_pickle=False)
    prep.midi.save(folder / MIDI_FILE)
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


def _write_atomic(out_dir: PathLike, force: bool, fill: Callable[[Path], None]) -> Path:
    """Create a temp sibling of `out_dir`, let `fill(tmp_dir)` write into it, then commit."""
    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    target = out_dir.resolve() if out_dir.is_symlink() else out_dir  # swap the folder, not the link
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_sibling(target)
    except OSError as exc:
        raise MusicGenStemError(
            f"cannot create output folder '{out_dir}': {exc.strerror or exc}; check the path and permissions"
        ) from exc
    try:
        fill(tmp)
        replace_dir(tmp, target, lambda: _check_target(target, force))
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
    kept: Mapping[str, Samples] | None = None,
    extra_files: Mapping[str, str] | None = None,
    rates: Mapping[str, int] | None = None,
) -> Path:
    """Write one stems folder (see module docstring) atomically; returns `out_dir`.

    `stems`: {name: [C, T]} in stem order, at `sample_rate` or at their `rates` {name: rate};
    `codes`: integer [K, T_frames]; `kept`: {name: samples} written exactly instead of
    `stems[name]`, at their own rate; `extra_files`: {file name: text} written beside them (e.g. a
    jam's `jam.json`). Raises `OutputExistsError` if `out_dir` is non-empty and `force` is False.
    """
    prep = _prepare(stems, sample_rate, codes, meta, subtype, kept=kept, rates=rates)
    extra = dict(extra_files or {})
    for name in extra:
        _check_stem_name(name)

    def fill(tmp: Path) -> None:
        _write_prepared(tmp, prep, subtype)
        for name, text in extra.items():
            (tmp / name).write_text(text, encoding="utf-8")

    return _write_atomic(out_dir, force, fill)


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
        _prepare(
            it.stems,
            sample_rate,
            it.codes,
            it.meta,
            subtype,
            {"variation": i, "batch_size": n},
            it.kept,
            it.rates,
        )
        for i, it in enumerate(items)
    ]
    names = [batch_folder_name(i, n) for i in range(n)]

    def fill(tmp: Path) -> None:
        for name, prep in zip(names, preps, strict=True):
            (tmp / name).mkdir()
            _write_prepared(tmp / name, prep, subtype)

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
        """The mix's rate, the highest of the files'."""
        return int(self.meta["sample_rate"])

    def rate_of(self, name: str) -> int:
        """The sample rate of one file (a stem or "mix"), from meta.json's `sample_rates`."""
        rates = self.meta.get("sample_rates")
        rate = rates.get(name) if isinstance(rates, dict) else None
        good = isinstance(rate, int) and not isinstance(rate, bool) and rate > 0
        return int(rate) if good else self.sample_rate

    def audio_path(self, name: str) -> Path:
        return self.path / f"{name}{AUDIO_EXT}"

    def load_stems(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Load stems (default: all, in order; `"mix"` allowed) as {name: [C, T] float32}, each at
        its own rate (`rate_of`).

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
            if sr != self.rate_of(name):
                raise MusicGenStemError(
                    f"'{self.audio_path(name)}' is at {sr} Hz but meta.json says {self.rate_of(name)} Hz; "
                    "regenerate the folder"
                )
            out[name] = wav
        return out

    def load_samples(self, name: str) -> Samples:
        """One stem's file exactly as stored (see `samples.read_samples`)."""
        from .samples import read_samples

        if name not in self.stems:
            raise MusicGenStemError(f"'{self.path}' has no stem {name!r}; choose among {self.stems}")
        return read_samples(self.audio_path(name))

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
            elif audio := sorted(
                f.stem for f in path.iterdir() if f.suffix.lower() in (".wav", ".flac", ".mp3")
            ):
                given = " ".join(f"--stem {n}={path / n}.wav" for n in audio[:3])
                hint = f"for plain audio stems, give them as files instead: {given}"
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MusicGenStemError(
            f"{bad}: {META_FILE} is not valid JSON ({_one_line(exc)}); regenerate the folder"
        ) from exc
    if not isinstance(meta, dict):
        raise MusicGenStemError(f"{bad}: {META_FILE} must hold a JSON object; regenerate the folder")
    stems, sr = meta.get("stems"), meta.get("sample_rate")
    if not (isinstance(stems, list) and stems and all(isinstance(s, str) and s for s in stems)):
        raise MusicGenStemError(f"{bad}: {META_FILE} lacks a valid 'stems' list; regenerate the folder")
    for name in stems:  # names become file names: nothing outside the folder may be read
        try:
            _check_stem_name(name)
        except ValueError:
            raise MusicGenStemError(
                f"{bad}: {META_FILE} names a stem {name[:40]!r} that is not a plain file name; "
                "regenerate the folder"
            ) from None
    if not (isinstance(sr, int) and not isinstance(sr, bool) and sr > 0):
        raise MusicGenStemError(f"{bad}: {META_FILE} lacks a valid 'sample_rate'; regenerate the folder")
    return StemsFolder(path=path, codes=codes.astype(np.int64, copy=False), meta=meta)
