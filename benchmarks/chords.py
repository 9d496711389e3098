"""Does `generate --chords` follow the chords? Over prompts x seeds, text -> stems with a progression:

- bass on chord tones: the share of the bass's transcribed notes (`notes.transcribe.bass_notes`,
  weighted by length) whose pitch class is a tone of the chord sounding at the note's middle;
- mix chroma matches the chord: per chord span, whether the mean chroma (librosa CQT chroma of the
  mix) correlates best with that chord's triad among the 24 major and minor triads (chance 1/24);
- the same two figures with the progression *not* given (the model's own harmony, scored against
  the progression it was not told), as the baseline.

    python benchmarks/chords.py [--model DIR] [--seeds 0 1] [--duration 8] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import time

import librosa
import numpy as np

from musicgen_stem.api import MusicGenStem
from musicgen_stem.conditioning.chords import ChordChart, parse_progression
from musicgen_stem.notes.transcribe import bass_notes

#: (prompt, progression): keys and styles of the synthetic training genres, one chord a bar.
PROMPTS = [
    ("a pop song in C major at 110 bpm", "C G Am F"),
    ("funky disco groove in A minor at 118 bpm", "Am7 Dm7 G C"),
    ("laid-back reggae in G major at 80 bpm", "G C D C"),
    ("blues shuffle in E at 96 bpm", "E7 A7 E7 B7"),
    ("soulful jazz ballad in F major at 72 bpm", "Fmaj7 Dm7 Gm7 C7"),
    ("driving rock in D major at 130 bpm", "D A Bm G"),
    ("dark hip hop beat in C minor at 90 bpm", "Cm Ab Eb Bb"),
    ("house track in F minor at 124 bpm", "Fm Db Ab Eb"),
    ("country song in G major at 104 bpm", "G D Em C"),
    ("metal riff in E minor at 140 bpm", "Em C D Em"),
    ("ambient pads in D minor at 70 bpm", "Dm Bb F C"),
    ("funk jam in B minor at 100 bpm", "Bm7 E7 Bm7 E7"),
]
TRIADS = [(r, q) for q in ("maj", "min") for r in range(12)]


def triad_of(quality: str) -> str:
    return "min" if quality in ("min", "min7", "dim", "m7b5", "min6", "min9", "madd9", "dim7") else "maj"


def bass_on_chords(bass: np.ndarray, sr: int, chart: ChordChart) -> float:
    """Length-weighted share of the bass notes on a tone of the chord at their middle."""
    on = total = 0.0
    for n in bass_notes(bass, sr):
        chord = chart.at((n.start + n.end) / 2)
        if chord is None:
            continue
        w = n.end - n.start
        total += w
        on += w * (n.pitch % 12 in chord.tones)
    return on / total if total else float("nan")


def chroma_matches(mix: np.ndarray, sr: int, chart: ChordChart) -> float:
    """Share of the chord spans whose mean mix chroma is best matched by that chord's triad."""
    hop = 512
    chroma = librosa.feature.chroma_cqt(y=mix, sr=sr, hop_length=hop)  # [12, N]
    templates = np.zeros((24, 12))
    for i, (r, q) in enumerate(TRIADS):
        templates[i, [r, (r + (3 if q == "min" else 4)) % 12, (r + 7) % 12]] = 1.0
    hits = []
    for a, b, chord in chart.spans:
        i, j = int(a * sr / hop), int(b * sr / hop)
        if chord is None or j - i < 4:
            continue
        mean = chroma[:, i:j].mean(axis=1)
        best = TRIADS[int(np.argmax(templates @ (mean - mean.mean())))]
        hits.append(best == (chord.root, triad_of(chord.quality)))
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quantize",
        choices=["auto", "none", "int8", "int4"],
        default="auto",
        help="the LM's weights (auto: the model's own, int8 for mini)",
    )
    ap.add_argument("--model", default=None, help="model folder (default: the shipped mini)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--out", default=None, help="write the per-prompt figures here (JSON)")
    ap.add_argument("--chord-guide", type=float, default=None, help="chord guidance (default: the model's)")
    ap.add_argument("--given-only", action="store_true", help="skip the baseline without --chords")
    args = ap.parse_args()
    model = MusicGenStem.default() if args.model is None else MusicGenStem.from_pretrained(args.model)
    if args.quantize != "none":
        model.quantize(args.quantize)
    model.set_generation_params(chord_guide=args.chord_guide)
    sr = model.sample_rate
    rows = []
    began = time.time()
    for prompt, progression in PROMPTS:
        bpm = float(prompt.split(" at ")[1].split()[0])
        chart = parse_progression(progression, bpm).looped(args.duration)
        for seed in args.seeds:
            for given in (True,) if args.given_only else (True, False):
                out = model.generate(
                    [prompt], seed=seed, duration=args.duration, chords=progression if given else None
                )
                bass = out["bass"][0].mean(0).numpy()
                mix = sum(out[s][0].mean(0).numpy() for s in out)
                rows.append(
                    {
                        "prompt": prompt,
                        "chords": progression,
                        "seed": seed,
                        "given": given,
                        "bass_on_chords": bass_on_chords(bass, sr, chart),
                        "chroma_matches": chroma_matches(mix, sr, chart),
                    }
                )
    for given in (True, False):
        sel = [r for r in rows if r["given"] == given]
        if not sel:
            continue
        b = np.nanmean([r["bass_on_chords"] for r in sel])
        c = np.nanmean([r["chroma_matches"] for r in sel])
        label = "--chords given" if given else "no --chords (baseline)"
        print(f"{label:24s} bass on chord tones {b:.3f}   chord spans matched by the mix chroma {c:.3f}")
    took = time.time() - began
    print(f"{len(PROMPTS)} prompts x {len(args.seeds)} seeds, {args.duration:g} s each, {took:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
