"""How many frames of real stems get another code from a codec than from another (same encoder):
what a codebook change (e.g. `training/codebook.py`'s fill) does to tokens an LM learnt from.

    python benchmarks/codes_changed.py --stem bass --data runs/data_v3 --num-songs 20 \\
        src/musicgen_stem/models/mini runs/filled

Each codec is a model folder (its codec of `--stem`), a `train-codec` export or a run's checkpoint
(`codec_ablation.load_run`). Prints, per codebook,
the fraction of frames (first `--duration` s of each song) whose code differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from codec_ablation import load_run

from musicgen_stem.evaluation.songs import find_songs, load_song


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--stem", default="bass")
    p.add_argument("--data", required=True, help="a folder of song folders")
    p.add_argument("--num-songs", type=int, default=20)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    a, b = (load_run(Path(p), args.stem)[0] for p in (args.before, args.after))
    changed = total = None
    songs = find_songs(args.data, [args.stem], args.num_songs)
    for folder in songs:
        song = load_song(folder, [args.stem], a.sample_rate, a.channels, args.duration)
        wav = torch.as_tensor(song.stems[args.stem]).float()[None]  # [1, C, T]
        with torch.inference_mode():
            ca, cb = a.encode(wav), b.encode(wav)  # [1, n_q, F]
        diff = (ca != cb).sum(dim=(0, 2)).double()
        changed = diff if changed is None else changed + diff
        total = ca.shape[-1] * len(songs)
    assert changed is not None and total is not None
    print(f"{len(songs)} songs of '{args.data}', first {args.duration:g} s")
    for q, n in enumerate(changed.tolist()):
        share = n / total
        print(f"{args.stem} codebook {q}: {int(n)} of {total} frames changed code ({share:.4f})")


if __name__ == "__main__":
    main()
