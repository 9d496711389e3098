"""The rules for what users give, shared by the command line, the Python API and the web app:
descriptions, seeds and stem audio. Each refusal is one line naming the problem and the fix.
Imports no torch until audio is checked (the command line answers argument errors without it)."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from .errors import GenerationError

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_PROMPT_CHARS", "MAX_SEED", "check_prompt", "check_seed", "stem_audio"]

#: Longest description, characters (the text encoders truncate far below; longer is a mistake).
MAX_PROMPT_CHARS = 2000
#: Seeds are in [0, MAX_SEED) (torch generators take 63-bit seeds).
MAX_SEED = 2**63


def check_prompt(text: str | None, what: str = "the description") -> None:
    """Refuse a description longer than MAX_PROMPT_CHARS (the text encoder would choke on it)."""
    if text is not None and len(text) > MAX_PROMPT_CHARS:
        raise GenerationError(f"{what} has {len(text)} characters; keep it under {MAX_PROMPT_CHARS}")


def check_seed(seed: Any, what: str = "seed") -> int:
    """`seed` as an int: a whole number in [0, 2**63) (not a bool, float or string)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise GenerationError(f"{what} must be a whole number, got {seed!r}")
    if not 0 <= int(seed) < MAX_SEED:
        raise GenerationError(f"{what} must be between 0 and 2**63 - 1, got {seed}")
    return int(seed)


def stem_audio(stem: str, wav: Any) -> torch.Tensor:
    """A stem's audio (torch tensor or numpy array, [T], [C, T] or [B, C, T]) as a float32 CPU
    tensor [B, C, T]; empty, NaN or infinite audio is refused."""
    import numpy as np
    import torch

    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor) or wav.dim() not in (1, 2, 3) or wav.is_complex():
        what = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise GenerationError(
            f"stem '{stem}' must be audio [C, T] or [B, C, T] (tensor or array), got {what}"
        )
    if wav.numel() == 0:
        raise GenerationError(f"stem '{stem}' is empty")
    wav = wav.detach().float().cpu()
    if not torch.isfinite(wav).all():
        raise GenerationError(f"stem '{stem}' holds NaN or infinite samples; clean the audio first")
    return wav.reshape(1, 1, -1) if wav.dim() == 1 else wav if wav.dim() == 3 else wav[None]
