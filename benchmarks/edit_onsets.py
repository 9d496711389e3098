"""How busy a regenerated stem is, and how much of it sits on the 16th grid: slow songs vs fast.

    python benchmarks/edit_onsets.py --data runs/heldout --num-songs 30 [--regenerate bass] [--split-bpm 100]

For each held-out song the stem is regenerated under the kept ones from the song's caption (as
`musicgen-stem evaluate --tasks edit`: seed i for song i, the model's sampling defaults unless
--temperature is given). Onsets are picked as the evaluation picks them (`detect_onsets`, the
stem's threshold) in the regenerated stem, the true stem and its codec round trip, and scored on
the true 16th grid as the evaluation scores them (`sixteenth_grid_fraction`: straight, and the song's
own grid, swung as meta.json says, `onset_song_grid_fraction`). For the bass also
its notes as pYIN hears them (`pitch_track`: runs of one rounded MIDI note over 3 or more voiced
20 ms frames), so that onsets can be told from changes of pitch. Per song: the counts and the grid
score of each; then the means for the songs slower than --split-bpm (the tempo in meta.json), the
others, and each genre (meta.json's "genre").
"""

from __future__ import annotations

import argparse

import librosa
import numpy as np
import torch

from musicgen_stem import MusicGenStem
from musicgen_stem.evaluation.codec_metrics import pitch_track
from musicgen_stem.evaluation.rhythm import ONSET_THRESHOLDS, detect_onsets, sixteenth_grid_fraction
from musicgen_stem.evaluation.runner import load_songs, make_reference
from musicgen_stem.evaluation.songs import find_songs

CONDITIONS = ("generated", "ground_truth", "codec")
MIN_FRAMES = 3  # a pYIN note: one rounded MIDI note over at least this many voiced frames


def pyin_notes(wav: torch.Tensor, sample_rate: int) -> int:
    """Notes in a monophonic stem [C, T]: runs of one rounded MIDI note (pYIN) of MIN_FRAMES or more."""
    track = pitch_track(wav, sample_rate)
    midi = np.where(track.voiced, np.round(librosa.hz_to_midi(np.maximum(track.f0, 1e-6))), -1)
    change = np.flatnonzero(np.diff(midi) != 0) + 1
    runs = np.split(midi, change)
    return sum(1 for r in runs if r[0] >= 0 and len(r) >= MIN_FRAMES)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="a folder of song folders")
    p.add_argument("--num-songs", type=int, default=30)
    p.add_argument("--regenerate", default="bass", help="the stem to regenerate")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--split-bpm", type=float, default=100.0)
    p.add_argument("--temperature", type=float, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = (
        MusicGenStem.default("cpu") if args.model is None else MusicGenStem.from_pretrained(args.model, "cpu")
    )
    model.set_generation_params(temperature=args.temperature)
    stem, sr = args.regenerate, model.sample_rate
    kept = [s for s in model.stems if s != stem]
    songs = load_songs(model, find_songs(args.data, model.stems, args.num_songs), args.duration)
    slow, fast = f"< {args.split_bpm:g} BPM", "the others"
    groups: dict[str, list[dict]] = {}  # group -> per song {condition: (onsets, grid, pYIN notes, song grid)}
    for i, song in enumerate(songs):
        meta = song.meta or {}
        tempo, genre = float(meta["tempo"]), str(meta.get("genre", "?"))
        codes = model.encode_stems(song.stems, sr)  # [1, K, F]
        out = model.regenerate_from_codes(codes, [stem], [song.caption], seed=i, duration=song.duration)
        T = song.stems[stem].shape[-1]
        wavs = {
            "generated": out[stem][0, :, :T],
            "ground_truth": song.stems[stem],
            "codec": model.decode(codes)[stem][0, :, :T],
        }
        ref = make_reference(song, kept, song.duration)  # the true beats and swing
        scores = {}
        for cond, wav in wavs.items():
            onsets = detect_onsets(wav, sr, threshold=ONSET_THRESHOLDS.get(stem, 0.5))
            notes = pyin_notes(wav, sr) if stem == "bass" else 0
            straight = sixteenth_grid_fraction(onsets, ref.beats)
            swung = sixteenth_grid_fraction(onsets, ref.beats, ref.swing)
            scores[cond] = (len(onsets), straight, notes, swung)
        for group in (slow if tempo < args.split_bpm else fast, genre):
            groups.setdefault(group, []).append(scores)
        cells = " | ".join(
            f"{c} {n:3d} onsets, {k:3d} notes, grid {g:.2f} song {w:.2f}"
            for c, (n, g, k, w) in scores.items()
        )
        print(f"{song.name} {tempo:5.0f} BPM  {cells}", flush=True)
    order = [g for g in (slow, fast) if g in groups]
    for name in order + sorted(g for g in groups if g not in order):
        sel = groups[name]
        cells = " | ".join(
            f"{c} {np.mean([s[c][0] for s in sel]):.1f} onsets, {np.mean([s[c][2] for s in sel]):.1f} notes, "
            f"grid {np.nanmean([s[c][1] for s in sel]):.3f} song {np.nanmean([s[c][3] for s in sel]):.3f}"
            for c in CONDITIONS
        )
        print(f"{name} ({len(sel)} songs, {args.duration:g} s each): {cells}")


if __name__ == "__main__":
    main()
