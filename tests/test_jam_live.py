"""`jam --input`: the recording on the session's clock, the round trip measured and compensated, the
model answering what was played two cycles on, and the refusals; a fake duplex sound card (a
loopback: what it plays comes back at its input `DELAY` samples later) stands in for PortAudio."""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.cli import main
from musicgen_stem.jam.live import ANSWER_CYCLES, LatencyError, Recording, find_latency, probe
from musicgen_stem.jam.loop import Loop, LoopError
from musicgen_stem.jam.session import Jam
from musicgen_stem.samples import Samples

SR = 32000
DELAY = 400  # samples, output to input, of the fake card
BLOCK = 128


class _LoopbackStream:
    """sounddevice.Stream / OutputStream as far as the jam uses them, paced by the clock; the input
    is the output `DELAY` samples earlier."""

    def __init__(self, samplerate, channels, dtype, callback, device=None):  # noqa: ANN001
        self.rate, self.callback = samplerate, callback
        self.ins, self.outs = channels if isinstance(channels, tuple) else (0, channels)
        self.latency = (0.005, DELAY / SR - 0.005) if self.ins else 0.01
        self._run = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        history = np.zeros((DELAY, self.outs), np.float32)
        began, n = time.monotonic(), 0
        while self._run.is_set():
            out = np.zeros((BLOCK, self.outs), np.float32)
            history = np.concatenate([history, out])
            back = history[-DELAY - BLOCK : -DELAY, :1].copy()  # [BLOCK, 1]: played DELAY ago
            if self.ins:
                self.callback(back, out, BLOCK, None, None)
            else:
                self.callback(out, BLOCK, None, None)
            history[-BLOCK:] = out
            history = history[-DELAY - BLOCK :]
            n += 1
            time.sleep(max(0.0, began + n * BLOCK / self.rate - time.monotonic()))

    def start(self) -> None:
        self._run.set()
        self._thread.start()

    def stop(self) -> None:
        self._run.clear()
        self._thread.join()

    def close(self) -> None:
        pass


@pytest.fixture
def loopback_card(monkeypatch):
    fake = types.SimpleNamespace(Stream=_LoopbackStream, OutputStream=_LoopbackStream)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)


def test_the_recording_is_read_on_the_sessions_clock():
    rec = Recording(1, latency=3)
    rec.push(np.arange(5, dtype=np.float32)[None])
    rec.push(np.stack([np.arange(5, 100), np.arange(5, 100)]).astype(np.float32))  # stereo: mixed down
    assert rec.length == 97
    assert rec.segment(0, 4)[0].tolist() == [3, 4, 5, 6]  # session sample t is recorded t + 3
    assert rec.segment(95, 99)[0].tolist() == [98, 99, 0, 0]  # not recorded yet: silence
    big = Recording(1)
    big.push(np.ones((1, 200_000), np.float32))  # grows past its first buffer
    assert big.length == 200_000 and big.segment(199_999, 200_001)[0].tolist() == [1, 0]


def test_pieces_are_written_where_they_were_played():
    rec = Recording(2)
    rec.write(10, np.full((1, 5), 1.0, np.float32))  # mono: repeated to both channels
    assert rec.length == 15 and not rec.segment(0, 10).any()  # the gap before it: silence
    rec.write(3, np.full((2, 4), 2.0, np.float32))  # an earlier piece, come late
    rec.write(13, np.full((1, 4), 3.0, np.float32))  # overlaps the first: written over it
    assert rec.segment(0, 18)[1].tolist() == [0] * 3 + [2] * 4 + [0] * 3 + [1] * 3 + [3] * 4 + [0]
    rec.write(-2, np.full((1, 3), 4.0, np.float32))  # before the session: only sample 0 is kept
    assert rec.segment(0, 2)[0].tolist() == [4, 0]
    rec.write(300_000, np.ones((1, 2), np.float32))  # far on: the buffer grows, the gap is silent
    assert rec.length == 300_002 and not rec.segment(17, 300_000).any()
    rec.push(np.full((1, 1), 5.0, np.float32))  # push appends after the furthest sample
    assert rec.segment(300_000, 300_003)[0].tolist() == [1, 1, 5]
    late = Recording(1, latency=2)  # session sample t is recorded t + 2
    late.write(0, np.arange(1, 4, dtype=np.float32)[None])
    assert late.segment(-2, 3)[0].tolist() == [0, 0, 1, 2, 3]


def test_the_round_trip_is_found_in_what_came_back():
    sent = probe(SR)
    rng = np.random.default_rng(1)
    back = np.concatenate([np.zeros(1234), 0.3 * sent])[: len(sent)] + 0.01 * rng.standard_normal(len(sent))
    assert find_latency(sent, back, SR) == pytest.approx(1234 / SR)
    with pytest.raises(LatencyError, match="nothing came back"):
        find_latency(sent, np.zeros(len(sent)), SR)
    with pytest.raises(LatencyError, match="not come back clearly"):
        find_latency(sent, rng.standard_normal(len(sent)), SR)  # noise, not the probe


def test_measure_latency_on_a_loopback_card(loopback_card, capsys):
    assert main(["jam", "--measure-latency"]) == 0
    assert f"round trip: {DELAY / SR * 1000:.1f} ms" in capsys.readouterr().out


def _drums(seconds: float, bpm: float) -> Samples:
    n = round(seconds * SR)
    x = np.zeros(n)
    for beat in np.arange(0, seconds, 60 / bpm):
        i = round(beat * SR)
        x[i : i + 200] = np.hanning(400)[200:] * np.sign(np.sin(np.arange(200)))
    return Samples((np.clip(x, -1, 1) * 32767).round().astype(np.int32)[None] * 65536, "PCM_16", SR)


def test_the_model_hears_what_was_played_two_cycles_before(jam_model):
    loop = Loop({"drums": _drums(1.0, 240.0)}, 240.0, 1)
    rec = Recording(1)
    rec.push(np.linspace(-1, 1, 5 * SR, dtype=np.float32)[None])
    jam = Jam(jam_model, loop, seed=0, live="other", recording=rec)
    assert jam.free_stems == ["bass"] and jam.kept_stems == ["drums", "other"]
    tl = jam.timeline
    heard = jam.kept_audio("other", tl.sample(1), tl.sample(4))  # cycles 1 to 3
    assert not heard[:, :SR].any()  # cycle 1: nothing was played two cycles before it
    played = torch.from_numpy(rec.segment(tl.sample(0), tl.sample(2)))
    assert torch.equal(heard[:, SR:], played)  # cycles 2 and 3 hear cycles 0 and 1
    assert ANSWER_CYCLES == 2
    later = Jam(jam_model, loop, seed=0, live="other", recording=rec, answer_cycles=3)  # the browser's
    heard = later.kept_audio("other", tl.sample(1), tl.sample(4))
    assert not heard[:, : 2 * SR].any() and torch.equal(heard[:, 2 * SR :], played[:, :SR])
    with pytest.raises(LoopError, match="2 cycles on at the soonest"):
        Jam(jam_model, loop, seed=0, live="other", recording=rec, answer_cycles=1)


def test_the_browser_is_answered_once_its_cycle_has_arrived_whole():
    from musicgen_stem.app.jams import BROWSER_DELAY_SECONDS, browser_answer_cycles

    for seconds in (1.0, 1.5, 2.0, 4.0, 8.0):
        n = browser_answer_cycles(seconds)
        assert (n - ANSWER_CYCLES) * seconds >= BROWSER_DELAY_SECONDS  # arrived whole when read
        assert (n - ANSWER_CYCLES - 1) * seconds < BROWSER_DELAY_SECONDS  # and no later than that
    assert browser_answer_cycles(4.0) == 3 and browser_answer_cycles(1.0) == 4


@pytest.fixture(scope="module")
def jam_model():
    import dataclasses

    from musicgen_stem import presets
    from musicgen_stem.api import MusicGenStem
    from musicgen_stem.conditioning.steps import StepConfig
    from musicgen_stem.conditioning.text import TextEncoderConfig
    from musicgen_stem.modeldir import build_parts

    cfg = dataclasses.replace(presets.tiny(), steps=StepConfig(beat=True, chords=True))
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    return MusicGenStem(build_parts(cfg), device="cpu")


def test_a_live_jam_records_what_was_played_in_time_with_the_session(
    loopback_card, tiny_model_dir, tmp_path, capsys
):
    sf.write(tmp_path / "drums.wav", _drums(1.0, 240.0).data[0] // 65536, SR, "PCM_16")
    out = tmp_path / "live"
    args = ["jam", "--loop", f"drums={tmp_path / 'drums.wav'}", "--input", "other", "--bpm", "240"]
    args += ["--realtime", "--cycles", "4", "--out", str(out), "--model", str(tiny_model_dir)]
    assert main(args) == 0, capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input"] == {"stem": "other", "latency_ms": DELAY / SR * 1000, "answer_cycles": 2}
    drums, _ = sf.read(out / "drums.wav")
    bass, _ = sf.read(out / "bass.wav")
    other, _ = sf.read(out / "other.wav")  # the loopback "player" plays back what it hears
    assert len(other) == 4 * SR and np.abs(other).max() > 0.1
    # what was played lines up with the session to the sample: the heard mix, 16-bit rounded
    assert np.abs(other - (drums + bass)).max() < 3 / 32768
    assert json.loads((out / "jam.json").read_text())["cycles"][0]["count_in"]


def test_live_input_refusals(tiny_model_dir, tmp_path, capsys, monkeypatch):
    sf.write(tmp_path / "drums.wav", _drums(1.0, 240.0).data[0] // 65536, SR, "PCM_16")
    loop = ["--loop", f"drums={tmp_path / 'drums.wav'}", "--bpm", "240", "--model", str(tiny_model_dir)]
    x = ["--out", str(tmp_path / "x")]
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # no PortAudio here
    for args, message in (
        ([*loop, *x, "--input", "other"], "needs --realtime"),
        ([*loop, *x, "--input", "drums", "--realtime"], "is in the loop"),
        ([*loop, *x, "--input", "piano", "--realtime"], "unknown stem 'piano'"),
        ([*loop, *x, "--input", "other", "--realtime", "--input-latency", "-5"], "--input-latency"),
        ([*loop, *x, "--input", "other", "--realtime"], "--input needs a sound card"),
        ([*loop, *x, "--input", "other", "--realtime", "--regenerate", "other"], "played live"),
        (["--measure-latency"], "needs a sound card"),
        (x, "give the loop"),
    ):
        capsys.readouterr()
        assert main(["jam", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x").exists()
