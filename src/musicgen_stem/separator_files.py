"""Demucs weights files, read without running code from them: `musicgen-stem convert-separator`.

A Demucs `.th` file is a pickle of {klass, args, kwargs, state}; unpickling it as Demucs does
(`torch.load(weights_only=False)`) runs whatever code the file names. Here it is read with
`torch.load(weights_only=True)`: only tensors, plain containers and `fractions.Fraction` are
built, and the model class is read as a name (`ClassName`) that must be one of `MODEL_CLASSES`;
a file asking for anything else is refused with a clear message and nothing in it runs. The
`.safetensors` form (Demucs' hub format: tensors plus the class and its arguments as JSON) is read
the same way; `convert` writes it, once, from a `.th` file.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelError, OutputExistsError, load_failure
from .safeio import fsync_dir, held_signals, io_reason
from .separation_options import add_convert_arguments as add_arguments

__all__ = ["MODEL_CLASSES", "ClassName", "add_arguments", "convert", "load_th", "load_weights", "run"]

#: The Demucs model classes a weights file may name; nothing else is ever built from a file.
MODEL_CLASSES: tuple[str, ...] = (
    "demucs.htdemucs.HTDemucs",
    "demucs.hdemucs.HDemucs",
    "demucs.demucs.Demucs",
)


@dataclass(frozen=True)
class ClassName:
    """Stands for a model class while a `.th` file is unpickled: it names the class, builds nothing."""

    path: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(f"the file tries to build {self.path} while it is read")


def _model_class(path: Any, file: Path) -> type[nn.Module]:
    name = path.path if isinstance(path, ClassName) else path
    if name not in MODEL_CLASSES:
        raise ModelError(
            f"separator weights '{file}' name the class {str(name)[:80]!r}, which is not a Demucs model "
            f"({', '.join(c.rsplit('.', 1)[1] for c in MODEL_CLASSES)}); refusing to load it"
        )
    module, cls = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def _build(file: Path, klass: type[nn.Module], args: Any, kwargs: Any, state: Any) -> nn.Module:
    """The model `klass(*args, **kwargs)` with `state` loaded (strict); ModelError when it does not fit."""
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise ModelError(f"separator weights '{file}' are not a Demucs model package (args, kwargs, state)")
    if state.get("__quantized") or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"separator weights '{file}' are quantized (diffq); use an unquantized model")
    accepted = inspect.signature(klass).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}  # as Demucs does: drop unknown options
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = klass(*args, **kwargs)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(
            f"separator weights '{file}' do not fit their model ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    return model


def load_th(file: str | os.PathLike[str]) -> nn.Module:
    """A Demucs model from a `.th` file, unpickled with `weights_only=True` (see module docstring)."""
    file = Path(file)
    names = [(ClassName(c), c) for c in MODEL_CLASSES]
    try:
        with torch.serialization.safe_globals([*names, Fraction]):
            pkg = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, code in the pickle: one line, nothing run
        reason = load_failure(exc)
        if reason.startswith("the file holds code"):
            raise ModelError(
                f"refusing to load separator weights '{file}': {reason}; use a Demucs .th or "
                ".safetensors file from a trusted source"
            ) from None
        raise ModelError(
            f"cannot load separator weights '{file}' ({reason}); "
            "give a Demucs .th (or .safetensors) file such as 955717e8-8726e21a.th"
        ) from None
    if not isinstance(pkg, dict) or "klass" not in pkg:
        raise ModelError(f"separator weights '{file}' are not a Demucs model package; give a Demucs .th file")
    klass = _model_class(pkg["klass"], file)
    return _build(file, klass, pkg.get("args", ()), pkg.get("kwargs", {}), pkg.get("state"))


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(int(value["numerator"]), int(value["denominator"]))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ModelError(f"cannot store a model argument of type {type(value).__name__} in safetensors")


def load_safetensors(file: str | os.PathLike[str]) -> nn.Module:
    """A Demucs model from a `.safetensors` file (Demucs' hub format, or `convert`'s output)."""
    from safetensors import SafetensorError, safe_open

    file = Path(file)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        if "structure" in meta:
            raise ModelError(f"separator weights '{file}' are quantized (diffq); use an unquantized model")
        klass = _model_class(meta.get("klass"), file)
        args, kwargs = _from_json(json.loads(meta["args"])), _from_json(json.loads(meta["kwargs"]))
    except ModelError:
        raise
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RecursionError) as exc:
        raise ModelError(
            f"cannot load separator weights '{file}' ({type(exc).__name__}: {str(exc).strip()[:120]})"
        ) from None
    return _build(file, klass, args, kwargs, state)


def load_weights(file: str | os.PathLike[str]) -> nn.Module:
    """One Demucs model from a `.th` or `.safetensors` file, without running code from it."""
    file = Path(file)
    return load_safetensors(file) if file.suffix == ".safetensors" else load_th(file)


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], force: bool = False) -> Path:
    """Write the model of `src` (.th or .safetensors) to `dst` as .safetensors, atomically."""
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ModelError(f"'{dst}': the converted file must end in .safetensors")
    if dst.exists() and not force:
        raise OutputExistsError(f"'{dst}' already exists; choose another name or pass --force")
    model = load_weights(src)
    args, kwargs = getattr(model, "_init_args_kwargs", ((), {}))
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    meta = {"klass": cls, "args": json.dumps(_to_json(args)), "kwargs": json.dumps(_to_json(kwargs))}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp: str | None = None
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        save_file(state, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with held_signals():
            os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except Exception as exc:  # OSError, SafetensorError (a full disk, a read-only folder)
        reason = io_reason(exc)
        raise ModelError(f"cannot write '{dst}': {reason}; check free space and permissions") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return dst


def run(args: argparse.Namespace) -> int:
    """Run `musicgen-stem convert-separator`; returns the exit code."""
    src = Path(args.src)
    if not src.is_file():
        raise ModelError(f"separator weights '{src}' not found; check the path")
    out = convert(src, args.dst, force=args.force)
    print(f"{src} -> {out}")
    return 0
