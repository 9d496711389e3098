"""Synthetic multi-stem dataset: specs, captions, FluidSynth rendering and the resumable dataset writer."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from musicgen_stem.data import GENRES, STEMS, make_song_spec, render_song, synth_dataset
from musicgen_stem.data.synth import SAMPLE_RATE, find_soundfont, parse_roman, song_seed
from musicgen_stem.errors import MusicGenStemError


def _have_synth() -> str | None:
    if shutil.which("fluidsynth") is None:
        return "fluidsynth not installed (apt-get install fluidsynth timgm6mb-soundfont)"
    try:
        find_soundfont()
    except MusicGenStemError:
        return "no GM soundfont (apt-get install timgm6mb-soundfont)"
    return None


_SKIP = _have_synth()
needs_synth = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


# ---------------------------------------------------------------- specs (no synthesizer needed)


def test_spec_deterministic_and_varied():
    a, b = make_song_spec(7, 10.0), make_song_spec(7, 10.0)
    assert a == b
    specs = [make_song_spec(s, 10.0) for s in range(40)]
    assert len({s.caption for s in specs}) == 40
    assert len({(s.genre, s.tempo, s.key, s.mode) for s in specs}) > 30
    assert len({s.genre for s in specs}) >= 6
    assert specs[0] != specs[1]


def test_beats_chords_captions():
    for seed in range(30):
        spec = make_song_spec(seed, 12.0)
        spb = 60.0 / spec.tempo
        beats = np.array(spec.beats)
        assert beats[0] == 0.0 and beats[-1] < 12.0 and beats[-1] + spb >= 12.0 - 1e-6
        np.testing.assert_allclose(np.diff(beats), spb, atol=1e-5)
        assert spec.downbeats == spec.beats[::4]
        # chords tile [0, duration] without gaps
        assert spec.chords[0].start == 0.0 and spec.chords[-1].end == pytest.approx(12.0)
        for c0, c1 in zip(spec.chords[:-1], spec.chords[1:], strict=True):
            assert c1.start == pytest.approx(c0.end)
        assert all(0 <= c.root_pc < 12 and c.end > c.start for c in spec.chords)
        assert len(spec.captions) == 3 and len(set(spec.captions)) == 3
        for cap in spec.captions:
            assert str(int(spec.tempo)) in cap
            assert any(name.lower() in cap.lower() for name in GENRES[spec.genre].names)
            assert spec.key in cap and spec.mode in cap
        for stem in STEMS:
            assert spec.notes[stem], (seed, stem)
        bass_pitches = [n.pitch for n in spec.notes["bass"]]
        assert max(bass_pitches) <= 55


def test_parse_roman():
    assert parse_roman("bVII", "minor") == (10, "maj")
    assert parse_roman("ii7", "major") == (2, "min7")
    assert parse_roman("V7", "major") == (7, "7")
    assert parse_roman("iim7b5", "minor") == (2, "m7b5")
    assert parse_roman("Imaj7", "major") == (0, "maj7")


def test_missing_soundfont_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_STEM_SOUNDFONT", str(tmp_path / "nope.sf2"))
    with pytest.raises(MusicGenStemError, match="timgm6mb-soundfont"):
        find_soundfont()


# ---------------------------------------------------------------- rendering


def _power_centroid(x: np.ndarray) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float((p * f).sum() / p.sum())


def _flux(x: np.ndarray, n: int = 1024, hop: int = 512) -> float:
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    s = np.abs(np.fft.rfft(frames, axis=1))
    return float(np.maximum(s[1:] - s[:-1], 0).sum(1).mean() / (s.sum(1).mean() + 1e-9))


@pytest.fixture(scope="module")
def rendered():
    spec = make_song_spec(3, 4.0)
    return spec, render_song(spec)


@needs_synth
def test_render_stems(rendered):
    spec, stems = rendered
    assert set(stems) == set(STEMS)
    n = 4 * SAMPLE_RATE
    mix = stems["bass"] + stems["drums"] + stems["other"]
    for name, x in stems.items():
        assert x.shape == (n,) and x.dtype == np.float32, name
        assert np.isfinite(x).all()
        assert np.sqrt(np.mean(x**2)) > 1e-3, f"{name} is silent"
    assert np.abs(mix).max() < 1.0
    assert _power_centroid(stems["bass"]) < _power_centroid(stems["other"])
    lowband = np.abs(np.fft.rfft(stems["bass"])) ** 2
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    assert lowband[f < 300].sum() / lowband.sum() > 0.5
    assert _flux(stems["drums"]) > _flux(stems["bass"])


@needs_synth
def test_render_deterministic(rendered, tmp_path):
    spec, stems = rendered
    again = render_song(make_song_spec(3, 4.0), workdir=tmp_path)
    for name in STEMS:
        np.testing.assert_array_equal(stems[name], again[name])
    assert (tmp_path / "drums.mid").is_file()


@needs_synth
def test_synth_dataset_resume(tmp_path):
    out = tmp_path / "ds"
    folders = synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert [f.name for f in folders] == ["song_00000", "song_00001"]
    for f in folders:
        for name in (*STEMS, "mix"):
            x, sr = sf.read(f / f"{name}.wav", dtype="float32")
            assert sr == SAMPLE_RATE and x.shape == (2 * SAMPLE_RATE,)
        assert (f / "song.mid").is_file()
        meta = json.loads((f / "meta.json").read_text())
        assert meta["seed"] == song_seed(1, int(f.name[-5:]))
        assert meta["caption"] == meta["captions"][0] and meta["chords"] and meta["beats"]
        assert set(meta["instruments"]) == set(STEMS)
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["path"] for r in lines] == ["song_00000", "song_00001"]
    assert {"caption", "duration", "genre", "tempo", "key", "mode"} <= set(lines[0])

    mtimes = {f: os.stat(f / "meta.json").st_mtime_ns for f in folders}
    t0 = time.perf_counter()
    synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert time.perf_counter() - t0 < 0.5
    assert all(os.stat(f / "meta.json").st_mtime_ns == m for f, m in mtimes.items())

    # a half-written song (no meta.json) is redone; the others are kept
    (folders[1] / "meta.json").unlink()
    (folders[1] / "other.wav").write_bytes(b"junk")
    synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert (folders[1] / "meta.json").is_file()
    assert sf.info(folders[1] / "other.wav").frames == 2 * SAMPLE_RATE
    assert os.stat(folders[0] / "meta.json").st_mtime_ns == mtimes[folders[0]]

    synth_dataset(out, 2, seed=1, duration=2.0, progress=False, force=True)
    assert os.stat(folders[0] / "meta.json").st_mtime_ns != mtimes[folders[0]]

    with pytest.raises(MusicGenStemError, match="force"):
        synth_dataset(out, 2, seed=2, duration=2.0, progress=False)
