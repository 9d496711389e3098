"""Audio I/O: load any common audio file, convert channels / sample rate, save wav or flac.

Loading uses `soundfile` (wav, flac, ogg, aiff, mp3 with libsndfile >= 1.1...) and falls back to
PyAV (ffmpeg) for everything else (m4a/aac, opus in mp4/webm, ...), keeping the native sample rate.
Saving quantises integer PCM ourselves (`round(x * (2**(bits-1) - 1))`, the same scale libsndfile
uses when writing), so a sum of values on the PCM grid is written exactly; see `pcm_round`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .errors import AudioError

__all__ = [
    "PCM_SUBTYPES",
    "SUBTYPES",
    "convert_audio",
    "convert_audio_channels",
    "duration_seconds",
    "load_audio",
    "pcm_round",
    "save_audio",
]

# Integer PCM subtypes we write, with their full-scale value (1.0 <-> full scale).
PCM_SUBTYPES: dict[str, int] = {"PCM_16": 2**15 - 1, "PCM_24": 2**23 - 1}
SUBTYPES: tuple[str, ...] = ("PCM_16", "PCM_24", "FLOAT", "DOUBLE")
_FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC"}

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _check_input_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"cannot read '{path}': file not found; check the path")
    if path.is_dir():
        raise AudioError(f"cannot read '{path}': it is a directory; give an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read '{path}': permission denied; check the file's permissions")


def _load_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """[C, T] float32 and rate, or None when libsndfile cannot decode the file."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return np.ascontiguousarray(data.T), int(sr)


def _load_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with PyAV at its native rate: [C, T] float32 and rate."""
    import av  # imported lazily: only needed for formats libsndfile cannot read

    unreadable = AudioError(
        f"cannot read '{path}': not a readable audio file (unknown format or corrupt data); "
        "convert it to wav or flac"
    )
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise unreadable from exc
    try:
        if not container.streams.audio:
            raise AudioError(f"cannot read '{path}': it has no audio stream; give an audio file")
        stream = container.streams.audio[0]
        # Format conversion only (planar float32): rate and layout are kept as decoded.
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        chunks: list[np.ndarray] = []  # each [C, n]
        sr = int(stream.rate or 0)
        for frame in container.decode(stream):
            sr = int(frame.sample_rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):  # flush
            chunks.append(out.to_ndarray())
    except AudioError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        raise unreadable from exc
    finally:
        container.close()
    if not chunks or sr <= 0:
        raise AudioError(f"cannot read '{path}': it contains no audio samples; give a non-empty audio file")
    wav = np.concatenate(chunks, axis=-1).astype(np.float32, copy=False)  # [C, T]
    return wav, sr


def load_audio(path: PathLike) -> tuple[torch.Tensor, int]:
    """Read an audio file as (`wav` [C, T] float32, sample_rate), at its native rate and channels.

    Integer formats give values in [-1, 1]; float files are returned as stored (never clipped).
    Raises `AudioError` for a missing path, a directory, an undecodable file, zero samples or
    non-finite samples.
    """
    path = Path(path)
    _check_input_path(path)
    loaded = _load_soundfile(path)
    wav, sr = loaded if loaded is not None else _load_pyav(path)
    if wav.shape[0] == 0 or wav.shape[-1] == 0:
        raise AudioError(f"cannot use '{path}': it contains no audio samples; give a non-empty audio file")
    if sr <= 0:
        raise AudioError(f"cannot use '{path}': invalid sample rate {sr}; re-encode the file")
    if not np.isfinite(wav).all():
        raise AudioError(
            f"cannot use '{path}': it contains NaN or infinite samples; re-export the audio as wav/flac"
        )
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), sr


def duration_seconds(path: PathLike) -> float:
    """Duration of an audio file in seconds from its metadata (decodes only if there is none)."""
    path = Path(path)
    _check_input_path(path)
    try:
        info = sf.info(str(path))
        if info.samplerate > 0 and info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if container.streams.audio:
                stream = container.streams.audio[0]
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
                if container.duration is not None:
                    return container.duration / av.time_base
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        pass
    wav, sr = load_audio(path)  # raises a clear AudioError when unreadable
    return wav.shape[-1] / sr


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------
def convert_audio_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[..., C, T] -> [..., channels, T], with audiocraft's rules.

    Same count: unchanged; to mono: average; from mono: repeat; fewer (> 1) channels: keep the
    first ones. More channels from a non-mono source is an `AudioError`.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if wav.dim() < 2:
        raise ValueError(f"expected audio shaped [..., C, T], got shape {tuple(wav.shape)}")
    *shape, src_channels, length = wav.shape
    if src_channels == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if src_channels == 1:
        return wav.expand(*shape, channels, length)
    if src_channels > channels:
        return wav[..., :channels, :]
    raise AudioError(
        f"cannot turn {src_channels}-channel audio into {channels} channels; give mono audio "
        f"or audio with at least {channels} channels"
    )


def convert_audio(wav: torch.Tensor, from_sr: int, to_sr: int, to_channels: int) -> torch.Tensor:
    """[..., C, T] at `from_sr` -> [..., to_channels, T'] at `to_sr` (julius, only if rates differ).

    T' = floor(T * to_sr / from_sr).
    """
    if from_sr <= 0 or to_sr <= 0:
        raise ValueError(f"sample rates must be > 0, got {from_sr} -> {to_sr}")
    if not wav.is_floating_point():
        wav = wav.float()
    wav = convert_audio_channels(wav, to_channels)
    if int(from_sr) != int(to_sr):
        import julius

        wav = julius.resample_frac(wav, int(from_sr), int(to_sr))
    return wav


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------
def _check_subtype(subtype: str) -> None:
    if subtype not in SUBTYPES:
        raise ValueError(f"unsupported subtype {subtype!r}; use one of {list(SUBTYPES)}")


def _as_numpy(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    """[C, T] float64 numpy array."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().to("cpu", torch.float64).numpy()
    return np.asarray(wav, dtype=np.float64)


def pcm_round(wav: torch.Tensor | np.ndarray, subtype: str) -> np.ndarray:
    """Round float audio to the values `save_audio` stores for `subtype` (float64, same shape).

    For integer PCM this snaps to k / full_scale; sums of such values are written exactly.
    FLOAT rounds to float32.
    """
    _check_subtype(subtype)
    x = _as_numpy(wav)
    if subtype == "FLOAT":
        return x.astype(np.float32).astype(np.float64)
    if subtype == "DOUBLE":
        return x.copy()
    scale = PCM_SUBTYPES[subtype]
    return np.rint(x * scale) / scale


def save_audio(
    path: PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write `wav` [C, T] (float) to a .wav or .flac file; returns the path.

    `subtype` is PCM_16, PCM_24 (wav/flac), FLOAT or DOUBLE (wav only). Nothing is clipped: integer PCM
    requires |x| <= 1 (apply gain first) and non-finite samples are refused (ValueError). A file
    that cannot be written (missing folder, full disk...) raises `AudioError`.
    """
    path = Path(path)
    _check_subtype(subtype)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save '{path}': unsupported extension; use one of {sorted(_FORMATS)}")
    if fmt == "FLAC" and subtype in ("FLOAT", "DOUBLE"):
        raise ValueError(f"cannot save '{path}': FLAC has no {subtype} subtype; use PCM_16 or PCM_24")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    x = _as_numpy(wav)  # [C, T]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"save_audio expects audio shaped [C, T], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"cannot save '{path}': audio contains NaN or infinite samples")
    if subtype in ("FLOAT", "DOUBLE"):
        data: np.ndarray = x.T.astype(np.float32 if subtype == "FLOAT" else np.float64)  # [T, C]
    else:
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > 1.0:
            raise ValueError(
                f"cannot save '{path}' as {subtype}: peak {peak:.4f} > 1 would clip; apply a gain first"
            )
        ints = np.rint(x.T * PCM_SUBTYPES[subtype])  # [T, C], |k| <= full scale
        # libsndfile writes int32 input to 24-bit by dropping the low 8 bits: shift them in.
        data = ints.astype(np.int16) if subtype == "PCM_16" else ints.astype(np.int32) << 8
    write_file(path, data, int(sample_rate), subtype, fmt)
    return path


def write_file(path: Path, data: np.ndarray, sample_rate: int, subtype: str, fmt: str) -> None:
    """Encode [T, C] `data` in memory, then write the file with plain I/O, so that a full disk or
    a read-only folder is reported as such (libsndfile only says "System error")."""
    try:
        buffer = io.BytesIO()
        sf.write(buffer, data, sample_rate, subtype=subtype, format=fmt)
        with open(path, "wb") as f:
            f.write(buffer.getbuffer())
    except (sf.LibsndfileError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        raise AudioError(f"cannot write '{path}': {reason}; check free space and permissions") from exc
