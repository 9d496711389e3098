"""Synthetic multi-stem dataset: specs, sounds, mixing, captions, FluidSynth rendering and the resumable
dataset writer."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from musicgen_stem.data import GENRES, STEMS, make_song_spec, render_song, synth_dataset
from musicgen_stem.data.synth import (
    GM_PROGRAMS,
    SAMPLE_RATE,
    SAMPLED_KIT_NOTES,
    FluidSynth,
    Note,
    draw_mix,
    find_fluidsynth,
    find_soundfont,
    installed_soundfonts,
    mix_stems,
    parse_roman,
    quantize,
    song_seed,
)
from musicgen_stem.data.synth import dataset as synth_dataset_module
from musicgen_stem.data.synth.tables import KIT_WORDS
from musicgen_stem.errors import MusicGenStemError


def _have_synth() -> str | None:
    try:
        find_fluidsynth()
    except MusicGenStemError:
        return "fluidsynth not installed (apt-get install fluidsynth timgm6mb-soundfont)"
    try:
        find_soundfont()
    except MusicGenStemError:
        return "no GM soundfont (apt-get install timgm6mb-soundfont)"
    return None


_SKIP = _have_synth()
needs_synth = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
_FONTS = installed_soundfonts()
_GM_FONTS = [f for f in _FONTS if f.kind == "gm"]
_KITS = [f for f in _FONTS if f.kind == "kit"]


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


def test_captions_name_instruments_mood_energy():
    n_energy = n_mood = 0
    for seed in range(30):
        spec = make_song_spec(seed, 8.0)
        for cap in spec.captions:
            low = cap.lower()
            # every melodic instrument is named by one of its GM words (or its GM program name)
            for p in spec.parts:
                if p.role != "drums":
                    words = (*GM_PROGRAMS[p.program][1], GM_PROGRAMS[p.program][0])
                    assert any(w.lower().removesuffix("s") in low for w in words), (cap, p.name)
            n_mood += spec.mood in low
            n_energy += spec.energy_level in low or any(
                w in low for w in ("energ", "mellow", "calm", "intense")
            )
    assert n_mood > 30 and n_energy > 15


def test_ground_truth_meta_keys():
    spec = make_song_spec(11, 6.0)
    meta = json.loads(json.dumps(spec.meta()))  # JSON-ready
    old = {"seed", "duration", "genre", "tempo", "key", "tonic_pc", "mode", "progression", "chords_per_bar"}
    old |= {"n_bars", "swing8", "swing16", "drum_groove", "parts", "chords", "beats", "downbeats", "captions"}
    old |= {"stem_levels_db", "reverb", "time_signature", "sample_rate", "caption", "key_name", "instruments"}
    new = {"humanize", "mix", "mood", "energy", "energy_level", "soundfonts", "drum_kit"}
    assert old | new <= set(meta)
    assert "notes" not in meta
    assert set(meta["instruments"]) == set(STEMS) == set(meta["soundfonts"])
    assert {"name", "program", "style", "role", "words", "soundfont", "bank"} <= set(
        meta["instruments"]["bass"][0]
    )
    assert "kit" in meta["instruments"]["drums"][0]
    assert {"start", "end", "name", "root_pc", "quality"} <= set(meta["chords"][0])
    # humanisation and mix settings recorded
    assert meta["humanize"]["timing_ms"] > 0 and set(meta["humanize"]["offsets_ms"]) == set(STEMS)
    mix = meta["mix"]
    assert {"room_size", "damping", "predelay_ms", "levels_db", "stems"} <= set(mix)
    for stem in STEMS:
        fx = mix["stems"][stem]
        keys = {"highpass_hz", "low_shelf_db", "high_shelf_db", "peak_hz", "peak_db", "comp_ratio"}
        assert keys | {"comp_threshold_db", "drive_db", "reverb_send"} <= set(fx)
        assert mix["levels_db"][stem] == meta["stem_levels_db"][stem]
    sends = {s: mix["stems"][s]["reverb_send"] for s in STEMS}
    assert sends["bass"] < sends["drums"] and sends["bass"] < sends["other"]


def test_mix_settings_vary_and_are_seeded():
    g = GENRES["rock"]
    a = draw_mix(g, np.random.default_rng(1))
    assert a == draw_mix(g, np.random.default_rng(1))
    rooms = {make_song_spec(s, 4.0).mix.room_size for s in range(10)}
    assert len(rooms) == 10
    # bass vs drums balance stays in a realistic range
    for s in range(40):
        lv = make_song_spec(s, 4.0).mix.levels_db
        assert -6 <= lv["bass"] - lv["drums"] <= 4 and -6 <= lv["other"] - lv["drums"] <= 5


def test_humanized_timing():
    """Onsets spread around the 16th grid by about the song's recorded timing spread; velocities vary."""
    checked = 0
    for seed in range(40):
        spec = make_song_spec(seed, 8.0)
        if spec.swing8 or spec.swing16:
            continue
        ms_per_tick = 60_000 / (spec.tempo * 480)
        dev = np.array([((n.start + 60) % 120 - 60) * ms_per_tick for n in spec.notes["bass"] if n.start > 0])
        offset = spec.humanize.offsets_ms["bass"]
        assert abs(np.median(dev) - offset) < 1.5 + spec.humanize.timing_ms, (seed, offset)
        assert 0.2 * spec.humanize.timing_ms < np.std(dev) < 2.0 * spec.humanize.timing_ms + 0.5, seed
        assert len({n.velocity for n in spec.notes["drums"]}) > 5
        checked += 1
    assert checked >= 10


def test_soundfont_choices_recorded_and_varied():
    specs = [make_song_spec(s, 4.0) for s in range(40)]
    for spec in specs:
        for stem, names in spec.meta()["soundfonts"].items():
            assert len(names) == len(spec.stem_parts(stem))
    if not _GM_FONTS:
        pytest.skip("no soundfont installed")
    fonts = Counter(os.path.basename(p.soundfont) for s in specs for p in s.parts)
    if len(_GM_FONTS) > 1:
        assert len([f for f in fonts if f in {g.name for g in _GM_FONTS}]) >= 2, fonts
        # per instrument, not only per song
        assert any(len({p.soundfont for p in s.parts if p.kit != "sampled"}) > 1 for s in specs)
    kits = Counter(s.part("drums")[0].kit for s in specs)
    if _KITS:
        assert kits["sampled"] >= 3 and len(kits) >= 3, kits
        sampled = next(s for s in specs if s.part("drums")[0].kit == "sampled")
        assert sampled.part("drums")[0].name.endswith("Kit") and sampled.part("drums")[0].bank == 0
        assert {n.pitch for n in sampled.notes["drums"]} <= set(SAMPLED_KIT_NOTES.values())
    # a forced soundfont is used for everything
    forced = make_song_spec(3, 4.0, soundfont=_GM_FONTS[0].path)
    assert {p.soundfont for p in forced.parts} == {_GM_FONTS[0].path}
    assert forced.part("drums")[0].kit != "sampled"


def test_soundfont_choice_with_few_or_no_soundfonts(monkeypatch):
    from musicgen_stem.data.synth import Soundfont, song
    from musicgen_stem.data.synth.soundfonts import choose_soundfonts

    tim = Soundfont("/x/TimGM6mb.sf2", "gm", "TimGM6mb")
    kit = Soundfont("/x/Black_Pearl_4_LV2.sf2", "kit", "Black Pearl 4pc")
    roles = ["bass", "drums", "harmony", "lead"]
    for seed in range(20):
        rng = np.random.default_rng(seed)
        assert choose_soundfonts(roles, True, [tim], rng) == [tim] * 4
        assert choose_soundfonts(roles, True, [], rng) == [None] * 4
        chosen = choose_soundfonts(roles, True, [tim, kit], rng)
        assert chosen[0] == chosen[2] == chosen[3] == tim and chosen[1] in (tim, kit)
        assert choose_soundfonts(roles, False, [tim, kit], rng)[1] == tim  # electronic kits stay GM
    # nothing installed: songs can still be specified (not rendered)
    monkeypatch.setattr(song, "soundfont_palette", lambda soundfont=None: ())
    spec = make_song_spec(4, 4.0)
    assert all(p.soundfont == "" for p in spec.parts) and spec.part("drums")[0].kit != "sampled"
    assert spec.meta()["soundfonts"]["bass"] == [""]


@pytest.mark.skipif(_SKIP is not None or not _KITS, reason=_SKIP or "no sampled drum kit installed")
def test_forced_soundfont_replaces_sampled_kit():
    spec = next(s for s in (make_song_spec(k, 2.0) for k in range(50)) if s.part("drums")[0].kit == "sampled")
    stems = render_song(spec, soundfont=_GM_FONTS[-1].path)
    assert np.sqrt(np.mean(stems["drums"] ** 2)) > 1e-3


def test_kit_words_in_captions():
    for seed in range(40):
        spec = make_song_spec(seed, 4.0)
        d = spec.part("drums")[0]
        if d.kit == "sampled":
            words = KIT_WORDS["sampled"] + GENRES[spec.genre].drum_words
            assert all(any(w.lower() in c.lower() for w in words) or d.name in c for c in spec.captions)


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


def test_mix_stems_exact_sum_and_peak():
    rng = np.random.default_rng(0)
    n = SAMPLE_RATE
    parts = {
        "bass": {"bass": (np.sin(np.arange(n) * 2 * np.pi * 55 / SAMPLE_RATE) * 0.3).astype(np.float32)},
        "drums": {"drums": (rng.standard_normal(n) * (rng.random(n) < 0.01)).astype(np.float32)},
        "other": {
            "harmony": rng.standard_normal(n).astype(np.float32) * 0.05,
            "lead": np.zeros(n, np.float32),
        },
    }
    mix = make_song_spec(2, 1.0).mix
    a, info = mix_stems(parts, mix, SAMPLE_RATE)
    b, _ = mix_stems(parts, mix, SAMPLE_RATE)
    for s in STEMS:
        assert a[s].dtype == np.float32 and a[s].shape == (n,)
        np.testing.assert_array_equal(a[s], b[s])
    total = a["bass"] + a["drums"] + a["other"]
    assert np.abs(total).max() <= 10 ** (-1 / 20) + 1e-6 and info["mix_peak"] <= 0.8913
    for subtype in ("PCM_16", "PCM_24"):
        q = {s: quantize(a[s], subtype) for s in STEMS}
        assert np.array_equal(
            sum(x.astype(np.int64) for x in q.values()), np.sum([q[s] for s in STEMS], axis=0)
        )


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
    assert np.abs(mix).max() < 10 ** (-1 / 20) + 1e-6
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
    if spec.part("lead"):
        assert (tmp_path / "other_lead.wav").is_file()


@pytest.mark.skipif(_SKIP is not None or not _KITS, reason=_SKIP or "no sampled drum kit installed")
def test_sampled_kits_sound_on_every_voice():
    """Every drum voice of the sampled kits (bank 0 program 0 of their soundfont) is audible."""
    voices = sorted(set(SAMPLED_KIT_NOTES.values()))
    tempo, beat = 120.0, SAMPLE_RATE // 2  # one hit per beat
    notes = [Note(9, p, 100, 480 * i, 480 * i + 240) for i, p in enumerate(voices)]
    with FluidSynth(SAMPLE_RATE) as synth:
        for kit in _KITS:
            x = synth.render(kit.path, 0, 0, notes, tempo, beat * (len(voices) + 1))
            for i, note in enumerate(voices):  # onset window of each hit, well above the previous tails
                rms = float(np.sqrt(np.mean(x[i * beat : i * beat + beat // 4] ** 2)))
                assert rms > 1e-3, (kit.name, note, rms)


@needs_synth
def test_synth_reused_across_songs_is_deterministic():
    a, b = make_song_spec(21, 3.0), make_song_spec(22, 3.0)
    with FluidSynth(SAMPLE_RATE) as synth:
        first = render_song(a, synth=synth)
        render_song(b, synth=synth)
        again = render_song(a, synth=synth)
    fresh = render_song(a)
    for s in STEMS:
        np.testing.assert_array_equal(first[s], again[s])
        np.testing.assert_array_equal(first[s], fresh[s])


def _must_not_render(*args, **kwargs):
    raise AssertionError("a finished song was rendered again")


@needs_synth
def test_synth_dataset_resume(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    folders = synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert [f.name for f in folders] == ["song_00000", "song_00001"]
    audio = {}
    for f in folders:
        stems = {}
        for name in (*STEMS, "mix"):
            x, sr = sf.read(f / f"{name}.wav", dtype="float32")
            assert sr == SAMPLE_RATE and x.shape == (2 * SAMPLE_RATE,)
            stems[name] = x
        # the mix file is exactly the sum of the stem files
        np.testing.assert_array_equal(stems["mix"], stems["bass"] + stems["drums"] + stems["other"])
        audio[f] = stems
        assert (f / "song.mid").is_file()
        meta = json.loads((f / "meta.json").read_text())
        assert meta["seed"] == song_seed(1, int(f.name[-5:]))
        assert meta["caption"] == meta["captions"][0] and meta["chords"] and meta["beats"]
        assert set(meta["instruments"]) == set(STEMS)
        assert meta["mix"]["stems"]["drums"]["reverb_send"] >= 0 and meta["levels"]["mix_peak"] < 0.9
        assert all(name for names in meta["soundfonts"].values() for name in names)
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["path"] for r in lines] == ["song_00000", "song_00001"]
    assert {"caption", "duration", "genre", "tempo", "key", "mode"} <= set(lines[0])

    mtimes = {f: os.stat(f / "meta.json").st_mtime_ns for f in folders}
    with monkeypatch.context() as m:  # finished songs are not rendered again
        m.setattr(synth_dataset_module, "_make_song", _must_not_render)
        synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert all(os.stat(f / "meta.json").st_mtime_ns == m for f, m in mtimes.items())

    # a half-written song (no meta.json) is redone; the others are kept
    (folders[1] / "meta.json").unlink()
    (folders[1] / "other.wav").write_bytes(b"junk")
    synth_dataset(out, 2, seed=1, duration=2.0, progress=False)
    assert (folders[1] / "meta.json").is_file()
    assert sf.info(folders[1] / "other.wav").frames == 2 * SAMPLE_RATE
    assert os.stat(folders[0] / "meta.json").st_mtime_ns == mtimes[folders[0]]

    # re-rendering gives identical audio (same seed)
    synth_dataset(out, 2, seed=1, duration=2.0, progress=False, force=True)
    assert os.stat(folders[0] / "meta.json").st_mtime_ns != mtimes[folders[0]]
    for f in folders:
        for name in (*STEMS, "mix"):
            np.testing.assert_array_equal(sf.read(f / f"{name}.wav", dtype="float32")[0], audio[f][name])

    with pytest.raises(MusicGenStemError, match="force"):
        synth_dataset(out, 2, seed=2, duration=2.0, progress=False)
