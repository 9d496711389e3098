"""Text control: does a generated song do what its prompt says?

Each prompt names a tempo, a key and instruments (the captions of held-out songs, whose meta.json
holds the truth, or a JSONL file of `{"prompt", "tempo", "key", "instruments"}`). Per prompt:

- tempo: beats tracked on the drums (`rhythm.track_beats`); a match within ±4 %, and separately a
  match of double or half the tempo (an octave error);
- key: Krumhansl-Schmuckler on the chroma of the pitched stems, scored with `mir_eval.key`
  (MIREX weights: same 1, fifth 0.5, relative 0.3, parallel 0.2);
- pitch content: pYIN voiced fraction of the bass, and the fraction of its voiced frames whose
  nearest note is in the prompt's scale (major, or natural minor plus the raised 7th);
- instruments: the only honest check offline (no CLAP weights): the "other" stem's log-mel statistics
  matched to the nearest true "other" stem of the held-out songs; a hit when that song's instrument
  family (General MIDI program // 8) is the prompted one.

The same metrics on the true stems of the song the prompt came from (the detectors' ceiling) and on
the stems of another song (chance) are reported beside the generated ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..conditioning.attributes import parse_attributes
from ..conditioning.chords import NOTE_NAMES
from ..errors import MusicGenStemError
from .codec_metrics import pitch_track
from .distribution import logmel_embedding
from .harmony import Key, chroma, estimate_key
from .rhythm import track_beats
from .runner import EvaluationResult, PathLike, aggregate, load_songs
from .songs import Song

__all__ = [
    "InstrumentBank",
    "PromptSpec",
    "evaluate_text_control",
    "in_key_ratio",
    "instrument_bank",
    "key_score",
    "load_prompt_file",
    "parse_key",
    "prompts_from_songs",
    "tempo_match",
    "text_metrics",
]

TEMPO_TOLERANCE = 0.04
CONDITIONS = ("generated", "ground_truth", "shuffled")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor + the raised 7th of harmonic minor


@dataclass
class PromptSpec:
    """A prompt and what it asks for: `tempo` (BPM), `key`, `family` (GM family of the other stem's
    lead instrument, 0-15); `song` is the held-out song it describes, if any."""

    prompt: str
    tempo: float | None = None
    key: Key | None = None
    family: int | None = None
    song: Song | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_key(name: str) -> Key:
    """ "F# minor", "Eb major", "a minor" -> Key; raises MusicGenStemError naming the format."""
    parts = str(name).strip().split()
    if len(parts) != 2 or parts[1].lower() not in ("major", "minor"):
        raise MusicGenStemError(f"key {name!r} is not '<tonic> major|minor' (e.g. 'F# minor')")
    text = f"{parts[0][:1].upper()}{parts[0][1:]} {parts[1].lower()}"
    key = parse_attributes(text).key  # the conditioner's own reading of note names
    if key is None or len(parts[0]) > 2:
        raise MusicGenStemError(f"key {name!r}: unknown tonic {parts[0]!r} (use C, C#, Db ... B)")
    return Key(*key)


def _mir_eval_key(key: Key) -> str:
    """mir_eval spells keys with the sharps/flats of its own table."""
    return f"{NOTE_NAMES[key.tonic % 12]} {key.mode}"


def key_score(estimated: Key, reference: Key) -> float:
    """MIREX weighted key score (`mir_eval.key.weighted_score`)."""
    import mir_eval

    return float(mir_eval.key.weighted_score(_mir_eval_key(reference), _mir_eval_key(estimated)))


def tempo_match(measured: float, target: float, tolerance: float = TEMPO_TOLERANCE) -> str:
    """ "exact" (within ±tolerance of target), "octave" (of its double or half) or "miss"."""
    if not (measured > 0 and target > 0):
        return "miss"
    if abs(measured / target - 1) <= tolerance:
        return "exact"
    if any(abs(measured / (target * f) - 1) <= tolerance for f in (2.0, 0.5)):
        return "octave"
    return "miss"


def in_key_ratio(f0: np.ndarray, voiced: np.ndarray, key: Key) -> float:
    """Fraction of voiced frames of an f0 track (Hz) whose nearest equal-tempered note is in the scale
    of `key`; NaN with no voiced frame."""
    f = np.asarray(f0, float)[np.asarray(voiced, bool)]
    f = f[f > 0]
    if len(f) == 0:
        return float("nan")
    pc = np.round(69 + 12 * np.log2(f / 440.0)).astype(int) % 12
    scale = MAJOR_SCALE if key.mode == "major" else MINOR_SCALE
    return float(np.isin((pc - key.tonic) % 12, scale).mean())


def _family(meta: dict[str, Any]) -> int | None:
    parts = (meta.get("instruments") or {}).get("other") or []
    if parts and isinstance(parts[0], dict) and "program" in parts[0]:
        return int(parts[0]["program"]) // 8
    return None


def prompts_from_songs(songs: Sequence[Song]) -> list[PromptSpec]:
    """One prompt per song with a meta.json: its first caption, tempo, key and lead instrument family."""
    out = []
    for s in songs:
        meta = s.meta or {}
        if not s.caption:
            continue
        key = parse_key(meta["key_name"]) if meta.get("key_name") else None
        tempo = float(meta["tempo"]) if meta.get("tempo") else None
        out.append(PromptSpec(s.caption, tempo, key, _family(meta), s, {"genre": meta.get("genre")}))
    if not out:
        raise MusicGenStemError("no song has a caption in meta.json; give prompts with --prompts FILE")
    return out


def load_prompt_file(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """JSON lines {"prompt": str, "tempo": bpm?, "key": "F minor"?, "program": GM program?}."""
    specs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MusicGenStemError(f"cannot read prompt file '{path}': {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt = str(row["prompt"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MusicGenStemError(f'{path}:{n}: expected a JSON object with a "prompt" ({exc})') from exc
        tempo = float(row["tempo"]) if row.get("tempo") is not None else None
        key = parse_key(row["key"]) if row.get("key") else None
        family = int(row["program"]) // 8 if row.get("program") is not None else None
        specs.append(PromptSpec(prompt, tempo, key, family))
    if not specs:
        raise MusicGenStemError(f"prompt file '{path}' has no prompts")
    return specs


@dataclass
class InstrumentBank:
    """Standardised log-mel embeddings [N, D] of the held-out songs' true other stems, their GM
    families [N] and song names; `mean`, `std` [D] standardise queries the same way."""

    emb: np.ndarray
    families: np.ndarray
    names: list[str]
    mean: np.ndarray
    std: np.ndarray

    def nearest_family(self, wav: torch.Tensor, sr: int, exclude: str | None = None) -> int:
        """Family of the bank item nearest to `wav` [C, T], leaving out song `exclude`."""
        q = (logmel_embedding(wav, sr) - self.mean) / self.std
        dist = np.linalg.norm(self.emb - q[None], axis=1)
        dist[[n == exclude for n in self.names]] = np.inf
        return int(self.families[int(np.argmin(dist))])


def instrument_bank(songs: Sequence[Song]) -> InstrumentBank | None:
    """The bank of true other stems of `songs` with a known lead instrument (None if under 3)."""
    rows = [(logmel_embedding(s.stems["other"], s.sample_rate), _family(s.meta or {}), s.name) for s in songs]
    rows = [r for r in rows if r[1] is not None]
    if len(rows) < 3:
        return None
    emb = np.stack([r[0] for r in rows])
    mean, std = emb.mean(0), emb.std(0) + 1e-6
    return InstrumentBank((emb - mean) / std, np.array([r[1] for r in rows]), [r[2] for r in rows], mean, std)


def text_metrics(
    stems: dict[str, torch.Tensor],
    sr: int,
    spec: PromptSpec,
    bank: InstrumentBank | None = None,
    exclude: str | None = None,
) -> dict[str, float]:
    """Text-control metrics of one item's stems {stem: [C, T]} against what `spec` asks for."""
    nan = float("nan")
    out: dict[str, float] = {}
    if "drums" in stems and spec.tempo:
        drums = stems["drums"]
        bpm = 0.0 if float(drums.abs().max()) == 0 else track_beats(drums, sr)[1]
        match = tempo_match(bpm, spec.tempo)
        out.update(tempo_bpm=bpm, tempo_exact=float(match == "exact"), tempo_octave=float(match == "octave"))
    pitched = [w for s, w in stems.items() if s != "drums"]
    if pitched and spec.key is not None:
        c = chroma(torch.stack(pitched).sum(0), sr)
        out["key_score"] = key_score(estimate_key(c), spec.key) if c.any() else 0.0
    if "bass" in stems:
        track = pitch_track(stems["bass"], sr)
        out["bass_voiced"] = float(track.voiced.mean()) if len(track.voiced) else nan
        if spec.key is not None:
            out["bass_in_key"] = in_key_ratio(track.f0, track.voiced, spec.key)
    if bank is not None and spec.family is not None and "other" in stems:
        out["instrument_family"] = float(bank.nearest_family(stems["other"], sr, exclude) == spec.family)
    return out


def evaluate_text_control(
    model: Any,
    songs: Sequence[PathLike] | PathLike,
    prompts: Sequence[PromptSpec] | None = None,
    duration: float | None = 10.0,
    seed: int = 0,
) -> EvaluationResult:
    """Generate one item per prompt (default: the captions of `songs`) with seed `seed + i` and score
    tempo, key, pitch content and instrument family against what the prompt asks for; next to the
    same metrics on the prompt's own song (ground truth) and on the next song (shuffled)."""
    dur = min(float(duration or model.duration), model.max_duration)
    loaded = load_songs(model, songs, dur)
    specs = list(prompts) if prompts else prompts_from_songs(loaded)
    bank = instrument_bank(loaded) if "other" in model.stems else None
    sr = model.sample_rate
    index = {s.name: i for i, s in enumerate(loaded)}
    rows: list[dict[str, Any]] = []
    examples: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs):
        out = model.generate([spec.prompt], seed=seed + i, duration=dur)
        gen = {s: out[s][0] for s in model.stems}
        own = spec.song.name if spec.song is not None else None
        metrics = {"generated": text_metrics(gen, sr, spec, bank, own)}
        if spec.song is not None:
            metrics["ground_truth"] = text_metrics(spec.song.stems, sr, spec, bank, own)
            if len(loaded) > 1:
                other = loaded[(index[spec.song.name] + 1) % len(loaded)]
                metrics["shuffled"] = text_metrics(other.stems, sr, spec, bank, own)
        target = {"tempo": spec.tempo, "key": spec.key.name if spec.key else None, "family": spec.family}
        row = {"prompt": spec.prompt, "seed": seed + i, "target": target, **spec.extra}
        rows.append({**row, "metrics": metrics})
        if i == 0:
            examples = {f"{s} (generated: {spec.prompt[:60]})": gen[s].float().mean(0).numpy() for s in gen}
    tempos = [s.tempo for s in specs if s.tempo]
    summary: dict[str, Any] = {
        "num_prompts": len(specs),
        "duration": dur,
        "seed": seed,
        "tempo_tolerance": TEMPO_TOLERANCE,
        "tempo_range_bpm": [min(tempos), max(tempos)] if tempos else None,
        "num_reference_songs": len(bank.names) if bank is not None else 0,
        "metrics": aggregate(rows, ["metrics"]),
    }
    notes = [
        "tempo: beats tracked on the drums, exact = within 4 % of the prompt's tempo, octave = of its double "
        "or half; key: Krumhansl-Schmuckler on the chroma of bass + other, mir_eval weighted score; "
        "bass_in_key: voiced pYIN frames whose nearest note is in the prompt's scale; instrument_family: "
        "log-mel nearest neighbour among the other held-out songs' true other stems has the prompted GM "
        "family (ground truth = leave-one-out accuracy of that classifier, shuffled = chance)."
    ]
    return EvaluationResult("text", summary, rows, notes, examples, sr)
