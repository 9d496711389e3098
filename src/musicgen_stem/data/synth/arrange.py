"""Arrangement: the beat grid, the chord timeline, the feel, and the notes of every stem."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .bass import write_bass
from .drums import write_drums
from .genres import Genre
from .harmony import write_harmony, write_lead
from .score import ChordSpan, Humanize, Note, Score
from .spec import SongSpec
from .tables import TICKS_PER_BEAT
from .theory import chord_name, parse_roman, uses_flats


def beat_grid(tempo: float, duration: float) -> tuple[list[float], list[float]]:
    """Beat and downbeat times (s) of a 4/4 song at ``tempo`` BPM, before ``duration``."""
    spb = 60.0 / tempo
    n = int(np.ceil(duration / spb - 1e-9))
    beats = [round(k * spb, 6) for k in range(n) if k * spb < duration]
    return beats, beats[::4]


def chord_timeline(
    progression: list[str], tonic_pc: int, mode: str, cpb: int, n_bars: int, bar_s: float, duration: float
) -> list[ChordSpan]:
    """The progression looped over ``n_bars`` with ``cpb`` chords per bar, cut at ``duration``."""
    flats = uses_flats(tonic_pc, mode)
    chords: list[ChordSpan] = []
    for i in range(n_bars * cpb):
        start = i * bar_s / cpb
        if start >= duration:
            break
        numeral = progression[i % len(progression)]
        off, quality = parse_roman(numeral, mode)
        root = (tonic_pc + off) % 12
        end = min(duration, (i + 1) * bar_s / cpb)
        chords.append(
            ChordSpan(
                chord_name(root, quality, flats),
                numeral,
                root,
                quality,
                round(start, 6),
                round(end, 6),
                i // cpb,
            )
        )
    return chords


def draw_humanize(g: Genre, rng: np.random.Generator) -> Humanize:
    """The song's feel: timing and velocity spread, bass and other sitting a little behind the drums."""
    timing = round(float(rng.uniform(*g.humanize_ms)), 2)
    velocity = round(float(rng.uniform(*g.velocity_sd)), 2)
    lo, hi = g.lay_back_ms
    offsets = {
        "bass": round(float(rng.uniform(lo, hi)), 2),
        "drums": 0.0,
        "other": round(float(rng.uniform(lo, hi)), 2),
    }
    return Humanize(timing, velocity, offsets)


def write_notes(
    spec: SongSpec,
    g: Genre,
    rng: np.random.Generator,
    phrase: int,
    velocity: float,
    drum_notes: Mapping[str, int],
    lead_start: int,
) -> dict[str, list[Note]]:
    """The notes of the bass, drums and other stems of ``spec`` (drawn from ``rng``)."""
    end_tick = int(round(spec.duration * TICKS_PER_BEAT * spec.tempo / 60.0))

    def score(stem: str) -> Score:
        return Score(rng, spec.swing8, spec.swing16, end_tick, spec.tempo, spec.humanize, stem)

    cpb, n_bars = spec.chords_per_bar, spec.n_bars
    notes: dict[str, list[Note]] = {}
    sc = score("bass")
    write_bass(sc, spec.part("bass")[0].style, spec.chords, n_bars, cpb, velocity)
    notes["bass"] = sc.finish()
    sc = score("drums")
    kit = spec.part("drums")[0].program  # 0 for a sampled kit
    write_drums(sc, g, g.grooves[spec.drum_groove], n_bars, phrase, kit, drum_notes)
    notes["drums"] = sc.finish()
    sc = score("other")
    write_harmony(sc, spec.part("harmony")[0].style, spec.chords, n_bars, cpb, velocity)
    if spec.part("lead"):
        write_lead(sc, spec.tonic_pc, spec.mode, spec.chords, n_bars, cpb, lead_start, velocity)
    notes["other"] = sc.finish()
    return notes
