"""Chord progressions by style, in roman numerals: what the synthetic songs play (`data.synth.genres`
reads them from here) and what text -> stems chooses from when a prompt names a key but no chords.

`parse_roman("bVII", "minor")` -> (10, "maj"); `choose_progression("funk in A minor", rng)` -> "Am7 D7".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .attributes import parse_attributes
from .chords import QUALITIES, Chord
from .keys import estimate_key

ROMAN_DEGREES = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
BLUES_MAJOR = "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"
BLUES_QUICK = "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"
BLUES_MINOR = "i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7"


@dataclass(frozen=True)
class Progressions:
    """The words a style goes by and its progressions in major and minor keys."""

    names: tuple[str, ...]
    major: tuple[str, ...]
    minor: tuple[str, ...]


STYLES: dict[str, Progressions] = {
    "rock": Progressions(
        names=("rock",),
        major=("I V vi IV", "I IV V IV", "I bVII IV I", "vi IV I V", "I IV vi V"),
        minor=("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVII i", "i bVI bVII i"),
    ),
    "pop": Progressions(
        names=("pop",),
        major=("I V vi IV", "vi IV I V", "I vi IV V", "IV V iii vi", "I IV vi V"),
        minor=("i bVI bIII bVII", "i iv bVI bVII", "i bVII bVI bVII"),
    ),
    "funk": Progressions(
        names=("funk", "funky"),
        major=("I7 IV7", "I7 I7 IV7 I7", "I7 bVII7 IV7 I7"),
        minor=("i7 IV7", "i7 i7 iv7 i7", "i7 bVII7 i7 IV7", "i7 iv7"),
    ),
    "disco": Progressions(
        names=("disco",),
        major=("I vi ii V", "ii7 V7 Imaj7 vi7", "Imaj7 IV7 Imaj7 IV7", "IV V iii vi"),
        minor=("i7 iv7", "i bVII bVI bVII", "i7 iv7 bVII7 bIIImaj7"),
    ),
    "house": Progressions(
        names=("house", "deep house"),
        major=("I vi IV V", "ii7 V7 Imaj7 vi7", "IV V vi vi"),
        minor=("i bVI bVII i", "i7 iv7", "i7 bIIImaj7 bVII iv7", "i bVI bIII bVII"),
    ),
    "hiphop": Progressions(
        names=("hip hop", "hip-hop", "boom-bap hip hop"),
        major=("Imaj7 vi7 ii7 V7", "Imaj7 IV7", "ii7 V7 Imaj7 Imaj7"),
        minor=("i7 iv7", "i bVI", "i bVII bVI V", "i7 bIIImaj7", "i7 bVImaj7 iv7 V7"),
    ),
    "jazz": Progressions(
        names=("jazz", "swing jazz"),
        major=("ii7 V7 Imaj7 Imaj7", "Imaj7 vi7 ii7 V7", "iii7 vi7 ii7 V7", "Imaj7 IV7 iii7 vi7"),
        minor=("iim7b5 V7 i7 i7", "i7 iv7 iim7b5 V7", "i7 bVImaj7 iim7b5 V7"),
    ),
    "reggae": Progressions(
        names=("reggae",),
        major=("I IV", "I V", "I IV V IV", "I vi IV V"),
        minor=("i bVII", "i iv", "i bVI bVII i", "i iv bVII i"),
    ),
    "ballad": Progressions(
        names=("ballad", "pop ballad"),
        major=("I V vi IV", "I vi IV V", "vi IV I V", "IV I V vi", "I iii IV V"),
        minor=("i bVI bIII bVII", "i iv bVI V", "i bVI iv V"),
    ),
    "metal": Progressions(
        names=("metal", "heavy metal"),
        major=("I bVII IV I", "I IV V IV"),
        minor=("i bVI bVII i", "i bII i bVII", "i i bVI bVII", "i iv bVI V"),
    ),
    "blues": Progressions(
        names=("blues", "shuffle blues"),
        major=(BLUES_MAJOR, BLUES_QUICK),
        minor=(BLUES_MINOR,),
    ),
}


def parse_roman(numeral: str, mode: str = "major") -> tuple[int, str]:
    """Roman numeral ("bVII", "ii7", "Imaj7", "iim7b5") -> (semitones above the tonic, quality).

    Degrees are major-scale based, so minor-key progressions spell their flats ("i bVI bIII bVII")."""
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
    qualities = {"": "min" if minor else "maj", "7": "min7" if minor else "7", "maj7": "maj7"}
    qualities |= {"m7b5": "m7b5", "ø": "m7b5", "dim": "dim", "°": "dim"}
    if suffix not in qualities:
        raise ValueError(f"bad chord suffix in {numeral!r}")
    return (ROMAN_DEGREES[base.upper()] + offset) % 12, qualities[suffix]


def style_of(text: str | None) -> str | None:
    """The style a description names ("a funky groove" -> "funk"), the longest name first."""
    if not text:
        return None
    names = sorted(((n, k) for k, p in STYLES.items() for n in p.names), key=lambda x: -len(x[0]))
    for name, key in names:
        if re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE):
            return key
    return None


def from_the_tonic(progression: str, mode: str = "major") -> str | None:
    """The loop `progression` heard from its first tonic chord ("vi IV I V" -> "I V vi IV"), so that
    a chart made for a named key establishes it; None when no chord of it is the tonic triad."""
    numerals = progression.split()
    triad = (0, 3, 7) if mode == "minor" else (0, 4, 7)  # the tonic chord holds the key's triad
    chords = [parse_roman(n, mode) for n in numerals]
    tonics = [i for i, (root, q) in enumerate(chords) if root == 0 and set(triad) <= set(QUALITIES[q][0])]
    if not tonics:
        return None
    return " ".join(numerals[tonics[0] :] + numerals[: tonics[0]])


def sounds_in_its_key(progression: str, mode: str = "major") -> bool:
    """Whether the tones of `progression` (roman numerals; each chord's root counted twice, as a
    bass plays it) are heard in its own key: the Krumhansl-Schmuckler estimate (`keys`) names the
    tonic and mode. "i bVI bIII bVII" does not (it is heard in the relative major)."""
    profile = np.zeros(12)
    for numeral in progression.split():
        root, quality = parse_roman(numeral, mode)
        for i, interval in enumerate(QUALITIES[quality][0]):
            profile[(root + interval) % 12] += 2.0 if i == 0 else 1.0
    key = estimate_key(profile)
    return key.tonic == 0 and key.mode == mode


def choose_progression(text: str | None, rng: np.random.Generator) -> str | None:
    """A progression for the key (and style) a description names, as chord symbols, one a bar,
    starting on the tonic (`from_the_tonic`) and heard in that key (`sounds_in_its_key`) where the
    style has such progressions; None when it names no key. Styles it does not name draw from
    every style's progressions."""
    key = parse_attributes(text).key
    if key is None:
        return None
    tonic, mode = key
    style = style_of(text)
    pool = [STYLES[style]] if style else list(STYLES.values())
    looped = {from_the_tonic(p, mode) for s in pool for p in (s.minor if mode == "minor" else s.major)}
    options = sorted(p for p in looped if p is not None)
    options = [p for p in options if sounds_in_its_key(p, mode)] or options
    numerals = options[int(rng.integers(len(options)))].split()
    chords = []
    for numeral in numerals:
        offset, quality = parse_roman(numeral, mode)
        chords.append(Chord((tonic + offset) % 12, quality).name)
    return " ".join(chords)
