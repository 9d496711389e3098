"""Rhythm analysis: onset picking, tempo, dynamic-programming beat tracking, beat metrics.

numpy/scipy/torch only (no librosa). Audio is a numpy or torch array shaped [T] or [C, T] (channels are
averaged). The onset envelope (`dsp.onset_strength`) is the half-wave rectified spectral flux of a
log-mel spectrogram, averaged over bands; the beat tracker is Ellis (2007): tempo from the envelope's
autocorrelation weighted by a log-Gaussian tempo prior, then dynamic programming that trades onset
strength against deviation from the tempo period."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal
import torch

from ..dsp import OnsetEnvelope, estimate_tempo, onset_strength

__all__ = [
    "ONSET_THRESHOLDS",
    "OnsetEnvelope",
    "beat_f_measure",
    "detect_onsets",
    "estimate_tempo",
    "grid_fraction",
    "onset_strength",
    "sixteenth_grid",
    "sixteenth_grid_fraction",
    "subdivide",
    "track_beats",
]

TOLERANCE = 0.07  # seconds: the usual beat/onset evaluation window (mir_eval's 70 ms)
#: `detect_onsets` threshold per stem, each the best onset F-measure (±50 ms, mir_eval) against the
#: MIDI note onsets of 60 training songs (`benchmarks/onset_calibration.py`): held bass notes and
#: pads make flux (beating, vibrato, reverb) that the drums' threshold would count as onsets.
ONSET_THRESHOLDS: dict[str, float] = {"bass": 1.0, "drums": 0.5, "other": 0.75}


def detect_onsets(
    wav: np.ndarray | torch.Tensor,
    sample_rate: int,
    envelope: OnsetEnvelope | None = None,
    threshold: float = 0.5,
    min_gap: float = 0.05,
) -> np.ndarray:
    """Onset times in seconds [n_onsets]: peaks of the onset envelope above `threshold` x max(median
    of peaks, 1) (unit-std envelope), at least `min_gap` s apart, refined by parabolic interpolation."""
    env = onset_strength(wav, sample_rate) if envelope is None else envelope
    e = env.env
    if not e.any():
        return np.zeros(0)
    distance = max(1, round(min_gap * env.frame_rate))
    peaks, _ = scipy.signal.find_peaks(e, distance=distance)
    if len(peaks) == 0:
        return np.zeros(0)
    level = threshold * max(float(np.median(e[peaks])), float(e.max()) * 0.1, 1.0)
    peaks = peaks[e[peaks] >= level]
    frac = np.zeros(len(peaks))
    inner = (peaks > 0) & (peaks < len(e) - 1)
    p = peaks[inner]
    a, b, c = e[p - 1], e[p], e[p + 1]
    den = a - 2 * b + c
    frac[inner] = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    return (peaks + np.clip(frac, -0.5, 0.5)) / env.frame_rate


def track_beats(
    wav: np.ndarray | torch.Tensor | None = None,
    sample_rate: int | None = None,
    envelope: OnsetEnvelope | None = None,
    bpm: float | None = None,
    tightness: float = 100.0,
) -> tuple[np.ndarray, float]:
    """Beat times in seconds [n_beats] and the tempo (BPM) with Ellis' (2007) dynamic programming.

    Give the audio (`wav`, `sample_rate`) or a precomputed `envelope`; `bpm` skips the tempo estimate.
    """
    if envelope is None:
        if wav is None or sample_rate is None:
            raise ValueError("track_beats needs wav and sample_rate, or an envelope")
        envelope = onset_strength(wav, sample_rate)
    bpm = estimate_tempo(envelope) if bpm is None else float(bpm)
    e, fr = envelope.env, envelope.frame_rate
    if bpm <= 0 or not np.any(e):
        return np.zeros(0), float(bpm)
    period = 60.0 * fr / bpm  # frames per beat
    # Local score: envelope smoothed by a Gaussian of std period / 32.
    sigma = max(period / 32, 0.5)
    k = np.arange(-round(4 * sigma), round(4 * sigma) + 1)
    local = np.convolve(e, np.exp(-0.5 * (k / sigma) ** 2), mode="same")  # [N]
    n = len(local)
    cum = local.copy()
    back = -np.ones(n, dtype=np.int64)
    offsets = np.arange(-round(2 * period), -round(period / 2) + 1)  # candidate previous beats, relative
    penalty = -tightness * np.log(-offsets / period) ** 2  # [len(offsets)]
    for t in range(n):
        prev = t + offsets
        ok = prev >= 0
        if not ok.any():
            continue
        cand = cum[prev[ok]] + penalty[ok]
        j = int(np.argmax(cand))
        if cand[j] > 0:
            cum[t] = local[t] + cand[j]
            back[t] = prev[ok][j]
    # Last beat: the best-scoring frame within the final period among local maxima of cum.
    tail = max(0, n - round(period))
    maxima = np.flatnonzero((cum[1:-1] >= cum[:-2]) & (cum[1:-1] >= cum[2:])) + 1
    maxima = maxima[maxima >= tail]
    last = int(maxima[np.argmax(cum[maxima])]) if len(maxima) else tail + int(np.argmax(cum[tail:]))
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    beats_arr = np.array(beats[::-1], dtype=np.float64)
    # Drop weak beats at the edges (silence before/after the music).
    strength = local[beats_arr.astype(int)]
    keep = strength >= 0.5 * np.median(strength) if len(strength) else strength.astype(bool)
    if keep.any():
        first, final = np.flatnonzero(keep)[[0, -1]]
        beats_arr = beats_arr[first : final + 1]
    return beats_arr / fr, float(bpm)


def subdivide(beats: np.ndarray, parts: int = 4, late: Sequence[float] | None = None) -> np.ndarray:
    """A finer grid [(n - 1) * parts + 1]: `parts` equal steps between consecutive beats (16ths for
    4), step i moved `late[i]` of a beat later when given (swing)."""
    beats = np.asarray(beats, dtype=np.float64)
    if len(beats) < 2 or parts <= 1:
        return beats.copy()
    steps = np.arange(parts) / parts
    if late is not None:
        steps = steps + np.asarray(late, dtype=np.float64)
    inner = (beats[:-1, None] + np.diff(beats)[:, None] * steps[None, :]).ravel()
    return np.concatenate([inner, beats[-1:]])


def grid_fraction(onsets: np.ndarray, grid: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Fraction of `onsets` (s) within ±`tolerance` of a `grid` time; onsets outside the grid's span
    (by more than the tolerance) are ignored; NaN when no onset is inside."""
    onsets, grid = np.asarray(onsets, float), np.sort(np.asarray(grid, float))
    if len(onsets) == 0 or len(grid) == 0:
        return float("nan")
    onsets = onsets[(onsets >= grid[0] - tolerance) & (onsets <= grid[-1] + tolerance)]
    if len(onsets) == 0:
        return float("nan")
    idx = (
        np.clip(np.searchsorted(grid, onsets), 1, len(grid) - 1)
        if len(grid) > 1
        else np.zeros(len(onsets), int)
    )
    dist = np.abs(onsets - grid[idx])
    if len(grid) > 1:
        dist = np.minimum(dist, np.abs(onsets - grid[idx - 1]))
    return float(np.mean(dist <= tolerance + 1e-9))


def sixteenth_grid(beats: np.ndarray, swing8: float = 0.0, swing16: float = 0.0) -> np.ndarray:
    """The 16th-note grid [(n - 1) * 4 + 1] of `beats` (s), swung as the synthetic scores play it
    (`data.synth.score.Score.tick`): in each beat the off-beat 8th comes swing8 / 6 of a beat late
    (1: a triplet swing) and the 2nd and 4th 16ths (swing8 + swing16) / 12 late."""
    late = (swing8 + swing16) / 12
    return subdivide(beats, 4, (0.0, late, swing8 / 6, late))


def sixteenth_grid_fraction(
    onsets: np.ndarray, beats: np.ndarray, swing: tuple[float, float] = (0.0, 0.0)
) -> float:
    """Fraction of `onsets` (s) on the 16th-note grid of `beats` (`sixteenth_grid`, swung by
    `swing` = (swing8, swing16)): within ±min(70 ms, a quarter of a 16th) of a grid time (a ±70 ms
    window would cover the whole grid at 107 BPM and above, so chance is one half at any tempo);
    NaN with fewer than two beats or no onset inside them."""
    beats = np.sort(np.asarray(beats, float))
    if len(beats) < 2:
        return float("nan")
    sixteenth = float(np.median(np.diff(beats))) / 4
    return grid_fraction(onsets, sixteenth_grid(beats, *swing), min(TOLERANCE, sixteenth / 4))


def grid_phase_lock(onsets: np.ndarray, beats: np.ndarray, parts: int = 4) -> float:
    """How strongly `onsets` (s) lock to the phase of a beat grid: each onset between two beats gets
    its phase phi in [0, 1) of that beat; the result is |mean(exp(2 pi i parts phi))|, the resultant
    length of the phases on the `parts`-per-beat grid (16ths for 4). 1: every onset on the grid,
    about 1/sqrt(n) for onsets unrelated to it (no tolerance to choose); NaN without onsets."""
    onsets, beats = np.asarray(onsets, float), np.sort(np.asarray(beats, float))
    if len(beats) < 2:
        return float("nan")
    onsets = onsets[(onsets >= beats[0]) & (onsets < beats[-1])]
    if len(onsets) == 0:
        return float("nan")
    j = np.searchsorted(beats, onsets, side="right") - 1  # the beat before each onset
    phase = (onsets - beats[j]) / (beats[j + 1] - beats[j])
    return float(np.abs(np.mean(np.exp(2j * np.pi * parts * phase))))


def beat_f_measure(estimated: np.ndarray, reference: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """mir_eval-style beat F-measure: one-to-one matches within ±`tolerance` s (greedy by distance),
    F = 2 * matches / (n_est + n_ref). 1.0 when both are empty, 0.0 when only one is."""
    est, ref = np.asarray(estimated, float), np.asarray(reference, float)
    if len(est) == 0 and len(ref) == 0:
        return 1.0
    if len(est) == 0 or len(ref) == 0:
        return 0.0
    dist = np.abs(est[:, None] - ref[None, :])  # [n_est, n_ref]
    pairs = np.argwhere(dist <= tolerance + 1e-9)
    order = np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_e, used_r, hits = set(), set(), 0
    for i, j in pairs[order]:
        if i not in used_e and j not in used_r:
            used_e.add(int(i))
            used_r.add(int(j))
            hits += 1
    return 2.0 * hits / (len(est) + len(ref))
