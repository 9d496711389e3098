"""Notes snapped to the beat grid, as a DAW's quantize does."""

from __future__ import annotations

from collections.abc import Sequence

from .transcribe import Note


def quantize(notes: Sequence[Note], bpm: float, first_beat: float, division: int) -> list[Note]:
    """Notes with start and end on the nearest 1/`division` note (a 16th: division 16) of the grid
    of `bpm` through `first_beat` (s); a note lasts at least one step."""
    step = 60.0 / bpm * 4.0 / division

    def snap(t: float) -> float:
        return round(first_beat + round((t - first_beat) / step) * step, 4)

    out = []
    for n in notes:
        a = max(0.0, snap(n.start))
        b = max(snap(n.end), round(a + step, 4))
        out.append(Note(a, b, n.pitch, n.velocity))
    return out
