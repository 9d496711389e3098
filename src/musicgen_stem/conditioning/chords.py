"""Chords as a musician writes them, and a chord chart in time.

`parse_chord("F#m7/C#")` reads one chord symbol; `parse_progression("Am F C G", bpm)` a whole
progression: one chord a bar (4/4), or `Am:2 F:2` for beats; "N" is no chord. A `ChordChart` is the
chords with their spans in seconds, what the LM's per-step chord conditioning reads
(`conditioning.steps`), what `meta.json` records and what `stems.mid` carries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MusicGenStemError

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

#: Chord qualities: intervals above the root, and the suffix of the chord's name.
QUALITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "maj": ((0, 4, 7), ""),
    "min": ((0, 3, 7), "m"),
    "dim": ((0, 3, 6), "dim"),
    "aug": ((0, 4, 8), "aug"),
    "sus2": ((0, 2, 7), "sus2"),
    "sus4": ((0, 5, 7), "sus4"),
    "7": ((0, 4, 7, 10), "7"),
    "maj7": ((0, 4, 7, 11), "maj7"),
    "min7": ((0, 3, 7, 10), "m7"),
    "m7b5": ((0, 3, 6, 10), "m7b5"),
    "dim7": ((0, 3, 6, 9), "dim7"),
    "7sus4": ((0, 5, 7, 10), "7sus4"),
    "6": ((0, 4, 7, 9), "6"),
    "min6": ((0, 3, 7, 9), "m6"),
    "add9": ((0, 2, 4, 7), "add9"),
    "madd9": ((0, 2, 3, 7), "madd9"),
    "9": ((0, 2, 4, 7, 10), "9"),
    "maj9": ((0, 2, 4, 7, 11), "maj9"),
    "min9": ((0, 2, 3, 7, 10), "m9"),
}
#: Every spelling read, longest first (so "maj7" wins over "maj"), -> quality.
_SUFFIXES = {
    "": "maj", "maj": "maj", "M": "maj", "major": "maj",
    "m": "min", "min": "min", "-": "min", "minor": "min",
    "dim": "dim", "o": "dim", "°": "dim",
    "aug": "aug", "+": "aug",
    "sus2": "sus2", "sus4": "sus4", "sus": "sus4",
    "7": "7", "dom7": "7",
    "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "ma7": "maj7",
    "m7": "min7", "min7": "min7", "-7": "min7",
    "m7b5": "m7b5", "ø": "m7b5", "ø7": "m7b5", "min7b5": "m7b5",
    "dim7": "dim7", "o7": "dim7", "°7": "dim7",
    "7sus4": "7sus4", "7sus": "7sus4",
    "6": "6", "maj6": "6", "m6": "min6", "min6": "min6",
    "add9": "add9", "add2": "add9", "madd9": "madd9", "m(add9)": "madd9",
    "9": "9", "maj9": "maj9", "M9": "maj9", "m9": "min9", "min9": "min9",
}  # fmt: skip
ACCEPTED = "a root A-G with # or b, then one of: " + ", ".join(
    s for s in ("", "m", "7", "maj7", "m7", "dim", "dim7", "m7b5", "aug", "sus2", "sus4", "6", "m6", "9",
                "add9") if s
) + " (none: major), an optional /bass note, and :beats; N for no chord"  # fmt: skip
_CHORD = re.compile(r"^([A-Ga-g])([#b♯♭]?)(.*?)(?:/([A-Ga-g])([#b♯♭]?))?$")


class ChordError(MusicGenStemError):
    """A chord symbol or progression that cannot be read."""


def pitch_class(letter: str, accidental: str = "") -> int:
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)
    return (_LETTERS[letter.upper()] + shift) % 12


@dataclass(frozen=True)
class Chord:
    """A chord: root pitch class, quality (a key of `QUALITIES`) and, for a slash chord, its bass."""

    root: int
    quality: str = "maj"
    bass: int | None = None

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ChordError(f"unknown chord quality {self.quality!r}; accepted: {', '.join(QUALITIES)}")

    @property
    def tones(self) -> tuple[int, ...]:
        """Pitch classes of the chord, root first (a slash bass added if it is not a chord tone)."""
        pcs = tuple((self.root + i) % 12 for i in QUALITIES[self.quality][0])
        return pcs if self.bass is None or self.bass in pcs else (*pcs, self.bass)

    @property
    def bass_pc(self) -> int:
        return self.root if self.bass is None else self.bass

    @property
    def name(self) -> str:
        slash = "" if self.bass is None else "/" + NOTE_NAMES[self.bass]
        return NOTE_NAMES[self.root] + QUALITIES[self.quality][1] + slash


def parse_chord(symbol: str) -> Chord:
    """One chord symbol ("Am", "F#m7b5", "Bbmaj7/D", "Csus", "Dadd9") -> Chord."""
    m = _CHORD.match(symbol.strip())
    suffix = None if m is None else m.group(3)
    quality = None if suffix is None else _SUFFIXES.get(suffix, _SUFFIXES.get(suffix.lower()))
    if m is None or quality is None:
        raise ChordError(f"cannot read the chord {symbol!r}: write {ACCEPTED}")
    bass = None if m.group(4) is None else pitch_class(m.group(4), m.group(5))
    return Chord(pitch_class(m.group(1), m.group(2)), quality, bass)


@dataclass(frozen=True)
class ChordChart:
    """Chords in time: `spans` of (start s, end s, chord or None for no chord), in order."""

    spans: tuple[tuple[float, float, Chord | None], ...]

    def at(self, seconds: float) -> Chord | None:
        """The chord sounding at `seconds` (None: none or past the end)."""
        for start, end, chord in self.spans:
            if start <= seconds < end:
                return chord
        return None

    @property
    def duration(self) -> float:
        return self.spans[-1][1] if self.spans else 0.0

    def looped(self, duration: float, offset: float = 0.0) -> ChordChart:
        """The chart repeated over [0, `duration`) s, time 0 being `offset` s into the chart."""
        period = self.duration
        if not self.spans or period <= 0:
            return self
        out, shift = [], -(offset % period)
        while shift < duration:
            for a, b, c in self.spans:
                lo, hi = max(0.0, shift + a), min(duration, shift + b)
                if hi > lo:
                    out.append((round(lo, 6), round(hi, 6), c))
            shift += period
        return ChordChart(tuple(out))

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"start": round(a, 4), "end": round(b, 4), "chord": "N" if c is None else c.name}
            for a, b, c in self.spans
        ]

    @classmethod
    def from_json(cls, spans: Sequence[dict[str, Any]]) -> ChordChart:
        """From `to_json`'s list, or the synthetic songs' `meta.json` "chords" (name, start, end)."""
        out = []
        for s in spans:
            name = s.get("chord", s.get("name"))
            out.append((float(s["start"]), float(s["end"]), None if name == "N" else parse_chord(str(name))))
        return cls(tuple(out))


def parse_progression(text: str, bpm: float, beats_per_bar: int = 4) -> ChordChart:
    """A progression "Am F C G" (one chord a bar) or "Am:2 F:2 C G" (beats) at `bpm` -> ChordChart
    starting at 0 s. Bars are `beats_per_bar` beats; "N" is a bar with no chord."""
    tokens = text.replace(",", " ").replace("|", " ").split()
    if not tokens:
        raise ChordError('the chord progression is empty: give chords such as "Am F C G"')
    if not 20 <= bpm <= 400:
        raise ChordError(f"a tempo of {bpm:g} bpm is out of range for chords; give --bpm between 20 and 400")
    beat_s = 60.0 / bpm
    spans, t = [], 0.0
    for token in tokens:
        symbol, _, count = token.partition(":")
        try:
            beats = float(count) if count else float(beats_per_bar)
        except ValueError:
            raise ChordError(f"cannot read the beats of {token!r}: write CHORD:BEATS, e.g. Am:2") from None
        if not 0 < beats <= 64:
            raise ChordError(f"{token!r}: a chord lasts between 1 and 64 beats")
        chord = None if symbol.upper() == "N" else parse_chord(symbol)
        spans.append((round(t, 6), round(t + beats * beat_s, 6), chord))
        t += beats * beat_s
    return ChordChart(tuple(spans))
