"""Captions: differently phrased descriptions naming genre, tempo, key, mood, energy and the instruments."""

from __future__ import annotations

import numpy as np

from .genres import Genre
from .spec import PartSpec, SongSpec
from .tables import BASS_STYLE_WORDS, GM_PROGRAMS, KIT_WORDS, PAD_PROGRAMS, STYLE_WORDS

ENERGY_WORDS = {
    "low": ("low-energy", "mellow", "calm", "gentle"),
    "medium": ("mid-energy", "steady", "moderately energetic"),
    "high": ("high-energy", "energetic", "intense", "powerful"),
}
N_TEMPLATES = 12


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def tempo_word(bpm: float, rng: np.random.Generator) -> str:
    """A word for the tempo (``slow``, ``mid-tempo``, ``upbeat``...)."""
    for limit, words in (
        (75, ("slow", "gentle", "unhurried")),
        (96, ("laid-back", "mid-tempo", "relaxed")),
        (118, ("upbeat", "lively", "bouncy")),
        (140, ("energetic", "fast", "driving")),
    ):
        if bpm < limit:
            return str(rng.choice(words))
    return str(rng.choice(("fast", "high-energy", "frantic")))


def part_phrase(p: PartSpec, g: Genre, rng: np.random.Generator) -> str:
    """Plain words for one part (``walking upright bass``, ``Rhodes chords``, ``a TR-808 drum machine``)."""
    if p.role == "drums":
        if p.kit in KIT_WORDS and rng.random() < 0.65:
            return str(rng.choice(KIT_WORDS[p.kit]))
        return str(rng.choice(g.drum_words))
    name = str(rng.choice(GM_PROGRAMS[p.program][1]))
    if p.role == "bass":
        adj = str(rng.choice(BASS_STYLE_WORDS[p.style]))
        return f"{adj} {name}".strip() if adj and adj not in name else name
    if p.role == "harmony" and p.style == "block" and rng.random() < 0.5:
        if p.program in PAD_PROGRAMS:
            return name if "pad" in name else f"{name.removesuffix('s')} pads"
        return f"{name} chords"
    if p.role == "lead":
        word = str(rng.choice(STYLE_WORDS["lead"]))
        return f"{_a(name)} {word.removeprefix('lead ') if name.endswith('lead') else word}"
    return f"{name} {rng.choice(STYLE_WORDS[p.style])}"


def make_captions(spec: SongSpec, g: Genre, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` differently phrased captions; each names the genre, the tempo in BPM and the key."""
    bpm = int(round(spec.tempo))
    key = f"{spec.key} {spec.mode}"
    out: list[str] = []
    for t in rng.permutation(N_TEMPLATES)[:n]:
        genre, noun = str(rng.choice(g.names)), str(rng.choice(g.nouns))
        if noun in genre.split():  # no "pop ballad ballad"
            noun = next((w for w in g.nouns if w not in genre.split()), "song")
        moods = g.moods_minor if spec.mode == "minor" else g.moods_major
        mood = spec.mood if spec.mood not in genre else next((m for m in moods if m not in genre), "")
        tw = tempo_word(spec.tempo, rng)
        tw = tw if tw != mood else {"laid-back": "relaxed", "energetic": "lively"}.get(tw, "steady")
        ew = str(rng.choice([w for w in ENERGY_WORDS[spec.energy_level] if mood not in w and w != tw]))
        inst = [part_phrase(p, g, rng) for p in spec.parts]
        inst = [inst[i] for i in rng.permutation(len(inst))]
        ins = _join(inst)
        c = {
            0: f"{_cap(_a(tw))} {genre} {noun} in {key} at {bpm} BPM with {ins}.",
            1: f"{_cap(genre)} {noun}, {bpm} BPM, {key}, {mood}, featuring {ins}.",
            2: f"{_cap(ins)} play {_a(tw)} {genre} {noun} in {key} ({bpm} bpm).",
            3: f"{_cap(_a(mood))} {genre} {noun} in {key} with {ins}, around {bpm} BPM.",
            4: f"{_cap(tw)} {mood} {genre} at {bpm} bpm in {key}: {ins}.",
            5: f"genre: {genre}, tempo: {bpm} bpm, key: {key}, mood: {mood}, energy: {spec.energy_level}, "
            f"instruments: {', '.join(p.name for p in spec.parts)}",
            6: f"{_cap(mood)} {genre} with {ins}. {bpm} BPM, {key}.",
            7: f"{_cap(_a(genre))} {noun} with a tempo of {bpm} BPM in the key of {key}, {tw} and {mood}, "
            f"with {ins}.",
            8: f"{_cap(_a(ew))} {genre} {noun} in {key}, {bpm} BPM, with {ins}.",
            9: f"{_cap(ins)}. {_cap(ew)}, {mood} {genre} in {key} at {bpm} BPM.",
            10: f"{bpm} BPM {genre} {noun} in {key}; {ew} and {mood}; {ins}.",
            11: f"{_cap(_a(mood))}, {ew} {genre} {noun} ({key}, {bpm} BPM) built on {ins}.",
        }[int(t)]
        out.append(c)
    return out
