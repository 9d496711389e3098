"""`stems.mid`: the notes of every stem as a type-1 MIDI file a DAW opens.

Track 0 holds the tempo, the 4/4 time signature and the chord chart as markers; then one track per
stem, named after it: bass on GM program 33 (fingered electric bass), drums on channel 10 with GM
drum notes, every other stem as a piano part of the notes heard; with a chord chart, a "chords"
track of its chord tones. Note times are the audio's: a note starts where its onset is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mido
import numpy as np

from ..conditioning.chords import ChordChart
from ..layout import MONOPHONIC_STEMS, PERCUSSIVE_STEMS
from .transcribe import Note, bass_notes, drum_hits, pitched_notes

TICKS_PER_BEAT = 480
BASS_PROGRAM, PITCHED_PROGRAM, CHORD_PROGRAM = 33, 0, 48  # GM: finger bass, piano, strings
DRUM_CHANNEL = 9  # channel 10


def transcribe(name: str, audio: np.ndarray, sample_rate: int) -> list[Note]:
    """The notes of stem `name` ([C, T] or [T]) by the method its kind needs."""
    if name in PERCUSSIVE_STEMS:
        return drum_hits(audio, sample_rate)
    if name in MONOPHONIC_STEMS:
        return bass_notes(audio, sample_rate)
    return pitched_notes(audio, sample_rate)


def _ticks(seconds: float, bpm: float) -> int:
    return max(0, round(seconds * bpm / 60.0 * TICKS_PER_BEAT))


def _track(name: str, events: list[tuple[int, int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    """A track named `name` from (tick, order, message) events (order: offs before ons at a tick)."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _notes(notes: Sequence[Note], channel: int, bpm: float) -> list[tuple[int, int, mido.Message]]:
    events = []
    for n in notes:
        a, b = _ticks(n.start, bpm), _ticks(n.end, bpm)
        b = max(b, a + 1)
        events.append((a, 1, mido.Message("note_on", channel=channel, note=n.pitch, velocity=n.velocity)))
        events.append((b, 0, mido.Message("note_off", channel=channel, note=n.pitch, velocity=0)))
    return events


def chord_notes(chart: ChordChart) -> list[Note]:
    """The chart's chords as block chords: the bass note in octave 3, the tones above middle C."""
    out = []
    for a, b, chord in chart.spans:
        if chord is None:
            continue
        out.append(Note(a, b, 48 + chord.bass_pc, 80))
        out += [Note(a, b, 60 + pc, 80) for pc in sorted(set(chord.tones))]
    return out


def stems_midi(
    notes: Mapping[str, Sequence[Note]], bpm: float, chart: ChordChart | None = None
) -> mido.MidiFile:
    """Type-1 MIDI of `notes` {stem: notes} at a tempo of `bpm`, with the chord chart if given."""
    bpm = float(bpm) if bpm and 20 <= bpm <= 400 else 120.0
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))),
        (0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
    ]
    for a, _, chord in chart.spans if chart is not None else ():
        conductor.append(
            (_ticks(a, bpm), 1, mido.MetaMessage("marker", text="N" if chord is None else chord.name))
        )
    mid.tracks.append(_track("tempo", conductor))
    channels = iter(c for c in range(16) if c != DRUM_CHANNEL)
    for name, stem_notes in notes.items():
        if name in PERCUSSIVE_STEMS:
            channel, program = DRUM_CHANNEL, None
        else:
            channel, program = next(channels), BASS_PROGRAM if name in MONOPHONIC_STEMS else PITCHED_PROGRAM
        events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
        if program is not None:
            events.append((0, 0, mido.Message("program_change", channel=channel, program=program)))
        mid.tracks.append(_track(name, events + _notes(stem_notes, channel, bpm)))
    if chart is not None and chart.spans:
        channel = next(channels)
        setup = [(0, 0, mido.Message("program_change", channel=channel, program=CHORD_PROGRAM))]
        mid.tracks.append(_track("chords", setup + _notes(chord_notes(chart), channel, bpm)))
    return mid


def midi_of_stems(
    stems: Mapping[str, np.ndarray],
    sample_rate: int | Mapping[str, int],
    bpm: float | None = None,
    chart: ChordChart | None = None,
) -> mido.MidiFile:
    """`stems_midi` of stems {name: [C, T]} at `sample_rate` (or {name: rate}), each transcribed by
    its kind (`transcribe`)."""
    rates = sample_rate if isinstance(sample_rate, Mapping) else dict.fromkeys(stems, sample_rate)
    notes = {name: transcribe(name, x, int(rates[name])) for name, x in stems.items()}
    return stems_midi(notes, bpm or 120.0, chart)


def read_notes(mid: mido.MidiFile) -> dict[str, list[Note]]:
    """{track name: notes} of a MIDI file, times in seconds through its tempo map."""
    tempo_map = [(0, 500000)]  # 120 bpm until a tempo is set
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_map.append((tick, msg.tempo))
    tempo_map.sort(key=lambda e: e[0])  # stable: a tempo set at tick 0 replaces the default

    def seconds(tick: int) -> float:
        s, last_tick, last_tempo = 0.0, 0, 500000
        for t, tempo in tempo_map:
            if t >= tick:
                break
            s += mido.tick2second(t - last_tick, mid.ticks_per_beat, last_tempo)
            last_tick, last_tempo = t, tempo
        return s + mido.tick2second(tick - last_tick, mid.ticks_per_beat, last_tempo)

    out: dict[str, list[Note]] = {}
    for i, track in enumerate(mid.tracks):
        name, tick, sounding, notes = f"track {i}", 0, {}, []
        for msg in track:
            tick += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = (tick, msg.velocity)
            elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in sounding:
                start, velocity = sounding.pop((msg.channel, msg.note))
                notes.append(Note(round(seconds(start), 4), round(seconds(tick), 4), msg.note, velocity))
        if notes:
            out[name] = sorted(notes, key=lambda n: (n.start, n.pitch))
    return out
