"""The checks and small conversions behind every generation call: durations, time ranges, codes,
seeds, descriptions, progress, LM dtypes, a model's sampling defaults. Plain functions of the values
and the model's facts."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import GenerationError, ModelError
from ..generation import SamplingParams
from ..inputs import check_seed
from ..layout import StemLayout
from ..modeldir import ModelConfig

__all__ = [
    "DTYPES",
    "MAX_SECONDS",
    "Progress",
    "Texts",
    "auto_dtype",
    "check_codes",
    "check_duration",
    "draw_seed",
    "model_sampling",
    "progress_callback",
    "texts_of",
    "time_range",
]

Progress = bool | Callable[[int, int], None]
Texts = Sequence[str | None]
#: Longest generation or edit, seconds (windows slide beyond the model's own window).
MAX_SECONDS = 600.0
#: LM dtypes by name (`set_dtype`, `--dtype`).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def auto_dtype(device: torch.device) -> torch.dtype:
    """The LM dtype of `--dtype auto`: bfloat16 on CUDA devices that support it (fp32's range:
    no overflow), float32 elsewhere (float16 only when asked for)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def check_duration(duration: float, frame_rate: float, limit: float = MAX_SECONDS) -> float:
    """`duration` in seconds as a float: positive, at least one frame, at most `limit`."""
    d = float(duration)
    if not math.isfinite(d) or d <= 0:
        raise GenerationError(f"duration must be a positive number of seconds, got {duration}")
    if d * frame_rate < 1:
        raise GenerationError(f"duration {d} s is shorter than one frame ({1 / frame_rate:.3f} s)")
    if d > limit + 1e-6:
        raise GenerationError(f"duration {d:g} s is too long: ask for {limit:g} s or less")
    return d


def time_range(start: float | None, end: float | None, frames: int, frame_rate: float) -> tuple[int, int]:
    """Frames [a, b) of a time range in seconds (default: everything), checked against the
    material's length of `frames` frames."""
    total = frames / frame_rate
    s = 0.0 if start is None else float(start)
    e = total if end is None else float(end)
    if math.isfinite(s) and s >= total:
        raise GenerationError(f"the range starts at {s:g} s, after the end of the material ({total:.2f} s)")
    if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e <= s:
        raise GenerationError(f"the range must satisfy 0 <= start < end, got start={start}, end={end}")
    a = round(s * frame_rate)
    return a, min(frames, max(round(e * frame_rate), a + 1))


def check_codes(codes: torch.Tensor, layout: StemLayout) -> torch.Tensor:
    """Codes [B, K, T] (or [K, T]) from any device, checked, as a CPU long tensor: windows and
    masks are planned on the CPU, the decoding moves what it needs to the model's device."""
    codes = torch.as_tensor(codes).cpu()
    if codes.dim() == 2:
        codes = codes[None]
    if codes.dim() != 3 or codes.shape[1] != layout.num_streams:
        raise GenerationError(
            f"codes must be [B, {layout.num_streams}, T] for this model, got {list(codes.shape)}"
        )
    if codes.shape[-1] == 0:
        raise GenerationError("codes hold no frames; give at least one frame")
    if codes.is_floating_point() or codes.min() < 0 or codes.max() >= layout.card:
        raise GenerationError(f"codes must be integers in [0, {layout.card})")
    return codes.long()


def model_sampling(config: ModelConfig) -> SamplingParams:
    """The model's default `SamplingParams` from its config.json's `sampling` (missing fields:
    the dataclass's defaults); a one-line `ModelError` when they are not valid settings."""
    try:
        params = SamplingParams(**config.sampling)
        params.validate(config.layout.card, config.layout.num_streams)
    except (TypeError, GenerationError) as e:
        raise ModelError(f"config.json's sampling defaults are invalid ({e}); fix or remove them") from None
    return params


def draw_seed(seed: int | None) -> int:
    """A seed for torch's generator: checked, or drawn at random when None."""
    return secrets.randbelow(2**31) if seed is None else check_seed(seed)


def texts_of(descriptions: Texts | str | None, batch: int = 1) -> list[str | None]:
    """Descriptions as a list (None: `batch` unconditional items; a string: one item)."""
    if descriptions is None:
        return [None] * batch
    if isinstance(descriptions, str):
        return [descriptions]
    out = list(descriptions)
    if not out:
        raise GenerationError("give at least one description (None for unconditional)")
    return out


def progress_callback(progress: Progress) -> tuple[Callable[[int, int], None] | None, Any]:
    """A step callback (done, total) and the tqdm bar it drives (None unless `progress` is True)."""
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=None, unit="step", desc="generating", leave=False, disable=None)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(done - bar.n)

    return update, bar
