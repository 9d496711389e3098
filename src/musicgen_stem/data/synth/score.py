"""The score: chords in time, and notes on a 16th-note grid with swing and humanised timing and velocity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .tables import STEP, TICKS_PER_BEAT
from .theory import chord_pcs


class Note(NamedTuple):
    """A MIDI note in ticks (480 per quarter note)."""

    channel: int
    pitch: int
    velocity: int
    start: int
    end: int


@dataclass
class ChordSpan:
    """One chord of the progression with its time span in seconds."""

    name: str
    roman: str
    root_pc: int
    quality: str
    start: float
    end: float
    bar: int

    def pcs(self) -> list[int]:
        """Pitch classes of the chord."""
        return chord_pcs(self.root_pc, self.quality)


def chord_at(chords: list[ChordSpan], bar: int, step: int, cpb: int) -> ChordSpan | None:
    """The chord sounding at 16th ``step`` of ``bar`` with ``cpb`` chords per bar (None past the end)."""
    idx = bar * cpb + (step * cpb) // 16
    return chords[idx] if idx < len(chords) else None


@dataclass(frozen=True)
class Humanize:
    """Timing and velocity feel of one song.

    Every onset moves by a normal offset (``timing_ms`` standard deviation, clipped at 2.5 of them, scaled
    down for tight parts such as drums and block chords), every velocity by a normal offset of
    ``velocity_sd``; ``offsets_ms`` shifts whole stems (positive: behind the beat, e.g. a laid-back bass).
    """

    timing_ms: float
    velocity_sd: float
    offsets_ms: dict[str, float]


class Score:
    """Collects the notes of one stem; ``tick`` applies swing, ``add`` humanisation."""

    def __init__(
        self,
        rng: np.random.Generator,
        swing8: float,
        swing16: float,
        end_tick: int,
        tempo: float,
        humanize: Humanize,
        stem: str,
    ) -> None:
        self.rng = rng
        self.swing8 = swing8
        self.swing16 = swing16
        self.end_tick = end_tick
        ticks_per_ms = TICKS_PER_BEAT * tempo / 60_000.0
        self.timing_sd = humanize.timing_ms * ticks_per_ms
        self.offset = humanize.offsets_ms.get(stem, 0.0) * ticks_per_ms
        self.velocity_sd = humanize.velocity_sd
        self.notes: list[Note] = []

    def tick(self, bar: int, step: float) -> int:
        """Tick of a 16th step (may be fractional) in a bar, with swing."""
        s = int(step)
        off = 0.0
        if self.swing8:
            off += self.swing8 * {0: 0, 1: 40, 2: 80, 3: 40}[s % 4]
        if self.swing16 and s % 2 == 1:
            off += self.swing16 * 40
        return int(bar * 16 * STEP + step * STEP + off)

    def add(
        self,
        ch: int,
        pitch: int,
        vel: float,
        bar: int,
        step: float,
        length: float,
        jitter: int = 6,
        gate: float = 0.92,
    ) -> None:
        """Add a note at ``step`` of ``bar`` lasting ``length`` steps; ``jitter`` scales the timing spread
        (6 = the song's full spread) and ``gate`` is the sounding fraction of the length."""
        sd = self.timing_sd * jitter / 6
        dt = float(np.clip(self.rng.normal(0.0, 1.0), -2.5, 2.5)) * sd
        start = self.tick(bar, step) + int(round(self.offset + dt))
        end = self.tick(bar, step + length)
        start = max(start, 0)
        end = max(start + 30, start + int((end - start) * gate))
        v = int(np.clip(round(vel + self.rng.normal(0, self.velocity_sd)), 1, 127))
        if start >= self.end_tick or not 0 <= pitch <= 127:
            return
        self.notes.append(Note(ch, int(pitch), v, start, min(end, self.end_tick + TICKS_PER_BEAT)))

    def finish(self) -> list[Note]:
        """Sorted notes; same-pitch overlaps on a channel are cut so note-offs never kill a later note."""
        notes = sorted(self.notes, key=lambda n: (n.start, n.channel, n.pitch))
        last: dict[tuple[int, int], int] = {}
        out: list[Note] = []
        for n in notes:
            k = (n.channel, n.pitch)
            if k in last:
                p = out[last[k]]
                if p.end > n.start:
                    out[last[k]] = p._replace(end=max(p.start + 1, n.start))
            last[k] = len(out)
            out.append(n)
        return [n for n in out if n.end > n.start]
