"""Musical attributes read from a description: tempo and key, as two extra conditioning tokens.

A musician writes "a walking jazz bass in F at 120 bpm": a small model learns the words for genres and
instruments from its captions, but numbers and note names reach it only weakly through a sentence
encoder. With `TextEncoderConfig(attributes=True)` the text conditioner parses the tempo ("120 bpm",
"120-BPM", "tempo 120") and the key ("in F", "F# minor", "Ebm") from the same text and appends two
tokens to the cross-attention memory: Fourier features of log-tempo through a linear layer, and a
learnt embedding per key (24 rows). An attribute the text does not name is a zero token with mask 0,
like the null condition; in training each is dropped with probability `ATTRIBUTE_DROPOUT` so the
model also works without it. The released checkpoints have no attributes (the default).

The tempo also gives the LM's per-step beat grid (`conditioning.steps.BeatGrid`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ATTRIBUTE_DROPOUT",
    "AttributeEmbedding",
    "MusicAttributes",
    "NAMED_SWING",
    "parse_attributes",
    "with_tempo",
    "without_tempo",
]

ATTRIBUTE_DROPOUT = 0.2
TEMPO_RANGE = (30.0, 300.0)  # BPM; outside it a number is not read as a tempo
NUM_FREQS = 8
NAMED_SWING = 1.0  # "swing", "shuffle": triplet 8ths (the off-beat a third of a beat late)
_SWING = re.compile(r"\b(?:swing|swinging|swung|shuffle|shuffled|shuffling)\b", re.IGNORECASE)
_TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_TEMPO_PATTERN = (
    r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*-?\s*(?:bpm|beats per minute)\b"
    r"|\btempo\s*(?::\s*|of\s*)?(\d{2,3}(?:\.\d+)?)(?![\d.])(?:\s*-?\s*(?:bpm|beats per minute)\b)?"
)
_TEMPO = re.compile(_TEMPO_PATTERN, re.I)
# a tempo with the words that lead to it ("with a tempo of 73 BPM", "at 96 bpm", ", 120 BPM")
_TEMPO_PHRASE = re.compile(r"(?:\s*,|\s+(?:with an?|at|around))?\s*(?:" + _TEMPO_PATTERN + ")", re.I)
_KEY = re.compile(r"(?<![A-Za-z#])([A-G])(#|♯|b|♭)?\s*(major|minor|maj|min|m)?(?![A-Za-z#])")


@dataclass(frozen=True)
class MusicAttributes:
    """What a description names: `tempo` (BPM), `key` (tonic pitch class 0-11, "major"/"minor")
    and `swing` of the 8ths (`NAMED_SWING` where it says swing or shuffle, else 0; the beat grid's
    `conditioning.steps.swing_warp`)."""

    tempo: float | None = None
    key: tuple[int, str] | None = None
    swing: float = 0.0

    @property
    def key_index(self) -> int | None:
        """0-11: C..B major, 12-23: C..B minor."""
        return None if self.key is None else self.key[0] + 12 * (self.key[1] == "minor")


def _pitch_class(letter: str, accidental: str | None) -> int:
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental or "", 0)
    return (_TONICS[letter] + shift) % 12


def parse_attributes(text: str | None) -> MusicAttributes:
    """Tempo, key and swing named in `text` (the first of each). A key needs a mode word ("F minor",
    "Ebm", "C# major") or "in <note>" / "key of <note>" (major); a lone capital letter is not a key.
    Swing: the words swing, swung or shuffle (`NAMED_SWING`)."""
    if not text:
        return MusicAttributes()
    tempo = None
    for m in _TEMPO.finditer(text):
        value = float(m.group(1) or m.group(2))
        if TEMPO_RANGE[0] <= value <= TEMPO_RANGE[1]:
            tempo = value
            break
    key = None
    for m in _KEY.finditer(text):
        letter, accidental, mode = m.group(1), m.group(2), m.group(3)
        if mode:
            minor = mode.lower() in ("minor", "min") or mode == "m"
            key = (_pitch_class(letter, accidental), "minor" if minor else "major")
            break
        before = " " + text[: m.start()].rstrip().lower()
        if before.endswith((" in", " key of")):
            key = (_pitch_class(letter, accidental), "major")
            break
    return MusicAttributes(tempo, key, NAMED_SWING if _SWING.search(text) else 0.0)


class AttributeEmbedding(nn.Module):
    """Attributes -> memory tokens `[B, 2, dim]` (tempo, key) and mask `[B, 2]` (1 where named).

    tempo: sin/cos of `2^j * pi * u` (j < NUM_FREQS, u = log-tempo scaled to [0, 1] over TEMPO_RANGE)
    through `tempo` (Linear 2 * NUM_FREQS -> dim); key: `key` (Embedding 24 x dim)."""

    def __init__(self, dim: int, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.tempo = nn.Linear(2 * NUM_FREQS, dim, device=device)
        self.key = nn.Embedding(24, dim, device=device)

    def forward(
        self, attrs: Sequence[MusicAttributes], dropout: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.key.weight.device
        n = len(attrs)
        named = torch.tensor(
            [[a.tempo is not None, a.key is not None] for a in attrs], device=device
        ).reshape(n, 2)
        if dropout > 0:
            named &= torch.rand(n, 2).to(device) >= dropout
        lo, hi = (math.log2(t) for t in TEMPO_RANGE)
        u = torch.tensor(
            [(math.log2(a.tempo) - lo) / (hi - lo) if a.tempo else 0.0 for a in attrs], device=device
        )
        angles = u[:, None] * math.pi * 2.0 ** torch.arange(NUM_FREQS, device=device)  # [B, F]
        tempo = self.tempo(torch.cat([angles.sin(), angles.cos()], -1).to(self.tempo.weight))  # [B, dim]
        key = self.key(torch.tensor([a.key_index or 0 for a in attrs], device=device))  # [B, dim]
        tokens = torch.stack([tempo, key], 1) * named.unsqueeze(-1).to(tempo.dtype)  # [B, 2, dim]
        return tokens, named.long()


def with_tempo(text: str | None, bpm: float | None) -> str | None:
    """The description the model reads: `text`, plus "at <bpm> bpm" when a tempo is given and the
    text names none (the model's tempo token and beat grid then get it, as in its captions)."""
    if bpm is None or parse_attributes(text).tempo is not None:
        return text
    return f"{text} at {bpm:g} bpm" if text else f"{bpm:g} bpm"


def without_tempo(text: str | None) -> str | None:
    """`text` with every tempo it names taken out ("funk in A minor at 96 BPM." -> "funk in A minor.")."""
    if not text:
        return text
    out = _TEMPO_PHRASE.sub("", text)
    out = re.sub(r"\s*\(\s*\)", "", out)  # "(84 bpm)"
    out = re.sub(r"([.;:])\s*,", r"\1", out)  # "bass. 134 BPM, C# minor." -> "bass. C# minor."
    out = re.sub(r"\s+([.,;])", r"\1", re.sub(r"\s{2,}", " ", out))
    return re.sub(r"([,;])\s*([.,;])", r"\2", out).strip(" ,;")
