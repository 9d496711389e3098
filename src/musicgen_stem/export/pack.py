"""`export_stem_pack`: stems -> a stem pack folder (layout, levels and atomicity: see the package
docstring), with its `stems.json` sidecar."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import audio, outputs
from ..errors import MusicGenStemError
from ..samples import Samples, write_samples
from .formats import (
    _SUBTYPE,
    MP3_BIT_RATE,
    MP3_RATES,
    PathLike,
    _check_options,
    _check_stems,
    _peak,
    _render,
    _require_codec,
    _write_mp3,
    _write_zip,
)
from .ni_stems import NI_SLOTS, STEM_MP4_SUFFIX, _ni_slots, _write_stem_mp4, stem_mp4_rate
from .spec import SIDECAR_FILE, ZIP_FILE

__all__ = ["SIDECAR_FILE", "ZIP_FILE", "ExportResult", "export_stem_pack", "file_sha256"]


@dataclass
class ExportResult:
    """What `export_stem_pack` wrote. `files`: {"bass": path, ..., "mix": path} (audio files)."""

    out_dir: Path
    files: dict[str, Path]
    sidecar: Path
    sample_rate: int
    channels: int
    num_samples: int
    gain: float
    zip_path: Path | None = None
    stem_mp4: Path | None = None
    sidecar_data: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in chunks)."""
    path = Path(path)
    if not path.is_file():
        raise MusicGenStemError(f"cannot hash '{path}': file not found; check the path")
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def _sidecar(
    meta: Mapping[str, Any],
    *,
    source_sha256: str | None,
    sample_rate: int,
    channels: int,
    fmt: str,
    bits: str,
    gain: float,
    num_samples: int,
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    params = meta.get("params", meta.get("generation_params"))
    tempo = next((meta[k] for k in ("tempo", "bpm") if meta.get(k) is not None), None)
    tempo = tempo if tempo is not None else outputs.tempo_and_chords(meta)[0]  # what the model read
    return {
        "prompt": meta.get("prompt"),
        "seed": meta.get("seed"),
        "model": meta.get("model"),
        "params": params,
        "tempo": tempo,
        "source_sha256": source_sha256 or meta.get("source_sha256") or meta.get("song_sha256"),
        "sample_rate": int(sample_rate),
        "channels": int(channels),
        "format": fmt,
        "bit_depth": bits or None,
        "bit_rate": MP3_BIT_RATE if fmt == "mp3" else None,
        "gain": gain,
        "duration": round(num_samples / sample_rate, 6),
        "num_samples": int(num_samples),
        "files": files,
        "meta": dict(meta),
    }


def export_stem_pack(
    out_dir: PathLike,
    stems: Mapping[str, torch.Tensor | np.ndarray],
    sample_rate: int,
    *,
    fmt: str = "wav",
    bit_depth: str | int | None = None,
    out_rate: int | None = None,
    channels: int | None = None,
    meta: Mapping[str, Any] | None = None,
    zip: bool = False,
    stem_mp4: bool = False,
    force: bool = False,
    source_song: PathLike | None = None,
    kept: Mapping[str, Samples] | None = None,
    rates: Mapping[str, int] | None = None,
) -> ExportResult:
    """Write a stem pack (see the package docstring) atomically into `out_dir`.

    `stems`: {name: [C, T]} at `sample_rate`, all with the same C. `bit_depth`: "16", "24" or
    "float" (wav), "16"/"24" (flac), unset for mp3; None = 24 (wav/flac). `out_rate` / `channels`:
    None keeps the input's. `meta`: the generation's meta (prompt, seed, model, params, tempo...).
    `source_song`: the edited song's file, hashed into `source_sha256`. `kept`: {name: samples}
    written exactly instead of `stems[name]` (see the package docstring). `rates`: {name: rate} of
    stems at another rate than `sample_rate` (a kept stem's: its own): the pack is then at the
    highest of them (or `out_rate`), or with kept stems each file at its own and the mix at the
    highest. Raises `MusicGenStemError` for bad options or stems and `OutputExistsError` if
    `out_dir` is non-empty and not `force`.
    """
    fmt = str(fmt).lower()
    bits = _check_options(fmt, bit_depth, out_rate, channels)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise MusicGenStemError(f"invalid input sample rate {sample_rate!r}; give a positive integer")
    kept = dict(kept or {})
    stems = {n: torch.from_numpy(kept[n].to_float64()) if n in kept else w for n, w in stems.items()}
    own = {n: kept[n].sample_rate if n in kept else int(sample_rate) for n in stems}
    rate_of = {n: int((rates or {}).get(n, own[n])) for n in stems}  # each input's rate
    inputs = _check_stems(stems, rate_of)  # {name: [C, T] float64}
    in_channels = next(iter(inputs.values())).shape[0]
    rate = int(out_rate or max(rate_of.values()))
    n_channels = int(channels or in_channels)
    wrong_rate = out_rate is not None and out_rate != sample_rate
    if kept and (fmt != "wav" or wrong_rate or n_channels != in_channels or set(kept) - set(inputs)):
        raise MusicGenStemError(
            "kept stems are written untouched: export them as WAV at their own rate and channel count"
        )
    if fmt == "mp3":
        _require_codec("libmp3lame", "MP3 export")
        if rate not in MP3_RATES:
            raise MusicGenStemError(f"MP3 cannot be written at {rate} Hz; use 32000, 44100 or 48000")
        if n_channels > 2:
            raise MusicGenStemError(
                f"MP3 holds at most 2 channels, the stems have {n_channels}; pass channels=2"
            )
    if stem_mp4:
        _require_codec("aac", "the .stem.mp4 export")
    out_dir = Path(out_dir)
    outputs._check_target(out_dir, force)
    song_hash = None
    if source_song is not None:
        song = Path(source_song).resolve()
        if song.is_relative_to(out_dir.resolve()):
            raise MusicGenStemError(
                f"--out '{out_dir}' contains the source song '{song}'; choose another --out"
            )
        song_hash = file_sha256(song)

    # Render: one resample per stem (and one more, from the input, for a .stem.mp4 at another rate).
    # Kept stems stay at their own rate, and so does every file beside them.
    file_rate = dict(rate_of) if kept else dict.fromkeys(inputs, rate)
    pack = {n: _render(x, rate_of[n], file_rate[n], n_channels) for n, x in inputs.items()}  # [C', T']
    num_samples = next(iter(pack.values())).shape[-1]
    if min(x.shape[-1] for x in pack.values()) == 0:
        raise MusicGenStemError(f"the stems are too short to export at {rate} Hz")
    ni: dict[str, np.ndarray] = {}
    mp4_rate = stem_mp4_rate(rate)
    if stem_mp4:
        if set(file_rate.values()) == {mp4_rate} and n_channels == 2:
            ni = dict(pack)
        else:
            ni = {n: _render(x, rate_of[n], mp4_rate, 2) for n, x in inputs.items()}  # [2, T'']

    subtype = _SUBTYPE.get(bits, "FLOAT")
    gain, mix_gain, mp4_gain = 1.0, 1.0, 1.0
    if kept:  # kept samples as read; the new stems, the mix and the .stem.mp4 scaled on their own
        frames = {n: x.shape[-1] for n, x in pack.items()}
        pack, gain, mix_gain = outputs._levels(pack, kept, subtype, frames, file_rate)
        file_rate[outputs.MIX_NAME] = rate
        num_samples = pack[outputs.MIX_NAME].shape[-1]
        if ni and _peak(ni) > outputs.PEAK_LIMIT:
            mp4_gain = outputs.PEAK_LIMIT / _peak(ni)
    else:  # one shared gain for every file, when something could clip
        if fmt != "wav" or bits not in ("float", "double") or stem_mp4:
            peak = max(_peak(pack), _peak(ni) if ni else 0.0)
            if peak > outputs.PEAK_LIMIT:
                gain = mp4_gain = outputs.PEAK_LIMIT / peak
        pack = {n: x * gain for n, x in pack.items()}
        if fmt != "mp3":
            pack = {n: audio.pcm_round(x, subtype) for n, x in pack.items()}
        pack[outputs.MIX_NAME] = sum(pack.values())  # exact sum of the grid values for PCM
        file_rate[outputs.MIX_NAME] = rate

    ext = f".{fmt}"
    names = {n: f"{n}{ext}" for n in pack}
    mp4_name = f"{out_dir.name}{STEM_MP4_SUFFIX}" if stem_mp4 else None
    files = [{"file": names[n], "role": "mix" if n == outputs.MIX_NAME else "stem", "name": n} for n in pack]
    if len(set(file_rate.values())) > 1:  # files at rates of their own: each says its rate
        files = [{**f, "sample_rate": file_rate[f["name"]]} for f in files]
    if mp4_name:
        files.append(
            {
                "file": mp4_name,
                "role": "ni_stems",
                "streams": ["master", *NI_SLOTS],
                "codec": "aac",
                "sample_rate": mp4_rate,
                "channels": 2,
            }
        )
    files.append({"file": outputs.MIDI_FILE, "role": "midi"})
    if zip:
        files.append({"file": ZIP_FILE, "role": "archive"})
    midi = outputs.result_midi(inputs, rate_of, dict(meta or {}))
    sidecar = _sidecar(
        dict(meta or {}),
        source_sha256=song_hash,
        sample_rate=rate,
        channels=n_channels,
        fmt=fmt,
        bits=bits,
        gain=gain,
        num_samples=num_samples,
        files=files,
    )
    if kept:
        sidecar.update(
            mix_gain=mix_gain,
            stem_mp4_gain=mp4_gain if stem_mp4 else None,
            kept=list(kept),
            subtypes={n: kept[n].subtype if n in kept else subtype for n in pack},
        )
    try:
        sidecar_json = json.dumps(
            sidecar, indent=2, ensure_ascii=False, allow_nan=False, default=outputs._json_default
        )
    except (TypeError, ValueError) as exc:
        raise MusicGenStemError(f"meta cannot be written as JSON: {exc}") from exc

    def fill(tmp: Path) -> None:
        written = []
        for n, x in pack.items():
            path = tmp / names[n]
            if isinstance(x, Samples):
                write_samples(path, x)
            elif fmt == "mp3":
                _write_mp3(path, x, rate)
            else:
                audio.save_audio(path, x, file_rate[n], subtype)
            written.append(path)
        (tmp / SIDECAR_FILE).write_text(sidecar_json + "\n", encoding="utf-8")
        written.append(tmp / SIDECAR_FILE)
        midi.save(tmp / outputs.MIDI_FILE)
        written.append(tmp / outputs.MIDI_FILE)
        if mp4_name:
            ni_stems = {n: x * mp4_gain for n, x in ni.items()}
            ni_mix = sum(ni_stems.values())
            ni_len = ni_mix.shape[-1]
            _write_stem_mp4(tmp / mp4_name, ni_mix, _ni_slots(ni_stems, ni_len), mp4_rate)
        if zip:
            _write_zip(tmp / ZIP_FILE, written)

    outputs._write_atomic(out_dir, force, fill)
    return ExportResult(
        out_dir=out_dir,
        files={n: out_dir / f for n, f in names.items()},
        sidecar=out_dir / SIDECAR_FILE,
        sample_rate=rate,
        channels=n_channels,
        num_samples=num_samples,
        gain=gain,
        zip_path=out_dir / ZIP_FILE if zip else None,
        stem_mp4=out_dir / mp4_name if mp4_name else None,
        sidecar_data=sidecar,
    )
