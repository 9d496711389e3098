"""The commands about model folders: `init` (random weights from a preset, optionally with trained
codecs), `convert` (released checkpoint -> model folder) and `info` (describe a model).

Heavy modules are imported inside the functions (see `generate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import UsageError, load_model_from_args, parse_stem_files

__all__ = ["cmd_convert", "cmd_info", "cmd_init"]


def cmd_init(args: argparse.Namespace) -> int:
    """`musicgen-stem init`: a freshly initialised model folder."""
    from ..api import MusicGenStem
    from ..modeldir import check_target, read_codec_export
    from ..presets import preset

    check_target(Path(args.dir), args.force)
    config = preset(args.preset)
    trained = {}
    for stem, file in parse_stem_files(args.codec, "--codec").items():
        config.layout.stem_index(stem)
        codec_cfg, state = read_codec_export(file)
        if codec_cfg.n_q != config.layout.codebooks[config.layout.stem_index(stem)]:
            raise UsageError(
                f"codec {file} has {codec_cfg.n_q} codebooks; the {args.preset} layout wants "
                f"{config.layout.codebooks[config.layout.stem_index(stem)]} for {stem}"
            )
        config.codecs[stem] = codec_cfg
        trained[stem] = state
    model = MusicGenStem.from_config(config, seed=args.seed, device="cpu")
    for stem, state in trained.items():
        model.codec.codecs[stem].load_state_dict(state, strict=True)
    path = model.save(args.dir, force=args.force)
    n = sum(p.numel() for p in model.lm.parameters())
    codecs = f"trained codecs for {', '.join(trained)}" if trained else "random codecs"
    print(f"wrote {path} (preset {args.preset}, LM {n / 1e6:.1f} M parameters, random LM, {codecs})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """`musicgen-stem convert`: a released checkpoint (folder or hub id), or with `--quantize` also
    a model folder of ours, written as a model folder (its LM as int8/int4 weights if asked)."""
    from ..api.loading import load_parts
    from ..lm.quantize import quantize
    from ..modeldir import check_target, save_model
    from ..reference import load_reference

    dst = Path(args.dst)
    check_target(dst, args.force)  # refuse before the slow load
    if args.quantize == "none":
        parts = load_reference(args.src, text_encoder=args.text_encoder)
    else:
        parts = load_parts(args.src, text_encoder=args.text_encoder)
        if parts.config.quantization:
            raise UsageError(f"{args.src} is {parts.config.quantization} already: convert its float folder")
        quantize(parts.lm, args.quantize)
    path = save_model(parts, dst, force=args.force)
    what = f" ({args.quantize} LM)" if args.quantize != "none" else ""
    print(f"wrote {path}{what} from {args.src}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """`musicgen-stem info`: stems, delays, LM size, text encoder and rates of a model."""
    model = load_model_from_args(args.model, args)
    cfg = model.config
    n = sum(p.numel() for p in model.lm.parameters())
    print(f"model: {model.name}")
    stems = (f"{s} ({c} codebooks)" for s, c in zip(cfg.layout.stems, cfg.layout.codebooks, strict=True))
    print(f"stems: {', '.join(stems)}")
    print(f"delays: {list(cfg.layout.delays)}  cardinality: {cfg.layout.card}")
    lm = cfg.lm
    print(f"LM: {n / 1e6:.1f} M parameters, dim {lm.dim}, {lm.num_layers} layers, {lm.num_heads} heads")
    print(f"text encoder: {cfg.text.kind} {cfg.text.name or ''}".rstrip())
    print(f"sample rate: {model.sample_rate} Hz, frame rate: {model.frame_rate:g} Hz")
    print(f"longest generation: {model.max_duration:g} s, longest edit: {model.max_edit_duration:g} s")
    return 0
