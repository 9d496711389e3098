"""Notes made audible as a kept stem: a chord progression (`--render-chords`) or a MIDI part
(`--midi`), rendered with FluidSynth and the General MIDI soundfonts of the synthetic data, so that
any model (the released ones included) writes the other stems under it."""

from __future__ import annotations

import re
from pathlib import Path

import mido
import numpy as np

from ..conditioning.chords import Chord, ChordChart
from ..notes.midi import read_notes
from ..notes.transcribe import Note
from .options import UsageError

#: Words of a description -> the General MIDI program that plays a rendered part.
PROGRAMS = (
    (r"\b(rhodes|electric piano|e-piano|wurli\w*)\b", 4),
    (r"\borgan\b", 16),
    (r"\b(acoustic guitar|nylon)\b", 24),
    (r"\bguitar\b", 27),
    (r"\b(strings?|orchestra\w*)\b", 48),
    (r"\b(pad|pads|ambient)\b", 89),
    (r"\b(synth|synths|synthesizer)\b", 81),
    (r"\b(brass|horns?)\b", 61),
    (r"\bpiano\b", 0),
)
MAX_TRACKS = 256
MAX_NOTES = 100_000


def program_for(text: str | None, program: int | None = None) -> int:
    """`program` if given, else the first instrument the description names (piano by default)."""
    if program is not None:
        if not 0 <= program <= 127:
            raise UsageError(f"--program must be a General MIDI program 0-127, got {program}")
        return program
    for pattern, gm in PROGRAMS:
        if text and re.search(pattern, text, re.IGNORECASE):
            return gm
    return 0


def read_midi_part(path: str | Path) -> tuple[list[Note], float]:
    """The notes of a MIDI file (every track but drums on channel 10) and its first tempo."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--midi '{path}' does not exist")
    try:
        mid = mido.MidiFile(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise UsageError(
            f"--midi '{path}' is not a readable MIDI file ({type(exc).__name__}); give a .mid file"
        ) from None
    if len(mid.tracks) > MAX_TRACKS:
        raise UsageError(f"--midi '{path}' has {len(mid.tracks)} tracks; give a part of at most {MAX_TRACKS}")
    tempos = [m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"]
    bpm = mido.tempo2bpm(tempos[0]) if tempos else 120.0
    if not 20 <= bpm <= 400:
        raise UsageError(f"--midi '{path}' sets a tempo of {bpm:.0f} bpm; give a part between 20 and 400 bpm")
    drums = {i for i, t in enumerate(mid.tracks) if any(m.type == "note_on" and m.channel == 9 for m in t)}
    notes = [n for i, (name, ns) in enumerate(read_notes(mid).items()) if i not in drums for n in ns]
    if not notes:
        raise UsageError(f"--midi '{path}' holds no notes to play; give a part with notes")
    if len(notes) > MAX_NOTES:
        raise UsageError(f"--midi '{path}' holds {len(notes)} notes; give a part of at most {MAX_NOTES}")
    return sorted(notes, key=lambda n: (n.start, n.pitch)), bpm


def chords_of_notes(notes: list[Note], bpm: float, seconds: float) -> ChordChart:
    """The chords of a part, a chord a beat: the triad or seventh whose tones hold most of the
    notes sounding (length-weighted), its root the lowest note's pitch class when that fits."""
    from ..conditioning.chord_estimate import ESTIMATED

    beat = 60.0 / bpm
    spans: list[tuple[float, float, Chord | None]] = []
    t = 0.0
    while t < seconds:
        weight = np.zeros(12)
        low = None
        for n in notes:
            overlap = min(n.end, t + beat) - max(n.start, t)
            if overlap > 0:
                weight[n.pitch % 12] += overlap
                low = n.pitch if low is None or n.pitch < low else low
        chord = None
        if weight.any():
            best = max(
                (Chord(r, q) for q in ESTIMATED for r in range(12)),
                key=lambda c: (
                    weight[list(c.tones)].sum() / weight.sum()
                    - 0.05 * len(c.tones)
                    + 0.1 * (low is not None and c.root == low % 12)
                ),
            )
            chord = best
        end = round(min(seconds, t + beat), 4)
        if spans and spans[-1][2] == chord:
            spans[-1] = (spans[-1][0], end, chord)
        else:
            spans.append((round(t, 4), end, chord))
        t += beat
    return ChordChart(tuple(spans))


def render_part(notes: list[Note], program: int, sample_rate: int, seconds: float) -> np.ndarray:
    """`notes` played by GM `program` with FluidSynth: float32 [1, seconds * sample_rate]."""
    from ..data.synth.fluid import FluidSynth
    from ..data.synth.score import Note as TickNote
    from ..data.synth.soundfonts import find_soundfont
    from ..data.synth.tables import TICKS_PER_BEAT
    from ..errors import MusicGenStemError

    try:
        soundfont = str(find_soundfont())
    except MusicGenStemError as exc:
        raise UsageError(f"rendering a part needs a General MIDI soundfont: {exc}") from None
    bpm = 120.0  # ticks at 120 bpm: 960 a second
    ticks = [
        TickNote(
            0, n.pitch, n.velocity, round(n.start * 2 * TICKS_PER_BEAT), round(n.end * 2 * TICKS_PER_BEAT)
        )
        for n in notes
        if n.start < seconds
    ]
    with FluidSynth(sample_rate) as synth:
        x = synth.render(soundfont, 0, program, ticks, bpm, round(seconds * sample_rate))
    peak = float(np.abs(x).max())
    return (x * (0.5 / peak) if peak > 0.5 else x)[None].astype(np.float32)
