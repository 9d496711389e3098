"""Parts to play under: --render-chords and --midi (FluidSynth), their checks, and the chords a
MIDI part holds."""

from __future__ import annotations

import json
import shutil

import mido
import numpy as np
import pytest

from musicgen_stem.cli import main
from musicgen_stem.commands.options import UsageError
from musicgen_stem.commands.parts import chords_of_notes, program_for, read_midi_part, render_part
from musicgen_stem.conditioning.chords import parse_chord
from musicgen_stem.notes.transcribe import Note

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="FluidSynth is not installed (Debian package fluidsynth)"
)


def _midi(path, notes, bpm=100.0, tracks=1, channel=0):
    mid = mido.MidiFile(type=1)
    for _ in range(tracks):
        t = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))])
        events = []
        for start, end, pitch in notes:
            events.append((round(start * bpm / 60 * 480), 1, "note_on", pitch))
            events.append((round(end * bpm / 60 * 480), 0, "note_off", pitch))
        now = 0
        for tick, _, kind, pitch in sorted(events):
            t.append(mido.Message(kind, channel=channel, note=pitch, velocity=90, time=tick - now))
            now = tick
        mid.tracks.append(t)
    mid.save(path)
    return path


def test_program_from_the_description():
    assert program_for("warm rhodes chords") == 4 and program_for("lush string pads") == 48
    assert program_for("funk") == 0 and program_for("x", 30) == 30
    with pytest.raises(UsageError):
        program_for("x", 200)


def test_read_midi_part_and_its_chords(tmp_path):
    am = [(i * 0.6, i * 0.6 + 0.6, p) for i in range(4) for p in (57, 60, 64)]
    notes, bpm = read_midi_part(_midi(tmp_path / "a.mid", am, 100.0))
    assert bpm == pytest.approx(100.0) and len(notes) == 12
    chart = chords_of_notes(notes, bpm, 2.4)
    assert chart.at(1.0) == parse_chord("Am")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_bytes(b""), "not a readable MIDI"),
        (lambda p: p.write_bytes(b"RIFF1234WAVEfmt "), "not a readable MIDI"),
        (lambda p: _midi(p, []), "no notes"),
        (lambda p: _midi(p, [(0, 1, 36)], channel=9), "no notes"),  # drums only
        (lambda p: _midi(p, [(0, 1, 60)], tracks=300), "tracks"),
        (lambda p: _midi(p, [(0, 1, 60)], bpm=1000.0), "tempo"),
    ],
)
def test_bad_midi_parts_are_refused_in_one_line(tmp_path, make, words):
    path = tmp_path / "p.mid"
    make(path)
    with pytest.raises(UsageError, match=words) as e:
        read_midi_part(path)
    assert "\n" not in str(e.value)


@needs_fluidsynth
def test_render_part_plays_the_notes():
    x = render_part([Note(0.0, 1.0, 57), Note(0.0, 1.0, 64)], 0, 32000, 1.5)
    assert x.shape == (1, 48000) and np.abs(x[:, :32000]).max() > 0.01 and np.abs(x).max() <= 0.5 + 1e-6


@needs_fluidsynth
def test_cli_generate_over_rendered_chords_and_midi(tmp_path, capsys):
    model = tmp_path / "m"
    assert main(["init", str(model), "--preset", "tiny"]) == 0
    base = ["generate", "piano pop at 100 bpm", "--model", str(model), "--duration", "1", "-q", "--seed", "1"]
    out = tmp_path / "rc"
    assert main([*base, "--chords", "C G", "--render-chords", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rendered"] == {"stem": "other", "program": 0, "chords": "C G"}
    assert (out / "stems.mid").is_file() and (out / "other.wav").is_file()
    capsys.readouterr()
    assert main([*base, "--chords", "C G", "--out", str(tmp_path / "no")]) == 2  # tiny reads no chords
    err = capsys.readouterr().err
    assert "--render-chords" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "no").exists()
    part = _midi(tmp_path / "p.mid", [(0.0, 1.0, 57), (0.0, 1.0, 60)])
    assert main([*base, "--midi", str(part), "--out", str(tmp_path / "mid")]) == 0
    assert json.loads((tmp_path / "mid" / "meta.json").read_text())["rendered"]["midi"] == str(part)
    for bad in (
        ["--render-chords"],
        ["--midi", str(part), "--chords", "C"],
        ["--midi", str(tmp_path / "x.mid")],
    ):
        assert main([*base, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
