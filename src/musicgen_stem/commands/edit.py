"""`musicgen-stem edit`: regenerate some stems, keep the others exactly.

Kept material comes from a previous output folder (`--from`, its codes), from stem files (`--stem`)
or from a song separated with Demucs (`--song`); the time range from `--start/--end` or `--bars`.
Heavy modules are imported inside the functions (see `generate`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..separation_options import VOCALS
from .generate import (
    check_chords,
    check_common,
    load_model,
    print_done,
    run_meta,
    save_items,
    set_sampling,
    step_meta,
    write_audio,
)
from .options import UsageError, check_stem_names, parse_stem_files

__all__ = ["KeptInput", "cmd_edit", "edit_range", "read_inputs"]


def edit_range(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """--start/--end seconds, or --bars A-B at --bpm (1-based, inclusive bars)."""
    if args.bars is None:
        return args.start, args.end
    if args.start is not None or args.end is not None:
        raise UsageError("give the range either with --start/--end or with --bars, not both")
    if args.bpm is None or not 20 <= args.bpm <= 400:
        raise UsageError("--bars needs the tempo: pass --bpm (between 20 and 400)")
    if not 1 <= args.beats_per_bar <= 32:
        raise UsageError(f"--beats-per-bar must be between 1 and 32, got {args.beats_per_bar}")
    first, sep, last = args.bars.partition("-")
    try:
        a, b = int(first), int(last if sep else first)
    except ValueError:
        raise UsageError(f"--bars expects A-B (e.g. 9-16), got '{args.bars}'") from None
    if not 1 <= a <= b:
        raise UsageError(f"--bars expects 1 <= A <= B, got '{args.bars}'")
    bar = args.beats_per_bar * 60.0 / args.bpm
    return (a - 1) * bar, b * bar


@dataclass
class KeptInput:
    """The kept material, decoded and checked before the model loads (a bad file costs no load)."""

    codes: Any = None  # np.ndarray [B, K, T] of --from
    song: Any = None  # torch.Tensor [C, T] of --song
    separator: Any = None  # the Demucs model that will separate --song
    kept: dict[str, Any] = field(default_factory=dict)  # name -> Samples of --stem
    sample_rate: int = 0


def read_inputs(args: argparse.Namespace, stem_files: dict[str, Path]) -> KeptInput:
    """Read --from's codes, or decode --song (length from its header first; its separator loaded)
    or the --stem files."""
    from ..api import MAX_SECONDS

    if args.from_dir is not None:
        from ..outputs import read_stems_folder

        return KeptInput(codes=read_stems_folder(args.from_dir).codes)
    if args.song is not None:
        from ..audio import duration_seconds, load_audio
        from ..song import check_song

        if duration_seconds(args.song) > MAX_SECONDS:  # before decoding hours of audio
            raise UsageError(f"--song '{args.song}' is longer than {MAX_SECONDS:g} s; trim it first")
        from ..separation import load_separator

        wav, sr = load_audio(args.song)
        check_song(wav, sr)
        separator = load_separator(args.separator, device=args.device)
        return KeptInput(song=wav, separator=separator, sample_rate=sr)
    from ..samples import read_kept
    from ..song import check_audio

    kept, sr = read_kept(stem_files, max_seconds=MAX_SECONDS)
    check_audio(sr, max(s.frames for s in kept.values()), "the stem audio")
    return KeptInput(kept=kept, sample_rate=sr)


def cmd_edit(args: argparse.Namespace) -> int:
    """`musicgen-stem edit`: checks and inputs first, then the model, then an edit of codes (--from)
    or of audio (`_edit_audio`)."""
    check_common(args)
    if args.text and args.text_pos:
        raise UsageError("give the description once: as TEXT or with --text, not both")
    text = args.text or args.text_pos
    given = [
        name for name, v in (("--from", args.from_dir), ("--stem", args.stem), ("--song", args.song)) if v
    ]
    if len(given) > 1:
        raise UsageError(f"give the kept material one way only, not with {' and '.join(given)}")
    if not given:
        raise UsageError(
            "nothing to keep: give --song SONG, --stem NAME=FILE or a previous output with --from"
        )
    if args.song is not None and Path(args.out).resolve() == Path(args.song).resolve():
        raise UsageError("--out must be a new folder, not the song itself")
    start_s, end_s = edit_range(args)
    check_chords(args)
    stem_files = parse_stem_files(args.stem)
    if args.from_dir is None and args.duration is not None:
        raise UsageError("--duration applies to --from edits; song and stem edits keep the input's length")
    both = sorted(set(stem_files) & set(args.regenerate))
    if both:
        raise UsageError(f"stem(s) {both} are both given with --stem and asked to be regenerated")
    names = {"--regenerate": args.regenerate, "--stem": [n for n in stem_files if n != VOCALS]}
    check_stem_names(args.model, names)
    given_input = read_inputs(args, stem_files)
    model = load_model(args)
    layout = model.layout
    for name in list(args.regenerate) + [n for n in stem_files if n != VOCALS]:
        if name not in layout.stems:
            hint = "; put the description before --regenerate or pass it with --text" if " " in name else ""
            raise UsageError(f"unknown stem '{name}': this model's stems are {', '.join(layout.stems)}{hint}")
    set_sampling(model, args)
    began = time.time()
    meta: dict[str, Any] = {
        "task": "edit",
        "prompt": text,
        "regenerate": layout.check_stems(args.regenerate),
        "range": [start_s, end_s],
    }
    from ..conditioning.attributes import with_tempo

    if with_tempo(text, args.bpm) != text:
        text = with_tempo(text, args.bpm)
        meta["model_prompt"] = text  # what the model read: the prompt with --bpm's tempo
    if args.from_dir is None:
        return _edit_audio(args, model, text, given_input, stem_files, start_s, end_s, meta, began)
    import torch

    codes = torch.from_numpy(given_input.codes)
    meta["kept_from"] = str(args.from_dir)
    audio = model.regenerate_range(
        codes,
        args.regenerate,
        [text] * args.batch,
        progress=not args.quiet,
        start=start_s,
        end=end_s,
        seed=args.seed,
        duration=args.duration,
        chords=args.chords,
    )
    meta |= step_meta(audio)
    if "model_descriptions" in audio.params:  # no tempo named: the kept stems' was added
        meta["model_prompt"] = audio.params["model_descriptions"][0]
        _say_tempo(meta["model_prompt"], args.quiet)
    out = write_audio(args, model, audio, meta)
    print_done(out, audio, began)
    return 0


def _edit_audio(
    args: argparse.Namespace,
    model: Any,
    text: str | None,
    given: KeptInput,
    stem_files: dict[str, Path],
    start_s: float | None,
    end_s: float | None,
    meta: dict[str, Any],
    began: float,
) -> int:
    """Edits of real audio (a song, or stem files): kept stems and vocals come back untouched."""
    from ..export import file_sha256
    from ..samples import Samples
    from ..song import edit_stems

    sr = given.sample_rate
    if args.song is not None:
        from ..separation import separate

        sources = separate(given.separator, given.song, sr, progress=not args.quiet)
        kept = {n: Samples.from_tensor(w, sr) for n, w in sources.items() if n not in args.regenerate}
        meta.update(song=str(args.song), song_sha256=file_sha256(args.song), separator=str(args.separator))
    else:
        kept = given.kept
        sources = {n: s.to_tensor() for n, s in kept.items()}
        meta["kept_from"] = {n: str(p) for n, p in stem_files.items()}
    edits = []
    for i in range(args.batch):
        seed = None if args.seed is None else args.seed + i
        edits.append(
            edit_stems(
                model,
                sources,
                sr,
                args.regenerate,
                [text],
                start=start_s,
                end=end_s,
                seed=seed,
                progress=not args.quiet,
                chords=args.chords,
            )
        )
    common = run_meta(model, meta)
    if "model_prompt" in edits[0].info:
        _say_tempo(edits[0].info["model_prompt"], args.quiet)
    items = [(e.stems, e.codes, {**common, **_read(e.info), "seed": e.seed}) for e in edits]
    out = save_items(args, items, sr, kept, edits[0].rates)  # new stems: at least the model's rate
    first = next(iter(edits[0].stems))
    length = edits[0].stems[first].shape[-1] / edits[0].rate(first)
    print(f"wrote {out} ({len(edits)} x {length:.2f} s, seed {edits[0].seed}, {time.time() - began:.1f} s)")
    return 0


def _read(info: dict[str, Any]) -> dict[str, Any]:
    """The prompt as the model read it, where the edit added the kept stems' tempo, and the
    per-step conditions it read (chords, beat grid)."""
    out = {"model_prompt": info["model_prompt"]} if "model_prompt" in info else {}
    return out | info.get("step_conditions", {})


def _say_tempo(model_prompt: str, quiet: bool) -> None:
    """Tell the user which tempo the model read when their description named none."""
    from ..conditioning.attributes import parse_attributes

    tempo = parse_attributes(model_prompt).tempo
    if tempo is not None and not quiet:
        print(f"no tempo named: the kept stems' ({tempo:g} bpm) was read; pass --bpm to set it")
