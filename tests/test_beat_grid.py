"""The per-step conditions and the beat grid: features, decoding, training batches, model folders,
and text -> stems."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_train_lm import write_token_dataset

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.conditioning.steps import (
    BEAT_CYCLES,
    BeatGrid,
    StepConditioner,
    StepConds,
    StepConfig,
    beat_features,
    swing_warp,
)
from musicgen_stem.conditioning.text import TextEncoderConfig
from musicgen_stem.dsp import beat_phase, estimate_swing, onset_strength
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm.model import LMConfig, StemLM
from musicgen_stem.modeldir import LM_FILE, STEPS_FILE, build_parts, load_model
from musicgen_stem.training.lm_data import EDIT, TEXT, BatchBuilder, TokenDataset

TINY = LMConfig(dim=32, num_heads=4, num_layers=2, ff_dim=64)
HALF = 1500.0  # bpm: half a beat per step at 50 frames/s


def _cos(grid: BeatGrid | None, start: int, steps: int, cycle: float) -> torch.Tensor:
    """cos of the phase in `cycle` over steps [0, steps) of a window at song frame `start`."""
    return beat_features([grid], [start], steps, 50.0)[0, :, len(BEAT_CYCLES) + BEAT_CYCLES.index(cycle)]


def test_beat_grid_phase_from_tempo_and_start():
    """120 BPM at 50 frames/s: a beat every 25 frames; a window at frame 25 starts on beat 1 (half a
    bar: bar phase pi/2); a beat found at 0.25 s (an edit) puts the beats at frames 12.5 + 25 n."""
    f = beat_features([BeatGrid(120.0), None], [25, 0], 30, 50.0)
    C, bar = len(BEAT_CYCLES), BEAT_CYCLES.index(4.0)
    assert float(f[0, 0, C + BEAT_CYCLES.index(1.0)]) == pytest.approx(1.0)  # on a beat
    assert float(f[0, 0, bar]) == pytest.approx(1.0) and float(f[0, 0, C + bar]) == pytest.approx(
        0.0, abs=1e-6
    )
    assert not f[1].any()  # no tempo named: no grid
    eighth = _cos(BeatGrid(120.0, 0.25), 0, 50, 0.5)  # frame 0 is half a beat before the beat found
    assert float(eighth[0]) == pytest.approx(1.0) and float(eighth[6]) < -0.99  # frame 6: 0.24 beats later
    assert not _cos(BeatGrid(120.0, 0.25), 0, 50, 1.0).any()  # an edit knows no beats, no bars


def test_beat_phase_of_a_click_track():
    """Clicks every 0.5 s from 0.13 s: the phase found at 120 BPM is 0.13 s (within a bin), and the
    same clicks at 0.38 s give 0.38 s."""
    sr = 16000
    for t0 in (0.13, 0.38):
        x = np.zeros(8 * sr, np.float32)
        for t in np.arange(t0, 8.0, 0.5):
            i = int(t * sr)
            x[i : i + 200] = np.random.default_rng(int(t * 100)).standard_normal(200) * np.hanning(200)
        phase = beat_phase(onset_strength(x, sr), 120.0)
        assert abs(phase - t0) < 0.025, (t0, phase)
    assert beat_phase(onset_strength(np.zeros(sr, np.float32), sr), 120.0) == 0.0


def test_beat_features_known_phases():
    """Half a beat per step: step 2 is on beat 1 (beat and 8th phase 0, bar phase 1/4); no grid: 0."""
    f = beat_features([BeatGrid(HALF), None, BeatGrid(HALF, 0.0)], [0, 0, 0], 4, 50.0)  # [3, 4, 10]
    C = len(BEAT_CYCLES)
    assert f.shape == (3, 4, 2 * C)
    long = [i for i, c in enumerate(BEAT_CYCLES) if c > 0.5]  # bar, half bar and beat
    assert not f[2][:, long].any() and not f[2][:, [C + i for i in long]].any()  # only 8ths known
    short = [i for i in range(2 * C) if i % C not in long]
    torch.testing.assert_close(f[2][:, short], f[0][:, short])  # 8ths and 16ths as with bars
    sin, cos = f[0, 2, :C], f[0, 2, C:]
    bar, beat, eighth = BEAT_CYCLES.index(4.0), BEAT_CYCLES.index(1.0), BEAT_CYCLES.index(0.5)
    assert sin[bar] == pytest.approx(1.0, abs=1e-6) and cos[bar] == pytest.approx(0.0, abs=1e-6)
    assert sin[beat] == pytest.approx(0.0, abs=1e-6) and cos[beat] == pytest.approx(1.0, abs=1e-6)
    assert cos[eighth] == pytest.approx(1.0, abs=1e-6)
    assert f[0, 1, C + beat] == pytest.approx(-1.0, abs=1e-6)  # step 1: half a beat
    assert not f[1].any()
    # a window starting later is the same as later steps: frame 3 from frame 0 == step 0 from frame 3
    later = beat_features([BeatGrid(HALF)], [0], 4, 50.0)[:, 3:]
    shifted = beat_features([BeatGrid(HALF)], [3], 1, 50.0)
    torch.testing.assert_close(later, shifted)
    assert math.isclose(float(f[0, 0, C + bar]), 1.0)


def _clicks(times: np.ndarray, sr: int, seconds: float = 8.0) -> np.ndarray:
    x = np.zeros(int(seconds * sr), np.float32)
    for t in times:
        i = int(t * sr)
        x[i : i + 200] += np.random.default_rng(int(t * 1000)).standard_normal(200) * np.hanning(200)
    return x


def test_swing_warp_puts_the_swung_16ths_on_the_straight_ones():
    """In a beat, the swung 16th positions of `Score.tick` (0, 1/4 + s/12, 1/2 + s/6, 3/4 + s/12)
    read as 0, 1/4, 1/2, 3/4; beats stay where they are, rows without swing are bit-exact, and a
    swung grid's 8th feature peaks at the swung off-beat."""
    s = 0.85
    swung = torch.tensor(
        [[0.0, 0.25 + s / 12, 0.5 + s / 6, 0.75 + s / 12, 1.0, 3.5 + s / 6]], dtype=torch.float64
    )
    warped = swing_warp(swung, torch.tensor([s]))
    torch.testing.assert_close(warped, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0, 3.5]], dtype=torch.float64))
    assert torch.equal(swing_warp(swung, torch.tensor([0.0])), swung)
    assert torch.all(
        torch.diff(swing_warp(torch.linspace(0, 2, 201)[None].double(), torch.tensor([1.0]))) > 0
    )
    # 8 steps per beat: step 5 is 5/8 = 0.625, the off-beat of a swing of 0.75
    eighth = _cos(BeatGrid(375.0, 0.0, 0.75), 0, 8, 0.5)
    assert int(eighth[1:].argmax()) + 1 == 5  # the swung off-beat (straight: step 4)
    assert int(_cos(BeatGrid(375.0, 0.0), 0, 8, 0.5)[1:].argmax()) + 1 == 4
    # a batch where one row swings leaves the straight row bit-exact
    both = beat_features([BeatGrid(375.0, 0.0), BeatGrid(375.0, 0.0, 0.75)], [0, 0], 8, 50.0)
    assert torch.equal(both[:1], beat_features([BeatGrid(375.0, 0.0)], [0], 8, 50.0))


@pytest.mark.parametrize("swing", [1.0, 0.85, 0.4, 0.0])
def test_estimate_swing_of_a_swung_click_track(swing):
    """Clicks on every beat and swung off-beat at 100 BPM: from the 8th `beat_phase` finds (it may
    take the off-beat), the swing is found within 0.1 and the beat returned is a beat (within 30
    ms); straight 8ths: no swing."""
    sr, bpm, period = 16000, 100.0, 0.6
    beats = 0.1 + np.arange(13) * period
    env = onset_strength(_clicks(np.sort(np.r_[beats, beats + (0.5 + swing / 6) * period]), sr), sr)
    found, beat = estimate_swing(env, bpm, beat_phase(env, bpm))
    assert found == pytest.approx(swing, abs=0.1)
    if swing:
        assert abs((beat - 0.1 + period / 2) % period - period / 2) < 0.03


def _lm(seed: int = 0) -> tuple[StemLM, StepConditioner]:
    torch.manual_seed(seed)
    steps = StepConditioner(StepConfig(beat=True), 32)
    torch.nn.init.normal_(steps.beat.weight)  # a trained grid
    return StemLM(LAYOUT_6CB, TINY).eval(), steps


def test_step_conditions_are_zero_at_init_and_rows_without_any_add_nothing():
    torch.manual_seed(0)
    lm = StemLM(LAYOUT_6CB, TINY).eval()
    seq, mem = torch.randint(0, 1024, (2, 6, 7)), torch.randn(2, 3, 32)
    steps = StepConditioner(StepConfig(beat=True), 32)
    conds = StepConds((BeatGrid(100.0), BeatGrid(140.0)))
    with torch.no_grad():
        before = lm(seq, mem)
        assert not steps.beat.weight.any()
        torch.testing.assert_close(lm(seq, mem, cond=steps(conds, 0, 7, 50.0)), before)  # zero: same model
        steps.beat.weight.normal_()
        assert not torch.allclose(lm(seq, mem, cond=steps(conds, 0, 7, 50.0)), before)
        assert steps(conds.null(), 0, 7, 50.0) is None  # nothing known: no term at all
        half = steps(StepConds((BeatGrid(100.0), None)), 0, 7, 50.0)
        assert not half[1].any()  # a row without a grid adds zeros
    assert StepConds((None,)) + StepConds((), (None, None)) == StepConds((None,) * 3, (None,) * 3)


def test_decoding_with_step_conditions_equals_full_forward():
    """Prefill + one step at a time (and the static decode step) read the conditions at the same steps."""
    lm, steps = _lm()
    T = 9
    seq, mem = torch.randint(0, 1024, (2, 6, T)), torch.randn(2, 3, 32)
    conds = StepConds((BeatGrid(96.0), BeatGrid(150.0)))
    with torch.no_grad():
        cond = steps(conds, [10, 0], T, 50.0)
        full = lm(seq, mem, cond=cond)
        state = lm.new_state(mem, T, cond=cond)
        outs = [lm(seq[..., :4], state=state)] + [lm(seq[..., t : t + 1], state=state) for t in range(4, T)]
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
        static = lm.new_state(mem, T, cond=cond)
        outs = [lm.decode_step(seq[..., t : t + 1], torch.tensor([t]), static) for t in range(T)]
        torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(lm(seq, mem, cond=steps(conds, [11, 0], T, 50.0)), full)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    root = write_token_dataset(tmp_path_factory.mktemp("grid") / "data", presets.tiny().layout, [300] * 3)
    index = root / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text(
        "\n".join(line.replace('"caption ', '"funk at 120 bpm, caption ') for line in lines) + "\n"
    )
    return root


def test_text_batches_carry_the_caption_tempo_at_the_crop_start(captioned):
    ds = TokenDataset([captioned], presets.tiny().layout, 50.0)
    builder = BatchBuilder(ds, 100, 50, [7] * 6, 0.5, 0.0, 50.0, beat=True, step_dropout=0.0)
    batch = builder.build(4, torch.Generator().manual_seed(0), TEXT, False)
    assert batch.conds is not None and len(batch.conds) == 4 and batch.starts is not None
    for b in range(4):
        assert batch.conds.beats[b] == BeatGrid(120.0)  # text batches: the song starts on a downbeat
        start = batch.starts[b]  # the crop's first frame in its track
        assert any(torch.equal(ds.codes(i, start, 100), batch.codes[b]) for i in range(3))
    edit = builder.build(4, torch.Generator().manual_seed(0), EDIT, False)
    P = edit.prefix_len
    for b in range(4):
        assert edit.conds.beats[b] == BeatGrid(120.0, 0.0)  # an edit trusts the 8ths only
        start = edit.starts[b] + P  # column 0 is the prefix's first
        assert any(torch.equal(ds.codes(i, start, 50), edit.codes[b, :, P:]) for i in range(3))
    dropped = builder.build(4, torch.Generator().manual_seed(0), TEXT, True)
    assert dropped.texts == [None] * 4 and dropped.conds == StepConds((None,) * 4)  # the null condition
    half = BatchBuilder(ds, 100, 50, [7] * 6, 0.5, 0.0, 50.0, beat=True, step_dropout=0.5)
    rows = [
        g for s in range(10) for g in half.build(8, torch.Generator().manual_seed(s), TEXT, False).conds.beats
    ]
    assert 0.25 < sum(g is None for g in rows) / len(rows) < 0.75
    assert BatchBuilder(ds, 100, 50, [7] * 6).build(2, torch.Generator(), TEXT, False).conds is None


def _grid_model(tmp_path) -> tuple[MusicGenStem, object]:
    cfg = dataclasses.replace(presets.tiny(), steps=StepConfig(beat=True))
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    parts = build_parts(cfg)
    with torch.no_grad():
        parts.steps.beat.weight.normal_(std=3.0)  # a trained grid
    model = MusicGenStem(parts, device="cpu")
    return model, model.save(tmp_path / "m")


def test_model_with_grid_saves_and_loads_and_reads_the_old_folders(tmp_path):
    """The grid's weights in step_conditioner.safetensors; a 0.1 folder (`"beat_grid": true` in the LM
    config, its weight in lm.safetensors) loads the same model."""
    import json

    from safetensors.torch import load_file, save_file

    model, folder = _grid_model(tmp_path)
    assert load_model(folder).config.steps == StepConfig(beat=True) and (folder / STEPS_FILE).is_file()
    a = model.generate(["funk at 100 bpm"], seed=3, duration=0.5)
    again = MusicGenStem.from_pretrained(folder, device="cpu")
    torch.testing.assert_close(again.generate(["funk at 100 bpm"], seed=3, duration=0.5).codes, a.codes)
    config = json.loads((folder / "config.json").read_text())
    config["lm"]["beat_grid"] = True
    del config["steps"]
    (folder / "config.json").write_text(json.dumps(config))
    lm = load_file(folder / LM_FILE) | {"beat.weight": load_file(folder / STEPS_FILE)["beat.weight"]}
    save_file(lm, folder / LM_FILE)
    (folder / STEPS_FILE).unlink()
    old = MusicGenStem.from_pretrained(folder, device="cpu")
    assert torch.equal(old.generate(["funk at 100 bpm"], seed=3, duration=0.5).codes, a.codes)


def test_the_grid_follows_the_prompt_tempo_the_windows_and_the_kept_stems(tmp_path, monkeypatch):
    """What each decoding reads: the prompt's tempo from frame 0 in text -> stems (every window at its
    own start), the kept stems' beat in an edit (bars unknown), nothing without a tempo or in a
    continuation; the null condition of guidance reads none."""
    model, _ = _grid_model(tmp_path)
    a = model.generate(["funk at 100 bpm"], seed=3, duration=0.5)
    calls = []
    forward = StepConditioner.forward

    def spy(self, conds, start, steps, frame_rate, prefix=0):
        calls.append((conds, start, prefix))
        return forward(self, conds, start, steps, frame_rate, prefix)

    monkeypatch.setattr(StepConditioner, "forward", spy)
    states = []
    new_state = StemLM.new_state

    def state_spy(self, memory, max_steps, reuse=False, cond=None):
        states.append(cond)
        return new_state(self, memory, max_steps, reuse, cond)

    monkeypatch.setattr(StemLM, "new_state", state_spy)
    model.set_generation_params(extend_stride=0.6)
    model.generate(["funk at 100 bpm"], seed=3, duration=model.max_duration + 0.5)  # two windows
    assert [c[0] for c in calls] == [StepConds((BeatGrid(100.0),))] * 2
    window = round(model.max_duration * model.frame_rate)
    start = round(0.5 * model.frame_rate)  # the last window is a full one, ending with the song
    assert calls[0][1] == 0 and 0 < calls[1][1] == start < window
    assert states[0].shape[0] == 2 and states[0][0].any() and not states[0][1].any()  # guidance: none
    calls.clear()
    model.generate(["funk"], seed=3, duration=0.5)  # no tempo named
    assert calls == []
    model.regenerate_from_codes(a.codes, ["drums"], ["funk at 100 bpm"], seed=0)
    ((conds, start, prefix),) = calls  # the beat of the kept stems, bars unknown, after the prefix
    grid = conds.beats[0]
    assert grid.bpm == 100.0 and grid.first_beat is not None and grid.cycle == 0.5
    assert prefix == model.edit_window_frames // 5 + 1 and start == -prefix
    # an edit whose text names no tempo reads the kept stems' (estimated), and says so
    from musicgen_stem.api import decoding

    calls.clear()
    monkeypatch.setattr(decoding, "estimate_tempo", lambda envelope: 100.4)
    out = model.regenerate_from_codes(a.codes, ["drums"], ["funk"], seed=0)
    assert calls[0][0].beats[0].bpm == 100.0
    assert out.params["model_descriptions"] == ["funk at 100 bpm"]
    named = model.regenerate_from_codes(a.codes, ["drums"], ["funk at 100 bpm"], seed=0)
    torch.testing.assert_close(out.codes, named.codes)  # the same as naming it
    assert "model_descriptions" not in named.params
    calls.clear()
    monkeypatch.setattr(decoding, "estimate_tempo", lambda envelope: 0.0)  # kept stems without a pulse
    out = model.regenerate_from_codes(a.codes, ["drums"], ["funk"], seed=0)
    model.generate_continuation_from_codes(a.codes[..., :10], ["funk at 100 bpm"], seed=0, duration=0.5)
    assert calls == [] and "model_descriptions" not in out.params


def test_train_lm_beat_grid_option_adds_and_trains_the_grid(tmp_path, captioned):
    from musicgen_stem.training.lm import LMTrainConfig, train_lm

    cfg = dataclasses.replace(presets.tiny(), edit_window=1.0, max_duration=2.0)
    start = MusicGenStem.from_config(cfg, seed=0, device="cpu").save(tmp_path / "m")
    run = dict(steps=3, batch_size=2, lr=3e-3, warmup=1, edit_prob=0.0, valid_fraction=0.0, log_every=1)
    out = train_lm(LMTrainConfig(str(start), [str(captioned)], str(tmp_path / "run"), beat_grid=True, **run))
    final = load_model(out)
    assert final.config.steps.beat and final.steps is not None and final.steps.beat.weight.any()
    assert not load_model(start).config.steps.any and load_model(start).steps is None


def test_cli_edit_says_which_tempo_it_read(tmp_path, monkeypatch, capsys):
    """`edit` without a tempo in the description: the kept stems' tempo is read, printed and kept
    in meta.json as `model_prompt`; with --bpm, --bpm's."""
    import json

    from musicgen_stem.api import decoding
    from musicgen_stem.cli import main

    cfg = dataclasses.replace(presets.tiny(), steps=StepConfig(beat=True))
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    folder = MusicGenStem(build_parts(cfg), device="cpu").save(tmp_path / "m")
    gen = tmp_path / "gen"
    made = ["generate", "funk", "--model", str(folder), "--duration", "0.5", "-q", "--out", str(gen)]
    assert main(made) == 0
    monkeypatch.setattr(decoding, "estimate_tempo", lambda envelope: 97.0)
    capsys.readouterr()
    args = ["edit", "new drums", "--model", str(folder), "--from", str(gen), "--regenerate", "drums"]
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "e1")]) == 0
    assert "the kept stems' (97 bpm) was read" in capsys.readouterr().out
    meta = json.loads((tmp_path / "e1" / "meta.json").read_text())
    assert meta["prompt"] == "new drums" and meta["model_prompt"] == "new drums at 97 bpm"
    assert main([*args, "--bpm", "120", "--seed", "1", "--out", str(tmp_path / "e2")]) == 0
    assert "was read" not in capsys.readouterr().out
    meta = json.loads((tmp_path / "e2" / "meta.json").read_text())
    assert meta["model_prompt"] == "new drums at 120 bpm"


def test_the_beat_is_read_from_the_kept_drums_not_the_off_beat_stabs(tmp_path, clicks):
    """House and funk stems stab the off-beats louder than the drums strike the beats: the mix alone
    puts the beat on the off-beat; with the kept drums as the pulse it lands on the beat."""
    import soundfile as sf

    from musicgen_stem.api.decoding import kept_rhythm

    sr, bpm = 32000, 120.0
    drums = sf.read(clicks(tmp_path / "d.wav", sr, 8.0, bpm))[0] * 0.3
    stabs = np.roll(sf.read(clicks(tmp_path / "s.wav", sr, 8.0, bpm))[0], sr // 4)  # half a beat late
    mix = torch.from_numpy(drums + stabs).float()[None, None]  # [B, C, T]
    pulse = torch.from_numpy(drums).float()[None, None]
    off = lambda beat: min(beat % 0.5, 0.5 - beat % 0.5)  # noqa: E731  # s from the nearest beat
    assert off(kept_rhythm(mix, sr, [bpm])[0].beat) > 0.2  # the stabs win
    with_drums = kept_rhythm(mix, sr, [bpm], pulse)[0]
    assert off(with_drums.beat) < 0.03 and with_drums.tempo == bpm
