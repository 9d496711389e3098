"""Where a stem codec's mel distance comes from: the codes or the decoder, which bands, which levels.

    python benchmarks/codec_error_bands.py --data runs/heldout --num-songs 8 --stem other
    python benchmarks/codec_error_bands.py --data runs/heldout --codec runs/grow_other/checkpoint.pt

For each held-out song the stem goes through the codec twice: encode, quantize, decode (the round
trip) and encode, decode the unquantized latent (what the decoder can do with perfect codes). Both
get the multi-scale mel distance of `codec_fidelity.py`. Then, on the 2048-point log10 mel (80 HTK
bands) of the round trip against the input: the mean absolute error and the mean signed error
(round trip minus input: > 0 too loud) of each group of 8 bands, and of the input's cells by their
level. If the unquantized latent decodes little better than the codes, more codebooks cannot help:
the latent or the decoder must change.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from musicgen_stem.api import default_model_path
from musicgen_stem.codec import StemCodec
from musicgen_stem.dsp import MelSpectrogram, mel_filterbank
from musicgen_stem.evaluation.fidelity import multiscale_mel_distance
from musicgen_stem.evaluation.songs import find_songs, load_song
from musicgen_stem.modeldir import load_codecs, read_trained_codec

LEVELS = ((-6.0, -3.5), (-3.5, -2.5), (-2.5, -1.5), (-1.5, 2.0))  # log10 mel magnitude ranges


def load_codec(model: str | None, codec: str | None, stem: str) -> StemCodec:
    """The `stem` codec of a model folder, or a `train-codec` export / checkpoint."""
    if codec is None:
        return load_codecs(model or default_model_path()).codec.codecs[stem].eval()
    cfg, state, _ = read_trained_codec(codec)
    out = StemCodec(cfg)
    out.load_state_dict(state)
    return out.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a folder of song folders")
    p.add_argument("--stem", default="other")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--codec", default=None, help="a codec export or checkpoint.pt instead of --model")
    p.add_argument("--num-songs", type=int, default=8)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model, args.codec, args.stem)
    sr = codec.sample_rate
    mel = MelSpectrogram(sr, 2048, 80, hop_length=512, normalized=True, log=True, floor=1e-5)
    diffs, refs, coded, raw = [], [], [], []
    print("| song | mel distance, codes | mel distance, unquantized latent |\n|---|---:|---:|")
    for folder in find_songs(args.data, [args.stem], args.num_songs):
        song = load_song(folder, [args.stem], sr, codec.channels, args.duration)
        wav = torch.as_tensor(song.stems[args.stem]).float()[None]  # [1, C, T]
        with torch.inference_mode():
            latent = codec.encode_latent(wav)  # [1, D, F]
            y_codes = codec.decode(codec.encode(wav))[..., : wav.shape[-1]]
            y_raw = codec.decoder(latent)[..., : wav.shape[-1]]
        coded.append(float(multiscale_mel_distance(y_codes, wav, sr)[0]))
        raw.append(float(multiscale_mel_distance(y_raw, wav, sr)[0]))
        print(f"| {folder.name} | {coded[-1]:.3f} | {raw[-1]:.3f} |")
        ref = mel(wav)  # [C, 80, frames]
        diffs.append((mel(y_codes) - ref).transpose(0, 1).flatten(1).numpy())  # [80, C * frames]
        refs.append(ref.transpose(0, 1).flatten(1).numpy())
    print(f"| mean | {np.mean(coded):.3f} | {np.mean(raw):.3f} |\n")
    d, r = np.concatenate(diffs, axis=1), np.concatenate(refs, axis=1)  # [80, cells]
    hz = mel_filterbank(sr, 2048, 80).argmax(dim=1).numpy() * sr / 2048  # each band's peak bin
    print("| mel bands | Hz | mean abs error | mean error (round trip - input) | input level (log10) |")
    print("|---|---|---:|---:|---:|")
    for b in range(0, 80, 8):
        g = slice(b, b + 8)
        print(
            f"| {b}-{b + 7} | {hz[b]:.0f}-{hz[b + 7]:.0f} | {np.abs(d[g]).mean():.3f} | "
            f"{d[g].mean():+.3f} | {r[g].mean():.2f} |"
        )
    print("\n| input level (log10 mel) | share of cells | mean abs error | mean error | share of distance |")
    print("|---|---:|---:|---:|---:|")
    for lo, hi in LEVELS:
        s = (r >= lo) & (r < hi)
        print(
            f"| {lo} to {hi} | {s.mean():.3f} | {np.abs(d[s]).mean():.3f} | {d[s].mean():+.3f} | "
            f"{np.abs(d[s]).sum() / np.abs(d).sum():.3f} |"
        )


if __name__ == "__main__":
    main()
