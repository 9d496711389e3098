"""How well `notes.transcribe` hears each stem, against the true `song.mid` of synthetic songs
(mir_eval; onsets within 50 ms, pitch within 50 cents, offsets ignored):

- bass: note F1 on the true stem and on its codec round trip (the notes the model's codes hold);
- drums: onset F1 of kick, snare and hi-hat (GM 35/36, 37-40, 42/44/46);
- other: frame multi-pitch accuracy (`mir_eval.multipitch`) of `pitch_activity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mido
import mir_eval
import numpy as np
import torch

from ..notes.midi import read_notes
from ..notes.transcribe import HIHAT, KICK, SNARE, Note, bass_notes, drum_hits, pitch_activity
from .runner import EvaluationResult, aggregate, load_songs

DRUM_CLASSES = {"kick": (KICK, {35, 36}), "snare": (SNARE, {37, 38, 39, 40}), "hihat": (HIHAT, {42, 44, 46})}
ONSET_TOLERANCE = 0.05
_PITCH_HOP = 256 / 22050  # `pitch_activity`'s frames


def note_f1(ref: Sequence[Note], est: Sequence[Note]) -> float:
    """mir_eval note F1: onsets within 50 ms, pitch within 50 cents, offsets ignored."""
    if not ref:
        return float("nan")
    if not est:
        return 0.0
    iv = lambda ns: np.array([[n.start, max(n.end, n.start + 0.01)] for n in ns])  # noqa: E731
    hz = lambda ns: mir_eval.util.midi_to_hz(np.array([n.pitch for n in ns], float))  # noqa: E731
    return float(
        mir_eval.transcription.precision_recall_f1_overlap(
            iv(ref), hz(ref), iv(est), hz(est), onset_tolerance=ONSET_TOLERANCE, offset_ratio=None
        )[2]
    )


def multipitch_accuracy(ref: Sequence[Note], audio: np.ndarray, sample_rate: int) -> float:
    """`mir_eval.multipitch` accuracy of `pitch_activity` against the notes sounding per frame."""
    active, _ = pitch_activity(audio, sample_rate)
    times = np.arange(active.shape[1]) * _PITCH_HOP
    ref_f = [
        mir_eval.util.midi_to_hz(np.array([n.pitch for n in ref if n.start <= t < n.end], float))
        for t in times
    ]
    est_f = [mir_eval.util.midi_to_hz(36.0 + np.nonzero(active[:, i])[0]) for i in range(active.shape[1])]
    return float(mir_eval.multipitch.evaluate(times, ref_f, times, est_f)["Accuracy"])


def song_notes(path: Path, seconds: float) -> dict[str, list[Note]] | None:
    """The true notes of a synthetic song folder (its song.mid: tracks bass, drums, other in order)
    up to `seconds`; None without one."""
    midi = path / "song.mid"
    if not midi.is_file():
        return None
    tracks = list(read_notes(mido.MidiFile(midi)).values())
    if len(tracks) < 3:
        return None
    return {
        s: [n for n in t if n.start < seconds]
        for s, t in zip(("bass", "drums", "other"), tracks, strict=False)
    }


def evaluate_transcription(
    model: Any, songs: Sequence[Any], duration: float | None = 10.0
) -> EvaluationResult:
    """Transcription of the true stems (and the bass's codec round trip) against song.mid."""
    loaded = load_songs(model, songs, duration)
    rows, notes = [], []
    for s in loaded:
        truth = song_notes(s.path, s.duration)
        if truth is None:
            notes.append(f"{s.name}: no song.mid with bass, drums and other tracks; skipped")
            continue
        mono = {k: v.mean(0).numpy() for k, v in s.stems.items()}
        metrics: dict[str, Any] = {
            "bass_note_f1": note_f1(truth["bass"], bass_notes(mono["bass"], s.sample_rate))
        }
        with torch.inference_mode():  # songs are loaded at the model's rate and channels
            codec = model.codec.codec("bass")
            decoded = (
                codec.decode(codec.encode(s.stems["bass"][None].to(model.device)))[0].float().cpu().numpy()
            )
        metrics["bass_codec_note_f1"] = note_f1(truth["bass"], bass_notes(decoded, model.sample_rate))
        hits = drum_hits(mono["drums"], s.sample_rate)
        for name, (gm, ref_notes) in DRUM_CLASSES.items():
            ref = np.array(sorted(n.start for n in truth["drums"] if n.pitch in ref_notes))
            est = np.array(sorted(h.start for h in hits if h.pitch == gm))
            if len(ref):
                metrics[f"{name}_onset_f1"] = float(mir_eval.onset.f_measure(ref, est, ONSET_TOLERANCE)[0])
        metrics["other_multipitch_accuracy"] = multipitch_accuracy(
            truth["other"], mono["other"], s.sample_rate
        )
        rows.append({"song": s.name, "metrics": metrics})
    summary = {"num_songs": len(rows), "duration": duration, "metrics": aggregate(rows, ["metrics"])}
    drums = [
        summary["metrics"][f"{k}_onset_f1"] for k in DRUM_CLASSES if f"{k}_onset_f1" in summary["metrics"]
    ]
    summary["drums_mean_onset_f1"] = float(np.mean(drums)) if drums else float("nan")
    return EvaluationResult("notes", summary, rows, notes, {}, model.sample_rate)
