"""One stem's audio for codec training: song folders, train/validation split, random crops.

Song folders `<root>/<song>/<stem>.<wav|flac|...>` (as written by `musicgen-stem synth`, or
MUSDB-style multitracks). Files are converted to the codec's rate and channels; crops are a pure
function of the generator they are drawn with (near-silent crops re-drawn a few times), so a
resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import julius
import numpy as np
import soundfile as sf
import torch

from ..audio import convert_audio, load_audio
from ..errors import MusicGenStemError
from .checkpoint import step_seed

__all__ = ["AUDIO_EXTENSIONS", "StemSegments", "StepBatches", "find_songs", "split_songs", "worker_init"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def _stem_file(song: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        p = song / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def find_songs(roots: Sequence[str | os.PathLike[str]], stem: str) -> list[Path]:
    """Audio files of `stem` in the song folders under `roots`, sorted by (song name, path).

    Raises `MusicGenStemError` when a root is missing, holds no song folders, or no song has the stem.
    """
    songs: list[Path] = []
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise MusicGenStemError(f"data folder '{root}' not found; give folders holding <song>/<stem>.wav")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        if _stem_file(root, stem) is not None:  # the root itself is one song folder
            subdirs.append(root)
        songs += subdirs
        files += [f for f in (_stem_file(s, stem) for s in subdirs) if f is not None]
    if not songs:
        raise MusicGenStemError(
            f"no song folders found in {', '.join(map(str, roots))}; expected <root>/<song>/{stem}.wav"
        )
    if not files:
        present = sorted(
            {p.stem for s in songs[:20] for p in s.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
        )
        raise MusicGenStemError(
            f"stem '{stem}' is missing in all {len(songs)} song folders (found stems: "
            f"{', '.join(present) or 'none'}); check --stem"
        )
    return sorted(files, key=lambda p: (p.parent.name, str(p)))


def split_songs(files: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, val): the last `val_fraction` of the sorted songs (at least one if > 0) are held out."""
    n_val = 0 if val_fraction <= 0 or len(files) < 2 else max(1, round(len(files) * val_fraction))
    n_val = min(n_val, len(files) - 1)
    return files[: len(files) - n_val], files[len(files) - n_val :]


class StemSegments:
    """Fixed-length crops [C, T] of one stem's files at the codec's rate and channels.

    Audio is loaded once and kept in memory when the converted total fits in `memory_cap_bytes`,
    else each crop is read from disk (soundfile `start`/`frames`) and converted on the fly.
    """

    def __init__(
        self,
        files: Sequence[Path],
        sample_rate: int,
        channels: int,
        segment_samples: int,
        memory_cap_bytes: float = 2e9,
        silence_db: float = -50.0,
        silence_retries: int = 5,
        pitch_shift: int = 0,
    ) -> None:
        self.files = list(files)
        self.pitch_shift = pitch_shift
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment = segment_samples
        self.silence_db = silence_db
        self.retries = max(0, silence_retries)
        self.native: list[tuple[int, int]] = []  # (frames, rate) per file
        for f in self.files:
            try:
                info = sf.info(str(f))
                self.native.append((int(info.frames), int(info.samplerate)))
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
                self.native.append((-1, -1))  # not readable by soundfile: must be loaded
        total = sum(max(fr, 0) * sample_rate / max(sr, 1) * channels * 4 for fr, sr in self.native)
        self.in_memory = total <= memory_cap_bytes or any(fr < 0 for fr, _ in self.native)
        self.audio: list[torch.Tensor] = []
        if self.in_memory:
            for f in self.files:
                wav, sr = load_audio(f)
                self.audio.append(convert_audio(wav, sr, sample_rate, channels).contiguous())  # [C, T]
            self.lengths = [a.shape[-1] for a in self.audio]
        else:
            self.lengths = [int(fr * sample_rate // sr) for fr, sr in self.native]

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int, offset: int, length: int) -> torch.Tensor:
        """Crop of file i starting at `offset` (codec-rate samples) -> [C, length] (zero-padded)."""
        if self.in_memory:
            wav = self.audio[i][:, offset : offset + length]
        else:
            _, sr = self.native[i]
            start = int(offset * sr // self.sample_rate)
            frames = int(math.ceil(length * sr / self.sample_rate)) + 64
            data, _ = sf.read(str(self.files[i]), start=start, frames=frames, dtype="float32", always_2d=True)
            raw = torch.from_numpy(np.ascontiguousarray(data.T))  # [C_native, n]
            wav = convert_audio(raw, sr, self.sample_rate, self.channels)[:, :length]
        if wav.shape[-1] < length:
            wav = torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
        return wav

    def _shifted(self, i: int, offset: int, semitones: int) -> torch.Tensor:
        """Crop [C, segment] transposed by `semitones`: segment x ratio samples played at the
        codec rate (ratio to 1/100, resampled by `julius`: transposes and changes tempo alike)."""
        num = round(100 * 2 ** (semitones / 12))
        wav = self._read(i, offset, -(-self.segment * num // 100))
        return julius.resample_frac(wav, num, 100)[:, : self.segment]

    def crop(self, gen: torch.Generator) -> torch.Tensor:
        """One random crop [C, segment] drawn with `gen`; near-silent crops are re-drawn."""
        best, best_db = None, -math.inf
        for _ in range(self.retries + 1):
            i = int(torch.randint(len(self.files), (1,), generator=gen))
            room = max(0, self.lengths[i] - self.segment)
            offset = int(torch.randint(room + 1, (1,), generator=gen))
            if self.pitch_shift > 0:
                top = int(self.pitch_shift)
                semitones = int(torch.randint(-top, top + 1, (), generator=gen))
                wav = self._shifted(i, offset, semitones)
            else:
                wav = self._read(i, offset, self.segment)
            db = 10 * math.log10(float(wav.pow(2).mean()) + 1e-12)
            if db > best_db:
                best, best_db = wav, db
            if db > self.silence_db:
                break
        assert best is not None
        return best

    def batch(self, gen: torch.Generator, size: int) -> torch.Tensor:
        """[size, C, segment] crops drawn with `gen`."""
        return torch.stack([self.crop(gen) for _ in range(size)])


class StepBatches(torch.utils.data.Dataset):
    """Item k = micro-batch m = k % accum of step s = start + k // accum on `rank`: a pure
    function of (seed, s * accum + m, rank) (without accumulation: of (seed, step, rank))."""

    def __init__(
        self, data: StemSegments, batch_size: int, seed: int, rank: int, start: int, stop: int, accum: int = 1
    ):
        self.data, self.batch_size, self.seed, self.rank = data, batch_size, seed, rank
        self.start, self.stop, self.accum = start, stop, accum

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.accum

    def __getitem__(self, k: int) -> torch.Tensor:
        index = self.start * self.accum + k  # = step * accum + micro-batch
        gen = torch.Generator().manual_seed(step_seed(self.seed, index, self.rank))
        return self.data.batch(gen, self.batch_size)  # [B, C, T]


def worker_init(_: int) -> None:
    """Data loader workers decode with one thread each."""
    torch.set_num_threads(1)
