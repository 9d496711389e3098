"""Does the bass codec keep the bass's note onsets (re-attacks of repeated notes included)?

    python benchmarks/bass_onsets.py --data runs/heldout --num-songs 6 --duration 10

For each held-out song, the bass goes through the model's bass codec (encode, decode). Onsets are
found by librosa on the input and on the round trip and matched by mir_eval (±30 ms): precision,
recall, F. For a pitch codec (`encoder="pitch"`), it also prints how much the latent's level
(the 40 ms envelope) rises at the input's onsets (the larger of frame f - frame f-1 and frame
f+1 - frame f-1). A rise near 0 dB means the codes cannot tell that onset from a held note. A
latent with detail (`dimension` 15) also has the attack row (log-mel flux, dB): its median at the
input's onsets as the evaluation finds them (`detect_onsets`, the bass threshold: timed as the
attack row is; the larger of frames f and f+1) against its median elsewhere.

    python benchmarks/bass_onsets.py --data runs/heldout --num-songs 6 --model GROWN_MODEL
"""

from __future__ import annotations

import argparse

import librosa
import mir_eval
import numpy as np
import torch

from musicgen_stem.api import default_model_path
from musicgen_stem.codec.harmonic import LEVEL_DB
from musicgen_stem.evaluation.rhythm import ONSET_THRESHOLDS, detect_onsets
from musicgen_stem.evaluation.songs import find_songs, load_song
from musicgen_stem.modeldir import load_codecs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="a folder of song folders")
    p.add_argument("--num-songs", type=int, default=6)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codecs(args.model or default_model_path()).codec.codecs["bass"].eval()
    sr, rate = codec.sample_rate, codec.frame_rate
    print(
        "| song | genre | onsets in / out | P | R | F | level rise at onsets (median dB, share < 3) "
        "| attack at onsets / elsewhere (median dB) |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for folder in find_songs(args.data, ["bass"], args.num_songs):
        song = load_song(folder, ["bass"], sr, codec.channels, args.duration)
        wav = torch.as_tensor(song.stems["bass"]).float()[None]  # [1, C, T]
        with torch.inference_mode():
            latent = codec.encoder(wav) if codec.cfg.encoder.kind == "pitch" else None
            out = codec.decode(codec.encode(wav))[..., : wav.shape[-1]]
        x, y = wav[0].mean(0).numpy(), out[0].mean(0).numpy()
        on_x = librosa.onset.onset_detect(y=x, sr=sr, units="time")
        on_y = librosa.onset.onset_detect(y=y, sr=sr, units="time")
        f, prec, rec = mir_eval.onset.f_measure(on_x, on_y, window=0.03)
        rise = attack = "n/a"
        if latent is not None:
            level = latent[0, 1].numpy() * LEVEL_DB  # [F] dB
            frames = [round(t * rate) - 1 for t in on_x]
            inside = [i for i in frames if 1 <= i < len(level) - 1]
            ups = [max(level[i + 1], level[i]) - level[i - 1] for i in inside]
            if ups:
                rise = f"{np.median(ups):.1f}, {np.mean(np.array(ups) < 3.0):.2f}"
            if latent.shape[1] > 8:
                row = latent[0, 8].numpy() * LEVEL_DB  # [F] dB
                hits = [round(t * rate) - 1 for t in detect_onsets(x, sr, threshold=ONSET_THRESHOLDS["bass"])]
                hits = [i for i in hits if 0 <= i < len(row) - 1]
                at = [max(row[i], row[i + 1]) for i in hits]
                rest = np.delete(row, np.unique(np.concatenate([hits, np.add(hits, 1)])))
                attack = f"{np.median(at):.1f} / {np.median(rest):.1f}"
        genre = (song.meta or {}).get("genre", "")
        counts = f"{len(on_x)} / {len(on_y)}"
        print(f"| {song.name} | {genre} | {counts} | {prec:.3f} | {rec:.3f} | {f:.3f} | {rise} | {attack} |")


if __name__ == "__main__":
    main()
