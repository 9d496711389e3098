"""Synthetic multi-stem songs: procedural MIDI rendered per stem with FluidSynth and a General MIDI soundfont.

Every song is fully determined by ``(seed, duration)``: :func:`make_song_spec` draws all parameters and
the complete score from one ``numpy.random.Generator(PCG64(seed))``, and :func:`render_song` renders the
bass, drums and other stems separately (so they are exact ground truth; the mix is their sum).

System requirements (Debian/Ubuntu): ``apt-get install fluidsynth timgm6mb-soundfont`` (or
``fluid-soundfont-gm``). The soundfont can be chosen with ``soundfont=`` or ``$MUSICGEN_STEM_SOUNDFONT``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import mido
import numpy as np
import soundfile as sf

from ..errors import MusicGenStemError

SAMPLE_RATE = 32000
STEMS = ("bass", "drums", "other")
TICKS_PER_BEAT = 480
STEP = TICKS_PER_BEAT // 4  # one 16th note
SOUNDFONT_ENV = "MUSICGEN_STEM_SOUNDFONT"
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
APT_HINT = "apt-get install fluidsynth timgm6mb-soundfont (or fluid-soundfont-gm)"
BASS_CHANNEL, HARMONY_CHANNEL, LEAD_CHANNEL, DRUM_CHANNEL = 0, 1, 2, 9

NOTE_NAMES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NOTE_NAMES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MAJOR_KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
FLAT_MAJOR = {1, 3, 5, 8, 10}
FLAT_MINOR = {0, 2, 3, 5, 7, 10}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# Chord qualities: intervals and the suffix used in chord names.
QUALITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "maj": ((0, 4, 7), ""),
    "min": ((0, 3, 7), "m"),
    "dim": ((0, 3, 6), "dim"),
    "7": ((0, 4, 7, 10), "7"),
    "maj7": ((0, 4, 7, 11), "maj7"),
    "min7": ((0, 3, 7, 10), "m7"),
    "m7b5": ((0, 3, 6, 10), "m7b5"),
}
ROMAN_DEGREES = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}

# General MIDI programs used here: (official GM name, plain words for captions).
GM_PROGRAMS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("Acoustic Grand Piano", ("piano", "grand piano", "acoustic piano")),
    1: ("Bright Acoustic Piano", ("bright piano", "piano")),
    4: ("Electric Piano 1", ("electric piano", "Rhodes", "Rhodes piano")),
    5: ("Electric Piano 2", ("electric piano", "FM electric piano")),
    11: ("Vibraphone", ("vibraphone", "vibes")),
    16: ("Drawbar Organ", ("organ", "Hammond organ", "drawbar organ")),
    17: ("Percussive Organ", ("organ", "percussive organ")),
    18: ("Rock Organ", ("rock organ", "organ")),
    22: ("Harmonica", ("harmonica", "blues harp")),
    24: ("Acoustic Guitar (nylon)", ("nylon guitar", "classical guitar", "acoustic guitar")),
    25: ("Acoustic Guitar (steel)", ("acoustic guitar", "steel-string guitar")),
    26: ("Electric Guitar (jazz)", ("jazz guitar", "hollow-body guitar")),
    27: ("Electric Guitar (clean)", ("clean electric guitar", "clean guitar")),
    28: ("Electric Guitar (muted)", ("muted guitar", "palm-muted guitar")),
    29: ("Overdriven Guitar", ("overdriven guitar", "crunchy guitar")),
    30: ("Distortion Guitar", ("distorted guitar", "heavy guitar")),
    32: ("Acoustic Bass", ("upright bass", "double bass", "acoustic bass")),
    33: ("Electric Bass (finger)", ("electric bass", "fingered bass", "bass guitar")),
    34: ("Electric Bass (pick)", ("picked bass", "electric bass")),
    35: ("Fretless Bass", ("fretless bass",)),
    36: ("Slap Bass 1", ("slap bass",)),
    37: ("Slap Bass 2", ("slap bass", "popping bass")),
    38: ("Synth Bass 1", ("synth bass",)),
    39: ("Synth Bass 2", ("synth bass", "analog bass")),
    48: ("String Ensemble 1", ("strings", "string ensemble")),
    49: ("String Ensemble 2", ("strings", "slow strings")),
    50: ("Synth Strings 1", ("synth strings",)),
    52: ("Choir Aahs", ("choir", "vocal pads")),
    56: ("Trumpet", ("trumpet",)),
    61: ("Brass Section", ("brass", "horn section")),
    62: ("Synth Brass 1", ("synth brass",)),
    65: ("Alto Sax", ("alto sax", "saxophone")),
    66: ("Tenor Sax", ("tenor sax", "saxophone")),
    73: ("Flute", ("flute",)),
    80: ("Lead 1 (square)", ("square lead", "synth lead")),
    81: ("Lead 2 (sawtooth)", ("sawtooth lead", "synth lead")),
    89: ("Pad 2 (warm)", ("warm pad", "synth pad")),
    90: ("Pad 3 (polysynth)", ("polysynth pad", "synth pad")),
}
DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz", 40: "Brush"}

# Words that follow an instrument name, by part style.
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "block": ("chords", "sustained chords"),
    "arpeggio": ("arpeggios", "arpeggiated chords"),
    "strum": ("strumming", "strummed chords"),
    "power": ("power chords", "riffs"),
    "funk": ("comping", "funky stabs", "choppy rhythm"),
    "jazz": ("comping", "chord comping"),
    "stab": ("stabs", "chord stabs"),
    "skank": ("offbeat skank", "offbeat chords"),
    "shuffle": ("shuffle comping", "chords"),
    "lead": ("melody", "lead melody", "lead line"),
}
BASS_STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "root": ("",),
    "root8": ("driving", ""),
    "root_fifth": ("",),
    "octave": ("octave", "bouncing"),
    "walking": ("walking",),
    "funk": ("funky", "syncopated"),
    "sustained": ("warm", "smooth"),
    "offbeat": ("offbeat", "pumping"),
    "reggae": ("deep", "melodic"),
    "hiphop": ("deep", "heavy"),
    "root16": ("chugging", "pounding"),
    "boogie": ("boogie", "shuffling"),
}

# Drum voices on GM channel 10.
DRUM_NOTES = {
    "K": 36, "S": 38, "R": 37, "C": 39, "H": 42, "P": 44, "O": 46, "Y": 51, "B": 53, "X": 49,
    "T1": 50, "T2": 47, "T3": 45, "F": 41, "TB": 54, "CB": 56, "SH": 70, "CG": 63, "CL": 64, "CV": 75,
}  # fmt: skip
DRUM_VELOCITY = {"X": 116, "x": 94, "o": 42}

FILLS: dict[str, dict[str, str]] = {
    "snare16": {"S": "............xxxX"},
    "toms1": {"T1": "............xx..", "T2": "..............x.", "F": "...............X"},
    "toms2": {
        "S": "........xx......",
        "T1": "..........xx....",
        "T2": "............xx..",
        "F": "..............xX",
    },
    "snare_toms": {"S": "........x.x.x...", "T2": "............x.x.", "F": ".............x.X"},
    "clap_roll": {"C": "........xxxxxxxX"},
    "snare_roll": {"S": "........x.x.xxxX"},
    "jazz": {"S": "..........x...X.", "K": "...............x"},
    "hat_open": {"O": "..............x."},
}


@dataclass(frozen=True)
class Genre:
    """Everything a genre draws from."""

    names: tuple[str, ...]
    nouns: tuple[str, ...]
    tempo: tuple[int, int]
    p_minor: float
    grooves: tuple[dict[str, str], ...]
    fills: tuple[str, ...]
    kits: tuple[int, ...]
    swing8: tuple[float, float]
    swing16: tuple[float, float]
    bass_styles: tuple[str, ...]
    bass_programs: tuple[int, ...]
    harmony: tuple[tuple[int, str], ...]
    leads: tuple[int, ...]
    p_lead: float
    major_progressions: tuple[str, ...]
    minor_progressions: tuple[str, ...]
    chords_per_bar: tuple[int, ...]
    moods_major: tuple[str, ...]
    moods_minor: tuple[str, ...]
    drum_words: tuple[str, ...]
    velocity: float = 1.0
    ghosts: float = 0.0


BLUES_MAJOR = "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"
BLUES_QUICK = "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"
BLUES_MINOR = "i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7"

GENRES: dict[str, Genre] = {
    "rock": Genre(
        names=("rock",),
        nouns=("song", "track", "tune", "anthem"),
        tempo=(92, 140),
        p_minor=0.4,
        grooves=(
            {"K": "x.......x.x.....", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x......xx.x.....", "S": "....X.......X..o", "H": "XxXxXxXxXxXxXxXx"},
            {"K": "x.....x.x.......", "S": "....X.......X...", "Y": "x.x.x.x.x.x.x.x."},
        ),
        fills=("snare16", "toms1", "toms2", "snare_toms"),
        kits=(0, 8, 16),
        swing8=(0, 0),
        swing16=(0, 0),
        bass_styles=("root8", "root_fifth", "root8", "octave"),
        bass_programs=(33, 34),
        harmony=((29, "power"), (30, "power"), (27, "strum"), (25, "strum"), (18, "block"), (0, "block")),
        leads=(29, 81, 18),
        p_lead=0.3,
        major_progressions=("I V vi IV", "I IV V IV", "I bVII IV I", "vi IV I V", "I IV vi V"),
        minor_progressions=("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVII i", "i bVI bVII i"),
        chords_per_bar=(1, 1, 2),
        moods_major=("energetic", "driving", "anthemic", "bright", "confident"),
        moods_minor=("gritty", "driving", "moody", "brooding", "restless"),
        drum_words=("driving drums", "punchy rock drums", "a steady backbeat", "live drums"),
    ),
    "pop": Genre(
        names=("pop",),
        nouns=("song", "track", "tune"),
        tempo=(88, 128),
        p_minor=0.3,
        grooves=(
            {"K": "x.....x.x.......", "S": "....x.......x...", "H": "x.x.x.x.x.x.x.x."},
            {
                "K": "x.......x.x.....",
                "C": "....x.......x...",
                "H": "xxxxxxxxxxxxxxxx",
                "TB": "....x.......x...",
            },
            {
                "K": "x..x....x.......",
                "S": "....x.......x...",
                "H": "x.x.x.x.x.x.x.x.",
                "SH": "xxxxxxxxxxxxxxxx",
            },
        ),
        fills=("snare16", "toms1", "snare_roll"),
        kits=(0, 8),
        swing8=(0, 0),
        swing16=(0, 0.15),
        bass_styles=("root8", "root", "root_fifth", "octave"),
        bass_programs=(33, 34, 38),
        harmony=(
            (0, "block"),
            (0, "arpeggio"),
            (4, "block"),
            (48, "block"),
            (89, "block"),
            (25, "strum"),
            (24, "arpeggio"),
        ),
        leads=(80, 73, 11, 81),
        p_lead=0.4,
        major_progressions=("I V vi IV", "vi IV I V", "I vi IV V", "IV V iii vi", "I IV vi V"),
        minor_progressions=("i bVI bIII bVII", "i iv bVI bVII", "i bVII bVI bVII"),
        chords_per_bar=(1, 1, 2),
        moods_major=("happy", "catchy", "uplifting", "bright", "feel-good"),
        moods_minor=("bittersweet", "emotional", "wistful", "catchy"),
        drum_words=("crisp drums", "a tight pop beat", "clean drums"),
    ),
    "funk": Genre(
        names=("funk", "funky"),
        nouns=("groove", "jam", "track"),
        tempo=(92, 118),
        p_minor=0.6,
        grooves=(
            {"K": "x.........x..x..", "S": "....X..o.o..X..o", "H": "XxXxXxXxXxXxXoXx"},
            {
                "K": "x..x......x.....",
                "S": "....X.o..o..X...",
                "H": "x.x.x.x.x.x.x...",
                "O": "..............x.",
            },
            {"K": "x.x....x..x.....", "S": "....X..o....X.o.", "H": "xxxxxxxxxxxxxxxx"},
        ),
        fills=("snare16", "snare_toms", "hat_open"),
        kits=(0, 8),
        swing8=(0, 0),
        swing16=(0, 0.3),
        bass_styles=("funk", "funk", "octave"),
        bass_programs=(36, 37, 33),
        harmony=((28, "funk"), (27, "funk"), (4, "funk"), (16, "funk"), (61, "stab"), (5, "funk")),
        leads=(61, 66, 80),
        p_lead=0.3,
        major_progressions=("I7 IV7", "I7 I7 IV7 I7", "I7 bVII7 IV7 I7"),
        minor_progressions=("i7 IV7", "i7 i7 iv7 i7", "i7 bVII7 i7 IV7", "i7 iv7"),
        chords_per_bar=(1, 1, 2),
        moods_major=("funky", "groovy", "bouncy", "playful"),
        moods_minor=("funky", "groovy", "slick", "gritty"),
        drum_words=("tight drums", "funky drums with ghost notes", "a syncopated beat"),
        ghosts=0.3,
    ),
    "disco": Genre(
        names=("disco",),
        nouns=("track", "groove", "dance tune"),
        tempo=(112, 128),
        p_minor=0.5,
        grooves=(
            {
                "K": "x...x...x...x...",
                "S": "....x.......x...",
                "O": "..x...x...x...x.",
                "H": "x...x...x...x...",
            },
            {
                "K": "x...x...x...x...",
                "C": "....x.......x...",
                "H": "xxXxxxXxxxXxxxXx",
                "TB": "..x...x...x...x.",
            },
        ),
        fills=("snare16", "toms1", "snare_roll"),
        kits=(0,),
        swing8=(0, 0),
        swing16=(0, 0.1),
        bass_styles=("octave", "octave", "funk"),
        bass_programs=(33, 34, 38),
        harmony=((48, "block"), (4, "funk"), (28, "funk"), (61, "stab"), (50, "block")),
        leads=(48, 80, 73),
        p_lead=0.35,
        major_progressions=("I vi ii V", "ii7 V7 Imaj7 vi7", "Imaj7 IV7 Imaj7 IV7", "IV V iii vi"),
        minor_progressions=("i7 iv7", "i bVII bVI bVII", "i7 iv7 bVII7 bIIImaj7"),
        chords_per_bar=(1, 2),
        moods_major=("danceable", "glittering", "joyful", "groovy"),
        moods_minor=("danceable", "groovy", "sultry", "nocturnal"),
        drum_words=("four-on-the-floor drums", "a disco beat", "open hi-hats on the offbeat"),
    ),
    "house": Genre(
        names=("house", "deep house"),
        nouns=("track", "groove", "club track"),
        tempo=(118, 128),
        p_minor=0.6,
        grooves=(
            {
                "K": "x...x...x...x...",
                "C": "....x.......x...",
                "O": "..x...x...x...x.",
                "H": "xx.xxx.xxx.xxx.x",
            },
            {
                "K": "x...x...x...x...",
                "C": "....x.......x...",
                "O": "..x...x...x...x.",
                "SH": "xxxxxxxxxxxxxxxx",
            },
            {"K": "x...x...x...x...", "S": "....x.......x...", "H": "..x...x...x...x."},
        ),
        fills=("clap_roll", "hat_open", "snare_roll"),
        kits=(24, 25, 0),
        swing8=(0, 0),
        swing16=(0, 0.2),
        bass_styles=("offbeat", "offbeat", "octave"),
        bass_programs=(38, 39),
        harmony=((0, "stab"), (89, "block"), (90, "block"), (50, "block"), (4, "stab"), (81, "arpeggio")),
        leads=(81, 80),
        p_lead=0.3,
        major_progressions=("I vi IV V", "ii7 V7 Imaj7 vi7", "IV V vi vi"),
        minor_progressions=("i bVI bVII i", "i7 iv7", "i7 bIIImaj7 bVII iv7", "i bVI bIII bVII"),
        chords_per_bar=(1, 1, 2),
        moods_major=("euphoric", "uplifting", "danceable", "hypnotic"),
        moods_minor=("hypnotic", "deep", "nocturnal", "driving"),
        drum_words=("a four-on-the-floor kick", "electronic drums", "a pumping house beat"),
    ),
    "hiphop": Genre(
        names=("hip hop", "hip-hop", "boom-bap hip hop"),
        nouns=("beat", "instrumental", "track"),
        tempo=(80, 98),
        p_minor=0.75,
        grooves=(
            {"K": "x......x.xx.....", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x.x.......x..x..", "S": "....X.......X...", "H": "xxxxxxxxxxxxxxxx"},
            {
                "K": "x.........x.....",
                "S": "....X.......X..o",
                "H": "x.x.x.x.x.x.x.x.",
                "O": "......x.........",
            },
        ),
        fills=("hat_open", "snare16"),
        kits=(25, 0),
        swing8=(0, 0),
        swing16=(0.2, 0.5),
        bass_styles=("hiphop", "hiphop", "sustained"),
        bass_programs=(38, 39, 33),
        harmony=((4, "block"), (4, "arpeggio"), (0, "block"), (48, "block"), (11, "arpeggio"), (5, "block")),
        leads=(73, 11, 80),
        p_lead=0.35,
        major_progressions=("Imaj7 vi7 ii7 V7", "Imaj7 IV7", "ii7 V7 Imaj7 Imaj7"),
        minor_progressions=("i7 iv7", "i bVI", "i bVII bVI V", "i7 bIIImaj7", "i7 bVImaj7 iv7 V7"),
        chords_per_bar=(1, 1, 2),
        moods_major=("laid-back", "smooth", "chill", "nostalgic"),
        moods_minor=("dark", "gritty", "moody", "laid-back", "melancholic"),
        drum_words=("a boom-bap beat", "heavy kick and snare", "swung drums"),
        ghosts=0.15,
    ),
    "jazz": Genre(
        names=("jazz", "swing jazz"),
        nouns=("tune", "piece", "jam", "number"),
        tempo=(100, 180),
        p_minor=0.3,
        grooves=(
            {"Y": "x...x.x.x...x.x.", "P": "....x.......x...", "K": "o...o...o...o..."},
            {"Y": "x...x.x.x...x.x.", "P": "....x.......x..."},
        ),
        fills=("jazz", "snare_roll"),
        kits=(32, 40),
        swing8=(0.75, 1.0),
        swing16=(0, 0),
        bass_styles=("walking",),
        bass_programs=(32,),
        harmony=((0, "jazz"), (26, "jazz"), (11, "jazz"), (16, "block"), (4, "jazz")),
        leads=(66, 56, 65, 11),
        p_lead=0.5,
        major_progressions=(
            "ii7 V7 Imaj7 Imaj7",
            "Imaj7 vi7 ii7 V7",
            "iii7 vi7 ii7 V7",
            "Imaj7 IV7 iii7 vi7",
        ),
        minor_progressions=("iim7b5 V7 i7 i7", "i7 iv7 iim7b5 V7", "i7 bVImaj7 iim7b5 V7"),
        chords_per_bar=(1, 2),
        moods_major=("swinging", "elegant", "relaxed", "sophisticated"),
        moods_minor=("smoky", "moody", "late-night", "sophisticated"),
        drum_words=("a swinging ride cymbal", "brushed drums", "swing drums"),
        velocity=0.85,
        ghosts=0.25,
    ),
    "reggae": Genre(
        names=("reggae",),
        nouns=("groove", "tune", "song"),
        tempo=(70, 92),
        p_minor=0.4,
        grooves=(
            {"K": "........x.......", "R": "........x.......", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x.......x.......", "R": "........x.......", "H": "x.xxx.xxx.xxx.xx"},
        ),
        fills=("snare_toms", "toms1"),
        kits=(0, 8),
        swing8=(0.2, 0.6),
        swing16=(0, 0),
        bass_styles=("reggae",),
        bass_programs=(33, 38),
        harmony=((27, "skank"), (28, "skank"), (16, "skank"), (0, "skank")),
        leads=(16, 56, 73),
        p_lead=0.3,
        major_progressions=("I IV", "I V", "I IV V IV", "I vi IV V"),
        minor_progressions=("i bVII", "i iv", "i bVI bVII i", "i iv bVII i"),
        chords_per_bar=(1,),
        moods_major=("sunny", "relaxed", "positive", "easygoing"),
        moods_minor=("rootsy", "relaxed", "meditative", "dubby"),
        drum_words=("one-drop drums", "a rimshot one-drop beat", "laid-back drums"),
    ),
    "ballad": Genre(
        names=("ballad", "pop ballad"),
        nouns=("ballad", "song", "piece"),
        tempo=(60, 80),
        p_minor=0.4,
        grooves=(
            {"K": "x.......x.x.....", "S": "....x.......x...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x.......x.......", "R": "....x.......x...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x.........x.....", "S": "....x.......x...", "Y": "x.x.x.x.x.x.x.x."},
        ),
        fills=("toms1", "snare_roll"),
        kits=(0, 40),
        swing8=(0, 0),
        swing16=(0, 0),
        bass_styles=("sustained", "root_fifth", "root"),
        bass_programs=(35, 33, 32),
        harmony=(
            (0, "arpeggio"),
            (48, "block"),
            (49, "block"),
            (89, "block"),
            (24, "arpeggio"),
            (0, "block"),
            (52, "block"),
        ),
        leads=(73, 48, 0, 65),
        p_lead=0.4,
        major_progressions=("I V vi IV", "I vi IV V", "vi IV I V", "IV I V vi", "I iii IV V"),
        minor_progressions=("i bVI bIII bVII", "i iv bVI V", "i bVI iv V"),
        chords_per_bar=(1, 1, 2),
        moods_major=("tender", "heartfelt", "warm", "romantic", "peaceful"),
        moods_minor=("melancholic", "sad", "emotional", "reflective"),
        drum_words=("soft drums", "gentle drums", "a restrained beat"),
        velocity=0.8,
    ),
    "metal": Genre(
        names=("metal", "heavy metal"),
        nouns=("track", "riff", "song"),
        tempo=(120, 176),
        p_minor=0.9,
        grooves=(
            {"K": "xxxxxxxxxxxxxxxx", "S": "....X.......X...", "X": "x...x...x...x..."},
            {"K": "x.x.x.x.x.x.x.x.", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "xx..xx..xx..xx..", "S": "....X.......X...", "B": "x.x.x.x.x.x.x.x."},
        ),
        fills=("toms2", "snare16", "snare_toms"),
        kits=(16, 0),
        swing8=(0, 0),
        swing16=(0, 0),
        bass_styles=("root16", "root8"),
        bass_programs=(34, 33),
        harmony=((30, "power"), (29, "power")),
        leads=(30, 81),
        p_lead=0.3,
        major_progressions=("I bVII IV I", "I IV V IV"),
        minor_progressions=("i bVI bVII i", "i bII i bVII", "i i bVI bVII", "i iv bVI V"),
        chords_per_bar=(1, 2),
        moods_major=("aggressive", "powerful", "heavy"),
        moods_minor=("aggressive", "dark", "heavy", "menacing", "intense"),
        drum_words=("double-kick drums", "pounding drums", "blasting drums"),
        velocity=1.05,
    ),
    "blues": Genre(
        names=("blues", "shuffle blues"),
        nouns=("shuffle", "tune", "jam"),
        tempo=(72, 128),
        p_minor=0.3,
        grooves=(
            {"K": "x.......x.......", "S": "....X.......X...", "H": "x.x.x.x.x.x.x.x."},
            {"K": "x.......x.......", "S": "....X.......X...", "Y": "x.x.x.x.x.x.x.x."},
        ),
        fills=("snare_toms", "toms1", "snare_roll"),
        kits=(0, 8),
        swing8=(0.7, 1.0),
        swing16=(0, 0),
        bass_styles=("boogie", "walking"),
        bass_programs=(33, 32),
        harmony=((0, "shuffle"), (16, "shuffle"), (17, "block"), (29, "shuffle"), (27, "shuffle")),
        leads=(22, 66, 29),
        p_lead=0.5,
        major_progressions=(BLUES_MAJOR, BLUES_QUICK),
        minor_progressions=(BLUES_MINOR,),
        chords_per_bar=(1,),
        moods_major=("soulful", "gritty", "swaggering", "easygoing"),
        moods_minor=("soulful", "mournful", "smoky", "gritty"),
        drum_words=("shuffle drums", "a swinging backbeat", "a shuffle beat"),
    ),
}


class Note(NamedTuple):
    """A MIDI note in ticks (480 per quarter note)."""

    channel: int
    pitch: int
    velocity: int
    start: int
    end: int


@dataclass
class ChordSpan:
    """One chord of the progression with its time span in seconds."""

    name: str
    roman: str
    root_pc: int
    quality: str
    start: float
    end: float
    bar: int


@dataclass
class PartSpec:
    """One instrument of a stem."""

    role: str  # "bass", "drums", "harmony" or "lead"
    program: int
    style: str
    channel: int
    name: str
    words: str


@dataclass
class SongSpec:
    """All parameters and the full score of one synthetic song (deterministic from seed and duration)."""

    seed: int
    duration: float
    genre: str
    tempo: float
    key: str
    tonic_pc: int
    mode: str
    progression: list[str]
    chords_per_bar: int
    n_bars: int
    swing8: float
    swing16: float
    drum_groove: int
    parts: list[PartSpec]
    chords: list[ChordSpan]
    beats: list[float]
    downbeats: list[float]
    captions: list[str]
    stem_levels_db: dict[str, float]
    reverb: dict[str, int]
    notes: dict[str, list[Note]]
    time_signature: tuple[int, int] = (4, 4)
    sample_rate: int = SAMPLE_RATE

    @property
    def caption(self) -> str:
        """The main caption."""
        return self.captions[0]

    def part(self, role: str) -> list[PartSpec]:
        """The parts with the given role."""
        return [p for p in self.parts if p.role == role]

    def meta(self) -> dict[str, Any]:
        """JSON-ready ground truth (everything but the notes, which live in song.mid)."""
        d = {k: v for k, v in asdict(self).items() if k != "notes"}
        d["time_signature"] = list(self.time_signature)
        d["caption"] = self.caption
        d["key_name"] = f"{self.key} {self.mode}"
        d["instruments"] = {
            "bass": [_part_meta(p) for p in self.part("bass")],
            "drums": [_part_meta(p) for p in self.part("drums")],
            "other": [_part_meta(p) for p in self.parts if p.role in ("harmony", "lead")],
        }
        return d


def _part_meta(p: PartSpec) -> dict[str, Any]:
    return {"program": p.program, "name": p.name, "style": p.style, "role": p.role, "words": p.words}


# ----------------------------------------------------------------------------------------------------
# Harmony helpers


def parse_roman(numeral: str, mode: str) -> tuple[int, str]:
    """Roman numeral (``"bVII"``, ``"ii7"``, ``"Imaj7"``, ``"iim7b5"``) -> (semitones above tonic, quality).

    Degrees are major-scale based, so minor-key progressions spell their flats (``i bVI bIII bVII``).
    """
    s = numeral
    offset = 0
    while s and s[0] in "b#":
        offset += -1 if s[0] == "b" else 1
        s = s[1:]
    i = 0
    while i < len(s) and s[i].upper() in "IV":
        i += 1
    base, suffix = s[:i], s[i:]
    if base.upper() not in ROMAN_DEGREES:
        raise ValueError(f"bad roman numeral {numeral!r}")
    minor = base.islower()
    if suffix == "":
        quality = "min" if minor else "maj"
    elif suffix == "7":
        quality = "min7" if minor else "7"
    elif suffix == "maj7":
        quality = "maj7"
    elif suffix in ("m7b5", "ø"):
        quality = "m7b5"
    elif suffix in ("dim", "°"):
        quality = "dim"
    else:
        raise ValueError(f"bad chord suffix in {numeral!r}")
    return (ROMAN_DEGREES[base.upper()] + offset) % 12, quality


def chord_name(root_pc: int, quality: str, flats: bool) -> str:
    """Chord symbol such as ``Em7`` or ``Bbmaj7``."""
    names = NOTE_NAMES_FLAT if flats else NOTE_NAMES_SHARP
    return names[root_pc % 12] + QUALITIES[quality][1]


def _voicing(pcs: Sequence[int], prev: list[int] | None, center: int, lo: int, hi: int) -> list[int]:
    """Close voicing of pitch classes within [lo, hi], nearest to the previous voicing (voice leading)."""
    best: list[int] = []
    best_cost = float("inf")
    n = len(pcs)
    for inv in range(n):
        order = list(pcs[inv:]) + list(pcs[:inv])
        for base_oct in range(lo // 12 - 1, hi // 12 + 1):
            notes = []
            cur = base_oct * 12 + order[0]
            for pc in order:
                while cur % 12 != pc:
                    cur += 1
                notes.append(cur)
                cur += 1
            if notes[0] < lo or notes[-1] > hi:
                continue
            cost = abs(float(np.mean(notes)) - center) * 0.5
            if prev:
                m = min(len(prev), n)
                cost += sum(abs(a - b) for a, b in zip(sorted(prev)[:m], notes[:m], strict=True))
            if cost < best_cost:
                best, best_cost = notes, cost
    return best or [center + pc % 12 - 6 for pc in pcs]


def _bass_pitch(pc: int) -> int:
    """Bass root between E1 (28) and D#2 (39)."""
    return 28 + (pc - 4) % 12


def _scale_pcs(tonic: int, mode: str) -> list[int]:
    return [(tonic + i) % 12 for i in SCALES[mode]]


# ----------------------------------------------------------------------------------------------------
# Score generation


class _Score:
    """Collects notes on a 16th-note grid with swing and light humanization."""

    def __init__(self, rng: np.random.Generator, swing8: float, swing16: float, end_tick: int) -> None:
        self.rng = rng
        self.swing8 = swing8
        self.swing16 = swing16
        self.end_tick = end_tick
        self.notes: list[Note] = []

    def tick(self, bar: int, step: float) -> int:
        """Tick of a 16th step (may be fractional) in a bar, with swing."""
        s = int(step)
        off = 0.0
        if self.swing8:
            off += self.swing8 * {0: 0, 1: 40, 2: 80, 3: 40}[s % 4]
        if self.swing16 and s % 2 == 1:
            off += self.swing16 * 40
        return int(bar * 16 * STEP + step * STEP + off)

    def add(
        self,
        ch: int,
        pitch: int,
        vel: float,
        bar: int,
        step: float,
        length: float,
        jitter: int = 6,
        gate: float = 0.92,
    ) -> None:
        start = self.tick(bar, step) + (int(self.rng.integers(-jitter, jitter + 1)) if jitter else 0)
        end = self.tick(bar, step + length)
        start = max(start, 0)
        end = max(start + 30, start + int((end - start) * gate))
        if start >= self.end_tick or not 0 <= pitch <= 127:
            return
        v = int(np.clip(round(vel + self.rng.normal(0, 5)), 1, 127))
        self.notes.append(Note(ch, int(pitch), v, start, min(end, self.end_tick + TICKS_PER_BEAT)))

    def finish(self) -> list[Note]:
        """Sorted notes; same-pitch overlaps on a channel are cut so note-offs never kill a later note."""
        notes = sorted(self.notes, key=lambda n: (n.start, n.channel, n.pitch))
        last: dict[tuple[int, int], int] = {}
        out: list[Note] = []
        for n in notes:
            k = (n.channel, n.pitch)
            if k in last:
                p = out[last[k]]
                if p.end > n.start:
                    out[last[k]] = p._replace(end=max(p.start + 1, n.start))
                    if out[last[k]].end <= out[last[k]].start:
                        out[last[k]] = p._replace(end=p.start + 1)
            last[k] = len(out)
            out.append(n)
        return [n for n in out if n.end > n.start]


def _drums(sc: _Score, g: Genre, groove: dict[str, str], n_bars: int, phrase: int) -> None:
    rng = sc.rng
    vel_scale = g.velocity
    for bar in range(n_bars):
        hits: dict[tuple[str, int], str] = {}
        for voice, pat in groove.items():
            for s, c in enumerate(pat):
                if c != ".":
                    hits[(voice, s)] = c
        # small variations
        if "K" in groove and rng.random() < 0.2:
            s = int(rng.choice([3, 6, 7, 10, 11, 14]))
            hits.setdefault(("K", s), "x")
        if g.ghosts and "S" in groove:
            for s in range(16):
                if rng.random() < g.ghosts * 0.3 and ("S", s) not in hits and s % 4 != 0:
                    hits[("S", s)] = "o"
        if "H" in groove and rng.random() < 0.15:
            hits.pop(("H", 14), None)
            hits[("O", 14)] = "x"
        is_fill = (bar % phrase == phrase - 1) and bar > 0
        if is_fill:
            fill = FILLS[str(rng.choice(list(g.fills)))]
            start = min(len(pat) - len(pat.lstrip(".")) for pat in fill.values())
            hits = {k: v for k, v in hits.items() if k[1] < start or k[0] in ("K", "P")}
            for voice, pat in fill.items():
                for s, c in enumerate(pat):
                    if c != ".":
                        hits[(voice, s)] = c
        if bar == 0 or (bar % phrase == 0):
            if g.kits[0] in (32, 40) or rng.random() < 0.85:
                hits[("X", 0)] = "X"
                hits.pop(("H", 0), None)
        for (voice, s), c in hits.items():
            v = DRUM_VELOCITY[c] * vel_scale
            if voice in ("H", "SH", "Y") and c == "x":
                v *= 0.78 if s % 4 else 0.92
            sc.add(DRUM_CHANNEL, DRUM_NOTES[voice], v, bar, s, 1, jitter=4, gate=1.0)


def _chord_at(chords: list[ChordSpan], bar: int, step: int, cpb: int) -> ChordSpan | None:
    idx = bar * cpb + (step * cpb) // 16
    return chords[idx] if idx < len(chords) else None


def _chord_pcs(ch: ChordSpan) -> list[int]:
    return [(ch.root_pc + i) % 12 for i in QUALITIES[ch.quality][0]]


def _bass(sc: _Score, style: str, chords: list[ChordSpan], n_bars: int, cpb: int, vel: float) -> None:
    rng = sc.rng
    funk_patterns = [
        [(0, 2, 0), (3, 1, 12), (6, 2, 0), (10, 1, 10), (11, 1, 12), (14, 2, 7)],
        [(0, 3, 0), (3, 1, 0), (7, 1, 12), (10, 2, 0), (13, 1, 10), (14, 1, 12)],
        [(0, 1, 0), (2, 1, 12), (4, 2, 0), (7, 1, 7), (8, 2, 0), (11, 1, 12), (12, 2, 10), (14, 1, 7)],
    ]
    funk = funk_patterns[int(rng.integers(len(funk_patterns)))]
    hiphop_patterns = [
        [(0, 6, 0), (7, 3, 0), (10, 6, 7)],
        [(0, 10, 0), (10, 2, 0), (13, 3, 12)],
        [(0, 3, 0), (3, 5, 0), (10, 6, 10)],
    ]
    hiphop = hiphop_patterns[int(rng.integers(len(hiphop_patterns)))]
    reggae_patterns = [
        [(2, 2, 0), (4, 2, 0), (6, 1, 7), (8, 4, 12), (12, 2, 7), (14, 2, 3)],
        [(2, 4, 0), (6, 2, 7), (10, 2, 0), (12, 4, 12)],
    ]
    reggae = reggae_patterns[int(rng.integers(len(reggae_patterns)))]
    for bar in range(n_bars):
        c0 = _chord_at(chords, bar, 0, cpb)
        if c0 is None:
            break

        def root(step: int, bar: int = bar, c0: ChordSpan = c0) -> int:
            c = _chord_at(chords, bar, step, cpb) or c0
            return _bass_pitch(c.root_pc)

        def fifth(step: int, bar: int = bar, c0: ChordSpan = c0) -> int:
            c = _chord_at(chords, bar, step, cpb) or c0
            return root(step) + QUALITIES[c.quality][0][2]

        events: list[tuple[int, float, int, float]] = []  # step, length, pitch, vel factor
        if style == "root":
            events = [(s, 4, root(s), 1.0 if s == 0 else 0.85) for s in (0, 4, 8, 12)]
        elif style == "root8":
            events = [(s, 2, root(s), 1.0 if s % 4 == 0 else 0.8) for s in range(0, 16, 2)]
        elif style == "root16":
            events = [(s, 1, root(s), 1.0 if s % 4 == 0 else 0.75) for s in range(16)]
        elif style == "root_fifth":
            events = [
                (0, 6, root(0), 1.0),
                (6, 2, root(6), 0.7),
                (8, 6, fifth(8), 0.9),
                (14, 2, root(14), 0.7),
            ]
        elif style == "octave":
            events = [
                (s, 2, root(s) + (12 if s % 4 else 0), 1.0 if s % 4 == 0 else 0.85) for s in range(0, 16, 2)
            ]
        elif style == "sustained":
            events = [(0, 16, root(0), 0.9)] if cpb == 1 else [(0, 8, root(0), 0.9), (8, 8, root(8), 0.85)]
            if cpb == 1 and rng.random() < 0.4:
                events = [(0, 12, root(0), 0.9), (12, 4, fifth(12), 0.7)]
        elif style == "funk":
            events = [(s, ln, root(s) + iv, 1.0 if s == 0 else 0.85) for s, ln, iv in funk]
        elif style == "hiphop":
            events = [(s, ln, root(s) + iv, 1.0) for s, ln, iv in hiphop]
        elif style == "reggae":
            events = [(s, ln, root(s) + iv, 0.95) for s, ln, iv in reggae]
        elif style == "offbeat":
            events = [(s, 2, root(s) + (12 if rng.random() < 0.15 else 0), 0.95) for s in (2, 6, 10, 14)]
        elif style == "boogie":
            seq = [0, 4, 7, 9, 10, 9, 7, 4]
            events = []
            for k, s in enumerate(range(0, 16, 2)):
                c = _chord_at(chords, bar, s, cpb) or c0
                iv = seq[k] if QUALITIES[c.quality][0][1] == 4 else [0, 3, 7, 8, 10, 8, 7, 3][k]
                events.append((s, 2, root(s) + iv, 1.0 if s % 4 == 0 else 0.8))
        elif style == "walking":
            nxt = _chord_at(chords, bar + 1, 0, cpb) or c0
            events = []
            for s in (0, 4, 8, 12):
                c = _chord_at(chords, bar, s, cpb) or c0
                r = root(s)
                seg_start = s == 0 or (cpb == 2 and s == 8)
                last_of_seg = s == 12 or (cpb == 2 and s == 4)
                if seg_start:
                    p = r
                elif last_of_seg:
                    target = _bass_pitch(nxt.root_pc) if s == 12 else root(8)
                    p = target + int(rng.choice([-1, 1, -2, 2]))
                    if p < 28:
                        p += 12
                else:
                    p = r + int(rng.choice([QUALITIES[c.quality][0][1], QUALITIES[c.quality][0][2], 12]))
                events.append((s, 4, p, 1.0 if s == 0 else 0.9))
        else:
            raise ValueError(f"unknown bass style {style!r}")
        for s, ln, p, vf in events:
            while p > 55:
                p -= 12
            sc.add(BASS_CHANNEL, p, 100 * vel * vf, bar, s, ln, gate=0.9)


STRUM_PATTERNS = ("D.D.DUDU", "D...DUDU", "D.DU.UDU", "D..D..D.")
ARP_ORDERS = ("up", "updown", "down", "broken")


def _harmony(sc: _Score, style: str, chords: list[ChordSpan], n_bars: int, cpb: int, vel: float) -> None:
    rng = sc.rng
    ch = HARMONY_CHANNEL
    prev: list[int] | None = None
    strum = STRUM_PATTERNS[int(rng.integers(len(STRUM_PATTERNS)))]
    arp_order = ARP_ORDERS[int(rng.integers(len(ARP_ORDERS)))]
    arp_rate = int(rng.choice([2, 2, 1])) if style == "arpeggio" else 2
    funk_pats = ("..x.x..x.x.x..x.", "x..x..x...x..x..", ".x.x.x...x.x.x.x", "..x...x...x.x.x.")
    funk = funk_pats[int(rng.integers(len(funk_pats)))]
    stab_pats = ("..x...x...x...x.", "x..x..x...x..x..", "..x..x....x..x..")
    stab = stab_pats[int(rng.integers(len(stab_pats)))]
    skank = ("....x.......x...", "..x...x...x...x.")[int(rng.integers(2))]
    shuffle = ("x.x.x.x.x.x.x.x.", "....x..x....x..x", "x...x...x...x...")[int(rng.integers(3))]
    power_rate = int(rng.choice([2, 2, 1]))
    for bar in range(n_bars):
        for seg in range(cpb):
            seg_step = seg * 16 // cpb
            seg_len = 16 // cpb
            c = _chord_at(chords, bar, seg_step, cpb)
            if c is None:
                return
            pcs = _chord_pcs(c)
            if style == "power":
                r = 40 + (c.root_pc - 4) % 12
                notes = [r, r + 7, r + 12]
                for s in range(seg_step, seg_step + seg_len, power_rate):
                    accent = s % 8 == 0
                    ln = power_rate * (2 if accent and rng.random() < 0.3 else 1)
                    sc.add(ch, notes[0], 100 * vel * (1.0 if accent else 0.8), bar, s, ln, gate=0.8)
                    if accent or rng.random() < 0.5:
                        for p in notes[1:]:
                            sc.add(ch, p, 92 * vel, bar, s, ln, gate=0.8)
                continue
            center = {"block": 62, "arpeggio": 64, "strum": 60}.get(style, 66)
            voicing = _voicing(pcs, prev, center, center - 10, center + 12)
            prev = voicing
            if style == "block":
                ln = seg_len if rng.random() < 0.7 or seg_len < 16 else 8
                for s in range(seg_step, seg_step + seg_len, ln):
                    for p in voicing:
                        sc.add(ch, p, 78 * vel, bar, s, ln, gate=0.98, jitter=3)
            elif style == "arpeggio":
                seq = voicing + [voicing[0] + 12]
                if arp_order == "down":
                    seq = seq[::-1]
                elif arp_order == "updown":
                    seq = seq + seq[-2:0:-1]
                elif arp_order == "broken":
                    seq = [seq[0], seq[2 % len(seq)], seq[1], seq[-1]]
                for k, s in enumerate(range(seg_step, seg_step + seg_len, arp_rate)):
                    sc.add(
                        ch,
                        seq[k % len(seq)],
                        80 * vel * (1.0 if s % 4 == 0 else 0.85),
                        bar,
                        s,
                        arp_rate * 1.5,
                        gate=1.0,
                    )
            elif style == "strum":
                full = [voicing[0] - 12] + voicing
                for k, c8 in enumerate(strum):
                    s = k * 2
                    if c8 == "." or not seg_step <= s < seg_step + seg_len:
                        continue
                    order = full if c8 == "D" else full[::-1]
                    for j, p in enumerate(order):
                        sc.add(ch, p, 82 * vel * (1.0 if c8 == "D" else 0.8), bar, s + j * 0.08, 2, jitter=2)
            elif style in ("funk", "stab", "skank", "shuffle"):
                pat = {"funk": funk, "stab": stab, "skank": skank, "shuffle": shuffle}[style]
                ln = {"funk": 0.7, "stab": 1.2, "skank": 1.0, "shuffle": 1.5}[style]
                for s in range(seg_step, seg_step + seg_len):
                    if pat[s] == "x":
                        for p in voicing:
                            sc.add(ch, p, 86 * vel, bar, s, ln, jitter=3)
            elif style == "jazz":
                n_hits = int(rng.integers(1, 3)) if cpb == 2 else int(rng.integers(2, 4))
                cand = [s for s in (0, 2, 4, 6, 10, 12, 14) if s < seg_len]
                for s in sorted(rng.choice(cand, size=min(n_hits, len(cand)), replace=False)):
                    ln = float(rng.choice([1.5, 2, 3]))
                    for p in voicing:
                        sc.add(ch, p, 72 * vel, bar, seg_step + int(s), ln, jitter=4)
            else:
                raise ValueError(f"unknown part style {style!r}")


LEAD_RHYTHMS = (
    ((0, 4), (4, 4), (8, 4), (12, 4)),
    ((0, 6), (6, 2), (8, 8)),
    ((0, 2), (2, 2), (4, 4), (8, 2), (10, 2), (12, 4)),
    ((0, 8), (8, 8)),
    ((2, 2), (4, 4), (8, 6), (14, 2)),
    ((0, 3), (3, 3), (6, 2), (8, 8)),
    ((0, 4), (6, 2), (8, 2), (10, 6)),
)


def _lead(
    sc: _Score,
    spec_tonic: int,
    mode: str,
    chords: list[ChordSpan],
    n_bars: int,
    cpb: int,
    start_bar: int,
    vel: float,
) -> None:
    rng = sc.rng
    scale = _scale_pcs(spec_tonic, mode)
    motif = [LEAD_RHYTHMS[int(i)] for i in rng.integers(len(LEAD_RHYTHMS), size=2)]
    pitch = 72 + (spec_tonic - 0) % 12 - (12 if spec_tonic > 5 else 0)
    for bar in range(start_bar, n_bars):
        k = bar - start_bar
        rhythm = motif[k % 2] if k % 4 != 3 else ((0, 4), (4, 12))
        for s, ln in rhythm:
            c = _chord_at(chords, bar, s, cpb)
            if c is None:
                return
            if rng.random() < 0.08:
                continue
            if s % 4 == 0:
                tones = _chord_pcs(c)
                cands = [p for p in range(pitch - 7, pitch + 8) if p % 12 in tones]
            else:
                cands = [p for p in range(pitch - 4, pitch + 5) if p % 12 in scale and p != pitch]
            cands = [p for p in cands if 62 <= p <= 86] or [pitch]
            weights = np.array([1.0 / (1 + abs(p - pitch)) for p in cands])
            pitch = int(rng.choice(cands, p=weights / weights.sum()))
            sc.add(LEAD_CHANNEL, pitch, 92 * vel * (1.0 if s % 8 == 0 else 0.9), bar, s, ln, gate=0.9)


# ----------------------------------------------------------------------------------------------------
# Captions


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _tempo_word(bpm: float, rng: np.random.Generator) -> str:
    for limit, words in (
        (75, ("slow", "gentle", "unhurried")),
        (96, ("laid-back", "mid-tempo", "relaxed")),
        (118, ("upbeat", "lively", "bouncy")),
        (140, ("energetic", "fast", "driving")),
    ):
        if bpm < limit:
            return str(rng.choice(words))
    return str(rng.choice(("fast", "high-energy", "frantic")))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _part_phrase(p: PartSpec, rng: np.random.Generator) -> str:
    name = str(rng.choice(GM_PROGRAMS[p.program][1]))
    if p.role == "bass":
        adj = str(rng.choice(BASS_STYLE_WORDS[p.style]))
        return f"{adj} {name}".strip() if adj and adj not in name else name
    if p.role == "harmony" and p.style == "block" and rng.random() < 0.5:
        if p.program in (48, 49, 50, 89, 90, 52):
            return name if "pad" in name else f"{name.removesuffix('s')} pads"
        return f"{name} chords"
    if p.role == "lead":
        return f"{_a(name)} {rng.choice(STYLE_WORDS['lead'])}"
    return f"{name} {rng.choice(STYLE_WORDS[p.style])}"


def make_captions(spec: SongSpec, g: Genre, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` differently phrased captions naming tempo, key, genre, mood and instruments."""
    bpm = int(round(spec.tempo))
    moods = g.moods_minor if spec.mode == "minor" else g.moods_major
    out: list[str] = []
    templates = rng.permutation(8)
    for t in templates[:n]:
        genre = str(rng.choice(g.names))
        noun = str(rng.choice(g.nouns))
        mood = str(rng.choice(moods))
        tw = _tempo_word(spec.tempo, rng)
        key = f"{spec.key} {spec.mode}"
        inst = [_part_phrase(p, rng) for p in spec.parts if p.role != "drums"]
        inst.append(str(rng.choice(g.drum_words)))
        inst = [inst[i] for i in rng.permutation(len(inst))]
        ins = _join(inst)
        if t == 0:
            c = f"{_a(tw).capitalize()} {genre} {noun} in {key} at {bpm} BPM with {ins}."
        elif t == 1:
            c = f"{genre.capitalize()} {noun}, {bpm} BPM, {key}, {mood}, featuring {ins}."
        elif t == 2:
            c = f"{ins[0].upper() + ins[1:]} play {_a(tw)} {genre} {noun} in {key} ({bpm} bpm)."
        elif t == 3:
            c = f"{_a(mood).capitalize()} {genre} {noun} in {key} with {ins}, around {bpm} BPM."
        elif t == 4:
            c = f"{tw.capitalize()} {mood} {genre} at {bpm} bpm in {key}: {ins}."
        elif t == 5:
            c = f"genre: {genre}, tempo: {bpm} bpm, key: {key}, mood: {mood}, instruments: {', '.join(inst)}"
        elif t == 6:
            c = f"{mood.capitalize()} {genre} with {ins}. {bpm} BPM, {key}."
        else:
            c = (
                f"{_a(genre).capitalize()} {noun} with a tempo of {bpm} BPM in the key of {key}, "
                f"{tw} and {mood}, with {ins}."
            )
        out.append(c)
    return out


# ----------------------------------------------------------------------------------------------------
# Song spec


def make_song_spec(seed: int, duration: float) -> SongSpec:
    """Draw a complete song (parameters, score, ground truth, captions) from ``seed``; deterministic."""
    if duration <= 0:
        raise MusicGenStemError(f"duration must be positive, got {duration}")
    rng = np.random.Generator(np.random.PCG64(seed))
    genre_name = str(rng.choice(sorted(GENRES)))
    g = GENRES[genre_name]
    tempo = float(rng.integers(g.tempo[0], g.tempo[1] + 1))
    mode = "minor" if rng.random() < g.p_minor else "major"
    tonic = int(rng.integers(12))
    key = (MINOR_KEY_NAMES if mode == "minor" else MAJOR_KEY_NAMES)[tonic]
    flats = tonic in (FLAT_MINOR if mode == "minor" else FLAT_MAJOR) or "b" in key
    progs = g.minor_progressions if mode == "minor" else g.major_progressions
    progression = str(rng.choice(progs)).split()
    cpb = int(rng.choice(g.chords_per_bar)) if len(progression) < 12 else 1
    swing8 = float(round(rng.uniform(*g.swing8), 3)) if g.swing8[1] else 0.0
    swing16 = float(round(rng.uniform(*g.swing16), 3)) if g.swing16[1] else 0.0

    spb = 60.0 / tempo
    bar_s = 4 * spb
    n_bars = int(np.ceil(duration / bar_s - 1e-9))
    beats = [round(k * spb, 6) for k in range(int(np.ceil(duration / spb - 1e-9))) if k * spb < duration]
    downbeats = beats[::4]
    chords: list[ChordSpan] = []
    for i in range(n_bars * cpb):
        start = i * bar_s / cpb
        if start >= duration:
            break
        numeral = progression[i % len(progression)]
        off, quality = parse_roman(numeral, mode)
        root = (tonic + off) % 12
        chords.append(
            ChordSpan(
                chord_name(root, quality, flats),
                numeral,
                root,
                quality,
                round(start, 6),
                round(min(duration, (i + 1) * bar_s / cpb), 6),
                i // cpb,
            )
        )

    groove_idx = int(rng.integers(len(g.grooves)))
    kit = int(rng.choice(g.kits))
    bass_prog = int(rng.choice(g.bass_programs))
    bass_style = str(rng.choice(g.bass_styles))
    h_prog, h_style = g.harmony[int(rng.integers(len(g.harmony)))]
    parts = [
        PartSpec(
            "bass",
            bass_prog,
            bass_style,
            BASS_CHANNEL,
            GM_PROGRAMS[bass_prog][0],
            GM_PROGRAMS[bass_prog][1][0],
        ),
        PartSpec("drums", kit, f"groove{groove_idx}", DRUM_CHANNEL, f"{DRUM_KITS[kit]} Kit", "drums"),
        PartSpec(
            "harmony", h_prog, h_style, HARMONY_CHANNEL, GM_PROGRAMS[h_prog][0], GM_PROGRAMS[h_prog][1][0]
        ),
    ]
    has_lead = rng.random() < g.p_lead
    if has_lead:
        l_prog = int(rng.choice([p for p in g.leads if p != h_prog] or g.leads))
        parts.append(
            PartSpec("lead", l_prog, "lead", LEAD_CHANNEL, GM_PROGRAMS[l_prog][0], GM_PROGRAMS[l_prog][1][0])
        )
    phrase = 8 if n_bars >= 16 and rng.random() < 0.5 else 4
    levels = {
        "drums": round(float(-21 + rng.uniform(-2, 2)), 2),
        "bass": round(float(-22 + rng.uniform(-2, 2)), 2),
        "other": round(float(-23 + rng.uniform(-2, 2)), 2),
    }
    reverb = {
        "bass": int(rng.integers(0, 15)),
        "drums": int(rng.integers(10, 45)),
        "other": int(rng.integers(25, 70)),
    }

    ticks_per_s = TICKS_PER_BEAT / spb
    end_tick = int(round(duration * ticks_per_s))
    vel = g.velocity * float(rng.uniform(0.9, 1.05))
    notes: dict[str, list[Note]] = {}
    sc = _Score(rng, swing8, swing16, end_tick)
    _bass(sc, bass_style, chords, n_bars, cpb, vel)
    notes["bass"] = sc.finish()
    sc = _Score(rng, swing8, swing16, end_tick)
    _drums(sc, g, g.grooves[groove_idx], n_bars, phrase)
    notes["drums"] = sc.finish()
    sc = _Score(rng, swing8, swing16, end_tick)
    _harmony(sc, h_style, chords, n_bars, cpb, vel)
    if has_lead:
        start_bar = 0 if n_bars < 8 else int(rng.choice([0, 4]))
        _lead(sc, tonic, mode, chords, n_bars, cpb, start_bar, vel)
    notes["other"] = sc.finish()

    spec = SongSpec(
        seed=int(seed),
        duration=float(duration),
        genre=genre_name,
        tempo=tempo,
        key=key,
        tonic_pc=tonic,
        mode=mode,
        progression=progression,
        chords_per_bar=cpb,
        n_bars=n_bars,
        swing8=swing8,
        swing16=swing16,
        drum_groove=groove_idx,
        parts=parts,
        chords=chords,
        beats=beats,
        downbeats=downbeats,
        captions=[],
        stem_levels_db=levels,
        reverb=reverb,
        notes=notes,
    )
    spec.captions = make_captions(spec, g, rng)
    return spec


# ----------------------------------------------------------------------------------------------------
# MIDI and rendering


def _midi_track(spec: SongSpec, stem: str, with_tempo: bool) -> mido.MidiTrack:
    track = mido.MidiTrack()
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
    if with_tempo:
        events.append((0, 0, mido.MetaMessage("set_tempo", tempo=int(round(60e6 / spec.tempo)))))
        events.append((0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)))
    roles = {"bass": ("bass",), "drums": ("drums",), "other": ("harmony", "lead")}[stem]
    for p in spec.parts:
        if p.role in roles:
            events.append((0, 1, mido.Message("program_change", channel=p.channel, program=p.program)))
            for cc, val in ((7, 100), (10, 64), (91, spec.reverb[stem]), (93, 0)):
                events.append(
                    (0, 1, mido.Message("control_change", channel=p.channel, control=cc, value=val))
                )
    for n in spec.notes[stem]:
        events.append(
            (n.start, 3, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=n.velocity))
        )
        events.append((n.end, 2, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    t = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - t))
        t = tick
    end = int(round((spec.duration + 0.25) * TICKS_PER_BEAT * spec.tempo / 60.0))
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - t)))
    return track


def song_midi(spec: SongSpec, stems: Sequence[str] = STEMS) -> mido.MidiFile:
    """Type-1 MIDI file holding the given stems (one track each; the first carries the tempo)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    for i, stem in enumerate(stems):
        mid.tracks.append(_midi_track(spec, stem, with_tempo=i == 0))
    return mid


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path:
    """The soundfont to use: the argument, then ``$MUSICGEN_STEM_SOUNDFONT``, then Debian's GM soundfonts."""
    given = soundfont or os.environ.get(SOUNDFONT_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise MusicGenStemError(f"soundfont not found: {path} (install one with: {APT_HINT})")
        return path
    for cand in SOUNDFONT_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    raise MusicGenStemError(
        f"no General MIDI soundfont found (looked in {', '.join(SOUNDFONT_CANDIDATES)}); install one with "
        f"`{APT_HINT}`, or pass soundfont= / set ${SOUNDFONT_ENV} to a .sf2 file"
    )


def find_fluidsynth() -> str:
    """Path of the ``fluidsynth`` program."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MusicGenStemError(f"the `fluidsynth` program is not installed; install it with `{APT_HINT}`")
    return exe


def _fix_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), dtype=x.dtype)])


def _render_raw(spec: SongSpec, soundfont: Path, workdir: Path) -> dict[str, np.ndarray]:
    """Render each stem's MIDI with fluidsynth (3 processes in parallel); mono float32, exact length."""
    exe = find_fluidsynth()
    n = int(round(spec.duration * spec.sample_rate))
    procs = {}
    for stem in STEMS:
        midi_path = workdir / f"{stem}.mid"
        song_midi(spec, [stem]).save(midi_path)
        cmd = [
            exe,
            "-q",
            "-ni",
            "-g",
            "0.5",
            "-r",
            str(spec.sample_rate),
            "-R",
            "1",
            "-C",
            "0",
            "-O",
            "float",
            "-T",
            "wav",
            "-F",
            str(workdir / f"{stem}.wav"),
            str(soundfont),
            str(midi_path),
        ]
        procs[stem] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for stem, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=60 + 4 * spec.duration)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            raise MusicGenStemError(f"fluidsynth timed out rendering the {stem} stem") from e
        wav_path = workdir / f"{stem}.wav"
        if proc.returncode != 0 or not wav_path.is_file():
            raise MusicGenStemError(
                f"fluidsynth failed on the {stem} stem (exit {proc.returncode}): {err[-500:]}"
            )
        data, sr = sf.read(wav_path, dtype="float32", always_2d=True)
        if sr != spec.sample_rate:
            raise MusicGenStemError(f"fluidsynth wrote {sr} Hz instead of {spec.sample_rate} Hz")
        out[stem] = _fix_length(data.mean(axis=1).astype(np.float32), n)
    return out


def _level(spec: SongSpec, raw: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fade the end, set each stem to its target RMS, then lower everything together if the mix peaks."""
    n = len(raw["bass"])
    fade = np.ones(n, dtype=np.float32)
    k = min(n, int(0.03 * spec.sample_rate))
    fade[n - k :] = np.linspace(1.0, 0.0, k, dtype=np.float32)
    stems: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for stem in STEMS:
        x = raw[stem] * fade
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        gain_db = 0.0
        if rms > 0:
            gain_db = float(np.clip(spec.stem_levels_db[stem] - 20 * np.log10(rms), -40, 40))
        gains[stem] = gain_db
        stems[stem] = (x * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    mix = stems["bass"] + stems["drums"] + stems["other"]
    peak = float(np.max(np.abs(mix))) if n else 0.0
    song_gain_db = 0.0
    limit = 10 ** (-1 / 20)  # -1 dBFS
    if peak > limit:
        song_gain_db = 20 * float(np.log10(limit / peak))
        g = np.float32(10 ** (song_gain_db / 20))
        stems = {s: (x * g).astype(np.float32) for s, x in stems.items()}
        mix = stems["bass"] + stems["drums"] + stems["other"]
    info = {
        "stem_gain_db": {s: round(v, 3) for s, v in gains.items()},
        "song_gain_db": round(song_gain_db, 3),
        "rms_dbfs": {
            s: round(20 * float(np.log10(max(float(np.sqrt(np.mean(x**2))), 1e-9))), 2)
            for s, x in stems.items()
        },
        "mix_peak": round(float(np.max(np.abs(mix))) if n else 0.0, 4),
    }
    return stems, info


def _render(
    spec: SongSpec, soundfont: str | os.PathLike[str] | None, workdir: str | os.PathLike[str] | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    sf2 = find_soundfont(soundfont)
    if workdir is not None:
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
        raw = _render_raw(spec, sf2, wd)
    else:
        with tempfile.TemporaryDirectory(prefix="musicgen_stem_synth_") as tmp:
            raw = _render_raw(spec, sf2, Path(tmp))
    stems, info = _level(spec, raw)
    info["soundfont"] = sf2.name
    return stems, info


def render_song(
    spec: SongSpec,
    soundfont: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """Render the bass, drums and other stems of ``spec``: ``{stem: float32 [T]}`` at 32 kHz, mono.

    Stems are rendered separately (exact ground truth) and levelled; their sum is the mix and peaks
    below -1 dBFS. ``workdir`` keeps the per-stem MIDI and raw renders (a temp folder otherwise).
    """
    return _render(spec, soundfont, workdir)[0]


# ----------------------------------------------------------------------------------------------------
# Dataset


def song_seed(seed: int, index: int) -> int:
    """Seed of song ``index`` of a dataset made with ``seed``."""
    return seed * 1_000_003 + index


def _song_dir_name(index: int) -> str:
    return f"song_{index:05d}"


def _is_complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file() and all((folder / f"{s}.wav").is_file() for s in (*STEMS, "mix"))


def _make_song(
    out_dir: Path, index: int, seed: int, duration: float, soundfont: str | None, subtype: str
) -> Path:
    """Render song ``index`` into ``out_dir/song_XXXXX`` atomically (temp folder, meta.json last, rename)."""
    final = out_dir / _song_dir_name(index)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=out_dir))
    try:
        spec = make_song_spec(song_seed(seed, index), duration)
        stems, info = _render(spec, soundfont, tmp / "render")
        shutil.rmtree(tmp / "render")
        for stem, x in stems.items():
            sf.write(tmp / f"{stem}.wav", x, spec.sample_rate, subtype=subtype)
        sf.write(
            tmp / "mix.wav",
            stems["bass"] + stems["drums"] + stems["other"],
            spec.sample_rate,
            subtype=subtype,
        )
        song_midi(spec).save(tmp / "song.mid")
        meta = spec.meta()
        meta.update(
            index=index,
            dataset_seed=seed,
            levels=info,
            files={**{s: f"{s}.wav" for s in STEMS}, "mix": "mix.wav", "midi": "song.mid"},
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _summary(folder: Path, out_dir: Path) -> dict[str, Any]:
    meta = json.loads((folder / "meta.json").read_text())
    rel = folder.relative_to(out_dir).as_posix()
    return {
        "path": rel,
        "caption": meta["caption"],
        "captions": meta["captions"],
        "duration": meta["duration"],
        "genre": meta["genre"],
        "tempo": meta["tempo"],
        "key": meta["key"],
        "mode": meta["mode"],
        "seed": meta["seed"],
        "stems": {s: f"{rel}/{s}.wav" for s in STEMS},
        "mix": f"{rel}/mix.wav",
    }


def synth_dataset(
    out_dir: str | os.PathLike[str],
    num_songs: int,
    seed: int = 0,
    duration: float = 30.0,
    soundfont: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
    num_workers: int = 1,
    subtype: str = "PCM_16",
) -> list[Path]:
    """Write ``num_songs`` songs to ``out_dir/song_XXXXX/`` plus ``out_dir/metadata.jsonl``; resumable.

    Each folder holds ``bass.wav``, ``drums.wav``, ``other.wav``, ``mix.wav`` (32 kHz mono), ``song.mid``
    and ``meta.json`` (written last: a folder without it is redone). Finished songs are skipped unless
    ``force``. Song ``i`` uses seed ``seed * 1_000_003 + i``. Returns the song folders in order.
    """
    if num_songs < 0:
        raise MusicGenStemError(f"num_songs must be >= 0, got {num_songs}")
    if subtype not in ("PCM_16", "PCM_24", "FLOAT"):
        raise MusicGenStemError(f"subtype must be PCM_16, PCM_24 or FLOAT, got {subtype!r}")
    find_fluidsynth()
    sf2 = str(find_soundfont(soundfont))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".song_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folders = [out / _song_dir_name(i) for i in range(num_songs)]
    todo = []
    for i, folder in enumerate(folders):
        if not force and _is_complete(folder):
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("seed") != song_seed(seed, i) or abs(meta.get("duration", -1) - duration) > 1e-9:
                raise MusicGenStemError(
                    f"{folder} was made with seed {meta.get('seed')} and duration {meta.get('duration')}, "
                    f"not {song_seed(seed, i)} and {duration}; use another folder or force=True"
                )
            continue
        todo.append(i)

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="synth songs", unit="song")
    try:
        if num_workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=num_workers) as ex:
                futures = [ex.submit(_make_song, out, i, seed, duration, sf2, subtype) for i in todo]
                for fut in as_completed(futures):
                    fut.result()
                    if bar:
                        bar.update(1)
        else:
            for i in todo:
                _make_song(out, i, seed, duration, sf2, subtype)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()

    lines = [json.dumps(_summary(f, out)) for f in folders]
    tmp = out / ".metadata.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, out / "metadata.jsonl")
    return folders
