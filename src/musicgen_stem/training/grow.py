"""Grow a model by codebooks: a stem codec with more of them, and its LM with their streams.

`train-codec --keep-codebooks N` grows a stem codec (a larger latent, more codebooks) whose first
N codebooks give the codes they gave before. `grow_model` puts such a codec into a model: the
layout gets the stem's new streams (the stem's i-th codebook delayed by i steps, as in MusicGen's
delay pattern), the LM keeps every weight of the streams it had, and the new streams' embeddings
and output heads start at zero. Until it is fine-tuned on tokens of the grown codec (`prepare`,
then `train-lm --model NEW`), the LM gives the old streams the probabilities it gave them (the
random draws differ, as with another seed) and samples the new ones uniformly: the fine-tune only
has to learn them, not the music again (`train-lm --train-heads` learns them alone, and
`--train-embeddings` teaches the LM to read their history).

    python -m musicgen_stem.training.grow MODEL --codec bass=runs/grow_bass/codec_bass.safetensors \\
        --out NEW_MODEL
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import torch

from ..codec import MultiStemCodec, StemCodec
from ..errors import MusicGenStemError
from ..layout import StemLayout
from ..lm import StemLM
from ..modeldir import ModelParts

__all__ = ["grow_layout", "grow_model", "main"]


def grow_layout(layout: StemLayout, stem: str, n_q: int) -> tuple[StemLayout, list[int | None]]:
    """`layout` with `n_q` codebooks for `stem` (more than it has) -> (new layout, for each new
    stream the old stream it continues, or None for a new codebook)."""
    i = layout.stems.index(stem)
    have = layout.codebooks[i]
    if n_q <= have:
        raise MusicGenStemError(f"the {stem} codec has {n_q} codebooks and the model {have}: nothing to grow")
    codebooks = list(layout.codebooks)
    codebooks[i] = n_q
    start = sum(layout.codebooks[:i])
    old = list(range(layout.num_streams))
    source: list[int | None] = old[: start + have] + [None] * (n_q - have) + old[start + have :]
    delays = (
        list(layout.delays[: start + have]) + list(range(have, n_q)) + list(layout.delays[start + have :])
    )
    new = dataclasses.replace(layout, codebooks=tuple(codebooks), delays=tuple(delays))
    return new, source


def grow_model(parts: ModelParts, stem: str, codec: StemCodec) -> ModelParts:
    """`parts` with `codec` (a grown `stem` codec, same rate and bins) and the LM grown to its
    streams: old weights kept, new streams' embeddings and heads zero. Silence tokens are
    recomputed from the codecs."""
    cfg = parts.config
    if stem not in cfg.layout.stems:
        raise MusicGenStemError(f"stem '{stem}' is not in the model's layout {list(cfg.layout.stems)}")
    old_codec = parts.codec.codecs[stem]
    if (codec.card, codec.sample_rate, codec.hop_length) != (
        old_codec.card,
        old_codec.sample_rate,
        old_codec.hop_length,
    ):
        raise MusicGenStemError(
            f"the grown {stem} codec has {codec.card} bins at {codec.sample_rate} Hz, hop "
            f"{codec.hop_length}; the model's has {old_codec.card} at {old_codec.sample_rate} Hz, "
            f"hop {old_codec.hop_length}: grow the model's own codec (train-codec --keep-codebooks)"
        )
    layout, source = grow_layout(cfg.layout, stem, codec.n_q)
    lm = StemLM(layout, parts.lm.cfg)
    old_state = parts.lm.state_dict()
    state = {k: v for k, v in old_state.items() if not k.startswith(("emb.", "linears."))}
    for k, s in enumerate(source):
        for name in ("emb", "linears"):
            for key, value in getattr(lm, name)[k].state_dict().items():
                old = None if s is None else old_state[f"{name}.{s}.{key}"]
                state[f"{name}.{k}.{key}"] = torch.zeros_like(value) if old is None else old
    lm.load_state_dict(state, strict=True)
    codecs = {**cfg.codecs, stem: codec.cfg}
    config = dataclasses.replace(cfg, layout=layout, codecs=codecs, silence_tokens=None)
    multi = MultiStemCodec(layout, codecs)
    for name, c in parts.codec.codecs.items():
        multi.codecs[name].load_state_dict((codec if name == stem else c).state_dict())
    return ModelParts(config, lm.eval(), parts.text, multi.eval(), parts.steps)


def main(argv: Sequence[str] | None = None) -> int:
    from ..modeldir import load_model, read_trained_codec, save_model

    p = argparse.ArgumentParser(
        prog="python -m musicgen_stem.training.grow", description=__doc__.split("\n")[0]
    )
    p.add_argument("model", help="model folder to grow")
    p.add_argument(
        "--codec", required=True, metavar="STEM=FILE", help="the grown codec (train-codec's export)"
    )
    p.add_argument("--out", required=True, help="new model folder")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = p.parse_args(argv)
    stem, _, file = args.codec.partition("=")
    try:
        if not file:
            raise MusicGenStemError(f"--codec wants STEM=FILE, got '{args.codec}'")
        parts = load_model(args.model)
        codec_cfg, weights, _ = read_trained_codec(file)
        codec = StemCodec(codec_cfg)
        codec.load_state_dict(weights, strict=True)
        grown = grow_model(parts, stem, codec.eval())
        save_model(grown, args.out, force=args.force)
    except MusicGenStemError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    layout = grown.config.layout
    streams = f"{layout.num_streams} streams, delays {list(layout.delays)}"
    print(f"grew {stem} to {codec.n_q} codebooks ({streams}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
