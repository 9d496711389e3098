"""Tempo and key read from descriptions, and the conditioning tokens made from them."""

from __future__ import annotations

import pytest
import torch

from musicgen_stem.api import MusicGenStem
from musicgen_stem.conditioning import TextConditioner, TextEncoderConfig
from musicgen_stem.conditioning.attributes import (
    NAMED_SWING,
    MusicAttributes,
    parse_attributes,
    without_tempo,
)
from musicgen_stem.modeldir import load_model
from musicgen_stem.presets import tiny


@pytest.mark.parametrize(
    ("text", "tempo", "key"),
    [
        ("Low-energy, meditative reggae in Eb minor at 84 BPM.", 84.0, (3, "minor")),
        ("A rootsy reggae song (E minor, 76 BPM) built on deep synth bass", 76.0, (4, "minor")),
        ("a walking jazz bass in F at 120 bpm", 120.0, (5, "major")),
        ("A minimal house track, 124bpm, Am", 124.0, (9, "minor")),
        ("tempo of 96, key of Bb", 96.0, (10, "major")),
        ("genre: funk, tempo: 104, key: E minor", 104.0, (4, "minor")),
        ("EDM drop in C#m, 128-BPM", 128.0, (1, "minor")),
        ("metal in F♯ minor at 170 beats per minute", 170.0, (6, "minor")),
        ("Db major ballad, 66.5 bpm", 66.5, (1, "major")),
        ("A calm song with a B-side feel", None, None),
        ("3 bpm, 1000 bpm, in H minor", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_attributes(text, tempo, key):
    assert parse_attributes(text) == MusicAttributes(tempo, key)


@pytest.mark.parametrize(
    "text, swing",
    [
        ("A swing jazz tune in Eb major (153 bpm)", NAMED_SWING),
        ("a blues SHUFFLE at 95 bpm", NAMED_SWING),
        ("swung 8ths on the ride", NAMED_SWING),
        ("Grand piano comping, swinging drums", NAMED_SWING),
        ("a jazz waltz at 120 bpm", 0.0),  # a genre is not a feel
        ("the swings of a playground", 0.0),
        (None, 0.0),
    ],
)
def test_parse_swing(text, swing):
    assert parse_attributes(text).swing == swing


@pytest.mark.parametrize(
    "text, want",
    [
        (
            "Funk drums and slap bass. Upbeat funk in A minor at 96 BPM.",
            "Funk drums and slap bass. Upbeat funk in A minor.",
        ),
        ("A reggae groove in Eb minor (84 bpm).", "A reggae groove in Eb minor."),
        ("A calm song in B major, 73 BPM, with organ.", "A calm song in B major, with organ."),
        ("73 BPM reggae groove in B major", "reggae groove in B major"),
        ("house, tempo 124", "house"),
        ("A ballad with a tempo of 73 BPM slow and sad, with drums.", "A ballad slow and sad, with drums."),
        ("Frantic dark metal at 168 bpm: pounding bass.", "Frantic dark metal: pounding bass."),
        ("genre: blues, tempo: 95 bpm, mood: easygoing", "genre: blues, mood: easygoing"),
        ("A rock song (B minor, 101 BPM) built on guitars", "A rock song (B minor) built on guitars"),
        ("Jazz with walking bass. 134 BPM, C# minor.", "Jazz with walking bass. C# minor."),
        ("A reggae tune with bass, around 80 BPM.", "A reggae tune with bass."),
        ("no tempo here", "no tempo here"),
        (None, None),
    ],
)
def test_without_tempo_keeps_the_rest(text, want):
    assert without_tempo(text) == want
    assert parse_attributes(without_tempo(text)).tempo is None
    assert parse_attributes(without_tempo(text)).key == parse_attributes(text).key


def test_conditioner_appends_tempo_and_key_tokens():
    cfg = TextEncoderConfig(kind="lut", n_bins=8, dim=16, attributes=True)
    torch.manual_seed(0)
    cond = TextConditioner(cfg, lm_dim=32).eval()
    texts = ["house in C minor at 124 bpm", "house at 124 bpm", None]
    mem, mask = cond(texts)
    assert mem.shape == (3, 3, 32) and mask.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert mem[1, 2].abs().sum() == 0 and mem[2].abs().sum() == 0  # unnamed key, null text
    assert torch.equal(mem[0, 1], mem[1, 1])  # the same tempo token
    other, _ = cond(["house in C minor at 90 bpm"])
    assert not torch.allclose(other[0, 1], mem[0, 1]) and torch.equal(other[0, 2], mem[0, 2])
    # training mode drops attributes now and then (never invents one)
    cond.train()
    torch.manual_seed(1)
    masks = torch.stack([cond(texts)[1] for _ in range(50)])
    assert 0.5 < masks[:, 0, 1:].float().mean() < 0.95 and masks[:, 2].sum() == 0
    # without attributes (the released models) the memory is the text alone
    plain = TextConditioner(TextEncoderConfig(kind="lut", n_bins=8, dim=16), lm_dim=32)
    assert plain(texts)[0].shape == (3, 1, 32) and "attributes.key.weight" not in plain.state_dict()


def test_model_with_attributes_saves_loads_and_generates(tmp_path):
    cfg = tiny()
    cfg.text = TextEncoderConfig(kind="lut", n_bins=32, dim=32, attributes=True)
    model = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    model.set_generation_params(duration=0.5)
    folder = model.save(tmp_path / "m")
    again = load_model(folder)
    assert again.config.text.attributes
    sd, sd2 = model.text.state_dict(), again.text.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    a = model.generate(["funk in A minor at 100 bpm"], seed=3)
    b = MusicGenStem.from_pretrained(folder, device="cpu").generate(
        ["funk in A minor at 100 bpm"], seed=3, duration=0.5
    )
    assert torch.equal(a.codes, b.codes)
    c = model.generate(["funk in A minor at 160 bpm"], seed=3)
    assert not torch.equal(a.codes, c.codes)  # the tempo token reaches the LM
