"""Text-control evaluation: known answers for each metric, mir_eval cross-checks, the runner on a
tiny model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.evaluation import Key, key_relation
from musicgen_stem.evaluation.harmony import KEY_SCORES
from musicgen_stem.evaluation.songs import load_song
from musicgen_stem.evaluation.text_control import (
    PromptSpec,
    evaluate_text_control,
    in_key_ratio,
    instrument_bank,
    key_score,
    load_prompt_file,
    parse_key,
    tempo_match,
    text_metrics,
)

SR = 16000


def _clicks(bpm: float, dur: float, sr: int = SR) -> np.ndarray:
    x = np.zeros(int(dur * sr), np.float32)
    rng = np.random.default_rng(0)
    n = int(0.01 * sr)
    for t in np.arange(0, dur, 60 / bpm):
        i = int(t * sr)
        m = min(n, len(x) - i)
        x[i : i + m] += 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.002 * sr))
    return x


def _line(midis: list[int], seg: float, sr: int = SR) -> np.ndarray:
    """A bass line: one decaying harmonic tone per note, `seg` s each."""
    t = np.arange(int(seg * sr)) / sr
    out = []
    for m in midis:
        f = 440.0 * 2 ** ((m - 69) / 12)
        out.append(sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) * np.exp(-t))
    return (0.3 * np.concatenate(out)).astype(np.float32)


def test_parse_key():
    assert parse_key("F# minor") == Key(6, "minor")
    assert parse_key("Eb major") == Key(3, "major")
    assert parse_key("c# MINOR") == Key(1, "minor")
    assert parse_key("Db major") == Key(1, "major")
    for bad in ("H major", "C dorian", "C"):
        with pytest.raises(MusicGenStemError, match="key"):
            parse_key(bad)


def test_tempo_match_counts_octave_errors_apart():
    assert tempo_match(121.0, 120.0) == "exact"
    assert tempo_match(124.0, 120.0) == "exact"  # 3.3 %
    assert tempo_match(126.0, 120.0) == "miss"  # 5 %
    assert tempo_match(240.0, 120.0) == "octave"
    assert tempo_match(61.0, 120.0) == "octave"
    assert tempo_match(180.0, 120.0) == "miss"
    assert tempo_match(0.0, 120.0) == "miss"


def test_key_score_agrees_with_own_key_relation():
    ref = Key(0, "major")
    for est, relation in [
        (Key(0, "major"), "same"),
        (Key(7, "major"), "fifth"),
        (Key(9, "minor"), "relative"),
        (Key(0, "minor"), "parallel"),
        (Key(6, "major"), "other"),
    ]:
        assert key_relation(est, ref) == relation
        assert key_score(est, ref) == pytest.approx(KEY_SCORES[relation])
    assert key_score(Key(4, "minor"), Key(7, "major")) == pytest.approx(0.3)  # E minor vs G major


def test_in_key_ratio_known_answers():
    c_major = 440.0 * 2 ** ((np.array([60, 62, 64, 65, 67, 69, 71]) - 69) / 12)
    voiced = np.ones(7, bool)
    assert in_key_ratio(c_major, voiced, Key(0, "major")) == 1.0
    assert in_key_ratio(c_major, voiced, Key(9, "minor")) == 1.0  # relative minor
    # F# major holds B and E# (= F) of the C major scale: 2 of 7.
    assert in_key_ratio(c_major, voiced, Key(6, "major")) == pytest.approx(2 / 7)
    # 20 cents sharp still rounds to the same notes; unvoiced frames are ignored.
    assert in_key_ratio(c_major * 2 ** (20 / 1200), voiced, Key(0, "major")) == 1.0
    assert np.isnan(in_key_ratio(c_major, np.zeros(7, bool), Key(0, "major")))


def test_text_metrics_on_known_stems():
    dur = 8.0
    drums = torch.from_numpy(_clicks(100, dur))[None]
    bass = torch.from_numpy(_line([45, 48, 52, 55] * 2, 1.0))[None]  # A2 C3 E3 G3: A minor
    other = torch.from_numpy(_line([57, 60, 64, 67] * 2, 1.0))[None]
    stems = {"bass": bass, "drums": drums, "other": other}
    m = text_metrics(stems, SR, PromptSpec("x", tempo=100.0, key=Key(9, "minor")))
    assert m["tempo_exact"] == 1.0 and m["tempo_octave"] == 0.0
    assert abs(m["tempo_bpm"] - 100) < 3
    assert m["bass_in_key"] > 0.95 and m["bass_voiced"] > 0.7
    assert m["key_score"] >= 0.3  # A minor or its relative C major
    wrong = text_metrics(stems, SR, PromptSpec("x", tempo=140.0, key=Key(3, "major")))
    assert wrong["tempo_exact"] == 0.0 and wrong["key_score"] == 0.0
    assert wrong["bass_in_key"] < 0.6  # A C E G in Eb major: C and G only
    silent = {k: torch.zeros_like(v) for k, v in stems.items()}
    quiet = text_metrics(silent, SR, PromptSpec("x", tempo=100.0, key=Key(9, "minor")))
    assert quiet["tempo_exact"] == 0.0 and quiet["bass_voiced"] == 0.0 and np.isnan(quiet["bass_in_key"])


def test_prompt_file(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text(
        json.dumps({"prompt": "funk in F minor at 100 bpm", "tempo": 100, "key": "F minor", "program": 33})
        + "\n\n"
        + json.dumps({"prompt": "ambient pad"})
        + "\n"
    )
    specs = load_prompt_file(p)
    assert [s.prompt for s in specs] == ["funk in F minor at 100 bpm", "ambient pad"]
    assert specs[0].tempo == 100.0 and specs[0].key == Key(5, "minor") and specs[0].family == 4
    assert specs[1].tempo is None and specs[1].key is None
    p.write_text('{"tempo": 100}\n')
    with pytest.raises(MusicGenStemError, match="prompts.jsonl:1"):
        load_prompt_file(p)
    with pytest.raises(MusicGenStemError, match="cannot read"):
        load_prompt_file(tmp_path / "missing.jsonl")


def _song(folder, bpm, tonic, mode, program, seed):
    folder.mkdir(parents=True)
    sr, dur = 32000, 2.0
    root = 36 + tonic
    third = 3 if mode == "minor" else 4
    bass = _line([root, root + 7, root + third, root], dur / 4, sr)
    other = _line([root + 24, root + 24 + third, root + 31, root + 24], dur / 4, sr)
    if program >= 24:  # a distorted family: broadband noise on every note
        noise = np.random.default_rng(seed).standard_normal(len(other)).astype(np.float32)
        other = other + 0.2 * noise
    stems = {"bass": bass, "drums": _clicks(bpm, dur, sr), "other": other}
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", x, sr)
    name = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"][tonic]
    meta = {
        "tempo": bpm,
        "key_name": f"{name} {mode}",
        "caption": f"a song in {name} {mode} at {bpm} bpm",
        "genre": "test",
        "instruments": {"other": [{"program": program, "words": "x"}]},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_songs")
    return [
        _song(root / "song_00000", 120, 0, "major", 0, 0),
        _song(root / "song_00001", 90, 9, "minor", 0, 1),
        _song(root / "song_00002", 150, 7, "major", 30, 2),
        _song(root / "song_00003", 100, 2, "minor", 30, 3),
    ]


def test_instrument_bank_leave_one_out(songs):
    loaded = [load_song(p, ("bass", "drums", "other"), 32000) for p in songs]
    bank = instrument_bank(loaded)
    assert bank is not None and sorted(bank.families.tolist()) == [0, 0, 3, 3]
    for s in loaded:  # the nearest other song is the one of the same family
        fam = bank.nearest_family(s.stems["other"], 32000, exclude=s.name)
        assert fam == int(s.meta["instruments"]["other"][0]["program"]) // 8
    assert instrument_bank(loaded[:2]) is None


def test_text_control_runner_and_cli(tiny_model, tiny_model_dir, songs, tmp_path):
    result = evaluate_text_control(tiny_model, songs, duration=1.0, seed=2)
    s = result.summary
    assert s["num_prompts"] == 4 and s["tempo_range_bpm"] == [90.0, 150.0] and s["num_reference_songs"] == 4
    assert set(s["metrics"]) == {"generated", "ground_truth", "shuffled"}
    gt = s["metrics"]["ground_truth"]
    names = {"tempo_exact", "tempo_octave", "key_score", "bass_voiced", "bass_in_key", "instrument_family"}
    assert names <= set(gt)
    assert gt["bass_in_key"] > 0.9 and gt["instrument_family"] == 1.0
    assert result.per_song[1]["target"] == {"tempo": 90.0, "key": "A minor", "family": 0}
    again = evaluate_text_control(tiny_model, songs, duration=1.0, seed=2)
    assert json.dumps(again.summary) == json.dumps(s)

    from musicgen_stem.evaluation import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "x", "tempo": 120, "key": "C major"}) + "\n")
    out = tmp_path / "report"
    args = parser.parse_args(
        ["--model", str(tiny_model_dir), "--data", str(songs[0].parent), "--out", str(out), "--duration", "1"]
        + ["--tasks", "text", "--prompts", str(prompts), "--device", "cpu"]
    )
    assert cli.run(args) == 0
    md = (out / "report.md").read_text()
    assert "## Text control" in md and "| tempo_exact |" in md
    data = json.loads((out / "report.json").read_text())
    assert data["results"][0]["summary"]["num_prompts"] == 1
