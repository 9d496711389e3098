"""Evaluation runners: editing coherence, codec fidelity and generation distribution metrics.

Every score comes with baselines on the same scale: the ground-truth stem (as recorded, and after a
codec round trip, the best the model's codecs allow) and the same stem of another song ("shuffled").
Runs are deterministic: song `i` is edited / generated with seed `seed + i`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..conditioning.attributes import without_tempo
from ..conditioning.chords import ChordChart
from ..errors import MusicGenStemError
from .codec_metrics import codebook_stats, codec_song_metrics, pitch_track
from .distribution import codec_latent_embedding, external_embedders, frechet_distance, logmel_embedding
from .harmony import (
    KEY_SCORES,
    Key,
    chord_chroma,
    chord_span_correlation,
    chord_tone_ratio,
    chroma,
    chroma_correlation,
    estimate_key,
    key_relation,
)
from .probes import probe_metrics
from .rhythm import (
    ONSET_THRESHOLDS,
    TOLERANCE,
    beat_f_measure,
    detect_onsets,
    grid_fraction,
    grid_phase_lock,
    sixteenth_grid_fraction,
    track_beats,
)
from .songs import Song, find_songs, load_song

__all__ = [
    "CONDITIONS",
    "EvaluationResult",
    "PathLike",
    "Reference",
    "aggregate",
    "coherence_metrics",
    "evaluate_codec",
    "evaluate_editing",
    "evaluate_generation",
    "load_songs",
    "make_reference",
]

#: Conditions of the editing evaluation, in report order.
CONDITIONS = ("generated", "ground_truth", "ground_truth_codec", "shuffled")
UNPITCHED = ("drums",)
MONOPHONIC = ("bass",)  # stems whose notes pYIN can read (chord_tones)
EDIT_PROMPTS = ("captions", "no-tempo", "none")  # what an edit reads: see `evaluate_editing`
EDIT_CHORDS = ("estimated", "truth", "none")  # the chords an edit reads: see `evaluate_editing`
HOP = 0.1  # chroma hop (s)
PathLike = str | os.PathLike[str]


@dataclass
class EvaluationResult:
    """One task's results: `summary` (aggregated, JSON-ready), `per_song` rows, notes, and `examples`
    {label: mono audio [T]} at `sample_rate` for plots (not serialised)."""

    task: str
    summary: dict[str, Any]
    per_song: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    sample_rate: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "summary": self.summary, "per_song": self.per_song, "notes": self.notes}


@dataclass
class Reference:
    """What a new stem is judged against: beat grid (s), chroma of the kept pitched stems and of the
    ground-truth chords ([12, N] at `HOP` s), the key, and the swing of the song's 8ths and 16ths
    (`rhythm.sixteenth_grid`; 0, 0: straight); `source` says where each came from."""

    beats: np.ndarray
    kept_chroma: np.ndarray | None
    chord_chroma: np.ndarray | None
    key: Key | None
    source: dict[str, str]
    swing: tuple[float, float] = (0.0, 0.0)


def _mix(stems: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor | None:
    """Sum of the named stems [C, T], or None if there are none or they are silent."""
    if not names:
        return None
    x = torch.stack([stems[n] for n in names]).sum(0)
    return x if float(x.abs().max()) > 0 else None


def make_reference(song: Song, kept: Sequence[str], duration: float) -> Reference:
    """Ground truth from meta.json when present, else beats tracked on / key estimated from the kept stems."""
    meta = song.meta or {}
    sr = song.sample_rate
    source: dict[str, str] = {}
    kept_mix = _mix(song.stems, list(kept))
    if meta.get("beats"):
        beats = np.array([b for b in meta["beats"] if 0 <= b <= duration], dtype=np.float64)
        source["beats"] = "meta.json"
    elif kept_mix is not None:
        beats, _ = track_beats(kept_mix, sr)
        source["beats"] = f"tracked on {'+'.join(kept)}"
    else:
        beats = np.zeros(0)
        source["beats"] = "none (kept stems are silent)"
    pitched = _mix(song.stems, [s for s in kept if s not in UNPITCHED])
    kept_chroma = None if pitched is None else chroma(pitched, sr, hop_seconds=HOP)
    chords = None
    if meta.get("chords"):
        n = int(math.ceil(song.duration / HOP)) + 1
        chords = chord_chroma(meta["chords"], n, HOP)
        source["chords"] = "meta.json"
    key = None
    if "tonic_pc" in meta and meta.get("mode") in ("major", "minor"):
        key = Key(int(meta["tonic_pc"]), str(meta["mode"]))
        source["key"] = "meta.json"
    elif kept_chroma is not None:
        key = estimate_key(kept_chroma)
        source["key"] = "estimated from kept pitched stems"
    swing = (float(meta.get("swing8", 0.0)), float(meta.get("swing16", 0.0)))
    if "swing8" in meta:
        source["swing"] = "meta.json"
    return Reference(beats, kept_chroma, chords, key, source, swing)


def coherence_metrics(
    wav: torch.Tensor,
    sample_rate: int,
    ref: Reference,
    pitched: bool,
    onset_threshold: float = 0.5,
    monophonic: bool = False,
) -> dict[str, float]:
    """Rhythm (and, for pitched stems, harmony) agreement of one stem `wav` [C, T] with `ref`; onsets
    are peaks of `detect_onsets` above `onset_threshold` (the stem's `ONSET_THRESHOLDS` in edits).

    onset_beat_fraction: onsets within ±70 ms of a beat; onset_grid_fraction: within ±min(70 ms,
    a quarter of a 16th) of the straight 16th-note grid (a ±70 ms window would cover the whole 16th
    grid); onset_song_grid_fraction: the same on the song's own 16th grid, swung as `ref.swing` says
    (equal to the straight one for a straight song);
    grid_phase_lock: resultant length of the onsets' phases on the 16th grid (`grid_phase_lock`:
    1 locked, ~0 unrelated); beat_f_measure: beats tracked on the stem vs the reference grid
    (±70 ms); chroma_kept / chroma_chords: mean frame-wise cosine with the kept pitched stems /
    ground-truth chords; chroma_chord_spans: the stem's chroma averaged over each true chord's span,
    cosine with the chord (`chord_span_correlation`); key_score: MIREX credit of the stem's estimated
    key against the reference key;
    for `monophonic` stems chord_tones: share of the voiced frames (pYIN) on a tone of the true chord.
    """
    nan = float("nan")
    out: dict[str, float] = {}
    silent = float(wav.abs().max()) == 0.0
    onsets = np.zeros(0) if silent else detect_onsets(wav, sample_rate, threshold=onset_threshold)
    beats = ref.beats
    out["onset_beat_fraction"] = grid_fraction(onsets, beats, TOLERANCE) if len(beats) else nan
    if len(beats) >= 2:
        out["onset_grid_fraction"] = sixteenth_grid_fraction(onsets, beats)
        out["onset_song_grid_fraction"] = sixteenth_grid_fraction(onsets, beats, ref.swing)
        out["grid_phase_lock"] = grid_phase_lock(onsets, beats, 4)
        tracked, bpm = (np.zeros(0), 0.0) if silent else track_beats(wav, sample_rate)
        out["beat_f_measure"] = beat_f_measure(tracked, beats)
        out["tempo_bpm"] = bpm
    else:
        out.update(onset_grid_fraction=nan, onset_song_grid_fraction=nan, grid_phase_lock=nan)
        out.update(beat_f_measure=nan, tempo_bpm=nan)
    if pitched:
        c = chroma(wav, sample_rate, hop_seconds=HOP)
        out["chroma_kept"] = nan if ref.kept_chroma is None else chroma_correlation(c, ref.kept_chroma)
        chords = ref.chord_chroma
        out["chroma_chords"] = nan if chords is None else chroma_correlation(c, chords)
        out["chroma_chord_spans"] = nan if chords is None else chord_span_correlation(c, chords)
        if ref.key is not None and c.any():
            out["key_score"] = KEY_SCORES[key_relation(estimate_key(c), ref.key)]
        else:
            out["key_score"] = nan
    if monophonic:
        out["chord_tones"] = nan
        if ref.chord_chroma is not None and not silent:
            track = pitch_track(wav, sample_rate)
            out["chord_tones"] = chord_tone_ratio(track.times, track.f0, track.voiced, ref.chord_chroma, HOP)
    return out


def _nanmean(values: Sequence[float]) -> float:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else float("nan")


def aggregate(rows: list[dict[str, Any]], path: Sequence[str]) -> dict[str, Any]:
    """Mean over rows of the nested dicts found at `path` ({...: {metric: value}} leaves)."""

    def get(row: dict[str, Any]) -> dict[str, Any]:
        for k in path:
            row = row.get(k, {})
        return row

    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(get(row)))
    out: dict[str, Any] = {}
    for k in keys:
        vals = [get(r).get(k) for r in rows]
        if all(isinstance(v, dict) or v is None for v in vals):
            out[k] = aggregate(rows, [*path, k])
        else:
            out[k] = _nanmean([float(v) for v in vals if isinstance(v, int | float)])
    return out


def load_songs(model: Any, songs: Sequence[PathLike] | PathLike, duration: float | None) -> list[Song]:
    paths = find_songs(songs, model.stems) if isinstance(songs, str | os.PathLike) else list(songs)
    if not paths:
        raise MusicGenStemError("no songs to evaluate")
    return [load_song(p, model.stems, model.sample_rate, model.codec.channels, duration) for p in paths]


def _first_channel_mono(x: torch.Tensor) -> np.ndarray:
    return x.float().mean(0).numpy() if x.dim() == 2 else x.float().mean(0).mean(0).numpy()


def evaluate_editing(
    model: Any,
    songs: Sequence[PathLike] | PathLike,
    stems_to_regenerate: Sequence[str],
    duration: float | None = 10.0,
    seed: int = 0,
    prompts: str = "captions",
    chords: str = "estimated",
) -> EvaluationResult:
    """Regenerate `stems_to_regenerate` of each song under its other (kept) stems and score how well
    the new stems fit the kept ones (rhythm and harmony), next to the ground-truth stem, its codec round
    trip and the same stem of the next song (shuffled). `songs`: song folders, or a folder of them.
    The first `duration` seconds are used (at most the model's edit window). `prompts`: each song's
    caption ("captions"), the caption without its tempo ("no-tempo") or no description ("none").
    `chords` (models that read chords): those the edit reads from the kept stems ("estimated"), the
    song's true chords from its meta.json ("truth") or none ("none": an empty chart)."""
    if chords not in EDIT_CHORDS:
        raise MusicGenStemError(f"unknown edit chords '{chords}': choose one of {', '.join(EDIT_CHORDS)}")
    if prompts not in EDIT_PROMPTS:
        raise MusicGenStemError(f"unknown edit prompts '{prompts}': choose one of {', '.join(EDIT_PROMPTS)}")
    regen = list(model.layout.check_stems(list(stems_to_regenerate)))
    if not regen:
        raise MusicGenStemError(f"choose stems to regenerate among {', '.join(model.stems)}")
    kept = [s for s in model.stems if s not in regen]
    limit = model.max_edit_duration if kept else model.max_duration
    duration = min(float(duration or limit), limit)
    loaded = load_songs(model, songs, duration)
    sr = model.sample_rate
    notes = []
    if len(loaded) < 2:
        notes.append("only one song: the shuffled baseline needs two or more and is NaN")
    if not kept:
        notes.append(
            "every stem regenerated: nothing is kept, so only ground-truth beats/chords are references"
        )
    rows: list[dict[str, Any]] = []
    examples: dict[str, np.ndarray] = {}
    for i, song in enumerate(loaded):
        codes = model.encode_stems(song.stems, sr)  # [1, K, F]
        text = {"captions": song.caption, "no-tempo": without_tempo(song.caption), "none": None}[prompts]
        given = {"truth": _true_chords(song, model), "none": ChordChart(()), "estimated": None}[chords]
        out = model.regenerate_from_codes(
            codes, regen, [text], seed=seed + i, duration=song.duration, chords=given
        )
        recon = model.decode(codes)
        T = next(iter(song.stems.values())).shape[-1]
        ref = make_reference(song, kept, song.duration)
        other = loaded[(i + 1) % len(loaded)] if len(loaded) > 1 else None
        row: dict[str, Any] = {
            "song": song.name,
            "seed": seed + i,
            "caption": text,
            "model_prompt": out.params.get("model_descriptions", [text])[0],  # with the kept stems' tempo
            "chords_read": (out.params.get("step_conditions") or [{}])[0].get("chords"),
            "reference": dict(ref.source),
            "metrics": {},
        }
        if ref.key is not None:
            row["reference"]["key_name"] = ref.key.name
        for stem in regen:
            pitched, mono = stem not in UNPITCHED, stem in MONOPHONIC
            threshold = ONSET_THRESHOLDS.get(stem, 0.5)
            candidates: dict[str, torch.Tensor | None] = {
                "generated": out[stem][0, :, :T],
                "ground_truth": song.stems[stem],
                "ground_truth_codec": recon[stem][0, :, :T],
                "shuffled": None,
            }
            if other is not None:
                w = other.stems[stem][..., :T]
                candidates["shuffled"] = torch.nn.functional.pad(w, (0, T - w.shape[-1]))
            scores = {
                cond: coherence_metrics(wav, sr, ref, pitched, threshold, mono)
                for cond, wav in candidates.items()
                if wav is not None
            }
            missing = {k: float("nan") for k in scores["generated"]}  # no shuffled with one song
            row["metrics"][stem] = {cond: scores.get(cond, missing) for cond in candidates}
            if i == 0:
                examples[f"{stem} (generated)"] = _first_channel_mono(out[stem][0, :, :T])
                examples[f"{stem} (ground truth)"] = _first_channel_mono(song.stems[stem])
        if i == 0:
            for stem in kept:
                examples[f"{stem} (kept)"] = _first_channel_mono(song.stems[stem])
        rows.append(row)
    summary = {
        "regenerate": regen,
        "kept": kept,
        "num_songs": len(loaded),
        "duration": duration,
        "seed": seed,
        "tolerance_s": TOLERANCE,
        "onset_thresholds": {s: ONSET_THRESHOLDS.get(s, 0.5) for s in regen},
        "chords": chords,
        "metrics": aggregate(rows, ["metrics"]),
    }
    return EvaluationResult("edit", summary, rows, notes, examples, sr)


def _true_chords(song: Song, model: Any) -> ChordChart | None:
    """A synthetic song's chords (its meta.json), for a model that reads chords."""
    if model.steps is None or model.steps.chord is None or not (song.meta or {}).get("chords"):
        return None
    return ChordChart.from_json(song.meta["chords"])


def evaluate_codec(
    model: Any,
    songs: Sequence[PathLike] | PathLike,
    duration: float | None = 10.0,
    probes: bool = True,
) -> EvaluationResult:
    """Per-stem codec fidelity averaged over songs: SI-SNR, multi-scale mel distance and bitrate, and
    what a musician hears (`codec_metrics`): pitch of the bass, chroma of other, onsets of the drums,
    the frame-rate artifact of every stem. `summary["codebooks"]` holds each stem's codebook usage and
    perplexity pooled over the songs; with `probes`, `summary["probes"]` the pure-tone and bass-line
    checks of the bass codec (skipped for a model without a bass stem)."""
    loaded = load_songs(model, songs, duration)
    rows = []
    codes: dict[str, list[np.ndarray]] = {}
    for s in loaded:
        metrics, song_codes = codec_song_metrics(model, s.stems, s.sample_rate)
        rows.append({"song": s.name, "metrics": metrics})
        for stem, c in song_codes.items():
            codes.setdefault(stem, []).append(c)
    summary: dict[str, Any] = {
        "num_songs": len(loaded),
        "duration": duration,
        "metrics": aggregate(rows, ["metrics"]),
        "codebooks": {stem: codebook_stats(c, model.codec.codecs[stem].card) for stem, c in codes.items()},
    }
    notes = []
    if probes and "bass" in model.stems:
        summary["probes"] = probe_metrics(model, "bass")
    elif probes:
        notes.append("no bass stem: the pure-tone and bass-line probes were skipped")
    return EvaluationResult("codec", summary, rows, notes, {}, model.sample_rate)


def _embeddings(model: Any, stems: dict[str, torch.Tensor], sr: int) -> dict[str, np.ndarray]:
    """{"<stem>/codec", "<stem>/logmel", "mix/logmel": [D]} for one item (stems [C, T])."""
    out = {}
    for stem, wav in stems.items():
        out[f"{stem}/codec"] = codec_latent_embedding(model, stem, wav, sr)
        out[f"{stem}/logmel"] = logmel_embedding(wav, sr)
    out["mix/logmel"] = logmel_embedding(torch.stack(list(stems.values())).sum(0), sr)
    return out


def evaluate_generation(
    model: Any,
    reference: Sequence[PathLike] | PathLike,
    prompts: Sequence[str | None] | None = None,
    num_samples: int | None = None,
    duration: float | None = 10.0,
    seed: int = 0,
) -> EvaluationResult:
    """Generate `num_samples` items (prompts cycled; default: the reference songs' captions, else
    unconditional) and compute Fréchet distances to the reference songs on codec-latent and log-mel
    embeddings, per stem and for the mix."""
    refs = load_songs(model, reference, duration)
    n = num_samples or len(refs)
    if prompts is None or len(prompts) == 0:
        prompts = [s.caption for s in refs]
    dur = min(float(duration or model.duration), model.max_duration, min(s.duration for s in refs))
    notes: list[str] = []
    if n < 2 or len(refs) < 2:
        raise MusicGenStemError("the Fréchet distance needs at least 2 generated and 2 reference songs")
    gen_emb: list[dict[str, np.ndarray]] = []
    examples: dict[str, np.ndarray] = {}
    for i in range(n):
        out = model.generate([prompts[i % len(prompts)]], seed=seed + i, duration=dur)
        stems = {s: out[s][0] for s in model.stems}
        gen_emb.append(_embeddings(model, stems, model.sample_rate))
        if i == 0:
            examples = {f"{s} (generated)": _first_channel_mono(w) for s, w in stems.items()}
    ref_emb = [_embeddings(model, s.stems, s.sample_rate) for s in refs]
    fd = {
        name: frechet_distance(np.stack([e[name] for e in gen_emb]), np.stack([e[name] for e in ref_emb]))
        for name in gen_emb[0]
    }
    dims = {name: int(v.shape[0]) for name, v in gen_emb[0].items()}
    if min(n, len(refs)) <= max(dims.values()):
        notes.append(
            f"{n} generated vs {len(refs)} reference items for embeddings of up to {max(dims.values())} "
            "dimensions: the covariances are rank-deficient; compare distances only between equal-size runs"
        )
    summary = {
        "num_generated": n,
        "num_reference": len(refs),
        "duration": dur,
        "seed": seed,
        "frechet_distance": fd,
        "embedding_dims": dims,
        "external": external_embedders(),
    }
    notes.extend(f"{k}: {v}" for k, v in summary["external"].items())
    return EvaluationResult("generate", summary, [], notes, examples, model.sample_rate)
