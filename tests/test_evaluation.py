"""Evaluation metrics on short synthetic signals, and the runners/report on a tiny random model."""

from __future__ import annotations

import argparse
import json

import mir_eval
import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.errors import OutputExistsError
from musicgen_stem.evaluation import (
    ONSET_THRESHOLDS,
    Key,
    beat_f_measure,
    chord_chroma,
    chord_span_correlation,
    chord_tone_ratio,
    chroma,
    chroma_correlation,
    codec_fidelity,
    detect_onsets,
    estimate_key,
    estimate_tempo,
    evaluate_codec,
    evaluate_editing,
    frechet_distance,
    key_relation,
    onset_strength,
    track_beats,
    write_report,
)
from musicgen_stem.evaluation.rhythm import (
    grid_fraction,
    grid_phase_lock,
    sixteenth_grid,
    sixteenth_grid_fraction,
    subdivide,
)

SR = 16000


def clicks(times: np.ndarray, dur: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Short decaying noise bursts at `times` (s): [T]."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(dur * sr))
    n = int(0.01 * sr)
    for t in times:
        i = int(t * sr)
        m = min(n, len(x) - i)
        x[i : i + m] += 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.002 * sr))
    return x.astype(np.float32)


def tones(midis: list[int], dur: float, sr: int = SR) -> np.ndarray:
    """Sum of sines (with 2 harmonics) at MIDI pitches: [T]."""
    t = np.arange(int(dur * sr)) / sr
    x = np.zeros_like(t)
    for m in midis:
        f = 440.0 * 2 ** ((m - 69) / 12)
        x += sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
    return (0.2 * x / len(midis)).astype(np.float32)


def progression(chords: list[list[int]], seg: float, sr: int = SR) -> np.ndarray:
    return np.concatenate([tones(c, seg, sr) for c in chords])


C_MAJOR_CHORDS = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # I IV V I in C
FS_MAJOR_CHORDS = [[m + 6 for m in c] for c in C_MAJOR_CHORDS]


# ---------------------------------------------------------------------------------------------- rhythm
def test_onsets_found_within_20ms():
    times = np.arange(0.25, 2.9, 0.37)
    onsets = detect_onsets(clicks(times, 3.0), SR)
    assert len(onsets) == len(times)
    assert np.abs(onsets - times).max() < 0.02


def held_notes(times: np.ndarray, dur: float, f0s: list[float], sr: int = SR) -> np.ndarray:
    """Bass-like notes at `times`, each held to the next with a slow tremolo (3 Hz) and vibrato."""
    t = np.arange(int(dur * sr)) / sr
    x = np.zeros_like(t)
    for s, e, f in zip(times, [*times[1:], dur], f0s, strict=True):
        m = (t >= s) & (t < e)
        tt = t[m] - s
        env = np.exp(-tt / 1.5) * (1 + 0.35 * np.sin(2 * np.pi * 3.0 * tt))
        vib = 1 + 0.01 * np.sin(2 * np.pi * 5.5 * tt)
        x[m] += env * sum(np.sin(2 * np.pi * f * h * vib * tt) / h for h in range(1, 8))
    return (0.2 * x).astype(np.float32)


def test_bass_onset_threshold_ignores_a_held_notes_tremolo():
    """The calibrated bass threshold finds each note once; the drums' also counts the tremolo."""
    times = np.array([0.2, 1.1, 2.0, 2.9, 3.8])
    x = held_notes(times, 4.8, [55.0, 65.4, 82.4, 98.0, 55.0])
    bass = detect_onsets(x, SR, threshold=ONSET_THRESHOLDS["bass"])
    bass = bass[bass < 4.5]
    assert len(bass) == len(times) and np.abs(bass - times).max() < 0.03
    drums = detect_onsets(x, SR, threshold=ONSET_THRESHOLDS["drums"])
    assert len(drums[drums < 4.5]) > len(times)


def test_tempo_and_beats_of_120bpm_click_track():
    times = np.arange(0.1, 3.0, 0.5)
    x = clicks(times, 3.0)
    bpm = estimate_tempo(onset_strength(x, SR))
    assert abs(bpm - 120) / 120 < 0.02
    beats, _ = track_beats(x, SR)
    assert beat_f_measure(beats, times) == 1.0
    assert beat_f_measure(beats, times + 0.25) < 0.2
    assert beat_f_measure(times, times) == 1.0


def test_beat_f_measure_known_answer_and_mir_eval():
    """6 of 9 estimated beats within 70 ms of one of 9 reference beats: F = 2 * 6 / 18."""
    ref = np.arange(0.5, 5.0, 0.5)
    est = np.array([0.52, 1.04, 1.45, 2.1, 2.5, 3.2, 3.95, 4.5, 4.8])  # 2.1, 3.2, 4.8 are off
    assert beat_f_measure(est, ref) == pytest.approx(2 / 3)
    assert beat_f_measure(est, ref) == pytest.approx(mir_eval.beat.f_measure(ref, est, 0.07))


def test_detected_onsets_score_against_mir_eval():
    times = np.arange(0.25, 2.9, 0.37)
    onsets = detect_onsets(clicks(times, 3.0), SR)
    assert mir_eval.onset.f_measure(times, onsets, window=0.02)[0] == 1.0
    late = detect_onsets(clicks(times + 0.1, 3.1), SR)  # every click 100 ms late: none within 50 ms
    assert mir_eval.onset.f_measure(times, late, window=0.05)[0] == 0.0


def test_grid_fraction_and_subdivide():
    beats = np.arange(0, 2.01, 0.5)
    grid = subdivide(beats, 4)
    assert len(grid) == 17 and np.allclose(np.diff(grid), 0.125)
    assert grid_fraction(np.array([0.5, 1.01, 1.25]), beats) == pytest.approx(2 / 3)
    assert np.isnan(grid_fraction(np.zeros(0), beats))


@pytest.mark.parametrize("bpm", [60.0, 120.0, 180.0])
def test_sixteenth_grid_fraction_is_tempo_relative(bpm):
    """Within a quarter of a 16th of the grid at any tempo (never more than ±70 ms): an offset of a
    fifth of a 16th counts, a third does not, so uniformly spread onsets score one half."""
    beats = np.arange(9) * 60.0 / bpm
    sixteenth = 15.0 / bpm
    on_grid = subdivide(beats, 4)[:-1]
    assert sixteenth_grid_fraction(on_grid + sixteenth / 5, beats) == 1.0
    assert sixteenth_grid_fraction(on_grid + sixteenth / 3, beats) == 0.0
    spread = np.linspace(beats[0], beats[-1], 4001)[:-1]
    assert sixteenth_grid_fraction(spread, beats) == pytest.approx(0.5, abs=0.01)
    assert np.isnan(sixteenth_grid_fraction(on_grid, beats[:1]))


@pytest.mark.parametrize(
    "swing8, swing16, straight", [(0.85, 0.0, 0.25), (0.4, 0.0, 0.75), (0.0, 0.3, 1.0), (0.0, 0.0, 1.0)]
)
def test_song_grid_is_where_the_synthetic_score_puts_its_16ths(swing8, swing16, straight):
    """`sixteenth_grid` swung by a song's (swing8, swing16) is where `Score.tick` puts each 16th step
    at that swing: all of them are on it. On the straight grid (95 BPM: ±1/16 of a beat) a jazz
    swing (0.85) leaves only the beats, a light one (0.4) loses the off-beat 8ths."""
    from musicgen_stem.data.synth.score import Humanize, Score
    from musicgen_stem.data.synth.tables import TICKS_PER_BEAT

    bpm = 95.0
    score = Score(np.random.default_rng(0), swing8, swing16, 10**6, bpm, Humanize(0.0, 0.0, {}), "bass")
    ticks = np.array([score.tick(bar, step) for bar in range(2) for step in range(16)])
    onsets = ticks / TICKS_PER_BEAT * 60.0 / bpm  # seconds
    beats = np.arange(9) * 60.0 / bpm
    assert np.allclose(sixteenth_grid(beats, swing8, swing16)[:-1], onsets, atol=2e-3)
    assert sixteenth_grid_fraction(onsets, beats, (swing8, swing16)) == 1.0
    assert sixteenth_grid_fraction(onsets, beats) == straight


def test_grid_phase_lock_known_answers():
    """On the 16th grid of a changing tempo: 1; a constant offset of an 8th of a 16th keeps the lock
    (same phase everywhere); onsets drawn at random: about 1/sqrt(n); a 32nd off the grid on every
    other onset cancels half the vector."""
    beats = np.cumsum(np.r_[0.0, np.linspace(0.5, 0.4, 16)])  # accelerating beats
    on_grid = subdivide(beats, 4)[:-1]
    assert grid_phase_lock(on_grid, beats) == pytest.approx(1.0)
    shifted = on_grid + np.repeat(np.diff(beats), 4) / 32
    assert grid_phase_lock(shifted, beats) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    random = rng.uniform(beats[0], beats[-1], 4000)
    assert grid_phase_lock(random, beats) < 3 / np.sqrt(4000)
    half = on_grid.copy()
    half[::2] += np.repeat(np.diff(beats), 4)[::2] / 8  # half a 16th: the opposite phase
    assert grid_phase_lock(half, beats) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(grid_phase_lock(np.zeros(0), beats)) and np.isnan(grid_phase_lock(on_grid, beats[:1]))


# ---------------------------------------------------------------------------------------------- harmony
def test_chroma_of_c_major_triad_peaks_at_c_e_g():
    c = chroma(tones([60, 64, 67], 1.0), SR)
    mean = c.mean(axis=1)
    assert set(np.argsort(mean)[-3:]) == {0, 4, 7}


def test_key_of_c_major_chords_and_scale():
    assert estimate_key(chroma(progression(C_MAJOR_CHORDS, 0.5), SR)) == Key(
        0, "major", pytest.approx(1, abs=1)
    )
    key = estimate_key(chroma(progression([[m] for m in (60, 62, 64, 65, 67, 69, 71, 72)], 0.3), SR))
    assert (key.tonic, key.mode) == (0, "major")
    assert key_relation(Key(9, "minor"), Key(0, "major")) == "relative"
    assert key_relation(Key(7, "major"), Key(0, "major")) == "fifth"
    assert key_relation(Key(0, "minor"), Key(0, "major")) == "parallel"
    assert key_relation(Key(1, "major"), Key(0, "major")) == "other"


def test_chroma_correlation_identical_beats_shuffled():
    a = chroma(progression(C_MAJOR_CHORDS, 0.5), SR)
    b = chroma(progression(FS_MAJOR_CHORDS, 0.5), SR)
    assert chroma_correlation(a, a) == pytest.approx(1.0)
    assert chroma_correlation(a, b) < 0.5
    chords = [
        {"start": i * 0.5, "end": (i + 1) * 0.5, "root_pc": r, "quality": "maj"}
        for i, r in enumerate((0, 5, 7, 0))
    ]
    templates = chord_chroma(chords, a.shape[1])
    assert chroma_correlation(a, templates) > chroma_correlation(b, templates) + 0.3
    # known answer: C major (C E G) against A minor (A C E) share 2 of 3 notes: cosine 2/3
    c_major, a_minor = np.zeros((12, 4)), np.zeros((12, 4))
    c_major[[0, 4, 7]], a_minor[[9, 0, 4]] = 1.0, 1.0
    assert chroma_correlation(c_major, a_minor) == pytest.approx(2 / 3)


def test_chord_tone_ratio_of_a_bass_line():
    """I IV V I in C, 0.5 s each, then no chord: roots and fifths are chord tones, a semitone is not."""
    chords = [
        {"start": i * 0.5, "end": (i + 1) * 0.5, "root_pc": r, "quality": "maj"}
        for i, r in enumerate((0, 5, 7, 0))
    ]
    templates = chord_chroma(chords, 25)  # 2.5 s at 0.1 s: the last 0.5 s has no chord
    times = np.arange(0, 2.5, 0.02)
    hz = lambda midi: 440.0 * 2 ** ((midi - 69) / 12)  # noqa: E731
    roots = np.array([hz(36 + (0, 5, 7, 0, 1)[int(t / 0.5)]) for t in times])
    voiced = np.ones(len(times), bool)
    assert (
        chord_tone_ratio(times, roots, voiced, templates) == 1.0
    )  # the C# in the chordless 0.5 s is left out
    assert chord_tone_ratio(times, roots * 2 ** (1 / 12), voiced, templates) == 0.0
    fifths = roots * 2 ** (7 / 12)
    half = np.where((times % 0.5) < 0.25, roots, fifths * 2 ** (1 / 12))  # root, then a wrong note
    assert chord_tone_ratio(times, half, voiced, templates) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(chord_tone_ratio(times, roots, np.zeros(len(times), bool), templates))


def test_chord_span_correlation_of_a_walking_line():
    """C major then F major, 1 s each, at 0.1 s: a line walking root-third-fifth over each chord spells
    it (1.0) where per-frame chroma caps each note at 1/sqrt(3); the root alone scores 1/sqrt(3), a
    line a semitone off 0, silence and chordless frames are left out."""
    chords = [{"start": 0.0, "end": 1.0, "root_pc": 0}, {"start": 1.0, "end": 2.0, "root_pc": 5}]
    templates = chord_chroma(chords, 25)  # the last 0.5 s has no chord

    def line(steps: tuple[int, ...], shift: int = 0) -> np.ndarray:
        c = np.zeros((12, 25))
        for i in range(20):  # 0.33 s per note: root, third, fifth (3-4 frames each)
            root = 0 if i < 10 else 5
            c[(root + steps[min(i % 10 // 4, len(steps) - 1)] + shift) % 12, i] = 1.0
        c[:, 20:] = np.eye(12)[:, [1]]  # a C# where no chord sounds
        return c

    walking = line((0, 4, 7))
    assert chroma_correlation(walking, templates) == pytest.approx(1 / np.sqrt(3))
    spelled = chord_span_correlation(walking, templates)
    assert 0.9 < spelled <= 1.0  # 4 + 4 + 2 frames per chord: close to the template, not equal
    assert chord_span_correlation(line((0,)), templates) == pytest.approx(1 / np.sqrt(3))
    assert chord_span_correlation(line((0, 4, 7), shift=1), templates) == pytest.approx(0.0)
    silent_first = walking.copy()
    silent_first[:, :10] = 0.0  # only the F span sounds: its score alone
    assert chord_span_correlation(silent_first, templates) == pytest.approx(spelled)
    assert np.isnan(chord_span_correlation(np.zeros((12, 25)), templates))


# ---------------------------------------------------------------------------------------------- distribution
def test_frechet_distance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    d1 = frechet_distance(x, x + 0.5)
    d2 = frechet_distance(x, x + 2.0)
    assert d1 == pytest.approx(4 * 0.25, rel=1e-6) and d2 > d1
    # known answer for y = 2x + 1: |mu_x + 1|^2 + tr(S_x + 4 S_x - 2 (4 S_x^2)^(1/2)) = |mu_x + 1|^2 + tr(S_x)
    expected = np.sum((x.mean(0) + 1) ** 2) + np.trace(np.cov(x, rowvar=False))
    assert frechet_distance(x, 2 * x + 1) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------- model-based
def _write_song(folder, sr, bpm, chords_pc, seed):
    """A 1.5 s song folder: drums = clicks on the beat, bass/other = chord tones; meta with beats/chords."""
    folder.mkdir(parents=True)
    dur, beat = 1.5, 60.0 / bpm
    beats = np.arange(0, dur, beat)
    seg = dur / len(chords_pc)
    other = np.concatenate([tones([60 + r, 64 + r, 67 + r], seg, sr) for r in chords_pc])
    bass = np.concatenate([tones([36 + r], seg, sr) for r in chords_pc])
    stems = {"drums": clicks(beats, dur, sr, seed), "bass": bass, "other": other}
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", x, sr)
    meta = {
        "beats": beats.tolist(),
        "tempo": bpm,
        "tonic_pc": chords_pc[0],
        "mode": "major",
        "chords": [
            {"start": i * seg, "end": (i + 1) * seg, "root_pc": r, "quality": "maj"}
            for i, r in enumerate(chords_pc)
        ],
        "caption": "a test song",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    return [
        _write_song(root / "song_00000", 32000, 120, [0, 5, 7], 0),
        _write_song(root / "song_00001", 32000, 100, [6, 11, 1], 1),
    ]


def test_codec_fidelity_finite(tiny_model):
    stems = {s: torch.from_numpy(tones([48], 0.5, 32000))[None] for s in tiny_model.stems}
    out = codec_fidelity(tiny_model, stems, 32000)
    assert set(out) == set(tiny_model.stems)
    for m in out.values():
        assert all(np.isfinite(v) for v in m.values())
    assert out["bass"]["bitrate_bps"] == pytest.approx(1 * 11 * tiny_model.frame_rate)


def test_editing_evaluation_end_to_end_and_report(tiny_model, songs, tmp_path):
    edit = evaluate_editing(tiny_model, songs, ["bass"], duration=1.5, seed=3)
    metrics = edit.summary["metrics"]["bass"]
    assert set(metrics) == {"generated", "ground_truth", "ground_truth_codec", "shuffled"}
    for cond in ("generated", "ground_truth", "shuffled"):
        assert {"onset_beat_fraction", "beat_f_measure", "chroma_kept", "chroma_chords", "key_score"} <= set(
            metrics[cond]
        )
    # The recorded stem fits its own chords far better than another song's stem.
    assert metrics["ground_truth"]["chroma_chords"] > metrics["shuffled"]["chroma_chords"] + 0.2
    assert metrics["ground_truth"]["key_score"] >= metrics["shuffled"]["key_score"]
    again = evaluate_editing(tiny_model, songs, ["bass"], duration=1.5, seed=3)
    assert json.dumps(again.summary) == json.dumps(edit.summary)  # deterministic
    # what the model read: the caption itself (a model without a beat grid adds no tempo)
    assert [r["model_prompt"] for r in edit.per_song] == [r["caption"] for r in edit.per_song]
    assert all(r["caption"] for r in edit.per_song)

    codec = evaluate_codec(tiny_model, songs, duration=1.0)
    m = codec.summary["metrics"]
    assert {"pitch_median_cents", "voicing_recall", "artifact_score", "si_snr_db"} <= set(m["bass"])
    assert "chroma_corr" in m["other"] and "onset_f" in m["drums"]
    # The tiny model's codecs are untrained (one code for everything): a frame-rate comb, pitch-blind.
    assert m["bass"]["artifact_score"] > 0.5 and m["bass"]["pitch_within_50c"] < 0.2
    assert codec.summary["codebooks"]["other"]["usage"] == [1 / 2048] * 4
    probes = codec.summary["probes"]
    assert probes["pure_tones"]["passed"] == 0 and not probes["bass_line"]["codes_differ"]
    out = tmp_path / "report"
    write_report(out, [edit, codec], {"model": "tiny"})
    data = json.loads((out / "report.json").read_text())
    assert [r["task"] for r in data["results"]] == ["edit", "codec"]
    md = (out / "report.md").read_text()
    assert "Editing coherence" in md and "| bass | chroma_chords |" in md and "SI-SNR" in md
    assert "| probe (bass) | pure tones E1–G3: peak within ±25 c ↑ | 0/28 |" in md
    assert "| drums | onset F-measure (±30 ms) ↑ |" in md
    for png in ("edit_metrics.png", "edit_example.png", "codec_metrics.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputExistsError):
        write_report(out, [codec])
    write_report(out, [codec], force=True)
    assert json.loads((out / "report.json").read_text())["results"][0]["task"] == "codec"


def test_cli_runs(tiny_model_dir, songs, tmp_path):
    from musicgen_stem.evaluation import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "cli_report"
    args = parser.parse_args(
        ["--model", str(tiny_model_dir), "--data", str(songs[0].parent), "--out", str(out), "--duration", "1"]
        + ["--tasks", "edit", "codec", "generate", "--regenerate", "other", "--device", "cpu"]
        + ["--temperature", "0.7", "--top-k", "20", "--top-p", "0.9", "--cfg", "2"]
    )
    assert cli.run(args) == 0
    data = json.loads((out / "report.json").read_text())
    sampling = {"use_sampling": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "cfg_coef": 2.0}
    sampling["greedy_streams"] = []  # the tiny model's default: none
    sampling["chord_guide"] = 0.0  # likewise
    assert data["config"]["sampling"] == sampling  # as used: the options over the model's defaults
    assert [r["task"] for r in data["results"]] == ["edit", "codec", "generate"]
    assert all(v is not None and v >= 0 for v in data["results"][2]["summary"]["frechet_distance"].values())
