"""Evaluation report: `report.json`, `report.md` (summary tables) and PNG plots, written atomically.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MusicGenStemError
from ..outputs import _write_atomic
from .runner import CONDITIONS, EvaluationResult
from .tables import METRIC_NOTE, comparison_table, tone_table

__all__ = ["markdown_summary", "write_report"]


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars/arrays -> Python values."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _edit_table(r: EvaluationResult) -> list[str]:
    thresholds = r.summary.get("onset_thresholds") or {}
    onsets = ", ".join(f"{s} {t:g}" for s, t in thresholds.items())
    lines = [
        f"Regenerated: {', '.join(r.summary['regenerate'])}; kept: {', '.join(r.summary['kept']) or 'none'}; "
        f"{r.summary['num_songs']} songs, {r.summary['duration']:g} s, seed {r.summary['seed']}"
        + (f"; onset thresholds: {onsets}." if onsets else "."),
        "",
        "| stem | metric | " + " | ".join(c.replace("_", " ") for c in CONDITIONS) + " |",
        "|---|---|" + "---:|" * len(CONDITIONS),
    ]
    for stem, conds in r.summary["metrics"].items():
        names = list(next(iter(conds.values())))
        for m in names:
            vals = [_fmt(conds.get(c, {}).get(m)) for c in CONDITIONS]
            lines.append(f"| {stem} | {m} | " + " | ".join(vals) + " |")
    return lines


def _codec_table(r: EvaluationResult) -> list[str]:
    lines = [
        f"{r.summary['num_songs']} songs.",
        "",
        "| stem | SI-SNR (dB) | mel distance | bitrate (kbps) | n_q | bins | frame rate (Hz) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stem, m in r.summary["metrics"].items():
        kbps = m.get("bitrate_bps", float("nan")) / 1000
        lines.append(
            f"| {stem} | {_fmt(m.get('si_snr_db'))} | {_fmt(m.get('mel_distance'))} | {_fmt(kbps)} | "
            f"{_fmt(int(m['n_q']))} | {_fmt(int(m['bins']))} | {_fmt(m.get('frame_rate'))} |"
        )
    lines += ["", "What a musician hears (round trip vs input; ↑ / ↓: higher / lower is better):", ""]
    lines += comparison_table({"value": r.summary}, fidelity=False)
    tones = tone_table({"round trip": r.summary})
    if tones:
        lines += ["", "Pure tones through the bass codec (strongest peak of the round trip):", ""] + tones
    lines += ["", METRIC_NOTE]
    return lines


def _generate_table(r: EvaluationResult) -> list[str]:
    s = r.summary
    lines = [
        f"{s['num_generated']} generated vs {s['num_reference']} reference items, {s['duration']:g} s.",
        "",
        "| embedding | dims | Fréchet distance |",
        "|---|---:|---:|",
    ]
    for name, fd in s["frechet_distance"].items():
        lines.append(f"| {name} | {s['embedding_dims'][name]} | {_fmt(fd)} |")
    return lines


def _text_table(r: EvaluationResult) -> list[str]:
    s = r.summary
    span = s.get("tempo_range_bpm")
    conds = ("generated", "ground_truth", "shuffled")
    lines = [
        f"{s['num_prompts']} prompts, {s['duration']:g} s, seed {s['seed']}"
        + (f", tempi {span[0]:g}-{span[1]:g} BPM" if span else "")
        + f", instrument bank of {s['num_reference_songs']} songs.",
        "",
        "| metric | " + " | ".join(c.replace("_", " ") for c in conds) + " |",
        "|---|" + "---:|" * len(conds),
    ]
    names = list(dict.fromkeys(k for c in conds for k in s["metrics"].get(c, {})))
    for m in names:
        lines.append(f"| {m} | " + " | ".join(_fmt(s["metrics"].get(c, {}).get(m)) for c in conds) + " |")
    return lines


def markdown_summary(results: Sequence[EvaluationResult], config: dict[str, Any] | None = None) -> str:
    """The Markdown report: one section (table + notes) per task."""
    titles = {
        "edit": "Editing coherence",
        "codec": "Codec fidelity",
        "generate": "Generation distribution",
        "text": "Text control",
    }
    tables = {"edit": _edit_table, "codec": _codec_table, "generate": _generate_table, "text": _text_table}
    lines = ["# musicgen-stem evaluation", ""]
    if config:
        lines += [f"- {k}: {v}" for k, v in config.items()] + [""]
    for r in results:
        lines += [f"## {titles.get(r.task, r.task)}", ""]
        lines += tables[r.task](r) if r.task in tables else ["```", json.dumps(_json_safe(r.summary)), "```"]
        if r.notes:
            lines += [""] + [f"- {n}" for n in r.notes]
        lines.append("")
    if any(r.task == "edit" for r in results):
        lines += [
            "Editing baselines: *ground truth* is the song's own stem, *ground truth codec* the same after "
            "a codec round trip (the ceiling for generated audio), *shuffled* the same stem of another song "
            "(chance level).",
            "",
        ]
    return "\n".join(lines)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_edit_bars(r: EvaluationResult, path: Path) -> None:
    labels, values = [], {c: [] for c in CONDITIONS}
    for stem, conds in r.summary["metrics"].items():
        for m in next(iter(conds.values())):
            if m == "tempo_bpm":
                continue
            labels.append(f"{stem}\n{m}")
            for c in CONDITIONS:
                v = conds.get(c, {}).get(m)
                values[c].append(v if isinstance(v, float) and math.isfinite(v) else 0.0)
    fig = _figure(max(6.0, 1.3 * len(labels) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    width = 0.8 / len(CONDITIONS)
    for k, c in enumerate(CONDITIONS):
        ax.bar(x + (k - (len(CONDITIONS) - 1) / 2) * width, values[c], width, label=c.replace("_", " "))
    ax.set_xticks(x, [lb.replace("_", " ") for lb in labels], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (higher is better)")
    ax.set_title("Editing coherence: generated vs baselines")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _plot_codec_bars(r: EvaluationResult, path: Path) -> None:
    stems = list(r.summary["metrics"])
    panels = (
        ("si_snr_db", "SI-SNR (dB)"),
        ("mel_distance", "mel distance"),
        ("artifact_score", "frame-rate artifact"),
    )
    fig = _figure(11.0, 3.5)
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        vals = [r.summary["metrics"][s].get(key, float("nan")) for s in stems]
        ax.bar(stems, [v if math.isfinite(v) else 0.0 for v in vals])
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path)


def _plot_spectrograms(r: EvaluationResult, path: Path) -> None:
    import torch

    from ..dsp import MelSpectrogram

    items = list(r.examples.items())
    sr = r.sample_rate
    mel = MelSpectrogram(sr, 1024, 64, hop_length=256, log=True, normalized=True)
    fig = _figure(8.0, 1.8 * len(items) + 0.5)
    for k, (label, wav) in enumerate(items):
        ax = fig.add_subplot(len(items), 1, k + 1)
        with torch.no_grad():
            spec = mel(torch.from_numpy(np.asarray(wav, np.float32))[None, None])[0].numpy()
        dur = len(wav) / sr
        ax.imshow(
            spec, origin="lower", aspect="auto", extent=(0, dur, 0, spec.shape[0]), vmin=-5, cmap="magma"
        )
        ax.set_ylabel("mel band", fontsize=7)
        ax.set_title(label, fontsize=9)
    fig.axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path)


def write_report(
    out_dir: str | os.PathLike[str],
    results: Sequence[EvaluationResult],
    config: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write report.json, report.md and plots (`<task>_metrics.png`, `<task>_example.png`) into
    `out_dir` atomically (a temp folder renamed into place); an existing non-empty folder is refused
    unless `force` (OutputExistsError)."""
    if not results:
        raise MusicGenStemError("nothing to report: no evaluation task ran")
    payload = _json_safe({"config": config or {}, "results": [r.to_dict() for r in results]})

    def fill(tmp: Path) -> None:
        (tmp / "report.json").write_text(json.dumps(payload, indent=2) + "\n")
        (tmp / "report.md").write_text(markdown_summary(results, config))
        for r in results:
            if r.task == "edit":
                _plot_edit_bars(r, tmp / "edit_metrics.png")
            elif r.task == "codec":
                _plot_codec_bars(r, tmp / "codec_metrics.png")
            if r.examples:
                _plot_spectrograms(r, tmp / f"{r.task}_example.png")

    return _write_atomic(out_dir, force, fill)
