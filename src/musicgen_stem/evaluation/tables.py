"""Markdown tables of codec comparisons: one column per model (`comparison_table`) and the
pure-tone probe per note (`tone_table`); `METRIC_NOTE` is their legend."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["METRIC_NOTE", "comparison_table", "tone_table"]

#: (stem or None for every stem, metric key, label, better: "up" / "down" / "").
TABLE_ROWS: tuple[tuple[str | None, str, str, str], ...] = (
    ("bass", "pitch_median_cents", "pitch: median abs error vs input (cents)", "down"),
    ("bass", "pitch_within_50c", "pitch: frames within 50 cents", "up"),
    ("bass", "voicing_recall", "pitch: voicing recall", "up"),
    ("bass", "raw_pitch_accuracy", "pitch: raw pitch accuracy (mir_eval, 50 c)", "up"),
    ("other", "chroma_corr", "chroma correlation", "up"),
    ("drums", "onset_f", "onset F-measure (±30 ms)", "up"),
    (None, "artifact_score", "frame-rate artifact (comb share Δ)", "down"),
    (None, "mel_distance", "multi-scale mel distance", "down"),
    (None, "si_snr_db", "SI-SNR (dB)", "up"),
    (None, "bitrate_bps", "bitrate (kbps)", ""),
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


#: A short legend of the comparison table (full definitions: the docstrings of `codec_metrics` and `probes`).
METRIC_NOTE = (
    "Pitch: pYIN at 16 kHz (30-400 Hz), cents over frames voiced in both; chroma: mean per-frame "
    "Pearson of CQT chroma over frames with energy; onsets: librosa onsets matched by mir_eval within "
    "±30 ms; frame-rate artifact: share of the long-term spectrum (25-2025 Hz) within ±2 Hz of "
    "multiples of the frame rate, round trip minus input (0: clean, ~1: a comb); codebook usage: "
    "fraction of entries used, perplexity: exp entropy of the code histogram (both pooled over songs); "
    "song metrics are means over songs."
)


FIDELITY_KEYS = ("mel_distance", "si_snr_db", "bitrate_bps")


def comparison_table(summaries: Mapping[str, Mapping[str, Any]], fidelity: bool = True) -> list[str]:
    """Markdown lines: one column per model ({name: evaluate_codec summary}), one row per metric
    (without mel distance, SI-SNR and bitrate unless `fidelity`)."""
    names = list(summaries)
    stems: list[str] = []
    for s in summaries.values():
        stems += [k for k in s.get("metrics", {}) if k not in stems]
    arrow = {"up": " ↑", "down": " ↓", "": ""}
    lines = ["| stem | metric | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]

    def row(stem: str, label: str, cells: list[str]) -> None:
        lines.append(f"| {stem} | {label} | " + " | ".join(cells) + " |")

    for want, key, label, better in TABLE_ROWS:
        if not fidelity and key in FIDELITY_KEYS:
            continue
        for stem in stems if want is None else [want]:
            if stem not in stems:
                continue
            vals = [s.get("metrics", {}).get(stem, {}).get(key) for s in summaries.values()]
            if key == "bitrate_bps":
                vals = [v / 1000 if isinstance(v, float) else v for v in vals]
            row(stem, label + arrow[better], [_fmt(v) for v in vals])
    for stem in stems:
        cb = [s.get("codebooks", {}).get(stem, {}) for s in summaries.values()]
        row(
            stem,
            "codebook usage (per codebook) ↑",
            [" / ".join(_fmt(u, 4) for u in c.get("usage", [])) or "–" for c in cb],
        )
        row(
            stem,
            "codebook perplexity (per codebook) ↑",
            [" / ".join(_fmt(u, 1) for u in c.get("perplexity", [])) or "–" for c in cb],
        )
    probes = [s.get("probes") or {} for s in summaries.values()]
    if any(probes):
        tones = [p.get("pure_tones", {}) for p in probes]
        line = [p.get("bass_line", {}) for p in probes]
        stem = next((p["stem"] for p in probes if p), "bass")
        row(
            f"probe ({stem})",
            "pure tones E1–G3: peak within ±25 c ↑",
            [f"{t['passed']}/{t['total']}" if t else "–" for t in tones],
        )
        row(
            f"probe ({stem})",
            "bass line A1 C2 E2 G2: notes with distinct codes ↑",
            [f"{b['distinct_note_codes']}/{len(b['notes'])}" if b else "–" for b in line],
        )
        row(
            f"probe ({stem})",
            "bass line: code overlap between notes (Jaccard) ↓",
            [_fmt(b.get("code_jaccard")) for b in line],
        )
        row(
            f"probe ({stem})",
            "bass line: pYIN median abs error vs input (cents) ↓",
            [_fmt(b.get("pitch_median_cents"), 1) for b in line],
        )
        row(
            f"probe ({stem})",
            "bass line: pYIN median abs error vs written notes (cents) ↓",
            [_fmt(b.get("median_cents_vs_notes"), 1) for b in line],
        )
        row(f"probe ({stem})", "bass line: voicing recall ↑", [_fmt(b.get("voicing_recall")) for b in line])
    return lines


def tone_table(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown lines: the pure-tone probe per note, strongest peak (Hz, cents) per model."""
    tones = {n: (s.get("probes") or {}).get("pure_tones") for n, s in summaries.items()}
    tones = {n: t for n, t in tones.items() if t}
    if not tones:
        return []
    lines = [
        "| note | Hz | " + " | ".join(f"{n}: peak Hz (cents)" for n in tones) + " |",
        "|---|---:|" + "---:|" * len(tones),
    ]
    first = next(iter(tones.values()))["notes"]
    for i, r in enumerate(first):
        cells = []
        for t in tones.values():
            q = t["notes"][i]
            mark = "✓" if q["passed"] else "✗"
            cells.append(f"{_fmt(q['peak_hz'], 1)} ({_fmt(q['cents'], 0)}) {mark}")
        lines.append(f"| {r['note']} | {r['hz']:.1f} | " + " | ".join(cells) + " |")
    return lines
