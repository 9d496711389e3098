"""`musicgen-stem generate` (text -> stems), and what `edit` shares with it: the checks made before
the model loads, the sampling settings and the writing of output folders.

Heavy modules (torch, the model, audio writing) are imported inside the functions: the command
line's `--help` must not wait for them.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..inputs import check_prompt, check_seed
from ..safeio import check_writable, io_reason
from .options import UsageError, check_stem_names, load_model_from_args

__all__ = [
    "check_common",
    "check_out",
    "cmd_generate",
    "load_model",
    "print_done",
    "run_meta",
    "save_items",
    "set_sampling",
    "write_audio",
]


def load_model(args: argparse.Namespace) -> Any:
    """The model of --model, with the model options of `add_model_options`."""
    return load_model_from_args(args.model, args)


def set_sampling(model: Any, args: argparse.Namespace) -> None:
    """The sampling options (--greedy, --top-k, --top-p, --temperature, --cfg, --chord-guide) set on
    `model`."""
    model.set_generation_params(
        use_sampling=False if args.greedy else None,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        cfg_coef=args.cfg,
        chord_guide=getattr(args, "chord_guide", None),
    )


def check_common(args: argparse.Namespace) -> None:
    """The checks of generate and edit made before the model loads: prompt, seed, batch, sampling
    settings, and an --out folder that can be written (not a file, empty or --force, room on disk)."""
    check_prompt(getattr(args, "text", None) or getattr(args, "text_pos", None))
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if args.batch < 1 or args.batch > 64:
        raise UsageError(f"--batch must be between 1 and 64, got {args.batch}")
    guide = getattr(args, "chord_guide", None)
    for option, value in (("--temperature", args.temperature), ("--cfg", args.cfg), ("--chord-guide", guide)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a finite number >= 0, got {value}")
    if args.top_p is not None and not 0 <= args.top_p <= 1:
        raise UsageError(f"--top-p must be between 0 (off) and 1, got {args.top_p}")
    if args.top_k is not None and args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0: off), got {args.top_k}")
    seconds = getattr(args, "duration", None) or 30.0  # an edit's length is known only later
    seconds = seconds if math.isfinite(seconds) and 0 < seconds <= 600 else 30.0  # bad ones refused later
    check_out(args.out, args.force, int(seconds * 48000 * 2 * 4 * 5 * args.batch))  # stereo float: a bound


def check_out(out_dir: str, force: bool, need_bytes: int) -> None:
    """--out checked before the model loads: a folder (not a file), empty or `force`, and a disk
    that takes `need_bytes` (read-only or full disks are found now, not after generating)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"output folder '{out}' already exists and is not empty; choose another --out or pass --force"
        )
    try:
        check_writable(out, need_bytes)
    except OSError as e:
        raise UsageError(f"--out '{out}': {io_reason(e)}; choose another folder") from None


def run_meta(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """What every output folder records about the run: the task's facts plus model and settings."""
    params = model.params.to_dict()
    return {**meta, "model": model.name, "lm": model.lm_precision, "params": params, "version": __version__}


def save_items(
    args: argparse.Namespace,
    items: list[tuple[Any, Any, dict[str, Any]]],
    sample_rate: int,
    kept: dict[str, Any] | None = None,
    rates: dict[str, int] | None = None,
) -> Path:
    """One output folder, or one var_NN subfolder per item with --batch; (stems, codes, meta) items.
    `kept`: {stem: samples.Samples} written exactly as read (the same in every item); `rates`:
    {stem: its rate} where not `sample_rate` (a kept stem's: its own)."""
    from ..outputs import StemsItem, write_batch_folders, write_stems_folder
    from ..samples import lossless_subtype

    kept = kept or {}
    if args.bits == "auto":
        subtype = lossless_subtype(kept.values()) if kept else "PCM_16"
    else:
        subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[args.bits]
    if len(items) == 1:
        stems, codes, meta = items[0]
        return write_stems_folder(
            args.out,
            stems,
            sample_rate,
            codes,
            meta,
            force=args.force,
            subtype=subtype,
            kept=kept,
            rates=rates,
        )
    batch = [StemsItem(stems, codes, meta, kept, rates or {}) for stems, codes, meta in items]
    write_batch_folders(args.out, batch, sample_rate, force=args.force, subtype=subtype)
    return Path(args.out)


def write_audio(args: argparse.Namespace, model: Any, audio: Any, meta: dict[str, Any]) -> Path:
    """A generation result (one item per variation) written to --out with the run's meta."""
    meta = {**run_meta(model, meta), "seed": audio.seed}
    items = [({s: audio[s][i] for s in audio}, audio.codes[i], meta) for i in range(audio.codes.shape[0])]
    return save_items(args, items, audio.sample_rate)


def _generate_over_part(
    args: argparse.Namespace, model: Any, text: str, start: float, part: tuple[list[Any], float] | None
) -> int:
    """Text -> stems under a rendered part: the --chords progression or the --midi file, played by
    FluidSynth as the kept `--midi-stem` (default: other); a model that reads chords reads them too."""
    import torch

    from ..conditioning.attributes import parse_attributes
    from ..conditioning.chords import parse_progression
    from ..layout import harmony_stem
    from ..notes.midi import chord_notes
    from ..song import edit_stems
    from .parts import chords_of_notes, program_for, render_part

    stem = args.midi_stem or harmony_stem(model.stems)
    if stem not in model.stems:
        raise UsageError(
            f"unknown stem '{stem}' for --midi-stem: this model's stems are {', '.join(model.stems)}"
        )
    seconds = args.duration
    if part is not None:
        notes, midi_bpm = part
        bpm = parse_attributes(text).tempo or midi_bpm
        chart = chords_of_notes(notes, bpm, seconds)
        source = {"midi": str(args.midi)}
    else:
        bpm = parse_attributes(text).tempo
        if bpm is None:
            raise UsageError("--render-chords needs the tempo: name it in the description or pass --bpm")
        chart = parse_progression(args.chords, bpm).looped(seconds)
        notes, source = chord_notes(chart), {"chords": args.chords}  # bass note and tones, held
    program = program_for(args.text, args.program)
    audio = render_part(notes, program, model.sample_rate, seconds)  # [1, T]
    reads = model.steps is not None and model.steps.chord is not None
    regenerate = [s for s in model.stems if s != stem]
    meta = {"task": "generate", "prompt": args.text, "rendered": {"stem": stem, "program": program, **source}}
    meta |= {"model_prompt": text} if text != args.text else {}
    items = []
    for i in range(args.batch):
        seed = None if args.seed is None else args.seed + i
        edit = edit_stems(
            model,
            {stem: torch.from_numpy(audio)},
            model.sample_rate,
            regenerate,
            [text],
            seed=seed,
            progress=not args.quiet,
            chords=chart if reads else None,
        )
        info = edit.info.get("step_conditions", {})
        items.append((edit.stems, edit.codes, {**run_meta(model, meta | info), "seed": edit.seed}))
    out = save_items(args, items, model.sample_rate)
    print(
        f"wrote {out} ({len(items)} x {seconds:.2f} s over the rendered {stem}, {time.time() - start:.1f} s)"
    )
    return 0


def check_chords(args: argparse.Namespace) -> None:
    """--chords and --bpm read before the model loads: a bad chord or tempo is said at once."""
    if getattr(args, "bpm", None) is not None and not 20 <= args.bpm <= 400:
        raise UsageError(f"--bpm {args.bpm:g} is out of range: give a tempo between 20 and 400")
    if getattr(args, "chords", None) is not None:
        from ..conditioning.chords import parse_progression

        parse_progression(args.chords, 120.0)  # the symbols (the tempo comes later)


def step_meta(audio: Any) -> dict[str, Any]:
    """What the model read per step, for meta.json: the chords and beat grid of the first item."""
    conds = audio.params.get("step_conditions")
    return {} if not conds else dict(conds[0])


def print_done(out: Path, audio: Any, start: float) -> None:
    """The closing line: where, how many variations of which length, seed and time taken."""
    print(
        f"wrote {out} ({audio.codes.shape[0]} x {audio.duration:.2f} s, seed {audio.seed}, "
        f"{time.time() - start:.1f} s)"
    )


def cmd_generate(args: argparse.Namespace) -> int:
    """`musicgen-stem generate`: every stem from a text description."""
    check_common(args)
    if not args.text.strip():
        raise UsageError("the description is empty; describe the music in a few words")
    check_chords(args)
    from ..conditioning.attributes import with_tempo

    text = with_tempo(args.text, args.bpm)
    if args.render_chords and args.chords is None:
        raise UsageError("--render-chords plays the progression given by --chords: add --chords")
    if args.midi is not None and (args.render_chords or args.chords is not None):
        raise UsageError("--midi brings its own harmony: leave out --chords and --render-chords")
    part = None
    if args.midi is not None:
        from .parts import read_midi_part

        part = read_midi_part(args.midi)  # refused before the model loads
    if args.midi_stem is not None:
        check_stem_names(args.model, {"--midi-stem": [args.midi_stem]})
    model = load_model(args)
    set_sampling(model, args)
    start = time.time()
    if args.render_chords or part is not None:
        return _generate_over_part(args, model, text, start, part)
    audio = model.generate(
        [text] * args.batch,
        progress=not args.quiet,
        seed=args.seed,
        duration=args.duration,
        chords=args.chords,
    )
    meta = {"task": "generate", "prompt": args.text} | ({"model_prompt": text} if text != args.text else {})
    out = write_audio(args, model, audio, meta | step_meta(audio))
    print_done(out, audio, start)
    return 0
