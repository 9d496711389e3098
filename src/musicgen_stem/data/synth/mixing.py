"""Per-stem mixing with Spotify's pedalboard: EQ, compression, gentle saturation, peak limiting, a shared
reverb room, and a genre-typical level balance with a common gain that keeps the mix below -1 dBFS.

:func:`draw_mix` draws the settings of one song from its genre (random but seeded); :func:`mix_stems`
applies them to the raw FluidSynth renders. Every stem is processed on its own, so the mix stays exactly
the sum of the stems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .genres import Genre

REF_DB = -20.0  # parts and stems are brought to this RMS (dBFS) before the effects
PEAK_LIMIT_DB = -1.0
FADE_S = 0.03
LIMITER_RELEASE_MS = 80.0


@dataclass(frozen=True)
class StemFx:
    """Effect chain of one stem: filters and EQ, compressor, saturation, reverb send."""

    highpass_hz: float
    lowpass_hz: float
    low_shelf_hz: float
    low_shelf_db: float
    peak_hz: float
    peak_db: float
    peak_q: float
    high_shelf_hz: float
    high_shelf_db: float
    comp_threshold_db: float  # relative to the stem's RMS
    comp_ratio: float
    comp_attack_ms: float
    comp_release_ms: float
    drive_db: float  # tanh saturation drive, gain compensated; 0 = off
    limit_crest_db: float  # limiter ceiling above the stem's RMS (bus limiting of the peaks)
    reverb_send: float  # wet level of the song's reverb room


@dataclass(frozen=True)
class MixSettings:
    """The mix of one song: one reverb room shared by all stems, per-stem chains and target levels."""

    room_size: float
    damping: float
    predelay_ms: float
    reverb_highpass_hz: float
    levels_db: dict[str, float]  # target RMS per stem (dBFS), before the common peak-safety gain
    lead_db: float  # lead part over the harmony part inside the "other" stem
    stems: dict[str, StemFx]

    def reverb_amounts(self) -> dict[str, int]:
        """Reverb send per stem on a MIDI-like 0-127 scale."""
        return {s: int(round(min(1.0, fx.reverb_send / 0.5) * 127)) for s, fx in self.stems.items()}


# Per stem: (low, high) ranges of the StemFx fields that are drawn uniformly.
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "bass": {
        "highpass_hz": (25, 45), "lowpass_hz": (4000, 9000), "low_shelf_hz": (70, 140),
        "low_shelf_db": (-2, 3), "peak_hz": (400, 1500), "peak_db": (-4, 2), "peak_q": (0.7, 2.0),
        "high_shelf_hz": (2500, 6000), "high_shelf_db": (-4, 1), "comp_threshold_db": (-10, -4),
        "comp_ratio": (2.5, 5), "comp_attack_ms": (5, 30), "comp_release_ms": (60, 200),
        "drive_db": (1, 7), "limit_crest_db": (10, 14), "reverb_send": (0.0, 0.04),
    },
    "drums": {
        "highpass_hz": (25, 50), "lowpass_hz": (11000, 14500), "low_shelf_hz": (60, 120),
        "low_shelf_db": (-2, 3), "peak_hz": (300, 5000), "peak_db": (-4, 2), "peak_q": (0.7, 2.0),
        "high_shelf_hz": (6000, 10000), "high_shelf_db": (-2, 3), "comp_threshold_db": (-12, -4),
        "comp_ratio": (2, 5), "comp_attack_ms": (2, 25), "comp_release_ms": (40, 150),
        "drive_db": (0, 4), "limit_crest_db": (13, 17), "reverb_send": (0.05, 0.2),
    },
    "other": {
        "highpass_hz": (50, 120), "lowpass_hz": (8000, 14000), "low_shelf_hz": (150, 300),
        "low_shelf_db": (-4, 1), "peak_hz": (400, 3000), "peak_db": (-3, 3), "peak_q": (0.7, 2.0),
        "high_shelf_hz": (6000, 10000), "high_shelf_db": (-2, 3), "comp_threshold_db": (-10, -3),
        "comp_ratio": (1.5, 3.5), "comp_attack_ms": (5, 40), "comp_release_ms": (80, 250),
        "drive_db": (0, 4), "limit_crest_db": (12, 16), "reverb_send": (0.12, 0.35),
    },
}  # fmt: skip


def draw_mix(g: Genre, rng: np.random.Generator) -> MixSettings:
    """Random mix settings of one song for genre ``g`` (deterministic given ``rng``'s state)."""

    def u(lo: float, hi: float, nd: int = 2) -> float:
        return round(float(rng.uniform(lo, hi)), nd)

    stems = {}
    for stem, ranges in _RANGES.items():
        vals = {k: u(*r) for k, r in ranges.items()}
        vals["drive_db"] = round(vals["drive_db"] * g.drive, 2)
        vals["reverb_send"] = round(min(0.6, vals["reverb_send"] * g.reverb), 3)
        stems[stem] = StemFx(**vals)
    drums = u(-22.5, -19.5)
    levels = {
        "bass": round(drums + u(*g.bass_db), 2),
        "drums": drums,
        "other": round(drums + u(*g.other_db), 2),
    }
    return MixSettings(
        room_size=u(*g.room),
        damping=u(0.3, 0.8),
        predelay_ms=u(5, 35, 1),
        reverb_highpass_hz=u(150, 400, 0),
        levels_db=levels,
        lead_db=u(1, 4),
        stems=stems,
    )


def _rms_db(x: np.ndarray) -> float:
    return 20 * float(np.log10(max(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), 1e-9)))


def _to_db(x: np.ndarray, target_db: float) -> tuple[np.ndarray, float]:
    """Scale ``x`` to RMS ``target_db`` (gain limited to +-40 dB; silence stays silent)."""
    if not len(x) or not np.any(x):
        return x.astype(np.float32), 0.0
    gain_db = float(np.clip(target_db - _rms_db(x), -40, 40))
    return (x * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db


def process_stem(x: np.ndarray, fx: StemFx, mix: MixSettings, sample_rate: int) -> np.ndarray:
    """One stem through its chain (input at :data:`REF_DB` RMS): EQ, compressor, saturation, limiter,
    reverb (none of them adds latency: the stem stays aligned with the beat grid)."""
    import pedalboard as pb

    chain = [
        pb.HighpassFilter(fx.highpass_hz),
        pb.LowShelfFilter(fx.low_shelf_hz, fx.low_shelf_db, 0.707),
        pb.PeakFilter(fx.peak_hz, fx.peak_db, fx.peak_q),
        pb.HighShelfFilter(fx.high_shelf_hz, fx.high_shelf_db, 0.707),
        pb.LowpassFilter(fx.lowpass_hz),
        pb.Compressor(REF_DB + fx.comp_threshold_db, fx.comp_ratio, fx.comp_attack_ms, fx.comp_release_ms),
    ]
    if fx.drive_db > 0:
        chain += [pb.Distortion(fx.drive_db), pb.Gain(-fx.drive_db)]
    dry = pb.Pedalboard(chain)(x.astype(np.float32), sample_rate)
    if np.any(dry):  # peak limiter: a fast 20:1 compressor, then clipping of what overshoots
        ceiling = _rms_db(dry) + fx.limit_crest_db
        limiter = [pb.Compressor(ceiling, 20.0, 1.0, LIMITER_RELEASE_MS), pb.Clipping(ceiling + 1.5)]
        dry = pb.Pedalboard(limiter)(dry, sample_rate)
    if fx.reverb_send <= 0:
        return dry
    room = pb.Pedalboard(
        [
            pb.Delay(mix.predelay_ms / 1000, 0.0, 1.0),
            pb.Reverb(mix.room_size, mix.damping, 1.0, 0.0),
            pb.HighpassFilter(mix.reverb_highpass_hz),
        ]
    )
    return (dry + np.float32(fx.reverb_send) * room(dry, sample_rate)).astype(np.float32)


def mix_stems(
    parts: dict[str, dict[str, np.ndarray]], mix: MixSettings, sample_rate: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Raw part renders ``{stem: {role: audio}}`` -> mixed stems ``{stem: float32 [T]}`` and level info.

    Parts of a stem are balanced (the lead ``lead_db`` over the harmony) and summed; each stem goes through
    :func:`process_stem`, is faded out over the last 30 ms and set to its target RMS; then one common gain
    keeps the mix peak below -1 dBFS.
    """
    stems: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for stem, roles in parts.items():
        summed = None
        for role, x in roles.items():
            y, _ = _to_db(x, REF_DB + (mix.lead_db if role == "lead" else 0.0))
            summed = y if summed is None else summed + y
        assert summed is not None, stem
        x, _ = _to_db(summed, REF_DB)
        y = process_stem(x, mix.stems[stem], mix, sample_rate)
        n = len(y)
        k = min(n, int(FADE_S * sample_rate))
        if k:
            y[n - k :] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
        stems[stem], gains[stem] = _to_db(y, mix.levels_db[stem])
    total = sum(stems.values())
    peak = float(np.max(np.abs(total))) if np.size(total) else 0.0
    song_gain_db = 0.0
    limit = 10 ** (PEAK_LIMIT_DB / 20)
    if peak > limit:
        song_gain_db = 20 * float(np.log10(limit / peak))
        g = np.float32(10 ** (song_gain_db / 20))
        stems = {s: (x * g).astype(np.float32) for s, x in stems.items()}
    total = sum(stems.values())
    info = {
        "stem_gain_db": {s: round(v, 3) for s, v in gains.items()},
        "song_gain_db": round(song_gain_db, 3),
        "rms_dbfs": {s: round(_rms_db(x), 2) for s, x in stems.items()},
        "mix_peak": round(float(np.max(np.abs(total))) if np.size(total) else 0.0, 4),
    }
    return stems, info
