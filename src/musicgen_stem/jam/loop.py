"""The loop a jam plays over and over: its stems exactly as read, its tempo and bars, and the
session's timeline (cycle n of the loop at any sample rate, on the codec's frame grid).

A cycle lasts `loop.seconds`, which is rarely a whole number of codec frames: cycle n covers the
exact samples [n * L, (n + 1) * L) of the loop's file rate, and the model's frames [f(n), f(n + 1))
with f(n) = round(n * seconds * frame_rate), so that nothing drifts however long the session runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import convert_audio
from ..dsp import estimate_tempo, onset_strength
from ..errors import MusicGenStemError
from ..samples import Samples, read_kept

MAX_LOOP_SECONDS = 60.0
BAR_TOLERANCE = 0.03  # a loop may miss a whole number of bars by 3 % of its tempo


class LoopError(MusicGenStemError):
    """A loop that cannot be jammed on (one line: the problem and the fix)."""


@dataclass(frozen=True)
class Loop:
    """`stems` {name: Samples} (as read, one rate and length), `bpm` such that the loop lasts
    exactly `bars` bars of `beats_per_bar` beats."""

    stems: Mapping[str, Samples]
    bpm: float
    bars: int
    beats_per_bar: int = 4

    @property
    def sample_rate(self) -> int:
        return next(iter(self.stems.values())).sample_rate

    @property
    def frames(self) -> int:
        """Samples per cycle at the loop's rate."""
        return next(iter(self.stems.values())).frames

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    @property
    def bar_seconds(self) -> float:
        return self.seconds / self.bars

    def mix(self) -> np.ndarray:
        """[C, T] float64: the loop's stems summed."""
        return sum(s.to_float64() for s in self.stems.values())  # type: ignore[return-value]


def fit_bars(
    seconds: float,
    bpm: float | None,
    bars: int | None,
    estimate: Callable[[], float],
    beats_per_bar: int = 4,
) -> tuple[float, int]:
    """The loop's (bpm, bars): both given (checked), the tempo from whole bars, the bars from the
    tempo (given, else `estimate()`d; 0: none found), the tempo then made exact."""
    if seconds > MAX_LOOP_SECONDS:
        raise LoopError(f"the loop lasts {seconds:.1f} s; loops hold {MAX_LOOP_SECONDS:g} s at most: trim it")
    if bars is not None:
        if bars < 1:
            raise LoopError(f"--bars must be at least 1, got {bars}")
        exact = bars * beats_per_bar * 60.0 / seconds
        if bpm is not None and abs(exact - bpm) > BAR_TOLERANCE * bpm:
            raise LoopError(
                f"the loop lasts {seconds:.2f} s: {bars} bar(s) at {bpm:g} bpm would last "
                f"{bars * beats_per_bar * 60 / bpm:.2f} s; trim it or fix --bpm/--bars"
            )
        return _in_range(exact, bars), bars
    named = bpm is not None
    if bpm is None:
        bpm = estimate()
        if not bpm:
            raise LoopError("no tempo found in the loop: pass --bpm N (or --bars N)")
    bar = beats_per_bar * 60.0 / bpm
    if seconds < bar * (1 - BAR_TOLERANCE):
        raise LoopError(
            f"the loop lasts {seconds:.2f} s, shorter than one bar at {bpm:g} bpm ({bar:.2f} s): "
            "give a loop of whole bars"
        )
    n = max(1, round(seconds / bar))
    exact = n * beats_per_bar * 60.0 / seconds
    if named and abs(exact - bpm) > BAR_TOLERANCE * bpm:
        raise LoopError(
            f"the loop lasts {seconds:.2f} s, {seconds / bar:.2f} bars at {bpm:g} bpm: trim it to "
            "whole bars or pass --bars"
        )
    return _in_range(exact, n), n


def _in_range(bpm: float, bars: int) -> float:
    if not 20 <= bpm <= 400:
        raise LoopError(f"{bars} bar(s) in this loop make {bpm:.0f} bpm: give --bars or --bpm that fit it")
    return bpm


@dataclass(frozen=True)
class Timeline:
    """The session's clock: the loop at `sample_rate` (the model's) on a grid of `hop` samples."""

    loop: Loop
    sample_rate: int
    hop: int
    channels: int

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def frame(self, cycle: int) -> int:
        """The first frame of cycle `cycle`."""
        return round(cycle * self.loop.seconds * self.frame_rate)

    def sample(self, cycle: int, rate: int | None = None) -> int:
        """The first sample of cycle `cycle` at `rate` (default: the model's)."""
        if rate == self.loop.sample_rate:
            return cycle * self.loop.frames
        return round(cycle * self.loop.seconds * (rate or self.sample_rate))

    def audio(self, stem: str, start: int, end: int) -> torch.Tensor:
        """[channels, end - start]: the loop's `stem` repeated, model samples [start, end) of the
        session (resampled with a margin, so segments join as the whole would)."""
        src = self.loop.stems[stem]
        ratio = src.sample_rate / self.sample_rate
        margin = 64 + math.ceil(0.01 * src.sample_rate)
        a = math.floor(start * ratio) - margin
        b = math.ceil(end * ratio) + margin
        step = src.sample_rate // math.gcd(src.sample_rate, self.sample_rate)  # a on the common grid
        a -= a % step
        idx = np.arange(a, b) % src.frames
        seg = torch.from_numpy(src.to_float64()[:, idx]).float()
        out = convert_audio(seg, src.sample_rate, self.sample_rate, self.channels)
        first = round(a / ratio)
        return out[:, start - first : end - first]


def read_loop(
    files: Mapping[str, str | os.PathLike[str]], bpm: float | None = None, bars: int | None = None
) -> Loop:
    """The loop of `files` {stem: path} (one rate and channel count; read exactly), its bars
    and exact tempo (`fit_bars`; the tempo estimated from two cycles of the mix if not given)."""
    stems, rate = read_kept(files, what="--loop", max_seconds=MAX_LOOP_SECONDS + 1.0)
    seconds = next(iter(stems.values())).frames / rate
    if seconds < 0.5:
        raise LoopError(f"the loop lasts {seconds:.2f} s: give a loop of at least one bar")

    def estimate() -> float:
        mix = sum(s.to_float64() for s in stems.values())
        return round(estimate_tempo(onset_strength(np.concatenate([mix, mix], axis=-1), rate)), 1)

    tempo, n = fit_bars(seconds, bpm, bars, estimate)
    return Loop(stems, tempo, n)
