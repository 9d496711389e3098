"""Codec fidelity as a musician hears it: is the bass in tune, the harmony kept, the drums on time,
and is there a buzz at the codec's frame rate?

Every metric compares a stem's round trip (encode, then decode through that stem's codec) with the
input, on the same mono signal at the codec's sample rate (channels averaged):

- pitch (bass): f0 tracks by pYIN (`librosa.pyin`, fmin 30 Hz, fmax 400 Hz) on both signals
  resampled to 16 kHz (for speed; 128 ms frames, 20 ms hop, 10-cent pitch grid).
  `pitch_median_cents`: median |cents| between the two f0 over frames voiced in both;
  `pitch_within_50c`: fraction of those frames within 50 cents (`mir_eval.melody.raw_pitch_accuracy`
  with the both-voiced frames as reference voicing); `voicing_recall`: frames voiced in the input
  that are voiced in the round trip (`mir_eval.melody.voicing_recall`); `raw_pitch_accuracy`: the
  usual MIREX figure, over frames voiced in the input, the round trip's pYIN best guess counted
  whether voiced or not.
- harmony (other): `chroma_corr`, the mean over frames with energy (input RMS within 40 dB of its
  loudest frame and above -80 dBFS) of the Pearson correlation of the two 12-bin
  `librosa.feature.chroma_cqt` vectors (20 ms hop, tuning fixed at A440); a round-trip frame with
  a flat or silent chroma counts 0.
- timing (drums): `onset_f`, `onset_precision`, `onset_recall`: onsets picked by
  `librosa.onset.onset_detect` (10 ms hop) on both, matched by `mir_eval.onset.f_measure` within
  ±30 ms. NaN when the input has no onsets.
- frame-rate artifact (every stem): the long-term average spectrum (Welch, Hann, 1 Hz bins for a
  50 Hz codec, 50 % overlap) gives the *comb share*: the power within ±2 Hz of the multiples
  k x frame rate (k = 1 .. 40, i.e. 50 .. 2000 Hz) divided by the power from frame rate / 2 to
  2000 Hz + frame rate / 2. `artifact_score` = comb share of the round trip - comb share of the
  input: about 0 for a transparent codec, near 1 for a decoder that emits a frame-periodic comb;
  the input's share (about 0.1 for broadband sound, up to 1 for notes that sit on a multiple of the
  frame rate such as G1 = 49 Hz) is subtracted so that music which happens to lie on the comb is
  not blamed on the codec.
- codebooks (every stem, pooled over the evaluation set): `usage`, the fraction of a codebook's
  entries used at least once, and `perplexity`, exp of the entropy (nats) of its code histogram
  (1 = one code for everything, `bins` = uniform use).

Probe signals through one stem's codec: `probes`; the Markdown tables of a comparison: `tables`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal
import torch

from ..dsp import to_mono
from .fidelity import fidelity_metrics, round_trip

__all__ = [
    "STEM_METRICS",
    "PitchTrack",
    "chroma_metrics",
    "codebook_stats",
    "codec_song_metrics",
    "comb_share",
    "frame_rate_artifact",
    "onset_metrics",
    "pitch_metrics",
    "pitch_track",
    "stem_metrics",
]

# pYIN (bass pitch)
PYIN_SAMPLE_RATE = 16000
PYIN_FMIN = 30.0  # just under E1 (41.2 Hz)
PYIN_FMAX = 400.0
PYIN_FRAME = 2048  # 128 ms at 16 kHz: > 2 periods of 30 Hz
PYIN_HOP = 320  # 20 ms
CENT_TOLERANCE = 50.0
# chroma (other)
CHROMA_HOP_SECONDS = 0.02
CHROMA_RANGE_DB = 40.0
CHROMA_FLOOR = 1e-4  # -80 dBFS RMS
# onsets (drums)
ONSET_HOP_SECONDS = 0.01
ONSET_WINDOW = 0.03
# frame-rate comb
COMB_HALF_WIDTH_HZ = 2.0
COMB_MAX_HZ = 2000.0
#: What is judged on which stem, beyond the metrics every stem gets.
STEM_METRICS: dict[str, str] = {"bass": "pitch", "other": "chroma", "drums": "onsets"}

NAN = float("nan")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence librosa/mir_eval warnings about empty or unvoiced inputs (handled here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------------------- pitch
@dataclass
class PitchTrack:
    """pYIN output: frame `times` (s), `f0` (Hz, pYIN's best guess in every frame, 0 if none) and
    `voiced` (bool)."""

    times: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    g = math.gcd(int(sr), int(target))
    return scipy.signal.resample_poly(x, target // g, sr // g).astype(np.float32)


def pitch_track(
    wav: np.ndarray | torch.Tensor, sample_rate: int, fmin: float = PYIN_FMIN, fmax: float = PYIN_FMAX
) -> PitchTrack:
    """pYIN f0 of `wav` ([T] or [C, T]) resampled to 16 kHz (128 ms frames, 20 ms hop)."""
    import librosa

    x = _resample(to_mono(wav), sample_rate, PYIN_SAMPLE_RATE)
    n = 1 + len(x) // PYIN_HOP
    times = np.arange(n) * PYIN_HOP / PYIN_SAMPLE_RATE
    if len(x) == 0 or float(np.abs(x).max()) == 0.0:
        return PitchTrack(times, np.zeros(n), np.zeros(n, bool))
    if len(x) < PYIN_FRAME:
        x = np.pad(x, (0, PYIN_FRAME - len(x)))
    with _quiet():
        f0, voiced, _ = librosa.pyin(
            x,
            fmin=fmin,
            fmax=fmax,
            sr=PYIN_SAMPLE_RATE,
            frame_length=PYIN_FRAME,
            hop_length=PYIN_HOP,
            fill_na=None,
        )
    f0 = np.nan_to_num(np.asarray(f0, np.float64)[:n], nan=0.0)
    voiced = np.asarray(voiced, bool)[:n] & (f0 > 0)
    return PitchTrack(times[: len(f0)], f0, voiced)


def _cents(f: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return 1200.0 * np.log2(f / ref)


def pitch_metrics(ref: PitchTrack, est: PitchTrack, tolerance: float = CENT_TOLERANCE) -> dict[str, float]:
    """Round-trip f0 track `est` against the input's `ref` (same frames): pitch_median_cents,
    pitch_within_50c (frames voiced in both), voicing_recall, raw_pitch_accuracy, voiced_frames."""
    import mir_eval

    n = min(len(ref.f0), len(est.f0))
    ref_v, est_v = ref.voiced[:n], est.voiced[:n]
    ref_f, est_f = ref.f0[:n], est.f0[:n]
    both = ref_v & est_v
    out: dict[str, float] = {"voiced_frames": float(ref_v.sum())}
    if not ref_v.any():
        return {
            **out,
            "pitch_median_cents": NAN,
            "pitch_within_50c": NAN,
            "voicing_recall": NAN,
            "raw_pitch_accuracy": NAN,
        }
    ref_c = mir_eval.melody.hz2cents(np.where(ref_v, ref_f, 0.0))
    est_c = mir_eval.melody.hz2cents(est_f)  # best guess also where unvoiced (MIREX raw pitch)
    with _quiet():
        out["voicing_recall"] = float(
            mir_eval.melody.voicing_recall(ref_v.astype(float), est_v.astype(float))
        )
        out["raw_pitch_accuracy"] = float(
            mir_eval.melody.raw_pitch_accuracy(
                ref_v.astype(float), ref_c, est_v.astype(float), est_c, tolerance
            )
        )
        if both.any():
            out["pitch_within_50c"] = float(
                mir_eval.melody.raw_pitch_accuracy(
                    both.astype(float), ref_c, est_v.astype(float), est_c, tolerance
                )
            )
        else:
            out["pitch_within_50c"] = 0.0
    out["pitch_median_cents"] = (
        float(np.median(np.abs(_cents(est_f[both], ref_f[both])))) if both.any() else NAN
    )
    return out


# ------------------------------------------------------------------------------------------- harmony
def _chroma_hop(sample_rate: int) -> int:
    """~20 ms, a multiple of 64 (chroma_cqt's 7 octaves need hop divisible by 2^6)."""
    return max(64, round(CHROMA_HOP_SECONDS * sample_rate / 64) * 64)


def chroma_metrics(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, float]:
    """chroma_corr: mean per-frame Pearson correlation of CQT chroma, round trip `est` vs input `ref`
    (mono [T]), over the input's frames with energy; chroma_frames: how many frames that is."""
    import librosa

    hop = _chroma_hop(sample_rate)
    rms = librosa.feature.rms(y=ref, frame_length=2048, hop_length=hop)[0]
    if len(rms) == 0 or float(rms.max()) < CHROMA_FLOOR:
        return {"chroma_corr": NAN, "chroma_frames": 0.0}
    with _quiet():
        a = librosa.feature.chroma_cqt(y=ref, sr=sample_rate, hop_length=hop, tuning=0.0, norm=None)
        b = librosa.feature.chroma_cqt(y=est, sr=sample_rate, hop_length=hop, tuning=0.0, norm=None)
    n = min(a.shape[1], b.shape[1], len(rms))
    a, b, rms = a[:, :n], b[:, :n], rms[:n]
    ac, bc = a - a.mean(0), b - b.mean(0)
    na, nb = np.sqrt((ac**2).sum(0)), np.sqrt((bc**2).sum(0))
    keep = (rms >= max(CHROMA_FLOOR, float(rms.max()) * 10 ** (-CHROMA_RANGE_DB / 20))) & (na > 1e-12)
    if not keep.any():
        return {"chroma_corr": NAN, "chroma_frames": 0.0}
    r = np.where(nb > 1e-12, (ac * bc).sum(0) / np.maximum(na * nb, 1e-24), 0.0)
    return {"chroma_corr": float(r[keep].mean()), "chroma_frames": float(keep.sum())}


# ------------------------------------------------------------------------------------------- timing
def _onsets(x: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    if len(x) == 0 or float(np.abs(x).max()) == 0.0:
        return np.zeros(0)
    hop = max(1, round(ONSET_HOP_SECONDS * sample_rate))
    return librosa.onset.onset_detect(y=x, sr=sample_rate, hop_length=hop, units="time")


def onset_metrics(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, window: float = ONSET_WINDOW
) -> dict[str, float]:
    """Onsets of round trip `est` vs input `ref` (mono [T]): onset_f, onset_precision, onset_recall
    (mir_eval, ±`window` s) and onsets_ref (count); NaN when the input has no onsets."""
    import mir_eval

    ro, eo = _onsets(ref, sample_rate), _onsets(est, sample_rate)
    out = {"onsets_ref": float(len(ro))}
    if len(ro) == 0:
        return {**out, "onset_f": NAN, "onset_precision": NAN, "onset_recall": NAN}
    with _quiet():
        f, p, r = mir_eval.onset.f_measure(ro, eo, window=window)
    return {**out, "onset_f": float(f), "onset_precision": float(p), "onset_recall": float(r)}


# ------------------------------------------------------------------------------------------- comb
def comb_share(
    x: np.ndarray,
    sample_rate: int,
    frame_rate: float,
    half_width: float = COMB_HALF_WIDTH_HZ,
    f_max: float = COMB_MAX_HZ,
) -> float:
    """Share of the long-term average spectrum of `x` (mono [T]) from frame_rate/2 to
    f_max + frame_rate/2 that lies within ±half_width Hz of k x frame_rate (k >= 1, k x frame_rate
    <= f_max). Welch, Hann, bins of frame_rate / round(frame_rate) (1 Hz at 50 Hz: the comb's lines
    fall on bins); NaN for silence."""
    n_lines = int(f_max // frame_rate)
    if n_lines < 1 or len(x) == 0:
        return NAN
    df = frame_rate / max(1, round(frame_rate))
    nfft = round(sample_rate / df)
    nperseg = min(nfft, len(x))
    freqs, power = scipy.signal.welch(
        x.astype(np.float64), fs=sample_rate, window="hann", nperseg=nperseg, noverlap=nperseg // 2, nfft=nfft
    )
    band = (freqs >= frame_rate / 2) & (freqs < n_lines * frame_rate + frame_rate / 2)
    total = float(power[band].sum())
    if total <= 1e-20:
        return NAN
    k = np.round(freqs / frame_rate)
    on_comb = band & (k >= 1) & (k <= n_lines) & (np.abs(freqs - k * frame_rate) <= half_width + 1e-9)
    return float(power[on_comb].sum()) / total


def frame_rate_artifact(
    ref: np.ndarray, est: np.ndarray, sample_rate: int, frame_rate: float
) -> dict[str, float]:
    """artifact_score = comb_share(round trip) - comb_share(input), with both shares."""
    a, b = comb_share(ref, sample_rate, frame_rate), comb_share(est, sample_rate, frame_rate)
    return {"artifact_score": b - a, "comb_share_input": a, "comb_share_roundtrip": b}


# ------------------------------------------------------------------------------------------- codebooks
def codebook_stats(codes: Sequence[np.ndarray], bins: int) -> dict[str, list[float]]:
    """Pooled over `codes` (each [n_q, F] ints): per codebook `usage` (fraction of the `bins` entries
    used), `perplexity` (exp entropy in nats of the code histogram) and `frames`."""
    codes = [np.asarray(c).reshape(np.asarray(c).shape[-2], -1) for c in codes if np.asarray(c).size]
    if not codes:
        return {"usage": [], "perplexity": [], "frames": []}
    n_q = codes[0].shape[0]
    usage, perplexity, frames = [], [], []
    for q in range(n_q):
        hist = np.zeros(bins, np.int64)
        for c in codes:
            hist += np.bincount(c[q].astype(np.int64), minlength=bins)[:bins]
        p = hist[hist > 0] / hist.sum()
        usage.append(float((hist > 0).sum()) / bins)
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())))
        frames.append(float(hist.sum()))
    return {"usage": usage, "perplexity": perplexity, "frames": frames}


# ------------------------------------------------------------------------------------------- songs
def stem_metrics(
    stem: str, ref: np.ndarray, est: np.ndarray, sample_rate: int, frame_rate: float
) -> dict[str, float]:
    """The musician's metrics of one stem's round trip `est` vs input `ref` (mono [T]): the
    frame-rate artifact for every stem, plus pitch (bass), chroma (other) or onsets (drums)."""
    out = frame_rate_artifact(ref, est, sample_rate, frame_rate)
    kind = STEM_METRICS.get(stem)
    if kind == "pitch":
        out.update(pitch_metrics(pitch_track(ref, sample_rate), pitch_track(est, sample_rate)))
    elif kind == "chroma":
        out.update(chroma_metrics(ref, est, sample_rate))
    elif kind == "onsets":
        out.update(onset_metrics(ref, est, sample_rate))
    return out


def codec_song_metrics(
    model: Any, stems: Mapping[str, torch.Tensor], sample_rate: int
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Round-trip each stem {stem: [C, T]} once through its codec; returns ({stem: metrics}, {stem:
    codes [n_q, F]}): SI-SNR, mel distance, bitrate (as `codec_fidelity`) and `stem_metrics`."""
    metrics: dict[str, dict[str, float]] = {}
    codes: dict[str, np.ndarray] = {}
    for stem, wav in stems.items():
        if stem not in model.layout.stems:
            continue
        codec = model.codec.codecs[stem]
        x, c, recon = round_trip(codec, wav, sample_rate, model.device)
        m = fidelity_metrics(codec, x, recon)
        m.update(stem_metrics(stem, to_mono(x[0]), to_mono(recon[0]), codec.sample_rate, codec.frame_rate))
        metrics[stem] = m
        codes[stem] = c[0].numpy()
    return metrics, codes
