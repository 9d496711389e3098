"""Command-line helpers shared by `musicgen-stem` and the modules that bring their own commands.

The model options (`add_model_options`, `load_model_from_args`), NAME=FILE options, the one-line
argument parser and `module_main` (a module command run on its own, e.g. under torchrun). This
module imports no command, so the app, trainers, command modules and `cli.py` import it without a cycle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import MusicGenStemError

__all__ = [
    "FORMATTER",
    "DefaultsFormatter",
    "ModuleFormatter",
    "OneLineParser",
    "UsageError",
    "add_model_options",
    "load_model_from_args",
    "module_main",
    "parse_stem_files",
    "prepare_model",
]


class DefaultsFormatter(argparse.HelpFormatter):
    """Each option's default shown once: not when its help already names one, nor when there is
    nothing to show (None, False, a suppressed default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default == []
        if "default" in text.lower() or nothing:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


#: Help formatter of the built-in commands.
FORMATTER = DefaultsFormatter


class ModuleFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown once, and a module docstring used as description kept as written."""


class UsageError(MusicGenStemError):
    """Bad command-line arguments."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line (`prog: error: ...`), like ours."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]} (see {self.prog} --help)\n")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model and the options that say how to run it (device, precision, quantization, compile)."""
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="model folder, hub id or released checkpoint (default: the shipped model)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--quantize",
        choices=["auto", "none", "int8", "int4"],
        default="auto",
        help="LM weights for CPU decoding: int8 / int4 quantized (faster; int4 half of int8's "
        "memory, less accurate), none (float32), auto (the model's own choice: int8 for the shipped "
        "mini, float32 for released models)",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        default="auto",
        help="LM precision (auto: bfloat16 on CUDA GPUs that support it, else float32; "
        "half precision is for GPUs)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="decode through torch.compile (for GPUs: CUDA graphs; compiles first, pays off on long "
        "runs; on the CPUs measured, slower than the default)",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="PATH",
        help="local T5 folder for T5-conditioned models (e.g. t5-base)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: 1 for small models such as mini, else torch's choice)",
    )


def load_model_from_args(name: str | None, args: argparse.Namespace) -> Any:
    """Model `name` (None or "": the shipped default) loaded with the options of `add_model_options`."""
    from ..api import MusicGenStem
    from ..threads import use_threads

    if not name:
        model = MusicGenStem.default(device=args.device)
    else:
        model = MusicGenStem.from_pretrained(name, device=args.device, text_encoder=args.text_encoder)
    use_threads(model, getattr(args, "threads", None))  # before quantizing: counts the float LM
    return prepare_model(model, args.dtype, args.quantize, args.compile)


def prepare_model(model: Any, dtype: str = "auto", quantize: str = "auto", compile: bool = False) -> Any:
    """Apply the model options of `add_model_options` to a loaded model ("auto" quantization gives
    way to a --dtype or --compile asked for)."""
    if quantize == "auto":
        quantize = "none" if dtype not in ("auto", "float32") or compile else "auto"
    if quantize != "none":
        if dtype not in ("auto", "float32") or compile:
            raise UsageError(f"--quantize {quantize} runs on its own: drop --dtype {dtype} / --compile")
        model.quantize(quantize)
    else:
        model.set_dtype(dtype)
    return model.compile() if compile else model


def parse_stem_files(specs: list[str], option: str = "--stem") -> dict[str, Path]:
    """NAME=FILE values of a repeatable `option` -> {name: path}; each name once."""
    stems: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"{option} expects NAME=FILE (e.g. drums=loop.wav), got '{spec}'")
        if name in stems:
            raise UsageError(f"{option} {name} given twice")
        stems[name] = Path(path)
    return stems


def module_main(module: Any, prog: str, argv: Sequence[str] | None = None) -> int:
    """Run one module command on its own (`python -m musicgen_stem.training.lm`, e.g. under
    torchrun), with the same options and one-line errors as `musicgen-stem <command>`."""
    parser = OneLineParser(prog=prog, description=module.__doc__, formatter_class=ModuleFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return module.run(args)
    except MusicGenStemError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def check_stem_names(model: str | None, names: dict[str, Sequence[str]]) -> None:
    """Stem names given with options {option: names} checked against the model's stems, read from
    its config.json before the model loads (a model whose config is elsewhere, a hub id, is
    checked once loaded). The released format's stems are those of `layout.LAYOUT_6CB`."""
    import json

    from ..layout import LAYOUT_6CB

    if not model:
        path: Path | None = Path(__file__).resolve().parent.parent / "models" / "mini"
    else:
        path = Path(model) if Path(model).is_dir() else None
    if path is None:
        return
    try:
        stems = tuple(json.loads((path / "config.json").read_text(encoding="utf-8"))["layout"]["stems"])
    except (OSError, ValueError, KeyError, TypeError):
        stems = LAYOUT_6CB.stems if (path / "state_dict.bin").is_file() else ()
    for option, given in names.items():
        for name in given:
            if stems and name not in stems:
                hint = (
                    "; put the description before --regenerate or pass it with --text" if " " in name else ""
                )
                raise UsageError(
                    f"unknown stem '{name}' ({option}): the model's stems are {', '.join(stems)}{hint}"
                )
