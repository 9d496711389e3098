"""musicgen-stem: multi-stem music generation and editing.

The public names are imported on first use (PEP 562), so that `musicgen-stem --help` and the
command line's argument errors answer without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AudioChunk": "api",
    "AudioStream": "api",
    "MusicGenStem": "api",
    "StemAudio": "api",
    "LAYOUT_6CB": "layout",
    "LAYOUT_7CB": "layout",
    "StemLayout": "layout",
}

__all__ = [
    "LAYOUT_6CB",
    "LAYOUT_7CB",
    "AudioChunk",
    "AudioStream",
    "MusicGenStem",
    "StemAudio",
    "StemLayout",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
