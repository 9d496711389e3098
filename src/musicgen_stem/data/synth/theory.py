"""Music theory: note and key names, scales, chord qualities, roman numerals and voicings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...conditioning.chords import QUALITIES as QUALITIES  # intervals and name suffix of each quality
from ...conditioning.progressions import parse_roman as parse_roman  # the numerals are read there

NOTE_NAMES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NOTE_NAMES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MAJOR_KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
FLAT_MAJOR = frozenset({1, 3, 5, 8, 10})
FLAT_MINOR = frozenset({0, 2, 3, 5, 7, 10})
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


def key_name(tonic_pc: int, mode: str) -> str:
    """Conventional name of the tonic (``"Bb"`` major, ``"C#"`` minor)."""
    return (MINOR_KEY_NAMES if mode == "minor" else MAJOR_KEY_NAMES)[tonic_pc % 12]


def uses_flats(tonic_pc: int, mode: str) -> bool:
    """Whether chords in this key are spelled with flats."""
    return tonic_pc in (FLAT_MINOR if mode == "minor" else FLAT_MAJOR) or "b" in key_name(tonic_pc, mode)


def chord_name(root_pc: int, quality: str, flats: bool) -> str:
    """Chord symbol such as ``Em7`` or ``Bbmaj7``."""
    names = NOTE_NAMES_FLAT if flats else NOTE_NAMES_SHARP
    return names[root_pc % 12] + QUALITIES[quality][1]


def chord_pcs(root_pc: int, quality: str) -> list[int]:
    """Pitch classes of a chord."""
    return [(root_pc + i) % 12 for i in QUALITIES[quality][0]]


def scale_pcs(tonic_pc: int, mode: str) -> list[int]:
    """Pitch classes of the major or natural minor scale."""
    return [(tonic_pc + i) % 12 for i in SCALES[mode]]


def bass_pitch(pc: int) -> int:
    """Bass root between E1 (28) and D#2 (39)."""
    return 28 + (pc - 4) % 12


def voicing(pcs: Sequence[int], prev: list[int] | None, center: int, lo: int, hi: int) -> list[int]:
    """Close voicing of pitch classes within [lo, hi], nearest to the previous voicing (voice leading)."""
    best: list[int] = []
    best_cost = float("inf")
    n = len(pcs)
    for inv in range(n):
        order = list(pcs[inv:]) + list(pcs[:inv])
        for base_oct in range(lo // 12 - 1, hi // 12 + 1):
            notes = []
            cur = base_oct * 12 + order[0]
            for pc in order:
                while cur % 12 != pc:
                    cur += 1
                notes.append(cur)
                cur += 1
            if notes[0] < lo or notes[-1] > hi:
                continue
            cost = abs(float(np.mean(notes)) - center) * 0.5
            if prev:
                m = min(len(prev), n)
                cost += sum(abs(a - b) for a, b in zip(sorted(prev)[:m], notes[:m], strict=True))
            if cost < best_cost:
                best, best_cost = notes, cost
    return best or [center + pc % 12 - 6 for pc in pcs]
