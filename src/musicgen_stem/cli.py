"""The `musicgen-stem` command line: its parser, and the dispatch to each command.

The built-in commands live in `commands/` (generate, edit, model_files, synth), the module commands
in their own modules (`MODULE_COMMANDS`). User mistakes print one line `musicgen-stem: error: ...`
and exit with code 2. The shared option helpers live in `commands.options` (re-exported here);
nothing imports this module back.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .commands.edit import cmd_edit
from .commands.generate import cmd_generate
from .commands.jam import add_arguments as add_jam_arguments
from .commands.jam import cmd_jam
from .commands.model_files import cmd_convert, cmd_info, cmd_init
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
from .commands.synth import cmd_synth
from .commands.transcribe import add_arguments as add_transcribe_arguments
from .commands.transcribe import cmd_transcribe
from .errors import MusicGenStemError
from .safeio import Interrupted, io_reason

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


def _add_chords(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chords",
        default=None,
        metavar="PROGRESSION",
        help="chords the new stems follow, e.g. 'Am F C G' (a chord a bar, looped) or 'Am:2 F:2' "
        "(beats), at the description's tempo (or --bpm; in an edit, else the kept stems'); qualities m, "
        "7, maj7, m7, dim, m7b5, aug, sus2, sus4, 6, 9, add9 and slash basses (C/E). Default model only; "
        "an edit without it reads the kept stems' chords",
    )


def _add_sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--seed", type=int, default=None, help="random seed (default: drawn at random, saved in meta.json)"
    )
    g.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="sample among the k most likely tokens (0: off; default: the model's)",
    )
    g.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus sampling threshold (0: off; overrides top-k; default: the model's)",
    )
    g.add_argument(
        "--temperature", type=float, default=None, help="softmax temperature (default: the model's)"
    )
    g.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="classifier-free guidance coefficient (1: no guidance; default: the model's)",
    )
    g.add_argument("--greedy", action="store_true", help="always take the most likely token (no sampling)")
    g.add_argument(
        "--chord-guide",
        type=float,
        default=None,
        help="how firmly regenerated stems keep to the chords (0: off; models whose codes name pitches; "
        "default: the model's)",
    )


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
    p.add_argument(
        "--bpm", type=float, default=None, help="the tempo, when the description names none (for --chords)"
    )
    _add_chords(p)
    g = p.add_argument_group("a part to play under (any model)")
    g.add_argument(
        "--render-chords",
        action="store_true",
        help="play the --chords progression with FluidSynth as the kept --midi-stem (instrument from the "
        "description or --program); the model writes the other stems under it",
    )
    g.add_argument(
        "--midi",
        default=None,
        metavar="FILE",
        help="a MIDI part rendered the same way (and, for the default model, read as chords)",
    )
    g.add_argument(
        "--midi-stem", default=None, metavar="STEM", help="the stem the rendered part is (default: other)"
    )
    g.add_argument("--program", type=int, default=None, help="General MIDI program that plays the part")
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
    g.add_argument(
        "--bpm",
        type=float,
        default=None,
        help="the song's tempo: for --bars, and read by the model (its tempo token and beat grid) "
        "when the description names none",
    )
    g.add_argument("--beats-per-bar", type=int, default=4, help="beats per bar for --bars")
    p.add_argument(
        "--duration",
        "-d",
        type=float,
        default=None,
        help="seconds to produce (default: the kept material's length)",
    )
    p.add_argument("--batch", "-n", type=int, default=1, help="number of variations")
    _add_chords(p)
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
        help="released checkpoint -> model folder (optionally int8/int4)",
        description="Convert a checkpoint in the released format (a folder holding state_dict.bin and "
        "compression_state_dict_{bass,drums,other}.bin, or a hub id such as facebook/musicgen-stem-6cb) "
        "into a model folder of ours (config.json + safetensors): faster, pickle-free loading, same outputs. "
        "With --quantize, the LM is stored as int8 or int4 weights (a model folder of ours is taken too): "
        "the folder loads quantized, smaller and faster to load than quantizing at every start.",
        formatter_class=FORMATTER,
    )
    p.add_argument("src", help="reference-format folder, model folder of ours, or hub id")
    p.add_argument("dst", help="model folder to write")
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="PATH",
        help="local T5 folder to record instead of the config's",
    )
    p.add_argument(
        "--quantize",
        choices=("none", "int8", "int4"),
        default="none",
        help="store the LM as int8 or int4 weights for CPU decoding (see generate --quantize)",
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

    p = sub.add_parser(
        "transcribe",
        help="stems -> MIDI",
        description="Write the notes of an output folder's stems (or of one audio file) as a type-1 MIDI "
        "file: a track per stem (bass, drums on channel 10 as kick/snare/hi-hat, other as notes), the "
        "tempo and, for an output folder, the chord chart the model read.",
        formatter_class=FORMATTER,
    )
    add_transcribe_arguments(p)

    p = sub.add_parser(
        "jam",
        help="a live accompanist over a loop",
        description="A loop of kept stems plays over and over, and for every cycle the model writes a "
        "new take of the other stems, tempo-locked to the loop, continuing from the last one; generated "
        "while the previous cycle plays. --realtime plays on the clock (sound card, --pcm to stdout); "
        "--out writes the whole session (every stem, the mix, stems.mid, jam.json). While it plays, "
        "type commands on stdin, one a line: prompt TEXT, regenerate STEM..., vary 0..1, mute STEM..., "
        "unmute, solo STEM..., quit.",
        formatter_class=FORMATTER,
    )
    add_jam_arguments(p)

    for name, (path, summary) in MODULE_COMMANDS.items():
        if command in (name, ALL):
            module, function = OPTIONS_MODULES.get(name, (path, "add_arguments"))
            options = importlib.import_module(module, __package__)
            doc = _docstring(path) if name in OPTIONS_MODULES else options.__doc__
            p = sub.add_parser(name, help=summary, description=doc, formatter_class=ModuleFormatter)
            getattr(options, function)(p)
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


#: Where each module command's options live: (module, function), a module that imports no torch, so
#: that `--help` answers at once (the help text is still the docstring of the command's module, read
#: without importing it).
OPTIONS_MODULES = {
    "app": (".app.options", "add_arguments"),
    "separate": (".separation_options", "add_arguments"),
    "convert-separator": (".separation_options", "add_convert_arguments"),
    "prepare": (".data.prepare.options", "add_arguments"),
    "train-codec": (".training.codec_config", "add_arguments"),
    "train-lm": (".training.lm_config", "add_arguments"),
}


def _docstring(path: str) -> str | None:
    """The docstring of module `path` (relative to this package), read from its source."""
    spec = importlib.util.find_spec(path, __package__)
    if spec is None or spec.origin is None:
        return None
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8")), clean=False)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in argv (its first word not starting with '-'), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


# ---------------------------------------------------------------------------------------- dispatch

#: Built-in commands: their code lives in `commands/` (heavy imports inside the functions).
COMMANDS = {
    "generate": cmd_generate,
    "edit": cmd_edit,
    "init": cmd_init,
    "convert": cmd_convert,
    "synth": cmd_synth,
    "transcribe": cmd_transcribe,
    "jam": cmd_jam,
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
