"""Audio kept exactly as stored: a user's stem read and written back bit for bit.

`read_samples` keeps a file's samples in their own format (16/24/32-bit and 8-bit integer PCM as
left-justified int32, float and double as such) with its rate and channel count; `write_samples`
writes them to WAV in the same sample format, so the samples come back unchanged whatever the
container was (WAV, FLAC, AIFF...). Lossy or exotic files (MP3, Ogg, AAC, A-law...) are decoded to
float32, which `write_samples` stores exactly as FLOAT. `lossless_subtype` names the format new
audio mixed with kept samples needs to lose nothing of them (float32 holds up to 24-bit exactly).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import _check_input_path, duration_seconds, load_audio, write_file
from .errors import AudioError

__all__ = ["EXACT", "WIDE", "Samples", "lossless_subtype", "read_kept", "read_samples", "write_samples"]

#: File subtype -> (dtype it is read in, WAV subtype that stores it exactly).
EXACT: dict[str, tuple[str, str]] = {
    "PCM_16": ("int32", "PCM_16"),
    "PCM_24": ("int32", "PCM_24"),
    "PCM_32": ("int32", "PCM_32"),
    "PCM_U8": ("int32", "PCM_U8"),
    "PCM_S8": ("int32", "PCM_U8"),
    "FLOAT": ("float32", "FLOAT"),
    "DOUBLE": ("float64", "DOUBLE"),
}
#: Sample formats float32 cannot hold exactly.
WIDE: tuple[str, ...] = ("PCM_32", "DOUBLE")


@dataclass(frozen=True, eq=False)
class Samples:
    """`data` [C, T] as stored (int32 for integer PCM, float32/float64 for float), the WAV
    `subtype` that holds it exactly and its `sample_rate`."""

    data: np.ndarray
    subtype: str
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def frames(self) -> int:
        return int(self.data.shape[-1])

    def to_float64(self) -> np.ndarray:
        """[C, T] float64 on the usual scale (integer full scale = 1.0), exactly."""
        if self.data.dtype == np.int32:
            return self.data.astype(np.float64) / 2**31
        return self.data.astype(np.float64)

    def to_tensor(self) -> torch.Tensor:
        """[C, T] float32 (float64 for 32-bit and double files, which float32 cannot hold)."""
        x = torch.from_numpy(self.to_float64())
        return x if self.subtype in WIDE else x.float()

    def padded(self, frames: int) -> Samples:
        """The same samples followed by silence up to `frames`."""
        extra = frames - self.frames
        if extra <= 0:
            return self
        return Samples(np.pad(self.data, ((0, 0), (0, extra))), self.subtype, self.sample_rate)

    @classmethod
    def from_tensor(cls, wav: torch.Tensor, sample_rate: int) -> Samples:
        """Float audio [C, T] as it is (float64 tensors as DOUBLE, others as float32)."""
        x = wav.detach().cpu()
        subtype = "DOUBLE" if x.dtype == torch.float64 else "FLOAT"
        data = x.numpy().astype(np.float64 if subtype == "DOUBLE" else np.float32, copy=False)
        return cls(np.ascontiguousarray(data), subtype, int(sample_rate))


def read_samples(path: str | os.PathLike[str], max_seconds: float | None = None) -> Samples:
    """A file's samples exactly as stored (see module docstring); `AudioError` when unusable or,
    checked before anything is decoded, longer than `max_seconds`."""
    path = Path(path)
    _check_input_path(path)
    if max_seconds is not None:
        seconds = duration_seconds(path)
        if seconds > max_seconds:
            raise AudioError(
                f"'{path}' lasts {seconds / 60:.1f} min; edits hold {max_seconds:g} s at most: trim it first"
            )
    try:
        info = sf.info(str(path))
        exact = EXACT.get(info.subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        exact = None
    if exact is None:  # decoded (lossy, A-law, PyAV formats): float32 holds what we decoded
        wav, sr = load_audio(path)
        return Samples(np.ascontiguousarray(wav.numpy()), "FLOAT", sr)
    dtype, subtype = exact
    try:
        data, sr = sf.read(str(path), dtype=dtype, always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot read '{path}': {str(exc).strip()[:120]}; re-export it as wav") from None
    if data.size == 0:
        raise AudioError(f"cannot use '{path}': it contains no audio samples; give a non-empty audio file")
    if sr <= 0:
        raise AudioError(f"cannot use '{path}': invalid sample rate {sr}; re-encode the file")
    if data.dtype != np.int32 and not np.isfinite(data).all():
        raise AudioError(
            f"cannot use '{path}': it contains NaN or infinite samples; re-export the audio as wav/flac"
        )
    return Samples(np.ascontiguousarray(data.T), subtype, int(sr))


def write_samples(path: str | os.PathLike[str], samples: Samples) -> Path:
    """Write `samples` to a WAV file in their own sample format (bit for bit)."""
    path = Path(path)
    write_file(path, samples.data.T, samples.sample_rate, samples.subtype, "WAV")
    return path


def lossless_subtype(kept: Iterable[Samples]) -> str:
    """The WAV subtype new stems and the mix need to lose nothing of the kept samples."""
    return "DOUBLE" if any(s.subtype in WIDE for s in kept) else "FLOAT"


def read_kept(
    files: Mapping[str, str | os.PathLike[str]], what: str = "--stem", max_seconds: float | None = None
) -> tuple[dict[str, Samples], int]:
    """Stems given as files, exactly as stored ({name: Samples}, padded with silence to the
    longest), and their rate. They come back untouched, so they must share one sample rate and
    channel count: a clear error names the odd one out."""
    loaded = {name: read_samples(path, max_seconds) for name, path in files.items()}
    if not loaded:
        raise AudioError(f"no {what} files given")
    for attr, unit, fix in (("sample_rate", " Hz", "-ar RATE"), ("channels", " channel(s)", "-ac N")):
        values = {name: getattr(s, attr) for name, s in loaded.items()}
        if len(set(values.values())) > 1:
            detail = ", ".join(f"{n}: {v}{unit}" for n, v in values.items())
            raise AudioError(
                f"the {what} files differ in {attr.replace('_', ' ')} ({detail}); kept stems come back "
                f"untouched, so convert them to one first (e.g. ffmpeg -i IN {fix} OUT.wav)"
            )
    frames = max(s.frames for s in loaded.values())
    kept = {name: s.padded(frames) for name, s in loaded.items()}
    return kept, next(iter(kept.values())).sample_rate
