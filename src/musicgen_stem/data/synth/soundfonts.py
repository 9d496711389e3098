"""Soundfonts: which are installed, what each holds, and the choice of one per song and per instrument.

General MIDI sets (FluidR3_GM, MuseScore_General, TimGM6mb) hold every GM program and the GM drum kits
(bank 128); the AVL sampled drum kits (avldrums.lv2-soundfont) hold one acoustic kit each as bank 0
program 0, keys 36-61 in a GM-like map (see ``tables.SAMPLED_KIT_NOTES``). ``soundfont=`` or
``$MUSICGEN_STEM_SOUNDFONT`` forces one GM soundfont for everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import MusicGenStemError

SOUNDFONT_ENV = "MUSICGEN_STEM_SOUNDFONT"
APT_HINT = (
    "apt-get install fluidsynth timgm6mb-soundfont (or fluid-soundfont-gm; more variety with "
    "musescore-general-soundfont avldrums.lv2-soundfont)"
)
SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
# Known soundfonts, in order of preference: (file name pattern, kind, label, weight of the random choice).
KNOWN_SOUNDFONTS = (
    ("FluidR3_GM.sf2", "gm", "FluidR3 GM", 1.0),
    ("MuseScore_General*.sf[23]", "gm", "MuseScore General", 1.0),
    ("TimGM6mb.sf2", "gm", "TimGM6mb", 0.5),
    ("Black_Pearl_4_LV2.sf2", "kit", "Black Pearl 4pc", 1.0),
    ("Red_Zeppelin_4_LV2.sf2", "kit", "Red Zeppelin 4pc", 1.0),
)
SOUNDFONT_CANDIDATES = (  # fallbacks when no known soundfont is found
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
P_SAMPLED_KIT = 0.6  # chance that an acoustic GM kit is replaced by a sampled kit, when one is installed
P_OTHER_SOUNDFONT = 0.35  # chance that an instrument comes from another GM soundfont than the song's


@dataclass(frozen=True)
class Soundfont:
    """One soundfont file: ``kind`` is ``"gm"`` (a General MIDI set) or ``"kit"`` (one sampled drum kit)."""

    path: str
    kind: str
    label: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        """The file name."""
        return Path(self.path).name


def installed_soundfonts(dirs: Sequence[str] = SEARCH_DIRS) -> tuple[Soundfont, ...]:
    """The known soundfonts found in ``dirs`` (symlinks resolved, each file once), GM sets first."""
    found: dict[str, Soundfont] = {}
    for pattern, kind, label, weight in KNOWN_SOUNDFONTS:
        for d in dirs:
            for path in sorted(Path(d).glob(pattern)) if Path(d).is_dir() else ():
                real = str(path.resolve())
                if path.is_file() and real not in found:
                    found[real] = Soundfont(real, kind, label, weight)
    if not any(f.kind == "gm" for f in found.values()):
        for cand in SOUNDFONT_CANDIDATES:
            if Path(cand).is_file():
                real = str(Path(cand).resolve())
                found[real] = Soundfont(real, "gm", Path(real).stem, 1.0)
                break
    return tuple(sorted(found.values(), key=lambda f: f.kind != "gm"))


def _forced(soundfont: str | os.PathLike[str] | None) -> Path | None:
    given = soundfont or os.environ.get(SOUNDFONT_ENV)
    if not given:
        return None
    path = Path(given).expanduser()
    if not path.is_file():
        raise MusicGenStemError(f"soundfont not found: {path} (install one with: {APT_HINT})")
    return path


def soundfont_palette(soundfont: str | os.PathLike[str] | None = None) -> tuple[Soundfont, ...]:
    """The soundfonts songs choose from: the forced one (argument or ``$MUSICGEN_STEM_SOUNDFONT``) or all
    installed ones (empty when none is installed: songs can still be specified, not rendered)."""
    forced = _forced(soundfont)
    if forced is not None:
        return (Soundfont(str(forced), "gm", forced.stem, 1.0),)
    return installed_soundfonts()


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path:
    """The default GM soundfont: the argument, then ``$MUSICGEN_STEM_SOUNDFONT``, then the installed ones."""
    for f in soundfont_palette(soundfont):
        if f.kind == "gm":
            return Path(f.path)
    names = ", ".join(p for p, *_ in KNOWN_SOUNDFONTS)
    raise MusicGenStemError(
        f"no General MIDI soundfont found (looked for {names} in {', '.join(SEARCH_DIRS)}); install one with "
        f"`{APT_HINT}`, or pass soundfont= / set ${SOUNDFONT_ENV} to a .sf2 file"
    )


def _weighted(fonts: Sequence[Soundfont], u: float) -> Soundfont:
    w = np.cumsum([f.weight for f in fonts])
    return fonts[min(int(np.searchsorted(w, u * w[-1], side="right")), len(fonts) - 1)]


def choose_soundfonts(
    roles: Sequence[str], acoustic_kit: bool, palette: Sequence[Soundfont], rng: np.random.Generator
) -> list[Soundfont | None]:
    """One soundfont per part: a main GM soundfont for the song, some instruments from another one, and
    (for acoustic kits) often a sampled drum kit. Uses a fixed number of draws from ``rng``."""
    u = rng.random(2 + 3 * len(roles))
    gm = [f for f in palette if f.kind == "gm"]
    kits = [f for f in palette if f.kind == "kit"]
    if not gm:
        return [None] * len(roles)
    main = _weighted(gm, float(u[0]))
    out: list[Soundfont | None] = []
    for i, role in enumerate(roles):
        a, b, c = (float(x) for x in u[2 + 3 * i : 5 + 3 * i])
        if role == "drums" and acoustic_kit and kits and u[1] < P_SAMPLED_KIT:
            out.append(_weighted(kits, a))
        elif len(gm) > 1 and b < P_OTHER_SOUNDFONT:
            out.append(_weighted([f for f in gm if f != main], c))
        else:
            out.append(main)
    return out
