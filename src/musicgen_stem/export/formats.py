"""Stem pack formats: option and stem checks, rendering (one resample per stem, channel rules,
peak) and the file writers (PCM via `audio.save_audio`, MP3 and AAC via PyAV, zip)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import audio, outputs
from ..errors import MusicGenStemError
from .spec import BIT_DEPTHS, FORMATS, MP3_BIT_RATE, MP3_RATES, RATES

__all__ = ["BIT_DEPTHS", "FORMATS", "MP3_BIT_RATE", "MP3_RATES", "RATES", "PathLike"]

PathLike = str | os.PathLike

_SUBTYPE = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT", "double": "DOUBLE"}
_CHUNK = 8192  # samples per encoded frame we hand to PyAV (it re-chunks to the codec's frame size)


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


def _check_stems(stems: Mapping[str, Any], rates: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """{name: [C, T]} -> {name: float64 [C, T] tensor}, zero-padded at the end to equal length (in
    seconds, at their `rates` {name: rate} where they differ)."""
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
    if rates and len({rates[n] for n in out}) > 1:
        seconds = max(x.shape[-1] / rates[n] for n, x in out.items())
        lengths = {n: round(seconds * rates[n]) for n in out}
    else:
        lengths = dict.fromkeys(out, max(x.shape[-1] for x in out.values()))
    if max(lengths.values()) == 0:
        raise MusicGenStemError("stems have zero samples; nothing to export")
    return {n: torch.nn.functional.pad(x, (0, lengths[n] - x.shape[-1])) for n, x in out.items()}


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


def _write_zip(path: Path, members: list[Path]) -> None:
    """Flat zip of `members` (audio stored, JSON deflated)."""
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            method = zipfile.ZIP_DEFLATED if member.suffix == ".json" else zipfile.ZIP_STORED
            zf.write(member, arcname=member.name, compress_type=method)
