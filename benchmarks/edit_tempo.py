"""Edits whose description names no tempo: the kept stems' estimated tempo against no tempo at all.

    python benchmarks/edit_tempo.py --data runs/heldout --num-songs 30 --out runs/edit_tempo

Regenerates the drums of each held-out song under its bass and other, the song's caption with its
tempo taken out as the description (`evaluate --edit-prompts no-tempo`), twice: as the package
does it (the tempo estimated from the kept stems, `dsp.estimate_tempo`, read as "at N bpm" and as
the beat grid) and with the estimator answering "no pulse" (no tempo, no grid: what an edit without
a named tempo got before). Writes one evaluation report per mode under OUT (`estimated/`, `none/`)
and prints the drums' rhythm scores side by side, and how often the estimator finds each song's
tempo on its true bass + other (within 4 %, at double or half, elsewhere).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from musicgen_stem.api import MusicGenStem, decoding, default_model_path
from musicgen_stem.dsp import estimate_tempo, onset_strength
from musicgen_stem.evaluation.report import write_report
from musicgen_stem.evaluation.runner import evaluate_editing
from musicgen_stem.evaluation.songs import find_songs, load_song

METRICS = ("beat_f_measure", "onset_grid_fraction", "grid_phase_lock", "tempo_bpm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="held-out song folders (synth, with meta.json)")
    p.add_argument("--num-songs", type=int, default=30)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = MusicGenStem.from_pretrained(args.model or default_model_path(), device="cpu")
    songs = find_songs(args.data, model.stems, args.num_songs)
    estimate = decoding.estimate_tempo
    scores = {}
    for mode in ("estimated", "none"):
        decoding.estimate_tempo = estimate if mode == "estimated" else (lambda envelope: 0.0)
        try:
            result = evaluate_editing(model, songs, ["drums"], args.duration, args.seed, "no-tempo")
        finally:
            decoding.estimate_tempo = estimate
        write_report(Path(args.out) / mode, [result], force=True)
        scores[mode] = result
    ratios = []
    for folder in songs:
        song = load_song(folder, ["bass", "other"], model.sample_rate, 1, args.duration)
        kept = song.stems["bass"] + song.stems["other"]  # [1, T]
        ratios.append(estimate_tempo(onset_strength(kept, model.sample_rate)) / float(song.meta["tempo"]))
    r = torch.tensor(ratios)
    exact = (r - 1).abs() < 0.04
    octave = ((r - 2).abs() < 0.08) | ((r - 0.5).abs() < 0.02)
    print(
        f"tempo estimated on the true bass + other: within 4 % {exact.float().mean():.3f}, "
        f"double or half {octave.float().mean():.3f}, elsewhere {(~exact & ~octave).float().mean():.3f}"
    )
    print(f"drums regenerated under bass + other, {len(songs)} songs, no tempo in the description")
    for mode, result in scores.items():
        row = result.summary["metrics"]["drums"]["generated"]
        print(f"{mode:>10}: " + ", ".join(f"{m} {row.get(m, float('nan')):.3f}" for m in METRICS))


if __name__ == "__main__":
    main()
