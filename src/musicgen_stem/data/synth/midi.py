"""MIDI files: the whole song (one track per stem) and one file per part for rendering."""

from __future__ import annotations

from collections.abc import Sequence

import mido

from .spec import PartSpec, SongSpec
from .tables import STEM_ROLES, STEMS, TICKS_PER_BEAT

Event = tuple[int, int, mido.Message | mido.MetaMessage]  # tick, order within a tick, message


def _setup(p: PartSpec, channel: int, reverb: int) -> list[Event]:
    """Bank, program and mixer controllers of a part at tick 0."""
    msgs = [] if p.bank == 128 else [mido.Message("control_change", channel=channel, control=0, value=p.bank)]
    msgs.append(mido.Message("program_change", channel=channel, program=p.program))
    for cc, val in ((7, 100), (10, 64), (91, reverb), (93, 0)):
        msgs.append(mido.Message("control_change", channel=channel, control=cc, value=val))
    return [(0, 1, m) for m in msgs]


def _track(
    spec: SongSpec, parts: Sequence[PartSpec], stem: str, with_tempo: bool, channel: int | None
) -> mido.MidiTrack:
    """One track with ``parts`` of ``stem`` (all moved to ``channel`` when given)."""
    events: list[Event] = []
    if with_tempo:
        events.append((0, 0, mido.MetaMessage("set_tempo", tempo=int(round(60e6 / spec.tempo)))))
        events.append((0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)))
    channels = {p.channel for p in parts}
    for p in parts:
        events += _setup(p, p.channel if channel is None else channel, spec.reverb[stem])
    for n in spec.notes[stem]:
        if n.channel not in channels:
            continue
        ch = n.channel if channel is None else channel
        events.append((n.start, 3, mido.Message("note_on", channel=ch, note=n.pitch, velocity=n.velocity)))
        events.append((n.end, 2, mido.Message("note_off", channel=ch, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
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
        parts = [p for p in spec.parts if p.role in STEM_ROLES[stem]]
        mid.tracks.append(_track(spec, parts, stem, i == 0, None))
    return mid


def part_midi(spec: SongSpec, part: PartSpec) -> mido.MidiFile:
    """MIDI file of one part as it is rendered: a sampled kit (bank 0 program 0 of its own soundfont)
    plays on melodic channel 1, since FluidSynth's drum channel only looks in bank 128."""
    stem = next(s for s, roles in STEM_ROLES.items() if part.role in roles)
    channel = 0 if part.kit == "sampled" else None
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(_track(spec, [part], stem, True, channel))
    return mid
