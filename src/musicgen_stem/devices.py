"""The device a model runs on: parsed and checked against this torch build, one-line errors."""

from __future__ import annotations

import torch

from .errors import MusicGenStemError

__all__ = ["available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """Device names this torch build can run on here, e.g. ['cpu', 'cuda', 'cuda:0']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a `torch.device` (None: cuda when available, else cpu); a device this torch
    cannot use (unknown name, no CUDA build, no such GPU) is refused naming the ones it can."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choices = ", ".join(available_devices())
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise MusicGenStemError(f"unknown device '{device}': this machine can use {choices}") from None
    usable = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count()),
        "mps": "mps" in available_devices(),
    }.get(dev.type, False)
    if not usable:
        raise MusicGenStemError(f"device '{device}' is not available here: this machine can use {choices}")
    return dev
