"""Calibrate the onset detector of the evaluation against the notes that were played.

    python benchmarks/onset_calibration.py --data mini-work/synth --num-songs 60     # training songs
    python benchmarks/onset_calibration.py --data runs/heldout --num-songs 30        # check held out

Songs of `musicgen-stem synth` carry `song.mid` (one track per stem, in the order bass, drums,
other) next to the stems. For every stem, the note-on times of its track in the first `--duration`
seconds are the truth; `evaluation.rhythm.detect_onsets` runs on the stem's audio at each threshold,
and mir_eval's onset F-measure (±50 ms), precision and recall are averaged over the songs. The
best threshold per stem is what `evaluation.rhythm.ONSET_THRESHOLDS` holds. Also printed: the
share of true onsets and of detected onsets on the 16th grid, with the tolerance the edit
evaluation uses (how much of the grid score is the detector's).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import mido
import mir_eval
import numpy as np
import soundfile as sf

from musicgen_stem.data import STEMS
from musicgen_stem.dsp import onset_strength, to_mono
from musicgen_stem.evaluation.rhythm import detect_onsets, sixteenth_grid_fraction


def note_onsets(midi_file: Path, stem: str, duration: float) -> np.ndarray:
    """Note-on times (s) of `stem`'s track before `duration`, chords merged (30 ms)."""
    mid = mido.MidiFile(midi_file)
    track = mid.tracks[STEMS.index(stem)]
    tempo = next(
        (m.tempo for m in mid.tracks[0] if m.type == "set_tempo"), 500000
    )  # synth songs have one tempo
    tick, times = 0, []
    for msg in track:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            times.append(mido.tick2second(tick, mid.ticks_per_beat, tempo))
    t = np.unique(np.round([x for x in times if x < duration], 3))
    return t[np.concatenate([[True], np.diff(t) > 0.03])] if len(t) else t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of synth songs (song.mid, meta.json, stems)")
    ap.add_argument("--num-songs", type=int, default=60)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds from the start (the edit window)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25, 1.5])
    ap.add_argument("--stems", nargs="+", default=list(STEMS), choices=STEMS)
    args = ap.parse_args()
    songs = sorted(p.parent for p in Path(args.data).glob("*/song.mid"))[: args.num_songs]
    if not songs:
        raise SystemExit(f"{args.data}: no song folders with song.mid (make them with musicgen-stem synth)")
    print(f"{len(songs)} songs of {args.data}, first {args.duration:g} s; F/P/R: mir_eval, ±50 ms\n")
    print("| stem | threshold | F | P | R | detected on the 16th grid |")
    print("|---|---:|---:|---:|---:|---:|")
    for stem in args.stems:
        scores: dict[float, list[tuple[float, float, float, float]]] = {t: [] for t in args.thresholds}
        true_grid = []
        for song in songs:
            meta = json.loads((song / "meta.json").read_text())
            truth = note_onsets(song / "song.mid", stem, args.duration)
            wav, sr = sf.read(song / f"{stem}.wav", dtype="float32", always_2d=True)
            x = to_mono(wav[: round(args.duration * sr)].T)
            beats = np.asarray([b for b in meta["beats"] if b <= args.duration + 1.0])
            true_grid.append(sixteenth_grid_fraction(truth, beats))
            env = onset_strength(x, sr)
            for t in args.thresholds:
                det = detect_onsets(x, sr, envelope=env, threshold=t)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    f, p, r = mir_eval.onset.f_measure(truth, det, window=0.05)
                scores[t].append((f, p, r, sixteenth_grid_fraction(det, beats)))
        means = {t: np.nanmean(np.asarray(v, float), axis=0) for t, v in scores.items()}
        best = max(means, key=lambda t: means[t][0])
        for t, (f, p, r, g) in means.items():
            mark = " (best)" if t == best else ""
            print(f"| {stem} | {t:g}{mark} | {f:.3f} | {p:.3f} | {r:.3f} | {g:.3f} |")
        print(f"| {stem} | notes played | | | | {np.nanmean(true_grid):.3f} |")


if __name__ == "__main__":
    main()
