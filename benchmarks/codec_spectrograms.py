"""Spectrograms of a song's stems beside their round trip through a model's codecs.

    python benchmarks/codec_spectrograms.py SONG_FOLDER MODEL --out spec.png [--seconds 8]

SONG_FOLDER holds bass.wav, drums.wav, other.wav (as `musicgen-stem synth` writes them); MODEL is a
model folder or `default`. One row per stem: input | round trip (log frequency; bass up to 4 kHz,
the others up to 8 kHz). Look at pitch lines, note changes and rests, hits, and artifacts.
"""

from __future__ import annotations

import argparse
import sys

import librosa
import librosa.display
import matplotlib
import numpy as np
import soundfile as sf
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from musicgen_stem import MusicGenStem  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("song", help="song folder with <stem>.wav files")
    ap.add_argument("model", help="model folder, or default")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds from the start")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = MusicGenStem.default() if args.model == "default" else MusicGenStem.from_pretrained(args.model)
    stems = model.stems
    fig, axes = plt.subplots(len(stems), 2, figsize=(14, 3.2 * len(stems)), squeeze=False)
    for row, stem in enumerate(stems):
        x, sr = sf.read(f"{args.song}/{stem}.wav", dtype="float32", always_2d=True)
        x = x.mean(1)[: int(sr * args.seconds)]
        codec = model.codec.codec(stem)
        wav = torch.from_numpy(x)[None, None]
        if sr != codec.sample_rate:
            wav = torch.from_numpy(librosa.resample(x, orig_sr=sr, target_sr=codec.sample_rate))[None, None]
        with torch.inference_mode():
            y = codec.decode(codec.encode(wav))[0, 0, : wav.shape[-1]].numpy()
        for col, (sig, name) in enumerate([(wav[0, 0].numpy(), "input"), (y, "round trip")]):
            spec = np.abs(librosa.stft(sig, n_fft=4096, hop_length=256))
            db = librosa.amplitude_to_db(spec, ref=np.max)
            ax = axes[row, col]
            librosa.display.specshow(
                db, sr=codec.sample_rate, hop_length=256, x_axis="time", y_axis="log", ax=ax, vmin=-70
            )
            ax.set_ylim(30, 4000 if stem == "bass" else 8000)
            ax.set_title(f"{stem}: {name}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
