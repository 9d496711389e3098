"""Synthetic multi-stem songs: procedural MIDI rendered per part with FluidSynth, mixed per stem.

Every song is fully determined by ``(seed, duration)`` and the installed soundfonts:
:func:`make_song_spec` draws the genre, harmony, score, feel (humanised timing and velocity), the
soundfont of each instrument (General MIDI sets and sampled drum kits) and the mix settings from
seeded random streams; :func:`render_song` renders every part separately, mixes each stem with
pedalboard (EQ, compression, saturation, reverb) and balances the levels, so the stems are exact
ground truth and the mix is their sum.

Modules, from the bottom up: ``tables`` (constants, GM programs, drum maps), ``theory`` (keys, chords),
``genres``, ``mixing`` (effect settings and processing), ``score`` (notes, chords in time, humanisation),
``spec`` (the song dataclasses), ``drums``/``bass``/``harmony`` (the parts), ``arrange``, ``soundfonts``,
``captions``, ``song`` (:func:`make_song_spec`), ``midi``, ``fluid`` (libfluidsynth through ctypes),
``render`` and ``dataset`` (:func:`synth_dataset`).

System requirements (Debian/Ubuntu): ``apt-get install fluidsynth timgm6mb-soundfont``; for variety also
``fluid-soundfont-gm musescore-general-soundfont avldrums.lv2-soundfont``. ``soundfont=`` or
``$MUSICGEN_STEM_SOUNDFONT`` forces one soundfont.
"""

from .captions import make_captions
from .dataset import quantize, song_seed, synth_dataset
from .fluid import FluidSynth
from .genres import GENRES, Genre
from .midi import part_midi, song_midi
from .mixing import MixSettings, StemFx, draw_mix, mix_stems
from .render import find_fluidsynth, render_parts, render_song, render_stems
from .score import ChordSpan, Humanize, Note
from .song import make_song_spec
from .soundfonts import (
    APT_HINT,
    SOUNDFONT_CANDIDATES,
    SOUNDFONT_ENV,
    Soundfont,
    find_soundfont,
    installed_soundfonts,
    soundfont_palette,
)
from .spec import PartSpec, SongSpec
from .tables import (
    DRUM_KITS,
    DRUM_NOTES,
    GM_PROGRAMS,
    SAMPLE_RATE,
    SAMPLED_KIT_NOTES,
    STEMS,
    TICKS_PER_BEAT,
)
from .theory import QUALITIES, chord_name, parse_roman

__all__ = [
    "APT_HINT",
    "DRUM_KITS",
    "DRUM_NOTES",
    "GENRES",
    "GM_PROGRAMS",
    "QUALITIES",
    "SAMPLED_KIT_NOTES",
    "SAMPLE_RATE",
    "SOUNDFONT_CANDIDATES",
    "SOUNDFONT_ENV",
    "STEMS",
    "TICKS_PER_BEAT",
    "ChordSpan",
    "FluidSynth",
    "Genre",
    "Humanize",
    "MixSettings",
    "Note",
    "PartSpec",
    "SongSpec",
    "Soundfont",
    "StemFx",
    "chord_name",
    "draw_mix",
    "find_fluidsynth",
    "find_soundfont",
    "installed_soundfonts",
    "make_captions",
    "make_song_spec",
    "mix_stems",
    "parse_roman",
    "part_midi",
    "quantize",
    "render_parts",
    "render_song",
    "render_stems",
    "song_midi",
    "song_seed",
    "soundfont_palette",
    "synth_dataset",
]
