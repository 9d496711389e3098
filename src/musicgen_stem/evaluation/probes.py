"""Probe signals (32 kHz, generated here) through one stem's codec (the bass):

- pure tones: a 1 s sine with a 10 ms attack and an exponential decay (time constant 0.35 s) on every
  semitone E1..G3 (MIDI 28..55); a tone passes when the strongest spectral peak above 20 Hz of its
  round trip (Hann window, zero-padded FFT, parabolic interpolation) is within ±25 cents of the note.
- bass line: A1 C2 E2 G2, one second each (decaying tones with harmonics 1, 1/2, 1/4); whether the
  notes get different codes (the most frequent code tuple over each note's interior frames, the
  two frames at either end left out), the mean pairwise Jaccard overlap of the notes' code sets, and
  the pitch metrics of `codec_metrics` against the input (plus the median |cents| to the written notes).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..conditioning.chords import NOTE_NAMES
from .codec_metrics import NAN, _cents, pitch_metrics, pitch_track

__all__ = [
    "BASS_LINE",
    "PROBE_NOTES",
    "RoundTrip",
    "bass_line_check",
    "codec_round_trip",
    "decaying_tone",
    "midi_hz",
    "probe_metrics",
    "pure_tone_check",
    "strongest_peak_hz",
]

PEAK_TOLERANCE_CENTS = 25.0
PROBE_NOTES: tuple[int, ...] = tuple(range(28, 56))  # E1 .. G3 (MIDI)
BASS_LINE: tuple[int, ...] = (33, 36, 40, 43)  # A1 C2 E2 G2
PROBE_SAMPLE_RATE = 32000

#: A codec as a function: mono audio [B, T] at its sample rate -> (round trip [B, T], codes [B, n_q, F]).
RoundTrip = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def midi_hz(midi: float) -> float:
    """Equal-tempered frequency of a MIDI note (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def note_name(midi: int) -> str:
    """Name of a MIDI note, e.g. 33 -> "A1"."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def decaying_tone(
    hz: float,
    sample_rate: int = PROBE_SAMPLE_RATE,
    seconds: float = 1.0,
    harmonics: Sequence[float] = (1.0,),
    tau: float = 0.35,
    attack: float = 0.01,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A plucked-like tone [T] float32: partials h x hz with amplitudes `harmonics`, a linear
    `attack` (s) and an exponential decay (time constant `tau` s); peak about `amplitude`."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    env = np.minimum(1.0, t / attack) * np.exp(-t / tau)
    x = sum(a * np.sin(2 * np.pi * hz * (h + 1) * t) for h, a in enumerate(harmonics) if a)
    x = np.asarray(x) * env
    peak = float(np.abs(x).max()) or 1.0
    return (amplitude * x / peak).astype(np.float32)


def strongest_peak_hz(x: np.ndarray, sample_rate: int, fmin: float = 20.0) -> float:
    """Frequency of the largest magnitude-spectrum peak of `x` above `fmin` (Hann window, FFT
    zero-padded to >= 8 s, parabolic interpolation on log magnitude); NaN for silence."""
    if len(x) == 0 or float(np.abs(x).max()) == 0.0:
        return NAN
    nfft = 1 << max(int(np.ceil(np.log2(len(x)))), int(np.ceil(np.log2(8 * sample_rate))))
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    lo = int(np.ceil(fmin * nfft / sample_rate))
    k = lo + int(np.argmax(mag[lo:]))
    shift = 0.0
    if lo < k < len(mag) - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-30)
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den < 0 else 0.0
    return float((k + shift) * sample_rate / nfft)


def pure_tone_check(
    codec: RoundTrip,
    sample_rate: int = PROBE_SAMPLE_RATE,
    notes: Sequence[int] = PROBE_NOTES,
    tolerance: float = PEAK_TOLERANCE_CENTS,
) -> dict[str, Any]:
    """Round-trip a decaying sine on every note in `notes` (MIDI) and check that the strongest peak
    of each is within ±`tolerance` cents. Returns {"notes": [{note, midi, hz, peak_hz, cents,
    passed}], "passed": count, "total", "pass_fraction"}."""
    batch = np.stack([decaying_tone(midi_hz(m), sample_rate) for m in notes])
    recon, _ = codec(batch)
    rows = []
    for m, y in zip(notes, recon, strict=True):
        hz = midi_hz(m)
        peak = strongest_peak_hz(y, sample_rate)
        c = float(_cents(np.array(peak), np.array(hz))) if math.isfinite(peak) else NAN
        rows.append(
            {
                "note": note_name(m),
                "midi": m,
                "hz": hz,
                "peak_hz": peak,
                "cents": c,
                "passed": bool(math.isfinite(c) and abs(c) <= tolerance),
            }
        )
    passed = sum(r["passed"] for r in rows)
    return {"notes": rows, "passed": passed, "total": len(rows), "pass_fraction": passed / max(1, len(rows))}


def bass_line_check(
    codec: RoundTrip,
    frame_rate: float,
    sample_rate: int = PROBE_SAMPLE_RATE,
    notes: Sequence[int] = BASS_LINE,
    seconds: float = 1.0,
) -> dict[str, Any]:
    """Round-trip a bass line (one decaying tone per note, `seconds` each): do the notes get different
    codes, and does pYIN hear the same pitches? See the module docstring."""
    per = round(seconds * sample_rate)
    x = np.concatenate([decaying_tone(midi_hz(m), sample_rate, seconds, (1.0, 0.5, 0.25)) for m in notes])
    recon, codes = codec(x[None])
    y, codes = recon[0], np.asarray(codes[0])  # [T], [n_q, F]
    hop = sample_rate / frame_rate
    note_codes: list[list[tuple[int, ...]]] = []
    for i in range(len(notes)):
        first = int(np.ceil(i * per / hop)) + 2
        last = int((i + 1) * per // hop) - 2  # exclusive
        note_codes.append(
            [tuple(int(v) for v in codes[:, j]) for j in range(first, min(last, codes.shape[1]))]
        )
    modes = [Counter(seq).most_common(1)[0][0] if seq else None for seq in note_codes]
    sets = [set(s) for s in note_codes]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1 :] if a or b]
    jaccard = float(np.mean([len(a & b) / len(a | b) for a, b in pairs])) if pairs else NAN
    distinct = len({m for m in modes if m is not None})
    ref_track, est_track = pitch_track(x, sample_rate), pitch_track(y, sample_rate)
    out: dict[str, Any] = {
        "notes": [note_name(m) for m in notes],
        "note_modal_codes": [list(m) if m is not None else None for m in modes],
        "distinct_note_codes": distinct,
        "codes_differ": distinct == len(notes),
        "code_jaccard": jaccard,
    }
    out.update(pitch_metrics(ref_track, est_track))
    # against the written notes: which note each pYIN frame falls in (len(notes): after the line)
    note_of = np.minimum((est_track.times // seconds).astype(int), len(notes))
    written = np.array([midi_hz(m) for m in notes] + [0.0])[note_of]
    ok = est_track.voiced & (written > 0)
    out["median_cents_vs_notes"] = (
        float(np.median(np.abs(_cents(est_track.f0[ok], written[ok])))) if ok.any() else NAN
    )
    out["note_median_hz"] = [
        float(np.median(est_track.f0[ok & (note_of == i)])) if (ok & (note_of == i)).any() else NAN
        for i in range(len(notes))
    ]
    return out


def codec_round_trip(codec: Any, device: torch.device | str | None = None) -> RoundTrip:
    """A `StemCodec` as a `RoundTrip` on mono [B, T] arrays at its sample rate (repeated to its
    channels on the way in, averaged on the way out)."""
    device = device if device is not None else next(codec.parameters()).device

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.asarray(batch, np.float32))[:, None].expand(-1, codec.channels, -1)
        with torch.inference_mode():
            codes = codec.encode(x.contiguous().to(device))
            y = codec.decode(codes)[..., : x.shape[-1]].float().cpu()
        y = torch.nn.functional.pad(y, (0, x.shape[-1] - y.shape[-1])).mean(1)
        return y.numpy(), codes.cpu().numpy()

    return run


def probe_metrics(model: Any, stem: str = "bass") -> dict[str, Any]:
    """Pure tones E1..G3 and the bass line through `stem`'s codec (probes at the codec's rate)."""
    codec = model.codec.codecs[stem]
    rt = codec_round_trip(codec, model.device)
    return {
        "stem": stem,
        "pure_tones": pure_tone_check(rt, codec.sample_rate),
        "bass_line": bass_line_check(rt, codec.frame_rate, codec.sample_rate),
    }
