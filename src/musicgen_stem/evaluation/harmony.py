"""Harmony analysis: STFT chroma, chroma correlation, chord templates, how keys relate (the
Krumhansl-Schmuckler estimate itself: `conditioning.keys`).

Audio is [T] or [C, T] (numpy or torch; channels averaged). Chroma is [12, N] (pitch class 0 = C),
each frame L2-normalised; silent frames are all zero and ignored by the correlations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..conditioning.chords import QUALITIES
from ..conditioning.keys import Key, estimate_key
from ..dsp import to_mono

__all__ = [
    "CHORD_INTERVALS",
    "KEY_SCORES",
    "Key",
    "chord_chroma",
    "chord_span_correlation",
    "chord_tone_ratio",
    "chroma",
    "chroma_correlation",
    "estimate_key",
    "key_relation",
]

#: Chord qualities (`conditioning.chords.QUALITIES`, which the synthetic songs use): intervals above the root.
CHORD_INTERVALS: dict[str, tuple[int, ...]] = {q: intervals for q, (intervals, _) in QUALITIES.items()}
#: MIREX-style credit per key relation.
KEY_SCORES: dict[str, float] = {"same": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}


def _chroma_matrix(sample_rate: int, n_fft: int, f_min: float, f_max: float) -> np.ndarray:
    """[12, n_fft // 2 + 1]: each STFT bin in [f_min, f_max] split between its two nearest semitones."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fmat = np.zeros((12, len(freqs)))
    ok = (freqs >= f_min) & (freqs <= min(f_max, sample_rate / 2))
    midi = 69 + 12 * np.log2(np.where(ok, freqs, 1.0) / 440.0)
    lo = np.floor(midi)
    frac = midi - lo
    for k in np.flatnonzero(ok):
        fmat[int(lo[k]) % 12, k] += 1 - frac[k]
        fmat[int(lo[k] + 1) % 12, k] += frac[k]
    return fmat


def chroma(
    wav: np.ndarray | torch.Tensor,
    sample_rate: int,
    hop_seconds: float = 0.1,
    window_seconds: float = 0.25,
    f_min: float = 40.0,
    f_max: float = 5000.0,
    silence_db: float = -60.0,
) -> np.ndarray:
    """Chroma [12, N] of `wav`: power STFT (Hann, ~`window_seconds`, power-of-two size) mapped to pitch
    classes on a log-frequency (MIDI) axis, L2-normalised per frame; frames more than `silence_db`
    below the loudest (or digitally silent) are zero. Frame `i` is centred at `i * hop` samples."""
    x = torch.from_numpy(to_mono(wav).astype(np.float32))
    n_fft = int(2 ** np.ceil(np.log2(window_seconds * sample_rate)))
    hop = max(1, round(hop_seconds * sample_rate))
    if x.shape[-1] <= n_fft // 2:
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    spec = torch.stft(
        x, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True, return_complex=True
    )
    power = spec.abs().pow(2).double().numpy()  # [F, N]
    c = _chroma_matrix(sample_rate, n_fft, f_min, f_max) @ power  # [12, N]
    energy = c.sum(axis=0)
    loud = energy > max(float(energy.max()) * 10 ** (silence_db / 10), 1e-10)
    norm = np.linalg.norm(c, axis=0)
    return np.where(loud[None], c / np.maximum(norm, 1e-12)[None], 0.0)


def chroma_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean frame-wise cosine similarity of two chromagrams [12, N], [12, M] over their common frames
    where both are non-silent; NaN when there is none."""
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    both = (na > 0) & (nb > 0)
    if not both.any():
        return float("nan")
    cos = (a[:, both] * b[:, both]).sum(axis=0) / (na[both] * nb[both])
    return float(cos.mean())


def chord_chroma(chords: Sequence[dict[str, Any]], num_frames: int, hop_seconds: float = 0.1) -> np.ndarray:
    """Ground-truth chord templates [12, num_frames] (L2-normalised, zero where no chord) from chords
    given as dicts with `start`, `end` (s), `root_pc` and `quality` (the synthetic songs' meta.json)."""
    out = np.zeros((12, num_frames))
    times = np.arange(num_frames) * hop_seconds
    for ch in chords:
        intervals = CHORD_INTERVALS.get(str(ch.get("quality", "maj")), (0, 4, 7))
        template = np.zeros(12)
        template[[(int(ch["root_pc"]) + i) % 12 for i in intervals]] = 1.0
        sel = (times >= float(ch["start"])) & (times < float(ch["end"]))
        out[:, sel] = (template / np.linalg.norm(template))[:, None]
    return out


def chord_span_correlation(chromagram: np.ndarray, chords: np.ndarray) -> float:
    """Cosine of a stem's chroma averaged over each chord's span with that chord's template, weighted
    by the span's non-silent frames. `chromagram` [12, N] and `chords` ([12, M] `chord_chroma`) share
    a hop; a span is a run of equal template frames. NaN when no span has sound. Where the per-frame
    `chroma_correlation` caps a single note at 1/sqrt(3) against a triad, this asks whether a line's
    notes over the chord (root, third, fifth...) spell it."""
    n = min(chromagram.shape[1], chords.shape[1])
    a, b = chromagram[:, :n], chords[:, :n]
    change = np.flatnonzero(np.any(b[:, 1:] != b[:, :-1], axis=0)) + 1
    total, weight = 0.0, 0
    for lo, hi in zip(np.r_[0, change], np.r_[change, n], strict=True):
        template = b[:, lo]
        frames = a[:, lo:hi][:, np.linalg.norm(a[:, lo:hi], axis=0) > 0]
        if not template.any() or frames.shape[1] == 0:
            continue
        mean = frames.mean(axis=1)
        cos = float(mean @ template / (np.linalg.norm(mean) * np.linalg.norm(template)))
        total, weight = total + cos * frames.shape[1], weight + frames.shape[1]
    return total / weight if weight else float("nan")


def chord_tone_ratio(
    times: np.ndarray, f0: np.ndarray, voiced: np.ndarray, chords: np.ndarray, hop_seconds: float = 0.1
) -> float:
    """Share of the voiced frames of an f0 track (`times` s, `f0` Hz) whose nearest equal-tempered
    note is a tone of the chord sounding then (`chords`: `chord_chroma` templates [12, N] at
    `hop_seconds`; frames without a chord are left out); NaN when none is left. What a bass line's
    notes say about the harmony, where a chroma correlation caps a single note per frame at
    1/sqrt(3) against a triad."""
    times, f0 = np.asarray(times, float), np.asarray(f0, float)
    idx = np.minimum((times / hop_seconds).astype(int), chords.shape[1] - 1)
    keep = np.asarray(voiced, bool) & (f0 > 0) & chords[:, idx].any(axis=0)
    if not keep.any():
        return float("nan")
    pc = np.round(69 + 12 * np.log2(f0[keep] / 440.0)).astype(int) % 12
    return float((chords[pc, idx[keep]] > 0).mean())


def key_relation(estimated: Key, reference: Key) -> str:
    """ "same", "fifth" (same mode, tonic a fifth up or down), "relative" (C major <-> A minor),
    "parallel" (C major <-> C minor) or "other"."""
    d = (estimated.tonic - reference.tonic) % 12
    if estimated.mode == reference.mode:
        return "same" if d == 0 else "fifth" if d in (5, 7) else "other"
    if d == 0:
        return "parallel"
    # estimated minor vs reference major: relative minor is 9 semitones up; and the reverse.
    return (
        "relative"
        if (estimated.mode == "minor" and d == 9) or (estimated.mode == "major" and d == 3)
        else "other"
    )
