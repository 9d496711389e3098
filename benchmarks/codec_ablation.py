"""One stem's codec runs side by side, on held-out songs and (bass) the pure-tone probe.

    python benchmarks/codec_ablation.py --data runs/heldout --stem bass --num-songs 3 --duration 8 \\
        runs/ab_seanet/checkpoint.pt runs/main_bass/checkpoint.pt src/musicgen_stem/models/mini

Each run is a `train-codec` checkpoint (`checkpoint.pt`, its raw weights at its step), an export
(`codec_<stem>.safetensors`) or a model folder (its codec of `--stem`). For each: the musician's
metric of the stem (`codec_metrics.stem_metrics`: pitch of the bass, chroma of other, onsets of the
drums), the frame-rate artifact, mel distance, distinct codes per song, and for the bass the
pure tones E1..G3 (strongest peak within 25 cents); codebook usage and perplexity from the run's
`log.jsonl` at that step when there is one. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicgen_stem.codec import StemCodec
from musicgen_stem.dsp import to_mono
from musicgen_stem.evaluation.codec_metrics import stem_metrics
from musicgen_stem.evaluation.fidelity import fidelity_metrics, round_trip
from musicgen_stem.evaluation.probes import codec_round_trip, pure_tone_check
from musicgen_stem.evaluation.songs import find_songs, load_song
from musicgen_stem.modeldir import load_codecs, read_trained_codec

KEYS = {
    "bass": ("pitch_within_50c", "pitch_median_cents"),
    "other": ("chroma_corr",),
    "drums": ("onset_f",),
}


def load_run(path: Path, stem: str) -> tuple[StemCodec, int | None, dict[str, float]]:
    """(codec in eval mode, step or None, the log record of that step's usage/perplexity)."""
    if path.is_dir():
        return load_codecs(path).codec.codec(stem).eval(), None, {}
    cfg, weights, step = read_trained_codec(path)
    health: dict[str, float] = {}
    log = path.parent / "log.jsonl"
    if step is not None and log.is_file():
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        usable = [r for r in records if "usage_q0" in r and r["step"] <= step]
        if usable:
            health = {k: v for k, v in usable[-1].items() if k.startswith(("usage_q", "perplexity_q"))}
    codec = StemCodec(cfg)
    codec.load_state_dict(weights, strict=True)
    return codec.eval(), step, health


def measure(codec: StemCodec, songs: list[Any], stem: str) -> dict[str, Any]:
    rows, distinct = [], []
    for song in songs:
        x, codes, recon = round_trip(codec, song.stems[stem], song.sample_rate)
        m = fidelity_metrics(codec, x, recon)
        ref, est = to_mono(x[0]), to_mono(recon[0])
        m.update(stem_metrics(stem, ref, est, codec.sample_rate, codec.frame_rate))
        rows.append(m)
        distinct.append(len(np.unique(codes[0, 0].numpy())))
    out = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in rows[0]}
    out["distinct_codes"] = float(np.mean(distinct))
    if stem == "bass":
        out["tones"] = pure_tone_check(codec_round_trip(codec), codec.sample_rate)["passed"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="checkpoint.pt / codec_<stem>.safetensors / model")
    parser.add_argument("--data", required=True, help="held-out synth folder")
    parser.add_argument("--stem", default="bass", choices=sorted(KEYS))
    parser.add_argument("--num-songs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each song")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    songs = [load_song(p, [args.stem], 32000, 1, args.duration) for p in find_songs(args.data, [args.stem])]
    songs = songs[: args.num_songs]
    keys = [*KEYS[args.stem], "artifact_score", "mel_distance", "distinct_codes"]
    keys += ["tones"] if args.stem == "bass" else []
    print(f"| run | step | {' | '.join(keys)} | usage / perplexity |")
    print("|---|---:|" + "---:|" * len(keys) + "---|")
    for path in args.runs:
        codec, step, health = load_run(path, args.stem)
        m = measure(codec, songs, args.stem)
        vq = " ".join(f"{k}={v:.3g}" for k, v in health.items())
        cells = " | ".join(f"{m[k]:.3g}" for k in keys)
        print(f"| {path} | {step if step is not None else ''} | {cells} | {vq} |", flush=True)


if __name__ == "__main__":
    main()
