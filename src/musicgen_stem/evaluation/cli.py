"""Evaluate a model on held-out songs: editing coherence (rhythm/harmony of regenerated stems against
the kept ones, with ground-truth and shuffled baselines), codec fidelity per stem, Fréchet
distances of generated audio to the songs, and text control (tempo, key, pitch content and
instruments of songs generated from prompts). Writes report.json, report.md and PNG plots.

Example: musicgen-stem evaluate --model runs/mini --data data/heldout --out report --regenerate bass
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import MusicGenStemError

__all__ = ["TASKS", "add_arguments", "run"]

TASKS = ("edit", "codec", "generate", "text", "notes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `musicgen-stem evaluate`."""
    parser.add_argument("--model", default=None, help="model folder or hub id (default: the shipped model)")
    parser.add_argument("--data", required=True, help="a song folder or a folder of song folders (stem wavs)")
    parser.add_argument("--out", required=True, help="report folder to create")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="what to evaluate")
    parser.add_argument(
        "--prompts",
        default=None,
        help='text task: JSON lines {"prompt", "tempo", "key", "program"} (default: the songs\' captions)',
    )
    parser.add_argument("--num-songs", type=int, default=None, help="use only the first N songs")
    parser.add_argument(
        "--regenerate", nargs="+", default=["bass"], help="stems to regenerate in the editing task"
    )
    parser.add_argument(
        "--edit-prompts",
        choices=("captions", "no-tempo", "none"),
        default="captions",
        help="editing task: each song's caption, the caption without its tempo, or no description",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of song i is SEED + i (default 0)")
    parser.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature (default: the model's)"
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample among the k likeliest (default: the model's)"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus sampling, overrides top-k (0: off; default: the model's)",
    )
    parser.add_argument(
        "--edit-chords",
        choices=("estimated", "truth", "none"),
        default="estimated",
        help="editing task, models that read chords: the chords read from the kept stems, the songs' "
        "true chords (meta.json), or none",
    )
    parser.add_argument("--cfg", type=float, default=None, help="guidance coefficient (default: the model's)")
    parser.add_argument(
        "--chord-guide", type=float, default=None, help="chord guidance (0: off; default: the model's)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each song to use")
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    parser.add_argument(
        "--quantize",
        choices=["auto", "none", "int8", "int4"],
        default="auto",
        help="the LM's weights on CPU (auto: the model's own choice, int8 for mini)",
    )
    parser.add_argument("--force", action="store_true", help="write into an existing report folder")


def run(args: argparse.Namespace) -> int:
    """Run the chosen tasks and write the report; returns the exit code."""
    from ..api import MusicGenStem
    from ..lm.quantize import quantization_of
    from .report import write_report
    from .runner import evaluate_codec, evaluate_editing, evaluate_generation
    from .songs import find_songs
    from .text_control import evaluate_text_control, load_prompt_file
    from .transcription import evaluate_transcription

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise MusicGenStemError(f"'{out}' already exists; choose another --out or pass --force")
    if args.num_songs is not None and args.num_songs < 1:
        raise MusicGenStemError(f"--num-songs must be >= 1, got {args.num_songs}")
    if not 0 < args.duration <= 600:
        raise MusicGenStemError(f"--duration must be between 0 and 600 seconds, got {args.duration}")
    prompts = load_prompt_file(args.prompts) if args.prompts else None
    start = time.time()
    model = (
        MusicGenStem.default(device=args.device)
        if args.model is None
        else MusicGenStem.from_pretrained(args.model, device=args.device)
    )
    if args.quantize != "none":
        model.quantize(args.quantize)
    quantized = quantization_of(model.lm) or "none"
    model.set_generation_params(
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        cfg_coef=args.cfg,
        chord_guide=args.chord_guide,
    )
    songs = find_songs(args.data, model.stems, args.num_songs)
    results = []
    tasks = list(dict.fromkeys(args.tasks))
    for task in tasks:
        print(f"evaluating {task} on {len(songs)} songs ...", flush=True)
        if task == "edit":
            results.append(
                evaluate_editing(
                    model,
                    songs,
                    args.regenerate,
                    args.duration,
                    args.seed,
                    args.edit_prompts,
                    args.edit_chords,
                )
            )
        elif task == "codec":
            results.append(evaluate_codec(model, songs, args.duration))
        elif task == "notes":
            results.append(evaluate_transcription(model, songs, args.duration))
        elif task == "text":
            results.append(evaluate_text_control(model, songs, prompts, args.duration, seed=args.seed))
        else:
            results.append(evaluate_generation(model, songs, duration=args.duration, seed=args.seed))
    config = {
        "model": args.model or "default",
        "data": str(args.data),
        "tasks": tasks,
        "num_songs": len(songs),
        "regenerate": list(args.regenerate),
        "seed": args.seed,
        "sampling": model.params.to_dict(),  # what was used: the options over the model's defaults
        "quantize": quantized,
        "prompts": args.prompts,
        "edit_chords": args.edit_chords,
        "duration": args.duration,
    }
    path = write_report(out, results, config, force=args.force)
    print(f"wrote {path} ({time.time() - start:.1f} s)")
    return 0
