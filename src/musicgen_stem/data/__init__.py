"""Datasets: synthetic multi-stem songs rendered with FluidSynth (see :mod:`musicgen_stem.data.synth`)."""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".synth": (
            "GENRES",
            "SAMPLE_RATE",
            "STEMS",
            "ChordSpan",
            "Note",
            "PartSpec",
            "SongSpec",
            "find_fluidsynth",
            "find_soundfont",
            "make_song_spec",
            "render_song",
            "song_midi",
            "song_seed",
            "synth_dataset",
        ),
    },
)
