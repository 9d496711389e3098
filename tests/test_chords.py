"""Chords: symbols and progressions, the per-step chord features, chords read from audio, and
`chords=` / `--chords` in the API and the command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.conditioning.chord_estimate import estimate_chords
from musicgen_stem.conditioning.chords import Chord, ChordChart, ChordError, parse_chord, parse_progression
from musicgen_stem.conditioning.steps import (
    CHORD_FEATURES,
    StepConditioner,
    StepConds,
    StepConfig,
    chord_features,
)
from musicgen_stem.conditioning.text import TextEncoderConfig
from musicgen_stem.errors import GenerationError
from musicgen_stem.modeldir import build_parts


@pytest.mark.parametrize(
    "symbol, root, tones, bass",
    [
        ("Am", 9, (9, 0, 4), None),
        ("F", 5, (5, 9, 0), None),
        ("C7", 0, (0, 4, 7, 10), None),
        ("Bbmaj7", 10, (10, 2, 5, 9), None),
        ("F#m7", 6, (6, 9, 1, 4), None),
        ("Bdim", 11, (11, 2, 5), None),
        ("Csus", 0, (0, 5, 7), None),
        ("Dadd9", 2, (2, 4, 6, 9), None),
        ("Ebm7b5", 3, (3, 6, 9, 1), None),
        ("C/E", 0, (0, 4, 7), 4),
        ("Am/G", 9, (9, 0, 4, 7), 7),
        ("G-7", 7, (7, 10, 2, 5), None),
    ],
)
def test_chord_symbols(symbol, root, tones, bass):
    chord = parse_chord(symbol)
    assert (chord.root, chord.tones, chord.bass) == (root, tones, bass)
    assert parse_chord(chord.name) == chord  # names read back


@pytest.mark.parametrize("bad", ["H", "Am9x", "C#m/Q", "X7", "Cmaj13", ""])
def test_unknown_chords_are_refused_in_one_line_naming_them(bad):
    with pytest.raises(ChordError) as e:
        parse_progression(f"Am {bad} C", 100.0) if bad else parse_progression(bad, 100.0)
    msg = str(e.value)
    assert "\n" not in msg and (repr(bad) in msg or "empty" in msg)


def test_progression_in_bars_and_beats_and_looped():
    chart = parse_progression("Am F:2 C:2 N G", 120.0)  # a bar is 2 s at 120 bpm
    assert [(a, b) for a, b, _ in chart.spans] == [(0.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    assert chart.at(0.5) == parse_chord("Am") and chart.at(4.5) is None and chart.at(7.9).name == "G"
    looped = chart.looped(13.0)
    assert looped.at(8.5) == parse_chord("Am") and looped.duration == 13.0
    assert ChordChart.from_json(chart.to_json()) == chart
    for bad in ("Am:0", "Am:x", "Am:100"):
        with pytest.raises(ChordError):
            parse_progression(bad, 120.0)
    with pytest.raises(ChordError, match="bpm"):
        parse_progression("Am", 5.0)


def test_chord_features_follow_the_chart_and_skip_the_prefix():
    chart = parse_progression("Am C/E", 150.0)  # 1.6 s a bar: 80 frames at 50 Hz
    f = chord_features([chart, None], [0, 0], 200, 50.0)
    assert f.shape == (2, 200, CHORD_FEATURES) and not f[1].any()
    am, ce = f[0, 10], f[0, 100]
    assert am[9] == 1 and am[12:24].nonzero().flatten().tolist() == [0, 4, 9] and am[24 + 9] == 1
    assert ce[0] == 1 and ce[24 + 4] == 1  # C with E in the bass
    assert not f[0, 170:].any()  # past the chart
    shifted = chord_features([chart], [60], 40, 50.0, prefix=5)  # song frames 60..99, 5 prefix columns
    assert not shifted[0, :5].any() and torch.equal(shifted[0, 5:], f[0, 65:100])


def test_chord_conditioner_is_zero_at_init():
    steps = StepConditioner(StepConfig(beat=True, chords=True), 16)
    conds = StepConds((None,), (parse_progression("Am", 120.0),))
    assert steps(conds, 0, 10, 50.0) is not None and not steps(conds, 0, 10, 50.0).any()
    assert steps(conds.null(), 0, 10, 50.0) is None


def _tone(freq: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3)) * 0.1


def test_estimate_chords_of_synthesized_chords():
    """Bass and chord tones of Am F C G7 (a bar each at 100 bpm): each bar read as its chord."""
    sr, bar = 22050, 2.4
    midi = {"Am": (45, 57, 60, 64), "F": (41, 57, 60, 65), "C": (36, 55, 60, 64), "G7": (43, 55, 59, 62, 65)}
    hz = lambda m: 440.0 * 2 ** ((m - 69) / 12)  # noqa: E731
    audio = np.concatenate([sum(_tone(hz(m), bar, sr) for m in notes) for notes in midi.values()])
    chart = estimate_chords(audio.astype(np.float32), sr, 100.0, 0.0)
    truth = parse_progression("Am F C G7", 100.0)
    times = np.arange(0.05, 4 * bar, 0.05)
    right = [chart.at(t) is not None and chart.at(t).root == truth.at(t).root for t in times]
    assert np.mean(right) > 0.9, chart.to_json()
    assert estimate_chords(np.zeros(sr * 2, np.float32), sr, 100.0, 0.0).at(1.0) is None  # silence: none


@pytest.fixture(scope="module")
def chord_model(tmp_path_factory):
    cfg = dataclasses.replace(presets.tiny(), steps=StepConfig(beat=True, chords=True))
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    torch.manual_seed(0)
    parts = build_parts(cfg)
    with torch.no_grad():
        parts.steps.chord.weight.normal_(std=3.0)  # a trained chord input
    model = MusicGenStem(parts, device="cpu")
    return model, model.save(tmp_path_factory.mktemp("chords") / "m")


def test_chords_steer_generation_and_are_reported(chord_model):
    model, _ = chord_model
    a = model.generate(["funk at 100 bpm"], seed=1, duration=1.0, chords="Am F")
    b = model.generate(["funk at 100 bpm"], seed=1, duration=1.0, chords="C G")
    assert not torch.equal(a.codes, b.codes)  # the chords are read
    (read,) = a.params["step_conditions"]
    assert [s["chord"] for s in read["chords"]] == ["Am"] and read["beat_grid"]["bpm"] == 100.0
    with pytest.raises(GenerationError, match="tempo"):
        model.generate(["funk"], seed=1, duration=1.0, chords="Am F")  # no tempo to place the bars
    edit = model.regenerate_from_codes(a.codes, ["bass"], ["funk at 100 bpm"], seed=0, chords="Dm G")
    assert edit.params["step_conditions"][0]["chords"][0]["chord"] == "Dm"
    assert torch.equal(edit.codes[:, 1:], a.codes[:, 1:])  # kept stems bit-exact


def test_an_edit_without_chords_reads_the_kept_stems(chord_model, monkeypatch):
    from musicgen_stem.api import decoding

    model, _ = chord_model
    a = model.generate(["funk at 100 bpm"], seed=1, duration=1.0)
    seen = []

    def fake(audio, sr, tempo, beat):
        seen.append(tempo)
        return ChordChart(((0.0, 1.0, Chord(2, "min")),))

    monkeypatch.setattr(decoding, "estimate_chords", fake)
    out = model.regenerate_from_codes(a.codes, ["bass"], ["funk at 100 bpm"], seed=0)
    assert seen == [100.0] and out.params["step_conditions"][0]["chords"][0]["chord"] == "Dm"
    seen.clear()
    model.regenerate_from_codes(a.codes, ["bass", "other"], ["funk at 100 bpm"], seed=0)
    assert seen == []  # only the drums kept: no chords to read


def test_a_model_without_chord_conditioning_refuses_chords():
    model = MusicGenStem.from_config("tiny", device="cpu")
    with pytest.raises(GenerationError, match="cannot read chords"):
        model.generate(["funk at 100 bpm"], seed=1, duration=0.5, chords="Am F")


def test_cli_chords_in_meta_and_bad_chords_refused_before_loading(chord_model, tmp_path, capsys):
    _, folder = chord_model
    out = tmp_path / "g"
    args = ["generate", "funk", "--model", str(folder), "--duration", "1", "-q", "--seed", "1"]
    assert main([*args, "--bpm", "100", "--chords", "Am:2 F:2", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model_prompt"] == "funk at 100 bpm" and meta["chords"][0]["chord"] == "Am"
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([*args, "--chords", "Am Hm", "--model", "/nonexistent", "--out", str(bad)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'Hm'" in err[0] and "Traceback" not in err[0] and not bad.exists()
    assert main([*args, "--chords", "Am", "--out", str(bad)]) != 0  # no tempo anywhere
    assert "tempo" in capsys.readouterr().err and not bad.exists()
    edit = tmp_path / "e"
    cmd = ["edit", "new bass", "--model", str(folder), "--from", str(out), "-r", "bass", "-q"]
    assert main([*cmd, "--chords", "Dm G", "--bpm", "100", "--out", str(edit)]) == 0
    assert json.loads((edit / "meta.json").read_text())["chords"][0]["chord"] == "Dm"


def test_a_progression_is_chosen_for_the_key_and_style_a_prompt_names():
    from musicgen_stem.conditioning.progressions import (
        STYLES,
        choose_progression,
        from_the_tonic,
        parse_roman,
        sounds_in_its_key,
    )

    rng = np.random.default_rng(0)
    assert choose_progression("funk groove at 100 bpm", rng) is None  # no key: the model chooses
    funk = {
        " ".join(
            Chord((9 + parse_roman(n, "minor")[0]) % 12, parse_roman(n, "minor")[1]).name for n in p.split()
        )
        for p in STYLES["funk"].minor
    }
    for seed in range(6):
        chosen = choose_progression("a funky groove in A minor", np.random.default_rng(seed))
        assert chosen in funk
    for seed in range(20):  # every chart starts on the named key's tonic triad
        for text, tonic in (("pop in D major", "D"), ("a ballad in F# minor", "F#m"), ("jazz in Bb", "Bb")):
            first = parse_chord(choose_progression(text, np.random.default_rng(seed)).split()[0])
            assert first.root == parse_chord(tonic).root and set(parse_chord(tonic).tones) <= set(first.tones)
    assert from_the_tonic("vi IV I V") == "I V vi IV" and from_the_tonic("IV V iii vi") is None
    assert from_the_tonic("iim7b5 V7 i7 i7", "minor") == "i7 i7 iim7b5 V7"
    assert not sounds_in_its_key("i bVI bIII bVII", "minor")  # heard in the relative major
    assert sounds_in_its_key("i iv bVII i", "minor") and sounds_in_its_key("I V vi IV")
    rock = {choose_progression("rock in B minor", np.random.default_rng(seed)) for seed in range(30)}
    assert rock == {"Bm G A Bm", "Bm Em A Bm"}  # the rock progressions heard in B minor
    pop = {choose_progression("pop in B minor", np.random.default_rng(seed)) for seed in range(30)}
    assert len(pop) == 3  # none of pop's minor progressions is: all of them stay
    assert choose_progression("x in A minor", np.random.default_rng(3)) == choose_progression(
        "x in A minor", np.random.default_rng(3)
    )
    assert parse_roman("bVII", "minor") == (10, "maj") and parse_roman("iim7b5") == (2, "m7b5")


def test_text_to_stems_reads_a_chosen_progression_when_the_prompt_names_a_key(chord_model):
    model, _ = chord_model
    out = model.generate(["funk in A minor at 100 bpm"], seed=2, duration=1.0)
    chart = out.params["step_conditions"][0]["chords"]
    assert chart and chart[0]["chord"].startswith("A")  # every funk progression in A minor starts on i
    plain = model.generate(["funk at 100 bpm"], seed=2, duration=1.0)
    assert plain.params["step_conditions"][0]["chords"] is None


def test_lr_scales_give_the_step_conditioner_its_own_rate():
    from musicgen_stem.training.optim import build_optimizer, set_lr

    module = torch.nn.ModuleDict({"lm": torch.nn.Linear(4, 4), "steps": torch.nn.Linear(36, 4, bias=False)})
    opt = build_optimizer(module, 1e-3, lr_scales={"steps.": 10.0})
    set_lr(opt, 2e-4)
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == {"decay:steps.": pytest.approx(2e-3), "decay": 2e-4, "no_decay": 2e-4}
    assert [p for g in opt.param_groups if g["name"] == "decay:steps." for p in g["params"]] == [
        module["steps"].weight
    ]


def test_an_audio_edit_reads_the_chords_of_the_given_stems(chord_model):
    """Stems given as audio: the chords come from that audio (not its codes), the drums left out."""
    from musicgen_stem.song import edit_stems

    model, _ = chord_model
    sr, bar = model.sample_rate, 2.4
    hz = lambda m: 440.0 * 2 ** ((m - 69) / 12)  # noqa: E731
    keys = np.concatenate(
        [sum(_tone(hz(m), bar, sr) for m in (57, 60, 64)), sum(_tone(hz(m), bar, sr) for m in (53, 57, 60))]
    )
    noise = np.random.default_rng(0).standard_normal(len(keys)) * 0.05
    sources = {"other": torch.from_numpy(keys[None]).float(), "drums": torch.from_numpy(noise[None]).float()}
    out = edit_stems(model, sources, sr, ["bass"], ["funk at 100 bpm"], seed=0)
    chart = ChordChart.from_json(out.info["step_conditions"]["chords"])
    assert chart.at(1.0).root == 9 and chart.at(3.5).root == 5  # Am, then F


def test_an_api_edit_reads_tempo_and_chords_from_the_audio_given(chord_model, monkeypatch, tmp_path, clicks):
    """`regenerate_instruments_from_stems`: the tempo, beat and chords come from the stems as given,
    not from their codes decoded (which blur a real mix's onsets), and stems left silent add nothing."""
    import soundfile as sf

    from musicgen_stem.api import decoding

    model, _ = chord_model
    sr = model.sample_rate
    other = torch.from_numpy(sf.read(clicks(tmp_path / "c.wav", sr, 4.0, 120.0))[0][None]).float()
    heard, harmonies = [], []
    real_rhythm = decoding.kept_rhythm
    monkeypatch.setattr(decoding, "kept_audio", lambda *a: pytest.fail("read the codes, not the audio"))
    monkeypatch.setattr(decoding, "kept_rhythm", lambda mix, *a: heard.append(mix) or real_rhythm(mix, *a))
    monkeypatch.setattr(decoding, "estimate_chords", lambda audio, *a: harmonies.append(audio))
    out = model.regenerate_instruments_from_stems({"other": other}, sr, ["bass"], ["funk"], seed=0)
    assert torch.equal(heard[0][0], other)  # the mix read is the audio given, the silent drums left out
    assert out.params["model_descriptions"] == ["funk at 120 bpm"]
    assert np.array_equal(harmonies[0], other.numpy())
    heard.clear()
    model.regenerate_instruments_from_stems({"drums": other}, sr, ["bass"], ["funk"], seed=0)
    assert len(heard) == 1 and len(harmonies) == 1  # drums only: a tempo, no chords to read
