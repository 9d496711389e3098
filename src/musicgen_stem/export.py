"""Export stems as a DAW-ready stem pack: `musicgen-stem export SRC_OUTPUT_FOLDER --out DIR`.

A pack folder holds::

    <stem>.<ext> ...      one file per stem, in the given order (wav, flac or mp3)
    mix.<ext>             the sum of the stems as written
    stems.json            sidecar: prompt, seed, model, parameters, tempo, source song hash, rate,
                          channels, format, bit depth, gain, duration and the files with their roles
    stems.zip             (--zip) the stem files, mix and stems.json, flat
    <name>.stem.mp4       (--stem-mp4) a Native Instruments STEMS file, <name> = the pack folder's name

Every file has the same length and rate. Stems of unequal length are zero-padded at the end to the
longest; each stem is then resampled once (julius) to the output rate, which gives
floor(T * out_rate / in_rate) samples, and cropped / zero-padded to exactly that (a no-op with the
current julius, at most a sample or two otherwise). Nothing is normalised per stem: when the mix or a
stem would peak above 0.999, one shared gain scales every stem and the mix (`gain` in stems.json;
divide by it to get the original levels). Float WAV never clips, so it keeps gain 1 unless a
.stem.mp4 is written too. For 16/24-bit PCM each stem is rounded to the PCM grid and the mix is the
exact sum of the rounded stems. Lossy formats (MP3, AAC) may overshoot the peak slightly on decoding.

The .stem.mp4 holds 5 AAC streams (256 kbps, 44.1 kHz, stereo): stream 0 the master (the mix), then
the NI slots drums, bass, other, vocals. A stem of another name is added to the `other` slot; a slot
with no stem is a silent track. Only stream 0 is flagged enabled, so ordinary players play the mix.
The NI metadata (`moov/udta/stem` box holding the JSON with `stems` names/colours, `mastering_dsp`
and `version`) is appended to the MP4 after PyAV wrote it (PyAV cannot write custom atoms).

Writes are atomic (temporary sibling folder renamed into place, removed on failure); an existing
non-empty folder is refused unless `force`, and then only the entries we write are replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audio, outputs
from .errors import MusicGenStemError, OutputExistsError
from .samples import Samples, write_samples

__all__ = [
    "BIT_DEPTHS",
    "FORMATS",
    "NI_SLOTS",
    "SIDECAR_FILE",
    "ZIP_FILE",
    "ExportResult",
    "add_arguments",
    "export_stem_pack",
    "file_sha256",
    "run",
]

#: Output rates a stem pack may have: the standard audio rates DAWs and players open.
RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)

PathLike = str | os.PathLike

SIDECAR_FILE = "stems.json"
ZIP_FILE = "stems.zip"
STEM_MP4_SUFFIX = ".stem.mp4"
# Allowed bit depths per format; the first one is the default.
BIT_DEPTHS: dict[str, tuple[str, ...]] = {
    "wav": ("24", "16", "float", "double"),
    "flac": ("24", "16"),
    "mp3": (),
}
FORMATS: tuple[str, ...] = tuple(BIT_DEPTHS)
_SUBTYPE = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT", "double": "DOUBLE"}
COMMON_RATES = (32000, 44100, 48000)
MP3_RATES = (32000, 44100, 48000, 22050, 24000, 16000, 11025, 12000, 8000)
MP3_BIT_RATE = 320_000
STEM_MP4_RATE = 44100
STEM_MP4_BIT_RATE = 256_000
_CHUNK = 8192  # samples per encoded frame we hand to PyAV (it re-chunks to the codec's frame size)

# NI STEMS: exactly 4 stems after the master, with their default colours.
NI_SLOTS: tuple[str, ...] = ("drums", "bass", "other", "vocals")
NI_COLORS: dict[str, str] = {"drums": "#009E73", "bass": "#D55E00", "other": "#CC79A7", "vocals": "#56B4E9"}
NI_OTHER = "other"
NI_MASTERING_DSP: dict[str, Any] = {
    "compressor": {
        "enabled": False,
        "input_gain": 0.5,
        "output_gain": 0.5,
        "threshold": 0,
        "dry_wet": 50,
        "attack": 0.003,
        "release": 0.3,
        "ratio": 3,
        "hp_cutoff": 300,
    },
    "limiter": {"enabled": False, "threshold": 0, "ceiling": -0.35, "release": 0.05},
}


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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _check_options(fmt: str, bit_depth: str | int | None, out_rate: int | None, channels: int | None) -> str:
    """Validate format options; returns the bit depth ("16", "24", "float" or "" for MP3)."""
    if fmt not in BIT_DEPTHS:
        raise MusicGenStemError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    allowed = BIT_DEPTHS[fmt]
    if bit_depth is None:
        bits = allowed[0] if allowed else ""
    else:
        bits = str(bit_depth)
        if bits not in allowed:
            hint = (
                "MP3 has no bit depth (320 kbps CBR): leave the bit depth unset"
                if not allowed
                else f"use one of {', '.join(allowed)}"
            )
            raise MusicGenStemError(f"bit depth {bits!r} is not available for {fmt.upper()}; {hint}")
    if out_rate is not None:
        if isinstance(out_rate, bool) or not isinstance(out_rate, int | np.integer) or out_rate not in RATES:
            raise MusicGenStemError(
                f"invalid output rate {out_rate!r}; use one of {', '.join(map(str, RATES))} (Hz)"
            )
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 2)):
        raise MusicGenStemError(f"invalid channel count {channels!r}; use 1 (mono) or 2 (stereo)")
    return bits


def _check_stems(stems: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """{name: [C, T]} -> {name: float64 [C, T] tensor}, zero-padded at the end to equal length."""
    if not stems:
        raise MusicGenStemError("no stems to export; give at least one stem")
    out: dict[str, torch.Tensor] = {}
    for name, wav in stems.items():
        try:
            outputs._check_stem_name(name)
        except ValueError as exc:
            raise MusicGenStemError(str(exc)) from exc
        x = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
        x = x.detach().to("cpu", torch.float64)
        if x.dim() != 2 or x.shape[0] < 1:
            raise MusicGenStemError(f"stem {name!r} must be shaped [C, T], got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise MusicGenStemError(f"stem {name!r} contains NaN or infinite samples")
        out[name] = x
    counts = {x.shape[0] for x in out.values()}
    if len(counts) != 1:
        detail = ", ".join(f"{n}: {x.shape[0]}" for n, x in out.items())
        raise MusicGenStemError(f"all stems need the same channel count, got {detail}")
    length = max(x.shape[-1] for x in out.values())
    if length == 0:
        raise MusicGenStemError("stems have zero samples; nothing to export")
    return {n: torch.nn.functional.pad(x, (0, length - x.shape[-1])) for n, x in out.items()}


# --------------------------------------------------------------------------------------------
# Rendering (pure, no I/O)
# --------------------------------------------------------------------------------------------
def _render(wav: torch.Tensor, from_sr: int, to_sr: int, channels: int) -> np.ndarray:
    """[C, T] float64 -> [channels, floor(T * to_sr / from_sr)] float64: one resample, channel rules."""
    length = wav.shape[-1] * to_sr // from_sr
    if channels < wav.shape[0]:  # fewer channels: convert first (less to resample)
        wav = audio.convert_audio_channels(wav, channels)
    if from_sr != to_sr:
        import julius

        wav = julius.resample_frac(wav, int(from_sr), int(to_sr))
    wav = audio.convert_audio_channels(wav, channels)
    # Equalise the length exactly (a no-op with current julius; at most a sample or two otherwise).
    if wav.shape[-1] > length:
        wav = wav[..., :length]
    elif wav.shape[-1] < length:
        wav = torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
    return wav.contiguous().numpy().astype(np.float64, copy=False)


def _peak(arrays: Mapping[str, np.ndarray]) -> float:
    """Largest |x| over the arrays and their sum."""
    mix = sum(arrays.values())
    return max(float(np.abs(a).max()) if a.size else 0.0 for a in [mix, *arrays.values()])


def _ni_slots(stems: Mapping[str, np.ndarray], num_samples: int) -> dict[str, np.ndarray]:
    """Our stems -> the 4 NI slots [2, T] each (unknown names go into `other`, missing ones silent)."""
    slots = {s: np.zeros((2, num_samples)) for s in NI_SLOTS}
    for name, x in stems.items():
        slots[name if name in slots else NI_OTHER] = slots[name if name in slots else NI_OTHER] + x
    return slots


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def _require_codec(name: str, what: str) -> None:
    import av

    if name not in av.codecs_available:
        raise MusicGenStemError(
            f"{what} needs ffmpeg's {name} encoder, which this PyAV build lacks; install the PyAV wheel "
            "from PyPI (pip install --force-reinstall av), which bundles it, or export wav/flac"
        )


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}[channels]


def _encode_streams(
    path: Path, fmt: str, codec: str, bit_rate: int, sample_rate: int, tracks: list[tuple[str, np.ndarray]]
) -> None:
    """Encode tracks [(name, [C, T] float)] as the audio streams of one file (same length, rate)."""
    import av

    try:
        with av.open(str(path), mode="w", format=fmt) as container:
            streams = []
            for i, (name, x) in enumerate(tracks):
                stream = container.add_stream(codec, rate=sample_rate, layout=_layout(x.shape[0]))
                stream.bit_rate = bit_rate
                stream.metadata["handler_name"] = name
                if len(tracks) > 1:
                    stream.metadata["title"] = name
                    stream.disposition = av.stream.Disposition.default if i == 0 else 0
                streams.append(stream)
            num_samples = tracks[0][1].shape[-1]
            # Interleave: one chunk of every stream at a time.
            for start in range(0, num_samples, _CHUNK):
                for stream, (_, x) in zip(streams, tracks, strict=True):
                    chunk = np.ascontiguousarray(x[:, start : start + _CHUNK], dtype=np.float32)  # [C, n]
                    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=_layout(x.shape[0]))
                    frame.sample_rate = sample_rate
                    frame.pts = start
                    container.mux(stream.encode(frame))
            for stream in streams:
                container.mux(stream.encode(None))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MusicGenStemError(
            f"cannot write '{path}': {outputs._one_line(exc)}; check free space and the PyAV install"
        ) from exc


def _write_mp3(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """[C, T] float (|x| <= 1) -> 320 kbps CBR MP3 with libmp3lame."""
    _encode_streams(path, "mp3", "libmp3lame", MP3_BIT_RATE, sample_rate, [(path.stem, wav)])


def _ni_metadata() -> dict[str, Any]:
    stems = [{"name": s.capitalize(), "color": NI_COLORS[s]} for s in NI_SLOTS]
    return {"stems": stems, "mastering_dsp": NI_MASTERING_DSP, "version": 1}


def _iter_boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """MP4 boxes in data[start:end] as (type, box start, payload start, box end)."""
    boxes = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"malformed MP4 box {kind!r} at byte {pos}")
        boxes.append((kind, pos, pos + header, pos + size))
        pos += size
    return boxes


def _add_udta_box(path: Path, kind: bytes, payload: bytes) -> None:
    """Append a `moov/udta/<kind>` box to an MP4 whose `moov` follows its media data.

    Only `moov` (and `udta`) grow, so chunk offsets into `mdat` stay valid.
    """
    data = path.read_bytes()
    top = _iter_boxes(data, 0, len(data))
    moov = [b for b in top if b[0] == b"moov"]
    mdat_ends = [b[3] for b in top if b[0] == b"mdat"]
    if len(moov) != 1 or any(end > moov[0][1] for end in mdat_ends):
        raise ValueError("expected one moov box after the media data")
    _, m_start, m_payload, m_end = moov[0]
    if data[m_start : m_start + 4] == b"\x00\x00\x00\x01" or m_end - m_start + len(payload) + 16 >= 2**32:
        raise ValueError("moov box too large")
    box = struct.pack(">I4s", 8 + len(payload), kind) + payload
    udta = [b for b in _iter_boxes(data, m_payload, m_end) if b[0] == b"udta"]
    if udta:
        _, u_start, _, u_end = udta[0]
        new_udta = struct.pack(">I", u_end - u_start + len(box)) + data[u_start + 4 : u_end] + box
        body = data[m_payload:u_start] + new_udta + data[u_end:m_end]
    else:
        body = data[m_payload:m_end] + struct.pack(">I4s", 8 + len(box), b"udta") + box
    new_moov = struct.pack(">I4s", 8 + len(body), b"moov") + body
    path.write_bytes(data[:m_start] + new_moov + data[m_end:])


def _write_stem_mp4(path: Path, mix: np.ndarray, slots: Mapping[str, np.ndarray]) -> None:
    """Master [2, T] + the 4 NI slots [2, T] at 44.1 kHz -> 5-stream AAC .stem.mp4 with NI metadata."""
    tracks = [("Master", mix)] + [(s.capitalize(), slots[s]) for s in NI_SLOTS]
    _encode_streams(path, "mp4", "aac", STEM_MP4_BIT_RATE, STEM_MP4_RATE, tracks)
    meta = json.dumps(_ni_metadata(), separators=(",", ":")).encode("utf-8")
    try:
        _add_udta_box(path, b"stem", meta)
    except ValueError as exc:
        raise MusicGenStemError(f"cannot add the NI stem metadata to '{path}': {exc}") from exc


def _write_zip(path: Path, members: list[Path]) -> None:
    """Flat zip of `members` (audio stored, JSON deflated)."""
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            method = zipfile.ZIP_DEFLATED if member.suffix == ".json" else zipfile.ZIP_STORED
            zf.write(member, arcname=member.name, compress_type=method)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
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
) -> ExportResult:
    """Write a stem pack (see module docstring) atomically into `out_dir`.

    `stems`: {name: [C, T]} at `sample_rate`, all with the same C. `bit_depth`: "16", "24" or
    "float" (wav), "16"/"24" (flac), unset for mp3; None = 24 (wav/flac). `out_rate` / `channels`:
    None keeps the input's. `meta`: the generation's meta (prompt, seed, model, params, tempo...).
    `source_song`: the edited song's file, hashed into `source_sha256`. `kept`: {name: samples}
    written exactly instead of `stems[name]` (see module docstring). Raises `MusicGenStemError`
    for bad options or stems and `OutputExistsError` if `out_dir` is non-empty and not `force`.
    """
    fmt = str(fmt).lower()
    bits = _check_options(fmt, bit_depth, out_rate, channels)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise MusicGenStemError(f"invalid input sample rate {sample_rate!r}; give a positive integer")
    kept = dict(kept or {})
    stems = {n: torch.from_numpy(kept[n].to_float64()) if n in kept else w for n, w in stems.items()}
    inputs = _check_stems(stems)  # {name: [C, T] float64}
    in_channels = next(iter(inputs.values())).shape[0]
    rate = int(out_rate or sample_rate)
    n_channels = int(channels or in_channels)
    if kept and (fmt != "wav" or rate != sample_rate or n_channels != in_channels or set(kept) - set(inputs)):
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
    pack = {n: _render(x, int(sample_rate), rate, n_channels) for n, x in inputs.items()}  # [C', T']
    num_samples = next(iter(pack.values())).shape[-1]
    if num_samples == 0:
        raise MusicGenStemError(f"the stems are too short to export at {rate} Hz")
    ni: dict[str, np.ndarray] = {}
    if stem_mp4:
        if rate == STEM_MP4_RATE and n_channels == 2:
            ni = dict(pack)
        else:
            ni = {n: _render(x, int(sample_rate), STEM_MP4_RATE, 2) for n, x in inputs.items()}  # [2, T'']

    subtype = _SUBTYPE.get(bits, "FLOAT")
    gain, mix_gain, mp4_gain = 1.0, 1.0, 1.0
    if kept:  # kept samples as read; the new stems, the mix and the .stem.mp4 scaled on their own
        frames = next(iter(pack.values())).shape[-1]
        pack, gain, mix_gain = outputs._levels(pack, kept, subtype, frames)
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

    ext = f".{fmt}"
    names = {n: f"{n}{ext}" for n in pack}
    mp4_name = f"{out_dir.name}{STEM_MP4_SUFFIX}" if stem_mp4 else None
    files = [{"file": names[n], "role": "mix" if n == outputs.MIX_NAME else "stem", "name": n} for n in pack]
    if mp4_name:
        files.append(
            {
                "file": mp4_name,
                "role": "ni_stems",
                "streams": ["master", *NI_SLOTS],
                "codec": "aac",
                "sample_rate": STEM_MP4_RATE,
                "channels": 2,
            }
        )
    if zip:
        files.append({"file": ZIP_FILE, "role": "archive"})
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
                audio.save_audio(path, x, rate, subtype)
            written.append(path)
        (tmp / SIDECAR_FILE).write_text(sidecar_json + "\n", encoding="utf-8")
        written.append(tmp / SIDECAR_FILE)
        if mp4_name:
            ni_stems = {n: x * mp4_gain for n, x in ni.items()}
            ni_mix = sum(ni_stems.values())
            ni_len = ni_mix.shape[-1]
            _write_stem_mp4(tmp / mp4_name, ni_mix, _ni_slots(ni_stems, ni_len))
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
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
        channels=args.channels,
        meta=src.meta,
        zip=args.zip,
        stem_mp4=args.stem_mp4,
        force=args.force,
        source_song=args.song,
    )
    print(
        f"{src_path} -> {result.out_dir} ({len(result.files)} files, gain {result.gain:.4g})", file=sys.stdout
    )
    return 0
