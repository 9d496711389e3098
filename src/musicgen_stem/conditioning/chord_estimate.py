"""The chords of audio, read beat by beat: what an edit without `--chords` gives the LM's chord
conditioning from its kept stems, as it reads their tempo.

Each beat's chroma above C3 (constant-Q, librosa) is matched against the chord templates of
`chords.QUALITIES` (triads and sevenths, a small prior for the plain triads), the chroma of the two
octaves below it (where a bass plays) weighing the root; a Viterbi pass with a cost for each
change keeps chords from flickering.
"""

from __future__ import annotations

import librosa
import numpy as np

from ..dsp import mono_at
from .chords import Chord, ChordChart

#: The qualities read from audio (the rest are rare and easily confused with these), and a prior
#: (added to the template match) that prefers the simpler chord when a seventh adds little.
ESTIMATED = {"maj": 0.08, "min": 0.08, "7": 0.0, "maj7": 0.0, "min7": 0.0, "dim": -0.04, "m7b5": -0.04}
CHANGE_COST = 0.25  # per chord change, in template-match units
_HOP = 512
_SR = 22050


def _templates() -> tuple[list[Chord], np.ndarray]:
    """Every root x estimated quality: chords and their unit chroma templates [N, 12]."""
    chords = [Chord(root, q) for q in ESTIMATED for root in range(12)]
    t = np.zeros((len(chords), 12))
    for i, c in enumerate(chords):
        t[i, list(c.tones)] = 1.0
        t[i, c.root] += 0.5  # the root sounds most
    return chords, t / np.linalg.norm(t, axis=1, keepdims=True)


def beat_times(duration: float, tempo: float, first_beat: float) -> np.ndarray:
    """Beat boundaries covering [0, duration] at `tempo`, through `first_beat` (s)."""
    period = 60.0 / tempo if tempo > 0 else 0.5
    start = first_beat - np.ceil(first_beat / period) * period
    times = np.arange(start, duration + period, period)
    return np.clip(times, 0.0, duration)


def estimate_chords(
    audio: np.ndarray, sample_rate: int, tempo: float = 0.0, first_beat: float = 0.0
) -> ChordChart:
    """The chords of `audio` ([C, T] or [T]) beat by beat at `tempo` (bpm; 0: every 0.5 s), its
    beats through `first_beat` (s). Silent beats have no chord."""
    y = mono_at(audio, sample_rate, _SR)
    duration = len(y) / _SR
    if duration < 0.25:
        return ChordChart(())
    cqt = np.abs(librosa.cqt(y, sr=_SR, hop_length=_HOP, fmin=librosa.note_to_hz("C1"), n_bins=72))  # [72, F]
    chroma = cqt[24:].reshape(4, 12, -1).sum(0)  # [12, F], C3..B6: the chord's quality
    low = cqt[:24].reshape(2, 12, -1).sum(0)  # [12, F], C1..B2: where the bass plays its root
    bounds = beat_times(duration, tempo, first_beat)
    frames = np.round(bounds * _SR / _HOP).astype(int)
    chords, t = _templates()
    prior = np.array([ESTIMATED[c.quality] for c in chords])
    level = float(cqt.sum(0).max()) if cqt.size else 0.0
    scores, voiced = [], []
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        b = max(b, a + 1)
        c, lo = chroma[:, a:b].sum(1), low[:, a:b].sum(1)
        energy = float(cqt[:, a:b].sum(0).mean()) if b <= cqt.shape[1] else 0.0
        voiced.append(energy > 0.02 * level)
        c = c / (np.linalg.norm(c) + 1e-9)
        lo = lo / (lo.max() + 1e-9)
        scores.append(t @ c + prior + 0.15 * lo[[ch.root for ch in chords]])
    path = _viterbi(np.array(scores))
    spans: list[tuple[float, float, Chord | None]] = []
    for i, k in enumerate(path):
        a, b = float(bounds[i]), float(bounds[i + 1])
        if b <= a:
            continue
        chord = chords[k] if voiced[i] else None
        if spans and spans[-1][2] == chord:
            spans[-1] = (spans[-1][0], round(b, 4), chord)
        else:
            spans.append((round(a, 4), round(b, 4), chord))
    return ChordChart(tuple(spans))


def _viterbi(scores: np.ndarray) -> list[int]:
    """The best path through scores [S, N] with CHANGE_COST per change."""
    S, N = scores.shape
    if S == 0:
        return []
    best, back = scores[0].copy(), np.zeros((S, N), dtype=int)
    for s in range(1, S):
        switch = best.max() - CHANGE_COST
        stay = best
        back[s] = np.where(stay >= switch, np.arange(N), int(best.argmax()))
        best = np.maximum(stay, switch) + scores[s]
    path = [int(best.argmax())]
    for s in range(S - 1, 0, -1):
        path.append(int(back[s, path[-1]]))
    return path[::-1]
