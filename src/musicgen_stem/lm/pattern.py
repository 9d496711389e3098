"""The delay pattern: K parallel frame streams laid out as one sequence of LM steps.

Stream k is shifted right by `delays[k]` steps, after one leading all-special step:
`seq[:, k, s] = codes[:, k, s - 1 - delays[k]]` where that frame exists, else the special
token. T frames take `T + 1 + max(delays)` steps. Delays need not be sorted.
"""

from __future__ import annotations

import torch


def num_steps(num_frames: int, delays: tuple[int, ...] | list[int]) -> int:
    """Steps of the full delayed sequence for `num_frames` frames."""
    return num_frames + 1 + max(delays)


def frame_index(num_frames: int, num_steps_: int, delays: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame index of every (stream, step) and whether it is a real frame. Both [K, S]."""
    steps = torch.arange(num_steps_, device=delays.device)
    t = steps[None, :] - 1 - delays[:, None]  # [K, S]
    valid = (t >= 0) & (t < num_frames)
    return t.clamp(0, max(num_frames - 1, 0)), valid


def build_sequence(
    codes: torch.Tensor, delays: tuple[int, ...] | list[int], special: int, valid_steps_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay out frame codes by the delay pattern.

    Args:
        codes: [B, K, T] frame tokens (may hold -1 for unknown frames).
        valid_steps_only: keep only the first T + 1 steps (teacher forcing: the tail where
            delayed streams would still run is dropped).
    Returns:
        seq [B, K, S] with the special token outside the pattern, and mask [K, S] (True on
        real frames).
    """
    B, K, T = codes.shape
    d = torch.as_tensor(list(delays), device=codes.device)
    if d.numel() != K:
        raise ValueError(f"codes have {K} streams but {d.numel()} delays were given")
    S = T + 1 if valid_steps_only else num_steps(T, delays)
    t, valid = frame_index(T, S, d)
    if T == 0:
        return codes.new_full((B, K, S), special), valid
    seq = torch.gather(codes, 2, t[None].expand(B, K, S))
    seq = torch.where(valid[None], seq, torch.full_like(seq, special))
    return seq, valid


def revert_sequence(seq: torch.Tensor, delays: tuple[int, ...] | list[int], num_frames: int) -> torch.Tensor:
    """Inverse of `build_sequence`: seq [B, K, S] (S >= num_frames + 1 + max delay) -> codes [B, K, T]."""
    B, K, S = seq.shape
    d = torch.as_tensor(list(delays), device=seq.device)
    if S < num_steps(num_frames, delays):
        raise ValueError(
            f"a sequence of {S} steps cannot hold {num_frames} frames with delays {list(delays)}"
        )
    steps = torch.arange(num_frames, device=seq.device)[None, :] + 1 + d[:, None]  # [K, T]
    return torch.gather(seq, 2, steps[None].expand(B, K, num_frames))


def revert_logits(
    logits: torch.Tensor, delays: tuple[int, ...] | list[int], num_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map LM outputs back to frames.

    The output at step s predicts step s + 1, so frame t of stream k is predicted by the
    output at step t + delays[k].

    Args:
        logits: [B, S, K, card] outputs over a sequence of S steps.
    Returns:
        frame logits [B, K, T, card] (NaN where no prediction exists) and mask [K, T].
    """
    B, S, K, card = logits.shape
    d = torch.as_tensor(list(delays), device=logits.device)
    src = torch.arange(num_frames, device=logits.device)[None, :] + d[:, None]  # [K, T]
    mask = src + 1 < S
    src = src.clamp(max=S - 1)
    per_stream = logits.permute(0, 2, 1, 3)  # [B, K, S, card]
    out = torch.gather(per_stream, 2, src[None, :, :, None].expand(B, K, num_frames, card))
    out = torch.where(mask[None, :, :, None], out, torch.full_like(out, float("nan")))
    return out, mask
