"""What a form may ask for: limits on durations and uploads, and the form's values parsed.

Every check raises a `MusicGenStemError` whose message is shown to the user as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, GenerationError
from ..inputs import check_seed
from ..separation_options import SOURCES
from .options import DEFAULT_MAX_DURATION, DEFAULT_MAX_UPLOAD_MB

__all__ = [
    "MAX_VARIATIONS",
    "UPLOAD_ROLES",
    "Limits",
    "parse_seconds",
    "parse_seed",
    "sampling_settings",
]

MAX_VARIATIONS = 4
#: Stems a user may upload on the Edit tab: a separator's sources (vocals are passed through untouched).
UPLOAD_ROLES = SOURCES


@dataclass
class Limits:
    """What one job may ask for: seconds of audio and megabytes per uploaded file."""

    max_duration: float = DEFAULT_MAX_DURATION
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB

    def check_duration(self, seconds: float, what: str = "the duration") -> float:
        """`seconds` as a float, or a `GenerationError` when it is not in (0, max_duration]."""
        try:
            d = float(seconds)
        except (TypeError, ValueError):
            raise GenerationError(f"{what} must be a number of seconds, got {seconds!r}") from None
        if not np.isfinite(d) or d <= 0:
            raise GenerationError(f"{what} must be a positive number of seconds, got {seconds}")
        if d > self.max_duration + 1e-6:
            raise GenerationError(
                f"{what} is {d:.1f} s; this app allows {self.max_duration:g} s at most "
                "(trim the audio or ask for less)"
            )
        return d

    def check_upload(self, path: str | os.PathLike[str], what: str = "the upload") -> Path:
        """An uploaded audio file, checked for existence, size and duration."""
        from ..audio import duration_seconds

        p = Path(path)
        if not p.is_file():
            raise AudioError(f"{what} is missing: upload the file again")
        mb = p.stat().st_size / 2**20
        if mb > self.max_upload_mb:
            raise AudioError(f"{what} is {mb:.1f} MB; this app accepts {self.max_upload_mb:g} MB at most")
        self.check_duration(duration_seconds(p), f"{what} ({p.name})")
        return p


def parse_seed(seed: Any) -> int | None:
    """None for "random"/empty; else a non-negative integer seed (clear error otherwise)."""
    if seed is None:
        return None
    if isinstance(seed, float) and not seed.is_integer():
        raise GenerationError(f"the seed must be a whole number or 'random', got {seed}")
    text = str(int(seed) if isinstance(seed, float) else seed).strip().lower()
    if text in ("", "random", "none", "-1"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise GenerationError(f"the seed must be a whole number or 'random', got '{seed}'") from None
    return check_seed(value, "the seed")


def parse_seconds(value: Any, what: str) -> float | None:
    """An optional time in seconds: None for empty, else a finite float (clear error otherwise)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GenerationError(f"{what} must be a number of seconds, got '{value}'") from None
    if not np.isfinite(v):
        raise GenerationError(f"{what} must be a finite number of seconds, got {value}")
    return v


def sampling_settings(
    top_k: float = 250,
    top_p: float = 0.0,
    temperature: float = 1.0,
    cfg: float = 3.0,
    greedy: bool = False,
    chord_guide: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `MusicGenStem.set_generation_params` from the form's values (chord
    guidance not given: the model's)."""
    settings = {
        "use_sampling": not bool(greedy),
        "top_k": int(top_k or 0),
        "top_p": float(top_p or 0.0),
        "temperature": float(temperature),
        "cfg_coef": float(cfg),
    }
    if chord_guide is not None:
        settings["chord_guide"] = float(chord_guide)
    return settings
