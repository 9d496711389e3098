"""Every generation task as one `Task`, from the API down to the engine: the codes known in
advance, where the model writes (`free`), and the stems it regenerates.

- text -> stems: everything free;
- continuation: the prompt's frames known, the rest free;
- edit (regenerate some stems, keep the others): the regenerated stems' streams free (in a time
  range, past the kept material everything); each window then starts with the masked-stem prefix
  of method.md §3 (every 5th frame of the window, regenerated streams masked, one all-special
  transition step: `masked_prefix`), built by `windows.fill_windows`.

The engine reads a window as `known`: the codes with -1 (`UNKNOWN`) wherever the model chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import GenerationError
from ..layout import StemLayout
from .engine import UNKNOWN

#: The prefix samples one frame in PREFIX_STRIDE (50 Hz -> 10 Hz).
PREFIX_STRIDE = 5


@dataclass(frozen=True)
class Task:
    """`codes` [B, K, T]: the tokens known in advance (any value where free); `free` [K, T]: True
    where the model writes; `regenerate`: the stems it writes (all of them: no masked-stem prefix)."""

    codes: torch.Tensor
    free: torch.Tensor
    regenerate: tuple[str, ...]

    def known(self) -> torch.Tensor:
        """[B, K, T]: the codes with `UNKNOWN` where free (the engine's view of one window)."""
        return self.codes.long().masked_fill(self.free.bool()[None], UNKNOWN)

    def is_edit(self, layout: StemLayout) -> bool:
        """Some stems are kept: windows carry the masked-stem prefix."""
        return len(self.regenerate) < layout.num_stems


def text_task(batch: int, layout: StemLayout, num_frames: int) -> Task:
    """Text -> stems: nothing known."""
    codes = torch.zeros(batch, layout.num_streams, num_frames, dtype=torch.long)
    return Task(codes, torch.ones(layout.num_streams, num_frames, dtype=torch.bool), layout.stems)


def continuation_task(prompt: torch.Tensor, num_frames: int, layout: StemLayout) -> Task:
    """Prompt codes [B, K, P] followed by free frames up to `num_frames` in total."""
    B, K, P = prompt.shape
    if P >= num_frames:
        raise GenerationError(
            f"the prompt ({P} frames) is as long as the requested output ({num_frames} frames): "
            "ask for a longer duration"
        )
    codes = torch.cat([prompt.long(), prompt.new_zeros(B, K, num_frames - P).long()], dim=-1)
    free = torch.zeros(K, num_frames, dtype=torch.bool)
    free[:, P:] = True
    return Task(codes, free, layout.stems)


def edit_task(
    codes: torch.Tensor,
    layout: StemLayout,
    regenerate: Sequence[str],
    num_frames: int,
    silence_tokens: Sequence[int],
    start: int = 0,
    end: int | None = None,
) -> Task:
    """Regenerate the stems `regenerate` in frames [start, end) (default: everywhere) under the
    others, kept as in `codes` [B, K, T]. Past T (num_frames > T) the kept material is silence and
    every stream is free, as in training; before `start` and after `end` nothing is."""
    regen = tuple(layout.check_stems(list(regenerate)))
    if not regen:
        raise GenerationError(f"choose at least one stem to regenerate among {', '.join(layout.stems)}")
    B, K, T = codes.shape
    if K != layout.num_streams:
        raise GenerationError(f"codes have {K} streams but the model expects {layout.num_streams}")
    if len(silence_tokens) != K:
        raise GenerationError(f"{len(silence_tokens)} silence tokens given for {K} streams")
    codes = codes.long().cpu()
    if num_frames > T:
        pad = torch.tensor(list(silence_tokens))[None, :, None].expand(B, -1, num_frames - T)
        codes = torch.cat([codes, pad], dim=-1)
    codes = codes[..., :num_frames]
    free = torch.zeros(K, num_frames, dtype=torch.bool)
    free[layout.streams_of_stems(regen), start : num_frames if end is None else end] = True
    free[:, T:] = True
    return Task(codes, free, regen)


def masked_prefix(
    codes: torch.Tensor,
    masked: torch.Tensor,
    special: int,
    window_frames: int,
    silence_tokens: list[int] | tuple[int, ...] | torch.Tensor,
) -> torch.Tensor:
    """The masked-stem prefix shared by training and editing (method.md §3).

    Args:
        codes: [B, K, T] codes of the window (only the first window_frames are read).
        masked: [B, K] bool, True for the streams of the stems to (re)generate.
        silence_tokens: [K] codes of silence that pad the prefix of a window shorter than
            window_frames.
    Returns:
        [B, K, window_frames / PREFIX_STRIDE + 1]: every PREFIX_STRIDE-th frame, padded with
        silence, masked streams set to `special`, then one all-special transition step.
    """
    B, K, _ = codes.shape
    steps = window_frames // PREFIX_STRIDE
    prefix = codes[..., :window_frames:PREFIX_STRIDE].long()  # [B, K, <= steps]
    silence = torch.as_tensor(silence_tokens, dtype=torch.long, device=codes.device)
    pad = silence[None, :, None].expand(B, K, steps - prefix.shape[-1])
    transition = torch.full((B, K, 1), special, dtype=torch.long, device=codes.device)
    prefix = torch.cat([prefix, pad, transition], dim=-1)
    return prefix.masked_fill(masked.to(codes.device)[:, :, None], special)
