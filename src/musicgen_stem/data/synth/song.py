"""Drawing a song: genre, tempo, key, progression, instruments and their soundfonts, feel, mix, score,
captions. Independent random streams (``numpy`` generators seeded with ``[seed, stream]``) keep the score
the same whatever soundfonts are installed."""

from __future__ import annotations

import os

import numpy as np

from ...errors import MusicGenStemError
from .arrange import beat_grid, chord_timeline, draw_humanize, write_notes
from .captions import make_captions
from .genres import GENRES
from .mixing import draw_mix
from .soundfonts import Soundfont, choose_soundfonts, soundfont_palette
from .spec import PartSpec, SongSpec
from .tables import (
    ACOUSTIC_KITS,
    BASS_CHANNEL,
    DRUM_CHANNEL,
    DRUM_KITS,
    DRUM_NOTES,
    GM_PROGRAMS,
    HARMONY_CHANNEL,
    LEAD_CHANNEL,
    SAMPLED_KIT_NOTES,
)
from .theory import key_name

SCORE, SOUND, MIX, CAPTION = range(4)  # random streams


def _stream(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([int(seed), stream]))


def _part(role: str, program: int, style: str, channel: int, font: Soundfont | None) -> PartSpec:
    name, words = GM_PROGRAMS[program][0], GM_PROGRAMS[program][1][0]
    return PartSpec(role, program, style, channel, name, words, font.path if font else "")


def _drum_part(kit: int, groove: int, font: Soundfont | None) -> PartSpec:
    path = font.path if font else ""
    if font is not None and font.kind == "kit":
        return PartSpec(
            "drums", 0, f"groove{groove}", DRUM_CHANNEL, f"{font.label} Kit", "drums", path, 0, "sampled"
        )
    name = DRUM_KITS[kit]
    return PartSpec("drums", kit, f"groove{groove}", DRUM_CHANNEL, f"{name} Kit", "drums", path, 128, name)


def _energy(tempo: float, genre_energy: float, drum_hits_per_bar: float, velocity: float) -> float:
    tempo_n = np.clip((tempo - 60) / 120, 0, 1)
    density = np.clip(drum_hits_per_bar / 24, 0, 1)
    loud = np.clip((velocity - 0.75) / 0.35, 0, 1)
    return round(float(0.35 * genre_energy + 0.25 * tempo_n + 0.25 * density + 0.15 * loud), 3)


def make_song_spec(seed: int, duration: float, soundfont: str | os.PathLike[str] | None = None) -> SongSpec:
    """Draw a complete song (parameters, sounds, mix, score, ground truth, captions) from ``seed``.

    Deterministic for a given seed, duration and set of soundfonts: ``soundfont`` (or
    ``$MUSICGEN_STEM_SOUNDFONT``) forces one GM soundfont, otherwise each song and instrument picks among
    the installed ones. The score and ground truth do not depend on the soundfonts.
    """
    if duration <= 0:
        raise MusicGenStemError(f"duration must be positive, got {duration}")
    rng = _stream(seed, SCORE)
    genre = str(rng.choice(sorted(GENRES)))
    g = GENRES[genre]
    tempo = float(rng.integers(g.tempo[0], g.tempo[1] + 1))
    mode = "minor" if rng.random() < g.p_minor else "major"
    tonic = int(rng.integers(12))
    progression = str(rng.choice(g.minor_progressions if mode == "minor" else g.major_progressions)).split()
    cpb = int(rng.choice(g.chords_per_bar)) if len(progression) < 12 else 1
    swing8 = float(round(rng.uniform(*g.swing8), 3)) if g.swing8[1] else 0.0
    swing16 = float(round(rng.uniform(*g.swing16), 3)) if g.swing16[1] else 0.0
    bar_s = 4 * 60.0 / tempo
    n_bars = int(np.ceil(duration / bar_s - 1e-9))
    beats, downbeats = beat_grid(tempo, duration)
    chords = chord_timeline(progression, tonic, mode, cpb, n_bars, bar_s, duration)

    groove = int(rng.integers(len(g.grooves)))
    kit = int(rng.choice(g.kits))
    bass_prog, bass_style = int(rng.choice(g.bass_programs)), str(rng.choice(g.bass_styles))
    h_prog, h_style = g.harmony[int(rng.integers(len(g.harmony)))]
    has_lead = bool(rng.random() < g.p_lead)
    l_prog = int(rng.choice([p for p in g.leads if p != h_prog] or g.leads))
    phrase = 8 if n_bars >= 16 and rng.random() < 0.5 else 4
    velocity = g.velocity * float(rng.uniform(0.9, 1.05))
    lead_start = 0 if n_bars < 8 else int(rng.choice([0, 4]))
    mood = str(rng.choice(g.moods_minor if mode == "minor" else g.moods_major))
    humanize = draw_humanize(g, rng)

    roles = ["bass", "drums", "harmony"] + (["lead"] if has_lead else [])
    fonts = choose_soundfonts(roles, kit in ACOUSTIC_KITS, soundfont_palette(soundfont), _stream(seed, SOUND))
    parts = [
        _part("bass", bass_prog, bass_style, BASS_CHANNEL, fonts[0]),
        _drum_part(kit, groove, fonts[1]),
        _part("harmony", h_prog, h_style, HARMONY_CHANNEL, fonts[2]),
    ]
    if has_lead:
        parts.append(_part("lead", l_prog, "lead", LEAD_CHANNEL, fonts[3]))
    mix = draw_mix(g, _stream(seed, MIX))
    spec = SongSpec(
        seed=int(seed),
        duration=float(duration),
        genre=genre,
        tempo=tempo,
        key=key_name(tonic, mode),
        tonic_pc=tonic,
        mode=mode,
        progression=progression,
        chords_per_bar=cpb,
        n_bars=n_bars,
        swing8=swing8,
        swing16=swing16,
        drum_groove=groove,
        parts=parts,
        chords=chords,
        beats=beats,
        downbeats=downbeats,
        captions=[],
        stem_levels_db=dict(mix.levels_db),
        reverb=mix.reverb_amounts(),
        notes={},
        humanize=humanize,
        mix=mix,
        mood=mood,
        energy=0.0,
    )
    drum_notes = SAMPLED_KIT_NOTES if parts[1].kit == "sampled" else DRUM_NOTES
    spec.notes = write_notes(spec, g, rng, phrase, velocity, drum_notes, lead_start)
    spec.energy = _energy(tempo, g.energy, len(spec.notes["drums"]) / max(n_bars, 1), velocity)
    spec.captions = make_captions(spec, g, _stream(seed, CAPTION))
    return spec
