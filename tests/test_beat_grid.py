"""The LM's beat grid: features, decoding, training batches, model folders, and text -> stems."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_train_lm import write_token_dataset

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.conditioning.attributes import beat_grid
from musicgen_stem.conditioning.text import TextEncoderConfig
from musicgen_stem.dsp import beat_phase, estimate_swing, onset_strength
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm.model import BEAT_CYCLES, LMConfig, StemLM, beat_features, swing_warp
from musicgen_stem.modeldir import build_parts, load_model
from musicgen_stem.training.lm_data import EDIT, TEXT, BatchBuilder, TokenDataset

TINY = LMConfig(dim=32, num_heads=4, num_layers=2, ff_dim=64, beat_grid=True)


def test_beat_grid_rows_from_tempos():
    """120 BPM at 50 frames/s: 0.04 beats per step; a window at frame 25 starts on beat 1.0."""
    g = beat_grid([120.0, None, 90.0], 50.0, [25, 100, 0])
    assert g.shape == (3, 3)
    torch.testing.assert_close(g[0], torch.tensor([0.04, 1.0, 4.0], dtype=torch.float64))  # bars known
    assert g[1].tolist() == [0.0, 0.0, 0.0]  # no tempo named: no grid
    assert g[2].tolist() == pytest.approx([0.03, 0.0, 4.0])
    # a beat found at 0.25 s (an edit): frame 0 is half a beat before it, only 8ths trusted
    assert beat_grid([120.0], 50.0, 0, [0.25])[0].tolist() == pytest.approx([0.04, -0.5, 0.5])


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
    grid = torch.tensor([[0.5, 0.0, 4.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.5]], dtype=torch.float64)
    f = beat_features(torch.arange(4), grid)  # [3, 4, 10]
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
    # an offset is the same as later steps: beat 1.5 at step 0 == step 3 from beat 0
    later = beat_features(torch.arange(3, 4), torch.tensor([[0.5, 0.0, 4.0]], dtype=torch.float64))
    shifted = beat_features(torch.arange(1), torch.tensor([[0.5, 1.5, 4.0]], dtype=torch.float64))
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
    straight = torch.tensor([[0.125, 0.0, 0.5]], dtype=torch.float64)
    f = beat_features(torch.arange(8), torch.cat([straight, torch.tensor([[0.75]], dtype=torch.float64)], 1))
    eighth = len(BEAT_CYCLES) + BEAT_CYCLES.index(0.5)  # cos of the 8th phase
    assert int(f[0, 1:, eighth].argmax()) + 1 == 5  # the swung off-beat (straight: step 4)
    assert torch.equal(
        beat_features(torch.arange(8), torch.cat([straight, torch.zeros(1, 1).double()], 1)),
        beat_features(torch.arange(8), straight),
    )
    assert beat_grid([120.0], 50.0, 0, [0.25], [0.6])[0].tolist() == pytest.approx([0.04, -0.5, 0.5, 0.6])


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


def _lm(seed: int = 0) -> StemLM:
    torch.manual_seed(seed)
    lm = StemLM(LAYOUT_6CB, TINY).eval()
    torch.nn.init.normal_(lm.beat.weight)  # a trained grid
    return lm


def test_grid_is_zero_at_init_and_added_to_a_plain_model():
    torch.manual_seed(0)
    plain = StemLM(LAYOUT_6CB, dataclasses.replace(TINY, beat_grid=False)).eval()
    seq = torch.randint(0, 1024, (2, 6, 7))
    mem = torch.randn(2, 3, 32)
    grid = beat_grid([100.0, 140.0], 50.0)
    with torch.no_grad():
        before = plain(seq, mem)
        plain.add_beat_grid()
        assert plain.cfg.beat_grid and plain.beat is not None and not plain.beat.weight.any()
        torch.testing.assert_close(plain(seq, mem, grid=grid), before)  # zero grid: same model
        plain.beat.weight.normal_()
        assert not torch.allclose(plain(seq, mem, grid=grid), before)
        torch.testing.assert_close(plain(seq, mem, grid=torch.zeros_like(grid)), before)  # rows of 0


def test_decoding_with_grid_equals_full_forward():
    """Prefill + one step at a time (and the static decode step) read the grid at the same steps."""
    lm = _lm()
    T = 9
    seq, mem = torch.randint(0, 1024, (2, 6, T)), torch.randn(2, 3, 32)
    grid = beat_grid([96.0, 150.0], 50.0, [10, 0])
    with torch.no_grad():
        full = lm(seq, mem, grid=grid)
        state = lm.new_state(mem, T, grid=grid)
        outs = [lm(seq[..., :4], state=state)] + [lm(seq[..., t : t + 1], state=state) for t in range(4, T)]
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
        static = lm.new_state(mem, T, grid=grid)
        steps = [lm.decode_step(seq[..., t : t + 1], torch.tensor([t]), static) for t in range(T)]
        torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(lm(seq, mem, grid=beat_grid([96.0, 150.0], 50.0, [11, 0])), full)


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
    builder = BatchBuilder(ds, 100, 50, [7] * 6, 0.5, 0.0, grid_frame_rate=50.0, grid_dropout=0.0)
    batch = builder.build(4, torch.Generator().manual_seed(0), TEXT, False)
    assert batch.grid is not None and batch.grid.shape == (4, 3)
    for b in range(4):
        rate, beat0, known = batch.grid[b].tolist()
        assert known == 4.0  # text batches: the song starts on a downbeat
        assert rate == pytest.approx(120 / 60 / 50)
        start = round(beat0 / rate)  # the crop's first frame in its track
        assert any(torch.equal(ds.codes(i, start, 100), batch.codes[b]) for i in range(3))
    edit = builder.build(4, torch.Generator().manual_seed(0), EDIT, False)
    P = edit.prefix_len
    for b in range(4):
        rate, beat0, known = edit.grid[b].tolist()
        assert rate == pytest.approx(120 / 60 / 50) and known == 0.5  # an edit trusts the 8ths only
        start = round(beat0 / rate) + P  # column 0 is the prefix's first
        assert any(torch.equal(ds.codes(i, start, 50), edit.codes[b, :, P:]) for i in range(3))
    dropped = builder.build(4, torch.Generator().manual_seed(0), TEXT, True)
    assert dropped.texts == [None] * 4 and not dropped.grid.any()  # the null condition has no grid
    half = BatchBuilder(ds, 100, 50, [7] * 6, 0.5, 0.0, grid_frame_rate=50.0, grid_dropout=0.5)
    rows = torch.cat([half.build(8, torch.Generator().manual_seed(s), TEXT, False).grid for s in range(10)])
    assert 0.25 < float((rows[:, 0] == 0).float().mean()) < 0.75
    assert BatchBuilder(ds, 100, 50, [7] * 6).build(2, torch.Generator(), TEXT, False).grid is None


def test_model_with_grid_saves_loads_and_follows_the_prompt_tempo(tmp_path, monkeypatch):
    cfg = presets.tiny()
    cfg.lm = dataclasses.replace(cfg.lm, beat_grid=True)
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    parts = build_parts(cfg)
    with torch.no_grad():
        parts.lm.beat.weight.normal_(std=3.0)  # a trained grid
    model = MusicGenStem(parts, device="cpu")
    folder = model.save(tmp_path / "m")
    assert load_model(folder).config.lm.beat_grid
    again = MusicGenStem.from_pretrained(folder, device="cpu")
    a = model.generate(["funk at 100 bpm"], seed=3, duration=0.5)
    torch.testing.assert_close(again.generate(["funk at 100 bpm"], seed=3, duration=0.5).codes, a.codes)

    grids = []
    new_state = StemLM.new_state

    def spy(self, memory, max_steps, reuse=False, grid=None):
        grids.append(None if grid is None else grid.clone())
        return new_state(self, memory, max_steps, reuse, grid)

    monkeypatch.setattr(StemLM, "new_state", spy)
    model.set_generation_params(extend_stride=0.6)
    model.generate(["funk at 100 bpm"], seed=3, duration=model.max_duration + 0.5)  # two windows
    rate = 100 / 60 / model.frame_rate
    assert len(grids) == 2 and grids[0][0].tolist() == pytest.approx([rate, 0.0, 4.0])
    assert grids[0][1].tolist() == [0.0, 0.0, 0.0]  # the null condition of guidance: no grid
    window = round(model.max_duration * model.frame_rate)
    start = round(0.5 * model.frame_rate)  # the last window is a full one, ending with the song
    assert 0 < start < window and grids[1][0].tolist() == pytest.approx([rate, start * rate, 4.0])
    grids.clear()
    model.generate(["funk"], seed=3, duration=0.5)  # no tempo named
    assert grids == [None]
    grids.clear()
    model.regenerate_from_codes(a.codes, ["drums"], ["funk at 100 bpm"], seed=0)
    (edit,) = grids  # the beat of the kept stems, bars unknown (guidance's half: no grid)
    assert edit[0, 0] == pytest.approx(rate) and edit[0, 2] == 0.5 and not edit[1].any()
    # an edit whose text names no tempo reads the kept stems' (estimated), and says so
    from musicgen_stem.api import decoding

    grids.clear()
    monkeypatch.setattr(decoding, "estimate_tempo", lambda envelope: 100.4)
    out = model.regenerate_from_codes(a.codes, ["drums"], ["funk"], seed=0)
    assert grids[0][0, 0] == pytest.approx(rate) and grids[0][0, 2] == 0.5
    assert out.params["model_descriptions"] == ["funk at 100 bpm"]
    named = model.regenerate_from_codes(a.codes, ["drums"], ["funk at 100 bpm"], seed=0)
    torch.testing.assert_close(out.codes, named.codes)  # the same as naming it
    assert "model_descriptions" not in named.params
    grids.clear()
    monkeypatch.setattr(decoding, "estimate_tempo", lambda envelope: 0.0)  # kept stems without a pulse
    out = model.regenerate_from_codes(a.codes, ["drums"], ["funk"], seed=0)
    model.generate_continuation_from_codes(a.codes[..., :10], ["funk at 100 bpm"], seed=0, duration=0.5)
    assert grids == [None, None] and "model_descriptions" not in out.params


def test_train_lm_beat_grid_option_adds_and_trains_the_grid(tmp_path, captioned):
    from musicgen_stem.training.lm import LMTrainConfig, train_lm

    cfg = dataclasses.replace(presets.tiny(), edit_window=1.0, max_duration=2.0)
    start = MusicGenStem.from_config(cfg, seed=0, device="cpu").save(tmp_path / "m")
    run = dict(steps=3, batch_size=2, lr=3e-3, warmup=1, edit_prob=0.0, valid_fraction=0.0, log_every=1)
    out = train_lm(LMTrainConfig(str(start), [str(captioned)], str(tmp_path / "run"), beat_grid=True, **run))
    final = load_model(out)
    assert final.config.lm.beat_grid and final.lm.beat is not None and final.lm.beat.weight.any()
    assert not load_model(start).config.lm.beat_grid


def test_cli_edit_says_which_tempo_it_read(tmp_path, monkeypatch, capsys):
    """`edit` without a tempo in the description: the kept stems' tempo is read, printed and kept
    in meta.json as `model_prompt`; with --bpm, --bpm's."""
    import json

    from musicgen_stem.api import decoding
    from musicgen_stem.cli import main

    cfg = presets.tiny()
    cfg.lm = dataclasses.replace(cfg.lm, beat_grid=True)
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
