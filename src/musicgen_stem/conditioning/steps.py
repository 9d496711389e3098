"""Per-step conditions: what the LM reads at each step besides its tokens, one vector per step summed
into its input (audiocraft's "sum" fuser; `StemLM.forward(..., cond=)`).

Two conditions, each optional (`StepConfig`; the released checkpoints have neither):
- the **beat grid** (`BeatGrid`): sin/cos of the beat phase over bars, half bars, beats, 8ths and
  16ths through one linear layer. Text -> stems and the synthetic songs start on a downbeat (bars
  known); an edit knows only where the 8ths of its kept stems fall (`first_beat`), and their swing,
  which bends the phase inside each beat so that the swung 16ths read as straight ones (`swing_warp`);
- the **chords** (`ChordChart`): root, chord tones and bass note of the chord sounding at each step
  (3 x 12 bits) through one linear layer.

LM step s of a window predicts its column s; column c is song frame `start + c`. Edit windows begin
with a masked-stem prefix of `prefix` columns: the beat grid runs on through it (as the model was
trained), the chords are not given there (its columns are a subsampled copy of the window).
A condition that is not known is a row of zeros: it adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from .chords import ChordChart

#: Beat-grid cycles in beats (bar of 4/4, half bar, beat, 8th, 16th): 2 features each.
BEAT_CYCLES = (4.0, 2.0, 1.0, 0.5, 0.25)
BAR_CYCLE = 4.0  # beats: a grid from a downbeat knows bars (4/4)
EDIT_CYCLE = 0.5  # beats: a grid from onsets knows where the 8ths fall
CHORD_FEATURES = 36  # root, tones and bass, 12 pitch classes each


@dataclass(frozen=True)
class BeatGrid:
    """The beat of one song: `bpm`; `first_beat` the time in s of a beat (None: song frame 0 is a
    downbeat, bars known; else only the 8ths are); `swing` of the 8ths (0..1, `swing_warp`)."""

    bpm: float
    first_beat: float | None = None
    swing: float = 0.0

    @property
    def cycle(self) -> float:
        """The longest cycle known, in beats."""
        return BAR_CYCLE if self.first_beat is None else EDIT_CYCLE


@dataclass(frozen=True)
class StepConds:
    """The per-step conditions of a batch: per item a beat grid and a chord chart (None: unknown)."""

    beats: tuple[BeatGrid | None, ...] = ()
    chords: tuple[ChordChart | None, ...] = ()

    def null(self) -> StepConds:
        """The same batch with nothing known (the null condition of guidance, dropped conditions)."""
        return StepConds((None,) * len(self.beats), (None,) * len(self.chords))

    def __len__(self) -> int:
        return max(len(self.beats), len(self.chords))

    def __add__(self, other: StepConds) -> StepConds:
        """Two batches as one (rows of `self`, then `other`)."""
        pad = lambda c, n: tuple(c) or (None,) * n  # noqa: E731
        n, m = len(self), len(other)
        beats = () if not (self.beats or other.beats) else pad(self.beats, n) + pad(other.beats, m)
        chords = () if not (self.chords or other.chords) else pad(self.chords, n) + pad(other.chords, m)
        return StepConds(beats, chords)

    def to_json(self, index: int) -> dict[str, Any]:
        """What item `index` read, for meta.json."""
        beat = self.beats[index] if index < len(self.beats) else None
        chart = self.chords[index] if index < len(self.chords) else None
        return {
            "beat_grid": None if beat is None else asdict(beat),
            "chords": None if chart is None else chart.to_json(),
        }


def swing_warp(beats: torch.Tensor, swing: torch.Tensor) -> torch.Tensor:
    """Beat positions [B, T] as a straight grid reads a song whose 8ths swing by `swing` [B] (0..1,
    as `data.synth.score.Score.tick`: the off-beat 8th comes swing / 6 of a beat late, the 2nd and
    4th 16ths swing / 12): piecewise linear inside each beat, mapping those swung positions onto
    0.25, 0.5 and 0.75. Rows with no swing are returned as they are."""
    whole = torch.floor(beats)
    f = beats - whole  # [B, T] in [0, 1)
    s = swing.double()[:, None]
    x1, x2, x3 = 0.25 + s / 12, 0.5 + s / 6, 0.75 + s / 12
    g = torch.where(
        f < x2,
        torch.where(f < x1, f / x1, 1 + (f - x1) / (x2 - x1)),
        torch.where(f < x3, 2 + (f - x2) / (x3 - x2), 3 + (f - x3) / (1 - x3)),
    )
    return torch.where(s > 0, whole + g / 4, beats)


def beat_features(
    grids: Sequence[BeatGrid | None], start: Sequence[int], steps: int, frame_rate: float
) -> torch.Tensor:
    """[B, steps, 2 * len(BEAT_CYCLES)]: sin/cos of the phase in each cycle at song frames
    start[b] + s; zero for rows without a grid and for cycles longer than the row's known one."""
    rows = []
    for grid, s0 in zip(grids, start, strict=True):
        if grid is None:
            rows.append((0.0, 0.0, 0.0, 0.0))
            continue
        rate = float(grid.bpm) / 60.0 / float(frame_rate)  # beats per step
        t0 = 0.0 if grid.first_beat is None else grid.first_beat
        rows.append((rate, s0 * rate - t0 * float(grid.bpm) / 60.0, grid.cycle, float(grid.swing)))
    g = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 4)
    beats = g[:, 1:2] + torch.arange(steps, dtype=torch.float64)[None, :] * g[:, 0:1]  # [B, T]
    if bool((g[:, 3] > 0).any()):
        beats = swing_warp(beats, g[:, 3])
    cycles = torch.tensor(BEAT_CYCLES, dtype=torch.float64)
    angle = (2 * math.pi * torch.remainder(beats[..., None] / cycles, 1.0)).float()  # [B, T, C]
    known = (cycles[None, :] <= g[:, 2:3] + 1e-9) & (g[:, 0:1] > 0)  # [B, C]
    on = known.float()[:, None, :].repeat(1, 1, 2)  # [B, 1, 2C]
    return torch.cat([angle.sin(), angle.cos()], -1) * on


def chord_features(
    charts: Sequence[ChordChart | None], start: Sequence[int], steps: int, frame_rate: float, prefix: int = 0
) -> torch.Tensor:
    """[B, steps, CHORD_FEATURES]: root, chord tones and bass (one-hot / bits over 12 pitch
    classes) of the chord sounding at song frame start[b] + s; zero where none is known and in
    the first `prefix` columns."""
    out = torch.zeros(len(charts), steps, CHORD_FEATURES)
    for b, (chart, s0) in enumerate(zip(charts, start, strict=True)):
        if chart is None:
            continue
        for a, e, chord in chart.spans:
            if chord is None:
                continue
            lo = max(prefix, math.ceil(a * frame_rate - s0 - 1e-6))
            hi = min(steps, math.ceil(e * frame_rate - s0 - 1e-6))
            if hi <= lo:
                continue
            out[b, lo:hi, chord.root] = 1.0
            out[b, lo:hi, [12 + pc for pc in chord.tones]] = 1.0
            out[b, lo:hi, 24 + chord.bass_pc] = 1.0
    return out


@dataclass(frozen=True)
class StepConfig:
    """Which per-step conditions a model reads."""

    beat: bool = False
    chords: bool = False

    @property
    def any(self) -> bool:
        return self.beat or self.chords

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown step condition fields {sorted(unknown)}")
        return cls(**d)


class StepConditioner(nn.Module):
    """Per-step conditions -> the LM's input term [B, T, dim]: `beat` (Linear 10 -> dim) and `chord`
    (Linear 36 -> dim), each zero at init so that adding one to a trained model changes nothing
    until it is trained."""

    def __init__(self, cfg: StepConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.beat = nn.Linear(2 * len(BEAT_CYCLES), dim, bias=False) if cfg.beat else None
        self.chord = nn.Linear(CHORD_FEATURES, dim, bias=False) if cfg.chords else None
        for lin in (self.beat, self.chord):
            if lin is not None:
                nn.init.zeros_(lin.weight)

    def forward(
        self,
        conds: StepConds,
        start: int | Sequence[int],
        steps: int,
        frame_rate: float,
        prefix: int = 0,
    ) -> torch.Tensor | None:
        """The input term of steps [0, steps) of windows whose column 0 is song frame `start`
        (one per item, or one for all) -> [B, steps, dim], or None when nothing is known."""
        B = len(conds)
        starts = [start] * B if isinstance(start, int) else list(start)
        w = next(self.parameters(), None)
        device, dtype = (w.device, w.dtype) if w is not None else (torch.device("cpu"), torch.float32)
        term = None
        if self.beat is not None and any(g is not None for g in conds.beats):
            f = beat_features(conds.beats, starts, steps, frame_rate)
            term = self.beat(f.to(device, dtype))
        if self.chord is not None and any(c is not None for c in conds.chords):
            c = self.chord(chord_features(conds.chords, starts, steps, frame_rate, prefix).to(device, dtype))
            term = c if term is None else term + c
        return term
