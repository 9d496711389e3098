"""`jam`: the loop's bars and tempo, the session timeline, takes that continue and vary, late takes,
commands while it plays, the session files, and the command line's refusals."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.conditioning.chords import parse_progression
from musicgen_stem.conditioning.steps import StepConfig
from musicgen_stem.conditioning.text import TextEncoderConfig
from musicgen_stem.jam.control import CommandError, apply_command
from musicgen_stem.jam.loop import Loop, LoopError, Timeline, fit_bars, read_loop
from musicgen_stem.jam.output import write_session
from musicgen_stem.jam.player import Player
from musicgen_stem.jam.session import Jam, JamSettings
from musicgen_stem.jam.sinks import PcmSink
from musicgen_stem.modeldir import build_parts
from musicgen_stem.samples import Samples

SR = 32000


def _never() -> float:
    raise AssertionError("the tempo was given: nothing to estimate")


def test_bars_and_tempo_of_a_loop():
    assert fit_bars(8.0, 120.0, None, _never) == (120.0, 4)
    assert fit_bars(8.0, None, 2, _never) == (60.0, 2)
    assert fit_bars(8.0, None, None, lambda: 119.0) == (120.0, 4)  # the tempo made exact
    bpm, bars = fit_bars(8.1, 120.0, None, _never)  # 1 % off: whole bars at a tempo that fits
    assert bars == 4 and bpm == pytest.approx(4 * 240 / 8.1)
    with pytest.raises(LoopError, match="shorter than one bar"):
        fit_bars(1.0, 120.0, None, _never)
    with pytest.raises(LoopError, match="whole bars"):
        fit_bars(9.0, 120.0, None, _never)  # 4.5 bars
    with pytest.raises(LoopError, match="60 s"):
        fit_bars(75.0, 120.0, None, _never)
    with pytest.raises(LoopError, match="--bpm"):
        fit_bars(8.0, None, None, lambda: 0.0)
    with pytest.raises(LoopError, match="--bpm/--bars"):
        fit_bars(8.0, 100.0, 4, _never)


def test_chord_chart_looped_from_an_offset():
    chart = parse_progression("Am F", 120.0)  # 2 s a bar, 4 s a cycle
    shifted = chart.looped(6.0, offset=3.0)  # time 0 is 3 s into the chart: F, then Am at 1 s
    assert shifted.at(0.5).name == "F" and shifted.at(1.5).name == "Am" and shifted.at(3.5).name == "F"
    assert shifted.duration == 6.0 and chart.looped(6.0, 0.0) == chart.looped(6.0)


def _loop(seconds: float = 2.0, rate: int = SR, bpm: float = 120.0) -> dict[str, Samples]:
    """A drum loop (a click every beat) and a held A minor chord, as 16-bit files would hold them."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    drums = np.zeros(n)
    for beat in np.arange(0, seconds, 60 / bpm):
        i = round(beat * rate)
        drums[i : i + 200] = np.hanning(400)[200:] * np.sign(np.sin(np.arange(200)))
    other = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63))
    to16 = lambda x: (np.clip(x, -1, 1) * 32767).round().astype(np.int32)[None] * 65536  # noqa: E731
    return {"drums": Samples(to16(drums), "PCM_16", rate), "other": Samples(to16(other), "PCM_16", rate)}


def test_the_timeline_joins_its_segments_and_never_drifts():
    stems = _loop(2.0, 44100)
    loop = Loop(stems, 120.0, 1)
    tl = Timeline(loop, SR, 640, 1)
    whole = tl.audio("drums", 0, 3 * SR)
    parts = torch.cat([tl.audio("drums", a, b) for a, b in ((0, 20000), (20000, 50001), (50001, 3 * SR))], -1)
    assert torch.allclose(whole, parts, atol=1e-4)
    assert torch.allclose(whole[:, :SR], whole[:, 2 * SR : 3 * SR], atol=1e-4)  # period: 2 s exactly
    assert tl.sample(3, 44100) == 3 * stems["drums"].frames and tl.frame(1000) == 100000
    same = Timeline(Loop(_loop(2.0, SR), 120.0, 1), SR, 640, 1)
    exact = torch.from_numpy(_loop(2.0, SR)["drums"].to_float64()).float()
    assert torch.equal(same.audio("drums", 64000, 128000), exact)  # same rate: the samples themselves


@pytest.fixture(scope="module")
def jam_model():
    cfg = dataclasses.replace(presets.tiny(), steps=StepConfig(beat=True, chords=True))
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    model = MusicGenStem(build_parts(cfg), device="cpu")
    return model


def test_takes_continue_vary_and_are_written_whole(jam_model, tmp_path):
    loop = Loop(_loop(2.0), 120.0, 1)
    jam = Jam(jam_model, loop, seed=5)
    assert jam.chords is not None and jam.chords.at(0.5).root == 9  # A minor read from the loop
    player = Player(jam, JamSettings("funk", ("bass",), vary=1.0))
    records = player.run(2)
    player = Player(jam, JamSettings("funk", ("bass",), vary=0.0))
    records += player.run(1)
    assert [r.cycle for r in records[:2]] == [0, 1] and not any(r.late for r in records)
    tl, bass = jam.timeline, jam_model.layout.stream_slices()["bass"]
    cycle = [jam.codes[bass, tl.frame(n) : tl.frame(n + 1)] for n in range(3)]
    assert not torch.equal(cycle[0], cycle[1])  # a new take
    tail = jam.tail  # a cycle's first frames are the previous take ringing on
    assert torch.equal(cycle[1][:, tail:], cycle[2][:, tail:])  # vary 0: the take repeats
    assert records[2].new_bars == 0 and records[1].new_bars == 1
    for r in records:
        r.cycle = records.index(r)
    meta = {"task": "jam", "beat_grid": {"bpm": 120.0}, "chords": jam.chords.looped(6.0).to_json()}
    out = write_session(tmp_path / "s", jam, records, meta)
    drums, rate = sf.read(out / "drums.wav", dtype="int16")
    assert rate == SR and np.array_equal(drums, np.tile(loop.stems["drums"].data[0] // 65536, 3))
    bass_wav, _ = sf.read(out / "bass.wav")
    assert len(bass_wav) == 3 * loop.frames and np.abs(bass_wav).max() > 0
    assert [c["cycle"] for c in json.loads((out / "jam.json").read_text())["cycles"]] == [0, 1, 2]
    assert np.load(out / "codes.npy").shape == (jam_model.layout.num_streams, tl.frame(3))
    assert (out / "stems.mid").stat().st_size > 0


def test_a_take_not_ready_in_time_repeats_the_previous_one_and_the_clock_goes_on(jam_model):
    loop = Loop(_loop(1.0, bpm=240.0), 240.0, 1)
    jam = Jam(jam_model, loop, seed=0)
    chunks: list[np.ndarray] = []

    class Collect:
        def write(self, audio: np.ndarray) -> None:
            chunks.append(audio)

        def close(self) -> None:
            pass

    # a take due a whole cycle before its border can never be ready: every cycle is late
    player = Player(jam, JamSettings(None, ("bass",)), [Collect()], realtime=True, lead=0.0, margin=1.0)
    began = time.monotonic()
    records = player.run(3)
    assert [r.late for r in records] == [False, True, True] and records[0].count_in
    assert time.monotonic() - began >= 1.9  # cycles 1 and 2 were handed out on the clock
    assert sum(c.shape[-1] for c in chunks) == 3 * SR  # no gap, nothing dropped


def test_commands_change_the_next_take_and_what_is_heard(jam_model):
    s = JamSettings("funk", ("bass",))
    stems, free = jam_model.stems, ["bass"]
    assert apply_command(s, "prompt  slow jazz ", stems, free).prompt == "slow jazz"
    assert apply_command(s, "vary 0.25", stems, free).vary == 0.25
    muted = apply_command(s, "mute drums", stems, free)
    assert muted.heard(stems) == ["bass", "other"]
    assert apply_command(muted, "solo bass", stems, free).heard(stems) == ["bass"]
    assert apply_command(muted, "unmute", stems, free).heard(stems) == list(stems)
    for bad, match in (
        ("vary 2", "0 to 1"),
        ("regenerate drums", "not in the loop"),
        ("mute piano", "unknown stem 'piano'"),
        ("dance", "unknown command 'dance'"),
    ):
        with pytest.raises(CommandError, match=match):
            apply_command(s, bad, stems, free)
    loop = Loop(_loop(2.0), 120.0, 1)
    player = Player(Jam(jam_model, loop, seed=1), s, say=lambda m: said.append(m))
    said: list[str] = []
    player.command("dance")
    player.command("prompt new words")
    records = player.run(1)
    assert records[0].prompt == "new words at 120 bpm" and "unknown command" in said[0]


def test_pcm_to_a_pipe():
    buf = io.BytesIO()
    PcmSink(buf, "s16").write(np.array([[0.5, -1.0, 2.0]], np.float32))
    assert np.frombuffer(buf.getvalue(), "<i2").tolist() == [16384, -32767, 32767]
    buf = io.BytesIO()
    PcmSink(buf, "f32").write(np.array([[0.5, 0.25], [1.0, 0.0]], np.float32))  # stereo: interleaved
    assert np.frombuffer(buf.getvalue(), "<f4").tolist() == [0.5, 1.0, 0.25, 0.0]


def _write_loop(path, seconds, bpm=120.0, silent=False):
    stems = _loop(seconds, bpm=bpm)
    files = {}
    for name, s in stems.items():
        data = s.data[0] // 65536
        sf.write(path / f"{name}.wav", np.zeros_like(data) if silent else data.astype(np.int16), SR, "PCM_16")
        files[name] = path / f"{name}.wav"
    return files


def test_read_loop_finds_the_tempo_and_refuses_bad_loops(tmp_path):
    files = _write_loop(tmp_path, 4.0)
    loop = read_loop(files)
    assert (loop.bars, round(loop.bpm)) == (2, 120)
    silent = tmp_path / "silent"
    silent.mkdir()
    with pytest.raises(LoopError, match="--bpm"):
        read_loop(_write_loop(silent, 4.0, silent=True))


def test_jam_command_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    files = _write_loop(tmp_path, 2.0)
    loop = [f"--loop={k}={v}" for k, v in files.items()]
    common = ["--model", str(tiny_model_dir), "--seed", "1"]
    out = tmp_path / "session"
    monkeypatch.setattr("sys.stdin", io.StringIO("dance\n"))  # a command it does not know: it goes on
    assert main(["jam", "funk", *loop, "--cycles", "3", "--out", str(out), *common]) == 0
    cycles = json.loads((out / "jam.json").read_text())["cycles"]
    assert len(cycles) == 3 and all(not c["late"] for c in cycles)
    assert "unknown command 'dance'" in capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["beat_grid"]["bpm"] == 120.0
    short = tmp_path / "short"
    short.mkdir()
    bad = [
        ([*loop, "--cycles", "1"], "nothing to play to"),
        ([*loop, "--out", str(out), "--cycles", "1"], "already exists"),
        ([*loop, "--out", str(tmp_path / "x"), "--vary", "3"], "--vary"),
        ([*loop, "--out", str(tmp_path / "x"), "--regenerate", "drums"], "in the loop"),
        ([*loop, "--out", str(tmp_path / "x"), "--bpm", "90"], "whole bars"),
        ([f"--loop=drums={_write_loop(short, 0.6)['drums']}", "--out", str(tmp_path / "x")], "one bar"),
        (["--loop", "drums", "--out", str(tmp_path / "x")], "NAME=FILE"),
    ]
    for args, message in bad:
        capsys.readouterr()
        assert main(["jam", *args, *common]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_no_sound_device_is_one_line_and_the_jam_plays_on_to_its_files(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    from musicgen_stem.jam.sinks import DeviceSink, NoSoundDevice

    monkeypatch.setitem(__import__("sys").modules, "sounddevice", None)  # no PortAudio here
    with pytest.raises(NoSoundDevice, match="no sound device"):
        DeviceSink(SR, 1)
    files = _write_loop(tmp_path, 1.0, bpm=240.0)
    loop = [f"--loop={k}={v}" for k, v in files.items()]
    out = tmp_path / "live"
    args = ["jam", *loop, "--bpm", "240", "--realtime", "--cycles", "2", "--out", str(out)]
    args += ["--model", str(tiny_model_dir)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "no sound device" in err and "playing to --out only" in err and "Traceback" not in err
    cycles = json.loads((out / "jam.json").read_text())["cycles"]
    assert cycles[0]["count_in"] and len(cycles) == 2
    nowhere = ["jam", *loop, "--bpm", "240", "--realtime", "--cycles", "1", "--model", str(tiny_model_dir)]
    assert main(nowhere) == 2  # no sound card and no file or pipe: nothing to play to
    assert "pass --out DIR or --pcm" in capsys.readouterr().err


class _SlowJam:
    """A jam whose takes take 0.4 s, stopping at a step as the engine does; records the prompts."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.loop = SimpleNamespace(seconds=1.0)
        self.model = SimpleNamespace(stems=("bass", "drums", "other"))
        self.free_stems = ["bass"]
        self.started: list[str | None] = []

    def next_take(self, settings, stop):
        from musicgen_stem.api.streaming import StreamStopped
        from musicgen_stem.jam.session import Take

        self.started.append(settings.prompt)
        began = time.monotonic()
        while time.monotonic() - began < 0.4:
            if stop():
                raise StreamStopped
            time.sleep(0.005)
        return Take(0, 0, torch.zeros(1, 1), settings.prompt, 0, 1, settings.regenerate)

    def repeat_take(self):
        from musicgen_stem.jam.session import Take

        return Take(0, 0, torch.zeros(1, 1), None, -1, 0)

    def cycle_audio(self, n):
        return {s: torch.zeros(1, 10) for s in self.model.stems}


def test_a_prompt_change_is_heard_at_the_next_border_when_there_is_time_and_never_makes_it_late():
    jam = _SlowJam()
    player = Player(jam, JamSettings("funk", ("bass",)), realtime=True, lead=0.0, margin=0.1)
    threading.Timer(0.15, player.command, ("prompt jazz",)).start()  # while take 1 is written
    threading.Timer(1.36, player.command, ("prompt rock",)).start()  # take 2 nearly done: no time to redo
    records = player.run(3)
    assert [r.late for r in records] == [False, False, False]
    assert records[1].prompt == "jazz"  # restarted: heard at the next border
    assert records[2].prompt == "jazz"  # too late to restart without missing the border: next cycle
    assert jam.started[:3] == ["funk", "jazz", "jazz"]
    assert player._current().prompt == "rock"


def test_vary_0_after_the_count_in_still_writes_the_first_take_and_new_stems_whole(jam_model):
    jam = Jam(jam_model, Loop({"drums": _loop(2.0)["drums"]}, 120.0, 1), seed=2)
    jam.repeat_take()  # the count-in: the loop alone
    first = jam.next_take(JamSettings("funk", ("bass",), vary=0.0))
    assert first.new_bars == 1  # written whole, not a repeat of the count-in's silence
    tl, rows = jam.timeline, jam_model.layout.stream_slices()
    silence = torch.tensor(jam_model.silence_tokens())[rows["bass"]][:, None]
    assert not torch.equal(
        jam.codes[rows["bass"], tl.frame(1) + jam.tail : tl.frame(2)], silence.expand(-1, 100 - jam.tail)
    )
    more = jam.next_take(JamSettings("funk", ("bass", "other"), vary=0.0))  # other joins: written whole
    assert more.new_bars == 1 and jam.written == {"bass", "other"}
    again = jam.next_take(JamSettings("funk", ("bass", "other"), vary=0.0))
    assert again.new_bars == 0  # both written: vary 0 repeats
