"""The `musicgen-stem` command line: generate, edit, init, info.

User mistakes print one line `musicgen-stem: error: ...` and exit with code 2. The shared option
helpers live in `commands.options` (re-exported here); nothing imports this module back.
"""

from __future__ import annotations

import argparse
import importlib
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .commands.options import (
    FORMATTER,
    ModuleFormatter,
    OneLineParser,
    UsageError,
    add_model_options,
    load_model_from_args,
    module_main,
    prepare_model,
)
from .errors import MusicGenStemError
from .inputs import check_prompt, check_seed
from .safeio import Interrupted, check_writable, io_reason

__all__ = [
    "UsageError",
    "add_model_options",
    "build_parser",
    "load_model_from_args",
    "main",
    "module_main",
    "prepare_model",
]

# --------------------------------------------------------------------------------------- options


def _add_sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--seed", type=int, default=None, help="random seed (default: drawn at random, saved in meta.json)"
    )
    g.add_argument("--top-k", type=int, default=250, help="sample among the k most likely tokens (0: off)")
    g.add_argument(
        "--top-p", type=float, default=0.0, help="nucleus sampling threshold (0: off; overrides top-k)"
    )
    g.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    g.add_argument(
        "--cfg", type=float, default=3.0, help="classifier-free guidance coefficient (1: no guidance)"
    )
    g.add_argument("--greedy", action="store_true", help="always take the most likely token (no sampling)")


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--force", action="store_true", help="replace the files of an existing output folder")
    p.add_argument(
        "--bits",
        choices=["auto", "16", "24", "float"],
        default="auto",
        help="WAV sample format of the new stems and the mix (auto: 16-bit for text and --from; for "
        "--stem/--song a format that loses nothing of the kept stems: float, or double for 32-bit or "
        "double inputs). Kept stems are always written in their own format, untouched",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


ALL = "*"  # build_parser(ALL): every command's options (imports every module command)


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The `musicgen-stem` parser. Module commands (train-codec, evaluate...) get their options only
    when `command` is theirs (or ALL): their modules import torch, which `--help` must not wait for."""
    parser = OneLineParser(
        prog="musicgen-stem",
        description="Generate and edit music as separate stems (bass, drums, other).",
        formatter_class=FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"musicgen-stem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "generate",
        help="text -> stems",
        description="Generate all stems from a text description. Writes bass.wav, drums.wav, other.wav, "
        "mix.wav, codes.npy and meta.json into --out (one var_NN subfolder per variation with --batch).",
        formatter_class=FORMATTER,
    )
    p.add_argument("text", help="description of the music, e.g. 'funky drums and slap bass at 110 bpm'")
    add_model_options(p)
    p.add_argument("--duration", "-d", type=float, default=10.0, help="seconds of audio to generate")
    p.add_argument("--batch", "-n", type=int, default=1, help="number of variations of the same prompt")
    _add_sampling(p)
    _add_output(p)

    p = sub.add_parser(
        "edit",
        help="regenerate some stems, keep the others",
        description="Regenerate the stems named by --regenerate while the other stems are kept exactly. "
        "Kept stems come from a previous output folder (--from, its codes.npy) or from audio files "
        "(--stem drums=loop.wav; any format, rate and channel count). Stems neither given nor "
        "regenerated are kept as silence. Put the description before --regenerate, or use --text.",
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "text_pos",
        nargs="?",
        default=None,
        metavar="TEXT",
        help="description of the new stems (optional: without one they follow only the kept stems)",
    )
    p.add_argument("--text", "-t", default=None, help="description of the new stems (same as TEXT)")
    add_model_options(p)
    p.add_argument("--regenerate", "-r", nargs="+", required=True, metavar="STEM", help="stems to regenerate")
    p.add_argument(
        "--from",
        dest="from_dir",
        default=None,
        metavar="OUTDIR",
        help="previous output folder holding codes.npy",
    )
    p.add_argument(
        "--stem",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="audio of a stem to keep, untouched in the output (repeatable; vocals=FILE passes through)",
    )
    p.add_argument("--song", default=None, help="a song to edit: separated with Demucs, every stem returned")
    p.add_argument(
        "--separator", default="htdemucs", help="Demucs model name or local weights file (.th) for --song"
    )
    g = p.add_argument_group("time range (default: the whole input)")
    g.add_argument("--start", type=float, default=None, help="regenerate from this time (seconds)")
    g.add_argument("--end", type=float, default=None, help="regenerate until this time (seconds)")
    g.add_argument("--bars", default=None, metavar="A-B", help="regenerate bars A to B (1-based), with --bpm")
    g.add_argument("--bpm", type=float, default=None, help="tempo for --bars")
    g.add_argument("--beats-per-bar", type=int, default=4, help="beats per bar for --bars")
    p.add_argument(
        "--duration",
        "-d",
        type=float,
        default=None,
        help="seconds to produce (default: the kept material's length)",
    )
    p.add_argument("--batch", "-n", type=int, default=1, help="number of variations")
    _add_sampling(p)
    _add_output(p)

    p = sub.add_parser(
        "init",
        help="write a freshly initialised model folder",
        description="Write a model folder with random weights from a preset (for training or tests).",
        formatter_class=FORMATTER,
    )
    p.add_argument("dir", help="model folder to create")
    p.add_argument("--preset", default="tiny", help="tiny, mini, medium-6cb or medium-7cb")
    p.add_argument(
        "--codec",
        action="append",
        default=[],
        metavar="STEM=FILE",
        help="use a trained codec (codec_<stem>.safetensors from train-codec, .json beside it); repeatable",
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--force", action="store_true", help="replace an existing model folder")

    p = sub.add_parser(
        "convert",
        help="released checkpoint -> model folder",
        description="Convert a checkpoint in the released format (a folder holding state_dict.bin and "
        "compression_state_dict_{bass,drums,other}.bin, or a hub id such as facebook/musicgen-stem-6cb) "
        "into a model folder of ours (config.json + safetensors): faster, pickle-free loading, same outputs.",
        formatter_class=FORMATTER,
    )
    p.add_argument("src", help="reference-format folder or hub id")
    p.add_argument("dst", help="model folder to write")
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="PATH",
        help="local T5 folder to record instead of the config's",
    )
    p.add_argument("--force", action="store_true", help="replace an existing model folder")

    p = sub.add_parser(
        "synth",
        help="render a synthetic multi-stem dataset",
        description="Generate songs procedurally (genres, tempi, keys, chord progressions, grooves, "
        "bass lines, GM instruments) and render each stem with FluidSynth, General MIDI soundfonts and "
        "sampled drum kits chosen per song and instrument (Debian packages fluidsynth, fluid-soundfont-gm, "
        "musescore-general-soundfont, timgm6mb-soundfont, avldrums.lv2-soundfont: any subset), then mix "
        "each stem (EQ, compression, saturation, reverb). Each song folder holds the stem WAVs, mix.wav, "
        "song.mid and meta.json (captions, beat grid, chords); metadata.jsonl lists them. "
        "Deterministic by seed; resumable.",
        formatter_class=FORMATTER,
    )
    p.add_argument("out", help="dataset folder")
    p.add_argument("--num-songs", "-n", type=int, default=100, help="number of songs")
    p.add_argument("--duration", "-d", type=float, default=30.0, help="seconds per song")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (song i uses a seed derived from it)")
    p.add_argument(
        "--soundfont", default=None, help="one .sf2/.sf3 file for every part (default: the installed ones)"
    )
    p.add_argument("--workers", type=int, default=1, help="songs rendered in parallel")
    p.add_argument("--force", action="store_true", help="re-render songs that are already complete")

    for name, (path, summary) in MODULE_COMMANDS.items():
        if command in (name, ALL):
            module = importlib.import_module(path, __package__)
            doc = module.__doc__
            p = sub.add_parser(name, help=summary, description=doc, formatter_class=ModuleFormatter)
            module.add_arguments(p)
        else:
            sub.add_parser(name, help=summary, add_help=False)

    p = sub.add_parser("info", help="describe a model", formatter_class=FORMATTER)
    add_model_options(p)
    return parser


#: Commands whose options and code live in their own module (`add_arguments`, `run`).
MODULE_COMMANDS = {
    "app": (".app", "web app: generate, edit, play (solo/mute) and download stems in the browser"),
    "evaluate": (".evaluation.cli", "score editing coherence, codec fidelity and generation statistics"),
    "export": (".export", "output folder -> DAW-ready stem pack (WAV/FLAC/MP3, 44.1/48 kHz, zip, .stem.mp4)"),
    "separate": (".separation", "split songs into bass, drums, other and vocals (Demucs)"),
    "convert-separator": (
        ".separator_files",
        "Demucs .th weights -> .safetensors (read without running code from the file)",
    ),
    "prepare": (".data.prepare", "songs or multitracks -> cached stems -> LM token dataset"),
    "train-codec": (".training.codec", "train one stem's codec (reconstruction, commitment, optional GAN)"),
    "train-lm": (".training.lm", "train or fine-tune the LM (text-to-stems + masked-stem editing)"),
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in argv (its first word not starting with '-'), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


# ---------------------------------------------------------------------------------------- commands


def _load(args: argparse.Namespace) -> Any:
    return load_model_from_args(args.model, args)


def _set_params(model: Any, args: argparse.Namespace) -> None:
    model.set_generation_params(
        use_sampling=not args.greedy,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        cfg_coef=args.cfg,
    )


def _check_common(args: argparse.Namespace) -> None:
    check_prompt(getattr(args, "text", None) or getattr(args, "text_pos", None))
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if args.batch < 1 or args.batch > 64:
        raise UsageError(f"--batch must be between 1 and 64, got {args.batch}")
    for option, value in (("--temperature", args.temperature), ("--cfg", args.cfg)):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a finite number >= 0, got {value}")
    if not 0 <= args.top_p <= 1:
        raise UsageError(f"--top-p must be between 0 (off) and 1, got {args.top_p}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0: off), got {args.top_k}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(
            f"output folder '{out}' already exists and is not empty; choose another --out or pass --force"
        )
    seconds = getattr(args, "duration", None) or 30.0  # an edit's length is known only later
    seconds = seconds if math.isfinite(seconds) and 0 < seconds <= 600 else 30.0  # bad ones refused later
    need = int(seconds * 48000 * 2 * 4 * 5 * args.batch)  # 3 stems + mix (+ vocals), stereo float: a bound
    try:  # before the model loads: a read-only or full disk is found now, not after generating
        check_writable(out, need)
    except OSError as e:
        raise UsageError(f"--out '{out}': {io_reason(e)}; choose another folder") from None


def _run_meta(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """What every output folder records about the run: the task's facts plus model and settings."""
    return {**meta, "model": model.name, "params": model.params.to_dict(), "version": __version__}


def _save(
    args: argparse.Namespace,
    items: list[tuple[Any, Any, dict[str, Any]]],
    sample_rate: int,
    kept: dict[str, Any] | None = None,
) -> Path:
    """One output folder, or one var_NN subfolder per item with --batch; (stems, codes, meta) items.
    `kept`: {stem: samples.Samples} written exactly as read (the same in every item)."""
    from .outputs import StemsItem, write_batch_folders, write_stems_folder
    from .samples import lossless_subtype

    kept = kept or {}
    if args.bits == "auto":
        subtype = lossless_subtype(kept.values()) if kept else "PCM_16"
    else:
        subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[args.bits]
    if len(items) == 1:
        stems, codes, meta = items[0]
        return write_stems_folder(
            args.out, stems, sample_rate, codes, meta, force=args.force, subtype=subtype, kept=kept
        )
    batch = [StemsItem(stems, codes, meta, kept) for stems, codes, meta in items]
    write_batch_folders(args.out, batch, sample_rate, force=args.force, subtype=subtype)
    return Path(args.out)


def _write(args: argparse.Namespace, model: Any, audio: Any, meta: dict[str, Any]) -> Path:
    meta = {**_run_meta(model, meta), "seed": audio.seed}
    items = [({s: audio[s][i] for s in audio}, audio.codes[i], meta) for i in range(audio.codes.shape[0])]
    return _save(args, items, audio.sample_rate)


def cmd_generate(args: argparse.Namespace) -> int:
    _check_common(args)
    if not args.text.strip():
        raise UsageError("the description is empty; describe the music in a few words")
    model = _load(args)
    _set_params(model, args)
    start = time.time()
    audio = model.generate(
        [args.text] * args.batch, progress=not args.quiet, seed=args.seed, duration=args.duration
    )
    out = _write(args, model, audio, {"task": "generate", "prompt": args.text})
    _done(out, audio, start)
    return 0


def _parse_stems(specs: list[str], option: str = "--stem") -> dict[str, Path]:
    stems: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"{option} expects NAME=FILE (e.g. drums=loop.wav), got '{spec}'")
        if name in stems:
            raise UsageError(f"{option} {name} given twice")
        stems[name] = Path(path)
    return stems


def _edit_range(args: argparse.Namespace) -> tuple[float | None, float | None]:
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


def cmd_edit(args: argparse.Namespace) -> int:
    from .outputs import read_stems_folder

    _check_common(args)
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
    start_s, end_s = _edit_range(args)
    stem_files = _parse_stems(args.stem)
    model = _load(args)
    layout = model.layout
    for name in list(args.regenerate) + [n for n in stem_files if n != "vocals"]:
        if name not in layout.stems:
            hint = "; put the description before --regenerate or pass it with --text" if " " in name else ""
            raise UsageError(f"unknown stem '{name}': this model's stems are {', '.join(layout.stems)}{hint}")
    both = sorted(set(stem_files) & set(args.regenerate))
    if both:
        raise UsageError(f"stem(s) {both} are both given with --stem and asked to be regenerated")
    _set_params(model, args)
    began = time.time()
    meta: dict[str, Any] = {
        "task": "edit",
        "prompt": text,
        "regenerate": layout.check_stems(args.regenerate),
        "range": [start_s, end_s],
    }
    if args.from_dir is None:
        if args.duration is not None:
            raise UsageError(
                "--duration applies to --from edits; song and stem edits keep the input's length"
            )
        return _edit_audio(args, model, text, stem_files, start_s, end_s, meta, began)
    import torch

    codes = torch.from_numpy(read_stems_folder(args.from_dir).codes)
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
    )
    out = _write(args, model, audio, meta)
    _done(out, audio, began)
    return 0


def _edit_audio(
    args: argparse.Namespace,
    model: Any,
    text: str | None,
    stem_files: dict[str, Path],
    start_s: float | None,
    end_s: float | None,
    meta: dict[str, Any],
    began: float,
) -> int:
    """Edits of real audio (a song, or stem files): kept stems and vocals come back untouched."""
    from .export import file_sha256
    from .samples import Samples, read_kept
    from .song import check_song, edit_stems

    if args.song is not None:
        from .api import MAX_SECONDS
        from .audio import duration_seconds, load_audio
        from .separation import load_separator, separate

        if duration_seconds(args.song) > MAX_SECONDS:  # before decoding hours of audio
            raise UsageError(f"--song '{args.song}' is longer than {MAX_SECONDS:g} s; trim it first")
        wav, sr = load_audio(args.song)
        check_song(wav, sr)  # before loading the separator
        separator = load_separator(args.separator, device=args.device)
        sources = separate(separator, wav, sr, progress=not args.quiet)
        kept = {n: Samples.from_tensor(w, sr) for n, w in sources.items() if n not in args.regenerate}
        meta.update(song=str(args.song), song_sha256=file_sha256(args.song), separator=str(args.separator))
    else:
        from .api import MAX_SECONDS

        kept, sr = read_kept(stem_files, max_seconds=MAX_SECONDS)
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
            )
        )
    common = _run_meta(model, meta)
    out = _save(args, [(e.stems, e.codes, {**common, "seed": e.seed}) for e in edits], sr, kept)
    length = next(iter(edits[0].stems.values())).shape[-1] / sr
    print(f"wrote {out} ({len(edits)} x {length:.2f} s, seed {edits[0].seed}, {time.time() - began:.1f} s)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from .api import MusicGenStem
    from .modeldir import check_target, read_codec_export
    from .presets import preset

    check_target(Path(args.dir), args.force)
    config = preset(args.preset)
    trained = {}
    for stem, file in _parse_stems(args.codec, "--codec").items():
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
    from .modeldir import check_target, save_model
    from .reference import load_reference

    dst = Path(args.dst)
    check_target(dst, args.force)  # refuse before the slow load
    parts = load_reference(args.src, text_encoder=args.text_encoder)
    path = save_model(parts, dst, force=args.force)
    print(f"wrote {path} from {args.src}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.synth import synth_dataset

    if args.num_songs < 1:
        raise UsageError(f"--num-songs must be >= 1, got {args.num_songs}")
    if not 0 < args.duration <= 600:
        raise UsageError(f"--duration must be between 0 and 600 seconds, got {args.duration}")
    start = time.time()
    folders = synth_dataset(
        args.out,
        args.num_songs,
        seed=args.seed,
        duration=args.duration,
        soundfont=args.soundfont,
        force=args.force,
        num_workers=max(1, args.workers),
    )
    print(f"{len(folders)} songs in {args.out} ({time.time() - start:.1f} s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = _load(args)
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


def _done(out: Path, audio: Any, start: float) -> None:
    print(
        f"wrote {out} ({audio.codes.shape[0]} x {audio.duration:.2f} s, seed {audio.seed}, "
        f"{time.time() - start:.1f} s)"
    )


COMMANDS = {
    "generate": cmd_generate,
    "edit": cmd_edit,
    "init": cmd_init,
    "convert": cmd_convert,
    "synth": cmd_synth,
    "info": cmd_info,
}


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    modules = {
        name: importlib.import_module(path, __package__).run
        for name, (path, _) in MODULE_COMMANDS.items()
        if name == args.command
    }
    main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM unwinds like Ctrl-C, so that half-written temporary folders are removed on the way out
    old_term = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
    try:
        return {**COMMANDS, **modules}[args.command](args)
    except MusicGenStemError as e:
        print(f"musicgen-stem: error: {e}", file=sys.stderr)
        return 2
    except Interrupted:
        print("musicgen-stem: terminated; nothing half-written was left behind", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("musicgen-stem: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except OSError as e:  # the system refused (full disk, read-only folder...): one line, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"musicgen-stem: error: {io_reason(e)}{where}", file=sys.stderr)
        return 1
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
