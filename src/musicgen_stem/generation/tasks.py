"""Every generation task as a `known` frame tensor for the one decoding loop.

- text -> stems: nothing known;
- continuation: the prompt frames known;
- edit (regenerate some stems, keep the others): the masked-stem prefix of method.md §3
  (every 5th frame of the first 25 s, regenerated streams masked, one all-special transition
  step), then the main region with the kept streams forced to their codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GenerationError
from ..layout import StemLayout
from .engine import UNKNOWN

#: The prefix samples one frame in PREFIX_STRIDE (50 Hz -> 10 Hz).
PREFIX_STRIDE = 5
#: Frames of the main region an edit window covers in the released models (25 s at 50 Hz); the
#: prefix then has EDIT_WINDOW_FRAMES / PREFIX_STRIDE = 250 steps. Models may use another window.
EDIT_WINDOW_FRAMES = 1250


def text_task(batch: int, layout: StemLayout, num_frames: int) -> torch.Tensor:
    """Nothing known: [B, K, T] of -1."""
    return torch.full((batch, layout.num_streams, num_frames), UNKNOWN, dtype=torch.long)


def continuation_task(prompt: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Prompt codes [B, K, P] followed by unknown frames up to num_frames in total."""
    B, K, P = prompt.shape
    if P >= num_frames:
        raise GenerationError(
            f"the prompt ({P} frames) is as long as the requested output ({num_frames} frames): "
            "ask for a longer duration"
        )
    known = torch.full((B, K, num_frames), UNKNOWN, dtype=torch.long)
    known[..., :P] = prompt
    return known


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


@dataclass(frozen=True)
class EditTask:
    """An edit laid out in frame space. The first `prefix_len` frames are the prefix."""

    known: torch.Tensor  # [B, K, prefix_len + num_frames]
    prefix_len: int
    regenerate: tuple[str, ...]


def edit_task(
    layout: StemLayout,
    codes: torch.Tensor,
    regenerate: list[str] | tuple[str, ...],
    num_frames: int,
    silence_tokens: list[int] | tuple[int, ...],
    window_frames: int = EDIT_WINDOW_FRAMES,
) -> EditTask:
    """Regenerate the streams of `regenerate`, forcing every other stream to `codes`.

    Args:
        codes: [B, K, T] codes of the material to keep (the streams being regenerated are
            ignored). If T < num_frames the kept streams are forced for the first T frames and
            generated freely after that.
        num_frames: frames to produce (at most window_frames).
        silence_tokens: K tokens of digital silence, used to pad the prefix of a window
            shorter than the model's, as the model saw in training.
        window_frames: the model's edit window (a multiple of PREFIX_STRIDE); the prefix has
            window_frames / PREFIX_STRIDE steps plus the transition step.
    """
    regenerate = tuple(layout.check_stems(list(regenerate)))
    if not regenerate:
        raise GenerationError("choose at least one stem to regenerate")
    B, K, T = codes.shape
    if K != layout.num_streams:
        raise GenerationError(f"codes have {K} streams but the model expects {layout.num_streams}")
    if window_frames % PREFIX_STRIDE or window_frames <= 0:
        raise GenerationError(
            f"the edit window ({window_frames} frames) must be a multiple of {PREFIX_STRIDE}"
        )
    if not 0 < num_frames <= window_frames:
        raise GenerationError(f"an edit window holds 1 to {window_frames} frames, {num_frames} were asked")
    if len(silence_tokens) != K:
        raise GenerationError(f"{len(silence_tokens)} silence tokens given for {K} streams")
    codes = codes.long().cpu()
    regen_streams = layout.streams_of_stems(regenerate)
    kept_streams = [k for k in range(K) if k not in regen_streams]

    masked = torch.zeros(B, K, dtype=torch.bool)
    masked[:, regen_streams] = True
    prefix = masked_prefix(codes, masked, layout.special_token, window_frames, silence_tokens)

    main = torch.full((B, K, num_frames), UNKNOWN, dtype=torch.long)
    n = min(T, num_frames)
    main[:, kept_streams, :n] = codes[:, kept_streams, :n]
    return EditTask(torch.cat([prefix, main], dim=-1), prefix.shape[-1], regenerate)
