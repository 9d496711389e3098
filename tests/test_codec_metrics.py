"""Codec metrics as a musician hears them: known "codecs" (identity, pitch shift, constant tone, delay,
gate, a pitch-blind tiny StemCodec) must score as expected."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musicgen_stem.codec import CodecConfig, StemCodec
from musicgen_stem.evaluation.codec_metrics import (
    PitchTrack,
    chroma_metrics,
    codebook_stats,
    comb_share,
    frame_rate_artifact,
    onset_metrics,
    pitch_metrics,
)
from musicgen_stem.evaluation.probes import (
    bass_line_check,
    codec_round_trip,
    decaying_tone,
    midi_hz,
    pure_tone_check,
    strongest_peak_hz,
)
from musicgen_stem.evaluation.tables import comparison_table

SR = 32000
FRAME_RATE = 50.0
HOP = 640


def _codes(batch: np.ndarray, win: int = 4096) -> np.ndarray:
    """Frame-wise codes of a 'codec' that has none of its own: the MIDI note of the strongest partial
    in a 128 ms window around each frame (0 where silent), [B, 1, F]."""
    b, t = batch.shape
    f = -(-t // HOP)
    padded = np.pad(batch, ((0, 0), (win // 2, f * HOP - t + win // 2)))
    starts = np.arange(f) * HOP + HOP // 2
    frames = np.stack([padded[:, s : s + win] for s in starts], axis=1)  # [B, F, win]
    nfft = 16384  # ~2 Hz bins
    mag = np.abs(np.fft.rfft(frames * np.hanning(win), nfft, axis=-1))
    mag[..., : 20 * nfft // SR] = 0
    hz = np.maximum(mag.argmax(-1), 1) * SR / nfft
    midi = np.round(69 + 12 * np.log2(hz / 440.0)).astype(np.int64)
    return np.where(mag.max(-1) > 1e-3, midi, 0)[:, None]


def identity(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return batch.copy(), _codes(batch)


def pitch_shift(cents: float):
    """A 'codec' that plays the audio faster by `cents` (pitch up), same length."""
    ratio = 2 ** (cents / 1200)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(batch.shape[1])
        out = np.stack([np.interp(t * ratio, t, x, right=0.0) for x in batch]).astype(np.float32)
        return out, _codes(out)

    return run


def constant_tone(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every frame becomes the same 150 Hz tone (one code); no bass-line or probe note is within
    50 cents of it."""
    t = np.arange(batch.shape[1]) / SR
    out = np.broadcast_to(0.3 * np.sin(2 * np.pi * 150.0 * t), batch.shape).astype(np.float32)
    return out, np.zeros((batch.shape[0], 1, -(-batch.shape[1] // HOP)), np.int64)


def gate(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Silences the second half of every 0.5 s."""
    out = batch.copy()
    out[:, (np.arange(batch.shape[1]) % (SR // 2)) >= SR // 4] = 0.0
    return out, _codes(out)


def clicks(times: np.ndarray, dur: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(int(dur * SR), np.float32)
    n = int(0.02 * SR)
    for t in times:
        i = int(t * SR)
        m = min(n, len(x) - i)
        x[i : i + m] += 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.003 * SR))
    return x


def chords(roots: list[int], seg: float = 0.5) -> np.ndarray:
    """Major triads (3 partials per note), `seg` s each."""
    parts = []
    for r in roots:
        parts.append(
            sum(decaying_tone(midi_hz(m), SR, seg, (1, 0.5, 0.3), tau=1.0) for m in (r, r + 4, r + 7))
        )
    return np.concatenate(parts).astype(np.float32)


# ------------------------------------------------------------------------------ bass line / pitch
def test_identity_bass_line_is_perfect():
    out = bass_line_check(identity, FRAME_RATE, SR, seconds=0.5)
    assert out["pitch_median_cents"] == 0.0
    assert out["pitch_within_50c"] == 1.0 and out["voicing_recall"] == 1.0
    assert out["raw_pitch_accuracy"] == 1.0
    assert out["median_cents_vs_notes"] < 15  # pYIN's 10-cent grid
    assert out["codes_differ"] and out["distinct_note_codes"] == 4
    assert out["note_modal_codes"] == [[33], [36], [40], [43]]
    notes = [midi_hz(m) for m in (33, 36, 40, 43)]
    assert np.allclose(out["note_median_hz"], notes, rtol=0.01)


def test_constant_tone_codec_is_flagged():
    out = bass_line_check(constant_tone, FRAME_RATE, SR, seconds=0.5)
    assert out["pitch_median_cents"] > 300 and out["pitch_within_50c"] < 0.1
    assert out["raw_pitch_accuracy"] < 0.1
    assert not out["codes_differ"] and out["distinct_note_codes"] == 1 and out["code_jaccard"] == 1.0
    assert pure_tone_check(constant_tone, SR)["passed"] == 0


def test_gated_codec_has_low_voicing_recall():
    out = bass_line_check(gate, FRAME_RATE, SR, seconds=0.5)
    assert 0.3 < out["voicing_recall"] < 0.7
    assert out["pitch_median_cents"] < 15  # what is left is in tune


def test_pitch_metrics_match_a_direct_computation():
    rng = np.random.default_rng(0)
    n = 400
    ref_f = rng.uniform(40, 300, n)
    est_f = ref_f * 2 ** (rng.normal(0, 60, n) / 1200)
    ref_v, est_v = rng.random(n) < 0.8, rng.random(n) < 0.7
    t = np.arange(n) * 0.02
    m = pitch_metrics(PitchTrack(t, ref_f, ref_v), PitchTrack(t, est_f, est_v))
    both = ref_v & est_v
    cents = np.abs(1200 * np.log2(est_f / ref_f))
    assert m["voicing_recall"] == pytest.approx(both.sum() / ref_v.sum())
    assert m["pitch_within_50c"] == pytest.approx((cents[both] < 50).mean())
    assert m["raw_pitch_accuracy"] == pytest.approx((cents[ref_v] < 50).mean())
    assert m["pitch_median_cents"] == pytest.approx(np.median(cents[both]))
    silent = pitch_metrics(PitchTrack(t, ref_f, ~ref_v & False), PitchTrack(t, est_f, est_v))
    assert np.isnan(silent["pitch_median_cents"]) and np.isnan(silent["voicing_recall"])


# ------------------------------------------------------------------------------ pure tones
def test_pure_tone_peak_check():
    assert strongest_peak_hz(decaying_tone(midi_hz(28), SR), SR) == pytest.approx(midi_hz(28), rel=0.002)
    clean = pure_tone_check(identity, SR)
    assert clean["total"] == 28 and clean["passed"] == 28 and clean["pass_fraction"] == 1.0
    assert max(abs(r["cents"]) for r in clean["notes"]) < 3
    assert [r["note"] for r in clean["notes"]][:2] == ["E1", "F1"] and clean["notes"][-1]["note"] == "G3"
    assert pure_tone_check(pitch_shift(10), SR, notes=(28, 40, 55))["passed"] == 3
    shifted = pure_tone_check(pitch_shift(100), SR, notes=(28, 40, 55))
    assert shifted["passed"] == 0
    assert all(abs(r["cents"] - 100) < 5 for r in shifted["notes"])
    assert pure_tone_check(pitch_shift(40), SR, notes=(28, 40, 55))["passed"] == 0


# ------------------------------------------------------------------------------ chroma / onsets
def test_chroma_identity_and_transposed():
    x = chords([60, 65, 67, 60])
    assert chroma_metrics(x, x, SR)["chroma_corr"] == pytest.approx(1.0)
    (tritone,), _ = pitch_shift(600)(x[None])
    assert chroma_metrics(x, tritone, SR)["chroma_corr"] < 0.3
    assert chroma_metrics(x, np.zeros_like(x), SR)["chroma_corr"] == 0.0
    assert np.isnan(chroma_metrics(np.zeros_like(x), x, SR)["chroma_corr"])


def test_onset_f_measure_window():
    times = np.arange(0.1, 1.9, 0.25)
    x = clicks(times, 2.0)
    assert onset_metrics(x, x, SR)["onset_f"] == 1.0
    assert onset_metrics(x, np.roll(x, int(0.01 * SR)), SR)["onset_f"] == 1.0  # 10 ms late: inside ±30 ms
    assert onset_metrics(x, np.roll(x, int(0.06 * SR)), SR)["onset_f"] == 0.0  # 60 ms late
    assert np.isnan(onset_metrics(np.zeros_like(x), x, SR)["onset_f"])


# ------------------------------------------------------------------------------ frame-rate comb
def test_frame_rate_artifact():
    x = decaying_tone(midi_hz(33), SR, 2.0, (1, 0.5, 0.25), tau=1.0)  # A1: lines at 55, 110... Hz
    assert frame_rate_artifact(x, x, SR, FRAME_RATE)["artifact_score"] == 0.0
    assert comb_share(x, SR, FRAME_RATE) < 0.05
    t = np.arange(len(x)) / SR
    comb = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 41)).astype(np.float32)
    m = frame_rate_artifact(x, x + 0.5 * comb, SR, FRAME_RATE)
    assert m["artifact_score"] > 0.5 and m["comb_share_roundtrip"] > 0.5
    assert frame_rate_artifact(comb, comb, SR, FRAME_RATE)["artifact_score"] == 0.0  # music on the comb
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    assert 0.05 < comb_share(noise, SR, FRAME_RATE) < 0.2  # ~ 5 of every 50 bins
    assert np.isnan(comb_share(np.zeros_like(x), SR, FRAME_RATE))


# ------------------------------------------------------------------------------ codebooks, a real codec
def test_codebook_stats():
    s = codebook_stats([np.array([[0, 1, 2, 3], [5, 5, 5, 5]]), np.array([[3, 2, 1, 0], [5, 5, 5, 5]])], 8)
    assert s["usage"] == [0.5, 0.125]
    assert s["perplexity"][0] == pytest.approx(4.0) and s["perplexity"][1] == pytest.approx(1.0)
    assert s["frames"] == [8.0, 8.0]


def test_pitch_blind_stem_codec_is_caught():
    """An untrained tiny StemCodec (codebooks all zero: one code) decodes every frame alike."""
    torch.manual_seed(0)
    codec = StemCodec(dataclasses.replace(CodecConfig.tiny(1), bins=16)).eval()
    rt = codec_round_trip(codec)
    x = decaying_tone(midi_hz(33), SR, 1.0, (1, 0.5, 0.25))
    (y,), codes = rt(x[None])
    assert y.shape == x.shape and codes.shape == (1, 1, 50)
    assert frame_rate_artifact(x, y, SR, codec.frame_rate)["artifact_score"] > 0.8
    tones = pure_tone_check(rt, SR, notes=(28, 33, 45))
    assert tones["passed"] == 0
    line = bass_line_check(rt, codec.frame_rate, SR, seconds=0.5)
    assert not line["codes_differ"] and line["pitch_within_50c"] < 0.1
    stats = codebook_stats([codes[0]], codec.card)
    assert stats["usage"] == [1 / 16] and stats["perplexity"] == [1.0]
    summary = {
        "metrics": {"bass": {"pitch_median_cents": line["pitch_median_cents"], "artifact_score": 0.9}},
        "codebooks": {"bass": stats},
        "probes": {"stem": "bass", "pure_tones": tones, "bass_line": line},
    }
    md = "\n".join(comparison_table({"tiny": summary, "other model": {}}))
    assert "| probe (bass) | pure tones E1–G3: peak within ±25 c ↑ | 0/3 | – |" in md
    assert "| bass | codebook usage (per codebook) ↑ | 0.0625 | – |" in md
