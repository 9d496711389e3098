"""Chord guidance: the chords a task knows, as logit offsets on the codes that would play other notes.

For codecs whose first codebook names pitches (`StemCodec.code_chroma`: the bass codec's note per
code, the chord codec's pitch-class energies), a code's mismatch with the chord sounding at a frame
is the share of its energy outside the chord's tones; its logit at that frame is lowered by
`strength` x mismatch. The LM reads the chords as a condition too (`conditioning.steps`), but reads
them softly: guidance makes a regenerated bass keep to the chart the way a session player reads one,
while the model still chooses rhythm, register, passing motion within the chord and the sound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..conditioning.chords import ChordChart


def chord_bias(
    charts: Sequence[ChordChart | None],
    chroma: dict[int, torch.Tensor],
    num_streams: int,
    start: int,
    frames: int,
    frame_rate: float,
    strength: float,
    prefix: int = 0,
) -> torch.Tensor | None:
    """Logit offsets [B, K, frames, card] for the window whose column c is song frame start + c.

    chroma: per guided stream, the pitch classes of its codes [card, 12] (rows sum to 1 or 0).
    Columns before `prefix` (an edit's masked-stem prefix) and spans without a chord get none.
    Returns None when nothing would be offset.
    """
    if strength <= 0 or not chroma or all(c is None for c in charts):
        return None
    card = next(iter(chroma.values())).shape[0]
    out = torch.zeros(len(charts), num_streams, frames, card)
    for b, chart in enumerate(charts):
        if chart is None:
            continue
        for a, e, chord in chart.spans:
            lo = max(prefix, math.ceil(a * frame_rate - start - 1e-6))
            hi = min(frames, math.ceil(e * frame_rate - start - 1e-6))
            if chord is None or hi <= lo:
                continue
            outside = torch.ones(12)
            outside[list(chord.tones)] = 0.0
            for k, table in chroma.items():
                out[b, k, lo:hi] = -strength * (table @ outside)
    return out
