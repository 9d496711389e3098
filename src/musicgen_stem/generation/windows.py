"""Generation longer than one model window, and edits of a time range, by sliding windows.

Everything is expressed with `codes: [B, K, T]` (original or already-known tokens) and
`free: [K, T]` (True where the model must choose). Windows of `window` frames slide over the
span of free positions with `overlap` frames in common: each window's first frames are then
known for every stream (original or generated in the previous window), so joins are seamless
in token space, and tokens outside `free` are never changed (bit-exact).

When only some stems are regenerated, every window gets its own masked-stem prefix (method.md §3)
built from that window's codes, with the regenerated stems masked, so a new stem stays locked to
the kept ones from the first to the last window; when every stem is regenerated the windows are
plain continuations (text -> stems).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from ..errors import GenerationError
from ..layout import StemLayout
from .engine import UNKNOWN, FramesCallback
from .tasks import PREFIX_STRIDE, Task, masked_prefix


class RunWindow(Protocol):
    """Runs one window: known [B, K, T'] (-1 where the model chooses) -> codes [B, K, T'].

    Called as run(known, start=f, prefix=p) without streaming, run(known, on_frames=..., start=f,
    prefix=p) with it, `f` being the frame of the whole output at known's first column (the
    window's first frame minus its prefix) and `p` the prefix's columns (for the per-step
    conditions): on_frames then follows `generate_codes`'s contract in the window's own frames
    (prefix included).
    """

    def __call__(
        self, known: torch.Tensor, on_frames: FramesCallback | None = ..., start: int = ..., prefix: int = ...
    ) -> torch.Tensor: ...


def plan_windows(free_cols: torch.Tensor, total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows [start, end) covering every column where `free_cols` [T] is True.

    A span that fits in one window is centred in it (context on both sides); a longer span is
    covered from its start with windows that share `overlap` frames (the last window shares more,
    so that every window is full).
    """
    if not 0 <= overlap < window:
        raise GenerationError(f"window overlap must be in [0, {window}), got {overlap}")
    cols = free_cols.nonzero().flatten()
    if cols.numel() == 0:
        return []
    first, last = int(cols[0]), int(cols[-1]) + 1
    if last - first <= window:
        start = min(max(0, (first + last - window) // 2), max(0, total - window))
        return [(start, min(total, start + window))]
    windows, start = [], max(0, min(first, total - window))
    while True:
        end = min(total, start + window)
        windows.append((start, end))
        if end >= last:
            return windows
        start = min(end - overlap, max(0, total - window))  # the last window is full, with more context


def fill_windows(
    run: RunWindow,
    layout: StemLayout,
    task: Task,
    window: int,
    overlap: int,
    silence_tokens: list[int] | None,
    on_window: Callable[[int, int], None] | None = None,
    on_frames: FramesCallback | None = None,
) -> torch.Tensor:
    """Generate every free position of `task` window by window.

    Args:
        task: its codes [B, K, T], free [K, T] and the stems regenerated (masked in each window's
            prefix; all stems: no prefix, as text -> stems and continuations).
        window: frames per window (the edit window with a prefix, else the generation window).
        silence_tokens: K codes of silence, to pad the prefix of a window shorter than `window`
            (needed only with a prefix).
        on_window: called as on_window(index, count) before each window runs.
        on_frames: called as on_frames(codes, final) whenever more leading frames of the whole
            output are final: `codes` [B, K, T] is a fresh tensor of the output so far (-1 where a
            token is still unknown; on the device `run` reports on, CPU for the last call),
            `final` only grows, and the last call has final == T.
    Returns:
        codes with the free positions filled; every other position unchanged.
    """
    B, K, T = task.codes.shape
    if task.free.shape != (K, T):
        raise ValueError(f"free must be [K, T] = [{K}, {T}], got {list(task.free.shape)}")
    regenerate = layout.check_stems(list(task.regenerate))
    use_prefix = task.is_edit(layout)
    if use_prefix and (silence_tokens is None or window % PREFIX_STRIDE):
        raise GenerationError(f"edit windows need silence tokens and a multiple of {PREFIX_STRIDE} frames")
    masked = torch.zeros(B, K, dtype=torch.bool)
    masked[:, layout.streams_of_stems(regenerate)] = True
    codes = task.codes.clone().long()
    todo = task.free.clone().bool()
    plan = plan_windows(todo.any(dim=0), T, window, overlap)
    reported = 0  # frames reported final to on_frames
    before: tuple[int, torch.Tensor] | None = None  # (window start, output so far with -1 to do)

    def report(a: int, b: int, prefix: int, local: torch.Tensor, final: int) -> None:
        """A window [a, b)'s on_frames(local [B, K, prefix + b - a], final) in global frames."""
        nonlocal reported, before
        end = a + max(0, final - prefix)
        if end == b:  # the window is done: known frames after it are final too
            pending = todo[:, b:].any(dim=0).nonzero()
            end = b + int(pending[0]) if pending.numel() else T
        if end > reported:
            reported = end
            if before is None or before[0] != a:  # once per window, on its device (no sync per step)
                now = codes.clone()
                now[:, todo] = UNKNOWN
                before = (a, now.to(local.device))
            now = before[1].clone()
            now[..., a:b] = local[..., prefix:]
            on_frames(now, end)  # type: ignore[misc]

    for i, (a, b) in enumerate(plan):
        if on_window is not None:
            on_window(i, len(plan))
        sub = todo[:, a:b]  # [K, W]: still to generate in this window
        main = codes[..., a:b].clone()
        main[:, sub] = UNKNOWN
        known = main
        if use_prefix:
            prefix = masked_prefix(codes[..., a:b], masked, layout.special_token, window, silence_tokens)
            known = torch.cat([prefix, main], dim=-1)
        p = known.shape[-1] - (b - a)  # prefix columns
        if on_frames is None:
            out = run(known, start=a - p, prefix=p)
        else:
            out = run(
                known, on_frames=lambda c, f, a=a, b=b, p=p: report(a, b, p, c, f), start=a - p, prefix=p
            )
        out = out[..., -(b - a) :].cpu()
        codes[..., a:b] = torch.where(sub[None], out, codes[..., a:b])
        todo[:, a:b] = False
    if on_frames is not None and reported < T:
        on_frames(codes.clone(), T)
    return codes
