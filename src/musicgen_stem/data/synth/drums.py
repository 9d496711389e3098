"""The drum part: a genre groove with small variations, ghost notes, fills and crashes on phrase starts."""

from __future__ import annotations

from collections.abc import Mapping

from .genres import Genre
from .score import Score
from .tables import DRUM_CHANNEL, DRUM_VELOCITY, FILLS

_BRUSH_KITS = (32, 40)


def write_drums(
    sc: Score, g: Genre, groove: dict[str, str], n_bars: int, phrase: int, kit: int, notes: Mapping[str, int]
) -> None:
    """Add ``n_bars`` of ``groove`` to ``sc``; a fill ends every ``phrase`` bars; ``notes`` maps voices to
    the kit's MIDI notes."""
    rng = sc.rng
    for bar in range(n_bars):
        hits: dict[tuple[str, int], str] = {}
        for voice, pat in groove.items():
            for s, c in enumerate(pat):
                if c != ".":
                    hits[(voice, s)] = c
        # small variations
        if "K" in groove and rng.random() < 0.2:
            s = int(rng.choice([3, 6, 7, 10, 11, 14]))
            hits.setdefault(("K", s), "x")
        if g.ghosts and "S" in groove:
            for s in range(16):
                if rng.random() < g.ghosts * 0.3 and ("S", s) not in hits and s % 4 != 0:
                    hits[("S", s)] = "o"
        if "H" in groove and rng.random() < 0.15:
            hits.pop(("H", 14), None)
            hits[("O", 14)] = "x"
        if (bar % phrase == phrase - 1) and bar > 0:
            fill = FILLS[str(rng.choice(list(g.fills)))]
            start = min(len(pat) - len(pat.lstrip(".")) for pat in fill.values())
            hits = {k: v for k, v in hits.items() if k[1] < start or k[0] in ("K", "P")}
            for voice, pat in fill.items():
                for s, c in enumerate(pat):
                    if c != ".":
                        hits[(voice, s)] = c
        if bar % phrase == 0 and (kit in _BRUSH_KITS or rng.random() < 0.85):
            hits[("X", 0)] = "X"
            hits.pop(("H", 0), None)
        for (voice, s), c in hits.items():
            v = DRUM_VELOCITY[c] * g.velocity
            if voice in ("H", "SH", "Y") and c == "x":
                v *= 0.78 if s % 4 else 0.92
            sc.add(DRUM_CHANNEL, notes[voice], v, bar, s, 1, jitter=4, gate=1.0)
