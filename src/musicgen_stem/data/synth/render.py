"""Rendering: each part separately through FluidSynth with its own soundfont (reverb and chorus off),
then the per-stem mix (:mod:`.mixing`). Stems are exact ground truth: their sum is the mix."""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ...errors import MusicGenStemError
from .fluid import FluidSynth, load_libfluidsynth
from .midi import part_midi
from .mixing import mix_stems
from .soundfonts import APT_HINT, find_soundfont, soundfont_palette
from .spec import PartSpec, SongSpec
from .tables import STEMS


def find_fluidsynth() -> str:
    """Name of the FluidSynth library used for rendering (raises with the install hint if missing)."""
    load_libfluidsynth()
    return ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"


def _render_plan(spec: SongSpec, soundfont: str | os.PathLike[str] | None) -> list[tuple[str, str, PartSpec]]:
    """(stem, file stem, part as rendered) for every part; a forced soundfont replaces each part's choice
    (a sampled kit then becomes the GM Standard kit)."""
    forced = soundfont_palette(soundfont)[0].path if soundfont is not None else None
    plan = []
    for stem in STEMS:
        for i, p in enumerate(spec.stem_parts(stem)):
            if forced is not None:
                p = dataclasses.replace(p, soundfont=forced)
                if p.kit == "sampled":
                    p = dataclasses.replace(p, program=0, bank=128, kit="Standard")
            elif not p.soundfont:
                p = dataclasses.replace(p, soundfont=str(find_soundfont()))
            elif not Path(p.soundfont).is_file():
                raise MusicGenStemError(f"soundfont not found: {p.soundfont} (install it with: {APT_HINT})")
            plan.append((stem, stem if i == 0 else f"{stem}_{p.role}", p))
    return plan


def render_parts(
    spec: SongSpec,
    synth: FluidSynth,
    soundfont: str | os.PathLike[str] | None = None,
    workdir: Path | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Raw FluidSynth render of every part, ``{stem: {role: float32 [T]}}`` (mono, exact length).

    ``workdir`` receives each part's MIDI file and raw render (``drums.mid``, ``other_lead.wav``...).
    """
    n = int(round(spec.duration * spec.sample_rate))
    out: dict[str, dict[str, np.ndarray]] = {}
    for stem, name, part in _render_plan(spec, soundfont):
        notes = [x for x in spec.notes[stem] if x.channel == part.channel]
        x = synth.render(part.soundfont, part.bank, part.program, notes, spec.tempo, n)
        if not np.isfinite(x).all():
            raise MusicGenStemError(f"FluidSynth produced invalid samples for the {stem} stem ({part.role})")
        out.setdefault(stem, {})[part.role] = x
        if workdir is not None:
            part_midi(spec, part).save(workdir / f"{name}.mid")
            sf.write(workdir / f"{name}.wav", x, spec.sample_rate, subtype="FLOAT")
    return out


def render_stems(
    spec: SongSpec,
    soundfont: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    synth: FluidSynth | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Render and mix ``spec``: the stems and the level info recorded in meta.json (``levels``).

    ``synth`` (reused across songs, which saves loading soundfonts again) defaults to a new one.
    """
    wd = None
    if workdir is not None:
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
    if synth is None:
        with FluidSynth(spec.sample_rate) as own:
            raw = render_parts(spec, own, soundfont, wd)
    else:
        raw = render_parts(spec, synth, soundfont, wd)
    stems, info = mix_stems(raw, spec.mix, spec.sample_rate)
    names = [Path(p.soundfont).name for p in spec.parts if p.soundfont]
    if soundfont is not None:
        names = [Path(soundfont_palette(soundfont)[0].path).name]
    info["soundfont"] = max(names, key=names.count) if names else str(find_soundfont().name)
    return {s: stems[s] for s in STEMS}, info


def render_song(
    spec: SongSpec,
    soundfont: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    synth: FluidSynth | None = None,
) -> dict[str, np.ndarray]:
    """Render the bass, drums and other stems of ``spec``: ``{stem: float32 [T]}`` at 32 kHz, mono.

    Parts are rendered separately with the soundfonts chosen in ``spec`` (``soundfont`` forces one), each
    stem is mixed (EQ, compression, saturation, reverb) and levelled; their sum is the mix and peaks below
    -1 dBFS. ``workdir`` keeps the per-part MIDI and raw renders.
    """
    return render_stems(spec, soundfont, workdir, synth)[0]
