"""The bass part: one of a dozen genre styles (root notes, octaves, walking, funk, reggae, boogie...)."""

from __future__ import annotations

from .score import ChordSpan, Score, chord_at
from .tables import BASS_CHANNEL
from .theory import QUALITIES, bass_pitch

_FUNK = (
    ((0, 2, 0), (3, 1, 12), (6, 2, 0), (10, 1, 10), (11, 1, 12), (14, 2, 7)),
    ((0, 3, 0), (3, 1, 0), (7, 1, 12), (10, 2, 0), (13, 1, 10), (14, 1, 12)),
    ((0, 1, 0), (2, 1, 12), (4, 2, 0), (7, 1, 7), (8, 2, 0), (11, 1, 12), (12, 2, 10), (14, 1, 7)),
)
_HIPHOP = (
    ((0, 6, 0), (7, 3, 0), (10, 6, 7)),
    ((0, 10, 0), (10, 2, 0), (13, 3, 12)),
    ((0, 3, 0), (3, 5, 0), (10, 6, 10)),
)
_REGGAE = (
    ((2, 2, 0), (4, 2, 0), (6, 1, 7), (8, 4, 12), (12, 2, 7), (14, 2, 3)),
    ((2, 4, 0), (6, 2, 7), (10, 2, 0), (12, 4, 12)),
)
_BOOGIE_MAJOR = (0, 4, 7, 9, 10, 9, 7, 4)
_BOOGIE_MINOR = (0, 3, 7, 8, 10, 8, 7, 3)

Event = tuple[int, float, int, float]  # step, length (steps), pitch, velocity factor


def _bar_events(
    sc: Score, style: str, chords: list[ChordSpan], bar: int, cpb: int, riffs: dict
) -> list[Event]:
    rng = sc.rng
    c0 = chord_at(chords, bar, 0, cpb)
    assert c0 is not None

    def chord(step: int) -> ChordSpan:
        return chord_at(chords, bar, step, cpb) or c0

    def root(step: int) -> int:
        return bass_pitch(chord(step).root_pc)

    def fifth(step: int) -> int:
        return root(step) + QUALITIES[chord(step).quality][0][2]

    if style == "root":
        return [(s, 4, root(s), 1.0 if s == 0 else 0.85) for s in (0, 4, 8, 12)]
    if style == "root8":
        return [(s, 2, root(s), 1.0 if s % 4 == 0 else 0.8) for s in range(0, 16, 2)]
    if style == "root16":
        return [(s, 1, root(s), 1.0 if s % 4 == 0 else 0.75) for s in range(16)]
    if style == "root_fifth":
        return [(0, 6, root(0), 1.0), (6, 2, root(6), 0.7), (8, 6, fifth(8), 0.9), (14, 2, root(14), 0.7)]
    if style == "octave":
        return [(s, 2, root(s) + (12 if s % 4 else 0), 1.0 if s % 4 == 0 else 0.85) for s in range(0, 16, 2)]
    if style == "sustained":
        if cpb != 1:
            return [(0, 8, root(0), 0.9), (8, 8, root(8), 0.85)]
        return (
            [(0, 12, root(0), 0.9), (12, 4, fifth(12), 0.7)]
            if rng.random() < 0.4
            else [(0, 16, root(0), 0.9)]
        )
    if style in ("funk", "hiphop", "reggae"):
        vf = {"funk": 0.85, "hiphop": 1.0, "reggae": 0.95}[style]
        return [(s, ln, root(s) + iv, 1.0 if s == 0 else vf) for s, ln, iv in riffs[style]]
    if style == "offbeat":
        return [(s, 2, root(s) + (12 if rng.random() < 0.15 else 0), 0.95) for s in (2, 6, 10, 14)]
    if style == "boogie":
        out: list[Event] = []
        for k, s in enumerate(range(0, 16, 2)):
            seq = _BOOGIE_MAJOR if QUALITIES[chord(s).quality][0][1] == 4 else _BOOGIE_MINOR
            out.append((s, 2, root(s) + seq[k], 1.0 if s % 4 == 0 else 0.8))
        return out
    if style == "walking":
        nxt = chord_at(chords, bar + 1, 0, cpb) or c0
        out = []
        for s in (0, 4, 8, 12):
            r = root(s)
            if s == 0 or (cpb == 2 and s == 8):  # chord tone on each chord's first beat
                p = r
            elif s == 12 or (cpb == 2 and s == 4):  # approach the next chord by step
                target = bass_pitch(nxt.root_pc) if s == 12 else root(8)
                p = target + int(rng.choice([-1, 1, -2, 2]))
                p += 12 if p < 28 else 0
            else:
                iv = QUALITIES[chord(s).quality][0]
                p = r + int(rng.choice([iv[1], iv[2], 12]))
            out.append((s, 4, p, 1.0 if s == 0 else 0.9))
        return out
    raise ValueError(f"unknown bass style {style!r}")


def write_bass(sc: Score, style: str, chords: list[ChordSpan], n_bars: int, cpb: int, vel: float) -> None:
    """Add a bass line in ``style`` following ``chords`` (``cpb`` per bar) to ``sc``."""
    rng = sc.rng
    riffs = {
        "funk": _FUNK[int(rng.integers(len(_FUNK)))],
        "hiphop": _HIPHOP[int(rng.integers(len(_HIPHOP)))],
        "reggae": _REGGAE[int(rng.integers(len(_REGGAE)))],
    }
    for bar in range(n_bars):
        if chord_at(chords, bar, 0, cpb) is None:
            break
        for s, ln, p, vf in _bar_events(sc, style, chords, bar, cpb, riffs):
            while p > 55:
                p -= 12
            sc.add(BASS_CHANNEL, p, 100 * vel * vf, bar, s, ln, gate=0.9)
