"""Notes out: transcription of each kind of stem, stems.mid, and `musicgen-stem transcribe`."""

from __future__ import annotations

import mido
import mir_eval
import numpy as np
import pytest
import soundfile as sf

from musicgen_stem.cli import main
from musicgen_stem.conditioning.chords import parse_progression
from musicgen_stem.notes import polyphonic
from musicgen_stem.notes.midi import DRUM_CHANNEL, read_notes, stems_midi
from musicgen_stem.notes.quantize import quantize
from musicgen_stem.notes.transcribe import (
    HIHAT,
    KICK,
    SNARE,
    Note,
    bass_notes,
    drum_hits,
    pitch_activity,
    pitched_notes,
)

SR = 32000


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(midi: int, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    env = np.minimum(1.0, t / 0.005) * np.exp(-t * 2.0)
    return amp * env * sum(np.sin(2 * np.pi * _hz(midi) * h * t) / h for h in (1, 2, 3, 4))


def _line(notes: list[tuple[float, float, int]], seconds: float) -> np.ndarray:
    x = np.zeros(int(seconds * SR))
    for a, b, p in notes:
        seg = _tone(p, b - a)
        i = int(a * SR)
        x[i : i + len(seg)] += seg[: len(x) - i]
    return x.astype(np.float32)


def test_bass_notes_of_a_synthesized_line():
    """A walking line (repeated notes struck again, a rest): note F1 >= 0.9 with mir_eval's 50 ms,
    50 cents, offsets ignored."""
    pitches = [33, 33, 36, 38, 40, 40, 43, 41, 36, 28]
    truth = [(0.1 + 0.35 * i, 0.1 + 0.35 * i + 0.3, p) for i, p in enumerate(pitches) if i != 6]
    est = bass_notes(_line(truth, 4.0), SR)
    ref_i = np.array([[a, b] for a, b, _ in truth])
    est_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in est]).reshape(-1, 2)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i,
        mir_eval.util.midi_to_hz(np.array([p for *_, p in truth])),
        est_i,
        mir_eval.util.midi_to_hz(np.array([n.pitch for n in est])),
        onset_tolerance=0.05,
        offset_ratio=None,
    )
    assert f >= 0.9, (est, truth)
    assert bass_notes(np.zeros(SR, np.float32), SR) == []


def _burst(kind: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == KICK:
        return 0.8 * np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    noise = rng.standard_normal(len(t))
    if kind == SNARE:
        from scipy.signal import butter, sosfilt

        band = sosfilt(butter(4, [1000, 5000], "bandpass", fs=SR, output="sos"), noise)
        return (0.5 * band + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 25)
    from scipy.signal import butter, sosfilt

    return 0.4 * sosfilt(butter(4, 7000, "highpass", fs=SR, output="sos"), noise) * np.exp(-t * 60)


def test_drum_hits_are_found_and_labelled():
    """A rock beat (kick 1 and 3, snare 2 and 4, hi-hat 8ths) at 120 bpm: each class's onsets with
    F1 >= 0.85 within 50 ms."""
    rng = np.random.default_rng(0)
    x = np.zeros(4 * SR)
    truth: dict[int, list[float]] = {KICK: [], SNARE: [], HIHAT: []}
    for i in range(16):  # 8ths
        t = 0.05 + 0.25 * i
        kinds = [HIHAT] + ([KICK] if i % 4 == 0 else []) + ([SNARE] if i % 4 == 2 else [])
        for k in kinds:
            b = _burst(k, 0.2, rng)
            j = int(t * SR)
            x[j : j + len(b)] += b[: len(x) - j]
            truth[k].append(t)
    hits = drum_hits(x.astype(np.float32), SR)
    for k, times in truth.items():
        est = np.array([h.start for h in hits if h.pitch == k])
        assert mir_eval.onset.f_measure(np.array(times), est, 0.05)[0] >= 0.85, (k, est)


def test_a_tom_without_snare_wires_is_not_a_snare():
    """Snares on 2 and 4, a tom between them: the tom's head sounds in the snare head's band, but
    without the wires' noise it is no snare."""
    rng = np.random.default_rng(1)
    t = np.arange(int(0.2 * SR)) / SR
    tom = (
        0.3
        * np.sin(2 * np.pi * (180 + 60 * np.exp(-t * 20)) * t)
        * np.exp(-t * 10)
        * np.minimum(1.0, t / 0.003)
    )
    x = np.zeros(4 * SR)
    snares, toms = [0.55, 1.55, 2.55, 3.55], [0.3, 1.05, 2.3, 3.05]
    for s in snares:
        b = _burst(SNARE, 0.2, rng)
        x[int(s * SR) : int(s * SR) + len(b)] += b
    for s in toms:
        x[int(s * SR) : int(s * SR) + len(tom)] += tom
    est = np.array([h.start for h in drum_hits(x.astype(np.float32), SR) if h.pitch == SNARE])
    assert mir_eval.onset.f_measure(np.array(snares), est, 0.05)[0] == 1.0, est


def test_pitch_activity_ends_with_the_note_not_its_tail():
    """A chord struck for 0.4 s then dying away at 40 dB/s (a release into reverb): sounding while
    held, silent once its tail is 20 dB down."""
    chord = [57, 60, 64]
    t = np.arange(2 * SR) / SR
    env = np.where(t < 0.5, 1.0, 10 ** (-2.0 * (t - 0.5))) * (t >= 0.1)  # -40 dB/s after 0.5 s
    x = (0.1 * env * sum(np.sin(2 * np.pi * _hz(p) * t) for p in chord)).astype(np.float32)
    active, _ = pitch_activity(x, SR)  # [61, N]
    frame = lambda s: int(s * 22050 / 256)  # noqa: E731
    assert set(36 + np.nonzero(active[:, frame(0.3)])[0]) == set(chord)
    assert not active[:, frame(1.0) :].any()


def test_basic_pitch_posteriors_lie_on_the_frame_grid_across_window_borders():
    """Frame i of `posteriors` is at i * 256 / 22050 s, also past the first window's 142 frames: an
    organ-like tone held from 0.5 to 4.5 s sounds in every frame of it and starts where it starts."""
    sr = polyphonic.SAMPLE_RATE
    t = np.arange(5 * sr) / sr
    gate = (t >= 0.5) & (t < 4.5)
    x = (0.2 * gate * sum(np.sin(2 * np.pi * _hz(60) * h * t) / h for h in (1, 2, 3))).astype(np.float32)
    note, onset = polyphonic.posteriors(x)
    assert note.shape == onset.shape == (1 + len(x) // 256, 88)
    key = 60 - polyphonic.LOWEST_MIDI
    frame = lambda s: round(s * sr / 256)  # noqa: E731
    held = note[frame(0.6) : frame(4.4), key]
    assert held.min() > 0.35, np.nonzero(held <= 0.35)[0][:10] + frame(0.6)  # no dip at window borders
    assert abs(int(np.argmax(onset[:, key])) - frame(0.5)) <= 2
    assert note[frame(4.7) :, key].max() < 0.35 and note[: frame(0.4), key].max() < 0.35


def test_pitched_notes_of_a_chord():
    chord = [57, 60, 64]  # A minor
    x = sum(_line([(0.1, 1.5, p)], 2.0) for p in chord)
    pitches = {n.pitch for n in pitched_notes(x, SR) if n.end - n.start > 0.5}
    assert set(chord) <= pitches and len(pitches - set(chord)) <= 1


def test_stems_midi_is_type_1_with_named_tracks_tempo_and_chords():
    notes = {
        "bass": [Note(0.0, 0.5, 33), Note(0.5, 1.0, 36)],
        "drums": [Note(0.0, 0.05, KICK), Note(0.5, 0.55, SNARE)],
        "other": [Note(0.0, 1.0, 60), Note(0.0, 1.0, 64)],
    }
    chart = parse_progression("Am F", 120.0)
    mid = stems_midi(notes, 120.0, chart)
    assert mid.type == 1 and [t.name for t in mid.tracks] == ["tempo", "bass", "drums", "other", "chords"]
    msgs = list(mid.tracks[0])
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 120 for m in msgs)
    assert [m.text for m in msgs if m.type == "marker"] == ["Am", "F"]
    assert {m.channel for m in mid.tracks[2] if m.type == "note_on"} == {DRUM_CHANNEL}
    programs = {t.name: [m.program for m in t if m.type == "program_change"] for t in mid.tracks}
    assert programs["bass"] == [33] and programs["drums"] == []
    back = read_notes(mid)
    for stem, ns in notes.items():  # times survive within a tick (1/960 s at 120 bpm)
        assert [(round(n.start, 2), n.pitch) for n in back[stem]] == [
            (round(n.start, 2), n.pitch) for n in ns
        ]
    assert {n.pitch % 12 for n in back["chords"] if n.start < 2.0} == {9, 0, 4}


def test_quantize_snaps_to_the_sixteenth_grid():
    notes = [Note(0.13, 0.4, 40), Note(0.51, 0.52, 41)]
    q = quantize(notes, 120.0, 0.0, 16)  # a 16th is 0.125 s
    assert [(n.start, n.end) for n in q] == [(0.125, 0.375), (0.5, 0.625)]


def test_every_output_folder_holds_stems_mid(tmp_path):
    from musicgen_stem.outputs import write_stems_folder

    stems = {
        "bass": _line([(0.1, 0.6, 33), (0.6, 1.1, 36)], 1.5)[None],
        "other": np.zeros((1, int(1.5 * SR))),
    }
    meta = {"prompt": "x at 100 bpm", "chords": parse_progression("Am", 100.0).to_json()}
    out = write_stems_folder(tmp_path / "o", stems, SR, np.zeros((2, 10), np.int64), meta)
    mid = mido.MidiFile(out / "stems.mid")
    assert [t.name for t in mid.tracks] == ["tempo", "bass", "other", "chords"]
    assert round(mido.tempo2bpm(next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo"))) == 100
    assert [n.pitch for n in read_notes(mid)["bass"]] == [33, 36]


def test_cli_transcribe_a_folder_and_a_file(tmp_path, capsys):
    folder = tmp_path / "song"
    folder.mkdir()
    sf.write(folder / "bass.wav", _line([(0.1, 0.6, 33), (0.6, 1.1, 36)], 1.5), SR)
    (folder / "meta.json").write_text('{"prompt": "funk", "beat_grid": {"bpm": 120, "first_beat": null}}')
    out = tmp_path / "out.mid"
    assert main(["transcribe", str(folder), "--out", str(out), "--quantize-grid", "16"]) == 0
    assert [(n.start, n.pitch) for n in read_notes(mido.MidiFile(out))["bass"]] == [(0.125, 33), (0.625, 36)]
    assert "120 bpm" in capsys.readouterr().out
    assert main(["transcribe", str(folder / "bass.wav"), "--out", str(out)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    before = out.read_bytes()
    for bad in (
        [str(tmp_path / "nope.wav"), "--out", str(tmp_path / "a.mid")],
        [str(folder), "--out", str(tmp_path / "a.txt")],
        [str(folder), "--out", str(tmp_path / "a.mid"), "--quantize-grid", "7"],
        [str(tmp_path), "--out", str(tmp_path / "a.mid")],  # no stems in it
    ):
        assert main(["transcribe", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
    assert out.read_bytes() == before and not (tmp_path / "a.mid").exists()
    assert main(["transcribe", str(folder / "bass.wav"), "--out", str(out), "--force", "--stem", "bass"]) == 0


@pytest.mark.parametrize("content", [b"", b"not a wav file at all"])
def test_cli_transcribe_refuses_unreadable_audio(tmp_path, capsys, content):
    bad = tmp_path / "bass.wav"
    bad.write_bytes(content)
    assert main(["transcribe", str(bad), "--out", str(tmp_path / "x.mid")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "x.mid").exists()


def test_read_notes_follows_a_tempo_set_in_another_track():
    """A tempo faster than 120 bpm set at tick 0 of the first track times the notes of every track."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(150))]))
    mid.tracks.append(
        mido.MidiTrack(
            [
                mido.Message("note_on", note=40, velocity=90, time=480),
                mido.Message("note_off", note=40, time=480),
            ]
        )
    )
    (note,) = read_notes(mid)["track 1"]
    assert (note.start, note.end) == (0.4, 0.8)
