"""Codec fidelity as a musician hears it, several models side by side on the same songs.

    musicgen-stem synth /tmp/heldout --num-songs 4 --duration 10 --seed 7
    python benchmarks/codec_fidelity.py --data /tmp/heldout --num-songs 4 --duration 10 \\
        --model default runs/codec_v2 --out codec_fidelity
    python benchmarks/codec_fidelity.py --model default --out tones   # probe signals only (no --data)

For each model, every stem of every song goes through that stem's codec (encode, decode) and the
round trip is compared with the input: pYIN pitch of the bass (median cents error, frames within
50 cents, voicing recall), chroma correlation of other, onset F-measure (±30 ms) of the drums, and
for every stem the frame-rate artifact (comb share at multiples of the codec frame rate, round trip
minus input), multi-scale mel distance, SI-SNR, codebook usage and perplexity. The bass codec also
gets probe signals: decaying sines on every semitone E1..G3 (strongest peak within ±25 cents?) and
the bass line A1 C2 E2 G2 (distinct codes per note? pYIN error). Definitions:
`musicgen_stem.evaluation.codec_metrics` and `.probes`.

`--model default` is the shipped model; other values are model folders or hub ids. `--codec
STEM=FILE` (repeatable) adds one more entry: the first model with every such stem's codec replaced
by a codec exported by `train-codec` (`codec_<stem>.safetensors`, or a run folder's `checkpoint.pt`
for a run still in progress; as many codebooks and entries as the model's), so a new codec is
measured before any LM is trained on it. Writes
OUT/codec_fidelity.json (every per-song and per-note figure) and OUT/codec_fidelity.md (the
tables, also printed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from musicgen_stem import MusicGenStem
from musicgen_stem.codec import StemCodec
from musicgen_stem.evaluation.probes import probe_metrics
from musicgen_stem.evaluation.report import _json_safe
from musicgen_stem.evaluation.runner import evaluate_codec
from musicgen_stem.evaluation.songs import find_songs
from musicgen_stem.evaluation.tables import METRIC_NOTE, comparison_table, tone_table
from musicgen_stem.modeldir import read_trained_codec


def load(name: str, device: str | None) -> MusicGenStem:
    if name in ("default", ""):
        return MusicGenStem.default(device=device)
    return MusicGenStem.from_pretrained(name, device=device)


def with_codecs(model: MusicGenStem, specs: list[str]) -> MusicGenStem:
    """`model` with the codecs of `STEM=FILE` specs swapped in (same layout: n_q and bins checked)."""
    for spec in specs:
        stem, _, file = spec.partition("=")
        if stem not in model.stems or not file:
            raise SystemExit(f"--codec wants STEM=FILE with STEM one of {list(model.stems)}, got {spec!r}")
        cfg, weights, _ = read_trained_codec(file)
        old = model.codec.codecs[stem]
        if (cfg.n_q, cfg.bins) != (old.n_q, old.card):
            raise SystemExit(
                f"{file}: n_q {cfg.n_q} x {cfg.bins} bins, the model wants {old.n_q} x {old.card}"
            )
        codec = StemCodec(cfg)
        codec.load_state_dict(weights, strict=True)
        model.codec.codecs[stem] = codec.to(model.device).eval()
    return model


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    base, _, swaps = name.partition("+")
    model = with_codecs(load(base, args.device), swaps.split("+") if swaps else [])
    if args.data is None:
        summary: dict[str, Any] = {"num_songs": 0, "duration": None, "metrics": {}, "codebooks": {}}
        summary["probes"] = probe_metrics(model, "bass") if "bass" in model.stems else None
        per_song: list[dict[str, Any]] = []
        notes: list[str] = []
    else:
        songs = find_songs(args.data, model.stems, args.num_songs)
        result = evaluate_codec(model, songs, args.duration, probes=not args.no_probes)
        summary, per_song, notes = result.summary, result.per_song, result.notes
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s", flush=True)
    return {"model": name, "summary": summary, "per_song": per_song, "notes": notes, "seconds": seconds}


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    summaries = {r["model"]: r["summary"] for r in results}
    songs = (
        f"{results[0]['summary']['num_songs']} songs x {args.duration:g} s from `{args.data}`"
        if args.data
        else "probe signals only"
    )
    lines = ["# Codec fidelity", "", f"{songs}; models: {', '.join(summaries)}.", ""]
    lines += comparison_table(summaries)
    tones = tone_table(summaries)
    if tones:
        lines += ["", "## Pure tones through the bass codec", ""] + tones
    lines += ["", METRIC_NOTE]
    for r in results:
        lines += [f"- {r['model']}: {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="synth folder of songs (none: probe signals only)")
    parser.add_argument("--num-songs", type=int, default=4, help="first N songs (default 4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each song (default 10)")
    parser.add_argument("--model", nargs="+", default=["default"], help="model folders / hub ids / default")
    parser.add_argument(
        "--codec", action="append", default=[], metavar="STEM=FILE", help="a trained codec to swap in"
    )
    parser.add_argument("--out", default="codec_fidelity", help="folder for the .json and .md")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda...")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--no-probes", action="store_true", help="skip the pure-tone and bass-line probes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(args.model) + ([f"{args.model[0]}+" + "+".join(args.codec)] if args.codec else [])
    results = [run_model(name, args) for name in names]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items()}
    (out / "codec_fidelity.json").write_text(
        json.dumps(_json_safe({"config": config, "results": results}), indent=2) + "\n"
    )
    text = markdown(results, args)
    (out / "codec_fidelity.md").write_text(text)
    print(text)
    print(f"wrote {out / 'codec_fidelity.json'} and {out / 'codec_fidelity.md'}")


if __name__ == "__main__":
    main()
