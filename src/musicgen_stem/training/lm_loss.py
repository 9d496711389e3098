"""The LM's training loss (method.md §2): cross-entropy per stream by teacher forcing, computed in
step space (`sequence_loss`) with `lm_loss` on frame logits as its reference, the token counts
that normalise it over a global batch, and `LMWithText`, the trainable module whose forward it is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.steps import StepConditioner, StepConds
from ..conditioning.text import Texts
from ..layout import StemLayout
from ..lm.model import StemLM
from ..lm.pattern import build_sequence
from ..modeldir import ModelParts

__all__ = ["LMWithText", "history_noise", "lm_loss", "sequence_loss", "stream_names", "target_counts"]


class LMWithText(nn.Module):
    """The trainable modules: text conditioner, LM and per-step conditioner (if any), as one module
    for DDP/FSDP."""

    def __init__(
        self, lm: StemLM, text: nn.Module, steps: StepConditioner | None = None, frame_rate: float = 50.0
    ) -> None:
        super().__init__()
        self.lm = lm
        self.text = text
        self.steps = steps
        self.frame_rate = frame_rate

    def forward(
        self,
        codes: torch.Tensor,
        texts: Texts,
        loss_mask: torch.Tensor,
        norm: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        conds: StepConds | None = None,
        starts: list[int] | None = None,
        prefix: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, K, T], loss_mask [B, K, T] bool -> (loss, per-stream losses [K]) by teacher
        forcing; `norm` [K]: token counts to divide by; `inputs` [B, K, T]: tokens fed to the LM
        when not `codes` (see `sequence_loss`); `conds`: per-step conditions of windows whose
        column 0 is song frame `starts`, the first `prefix` columns a masked-stem prefix."""
        memory, _ = self.text(texts)  # [B, L, D]
        cond = None
        if conds is not None and self.steps is not None:
            cond = self.steps(conds, starts or 0, codes.shape[-1] + 1, self.frame_rate, prefix)
        return sequence_loss(self.lm, codes, memory, loss_mask, norm, inputs, cond)


def target_counts(layout: StemLayout, loss_mask: torch.Tensor) -> torch.Tensor:
    """Positions per stream that count in `sequence_loss` for loss_mask [B, K, T] -> [K] long."""
    step_mask, _ = build_sequence(loss_mask.long(), layout.delays, 0, valid_steps_only=True)  # [B, K, T+1]
    return step_mask[:, :, 1:].sum(dim=(0, 2))


def sequence_loss(
    lm: StemLM,
    codes: torch.Tensor,
    memory: torch.Tensor,
    loss_mask: torch.Tensor,
    norm: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of `lm_loss(*lm.frame_logits(codes, memory, cond), ...)`, computed in step space.

    Equal to taking the frame logits (the output at step t + delays[k] predicts frame t of stream
    k), but without gathering and NaN-filling the [B, K, T, card] logits: the targets and the mask
    are laid out by the delay pattern instead. Positions without a prediction and positions outside
    `loss_mask` are ignored. norm [K]: divide each stream's summed cross-entropy by these counts
    (those of a whole global batch, `target_counts`) instead of this batch's own; the streams
    averaged are those with norm > 0. inputs [B, K, T]: the tokens the LM reads (default `codes`;
    e.g. `history_noise`), the targets staying `codes`. cond [B, T + 1, D]: per-step conditions.
    """
    layout = lm.layout
    seq, _ = build_sequence(codes, layout.delays, layout.special_token, valid_steps_only=True)  # [B, K, T+1]
    # frame mask laid out like the codes; 0 outside the pattern
    step_mask, _ = build_sequence(loss_mask.long(), layout.delays, 0, valid_steps_only=True)  # [B, K, T+1]
    fed = seq if inputs is None else build_sequence(inputs, layout.delays, layout.special_token, True)[0]
    logits = lm(fed, memory, cond=cond)  # [B, T+1, K, card]: step s predicts step s + 1
    B, S, K, card = logits.shape
    targets = seq[:, :, 1:].masked_fill(step_mask[:, :, 1:] == 0, -100)  # [B, K, T]
    targets = F.pad(targets, (0, 1), value=-100).transpose(1, 2)  # [B, S, K]: last step predicts nothing
    ce = F.cross_entropy(
        logits.reshape(-1, card).float(), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).view(B, S, K)
    count = (targets != -100).sum(dim=(0, 1)) if norm is None else norm.to(ce.device)  # [K]
    per_stream = ce.sum(dim=(0, 1)) / count.clamp(min=1)
    has = count > 0
    loss = per_stream[has].mean() if bool(has.any()) else ce.sum() * 0.0
    return loss, per_stream.detach()


def history_noise(
    codes: torch.Tensor, masked: torch.Tensor, prefix_len: int, p: float, card: int
) -> torch.Tensor:
    """Inputs for an edit batch codes [B, K, T]: each frame after the prefix of the masked
    (regenerated) streams masked [B, K] replaced by a random token with probability p (padding, the
    special token, stays). With its
    own history unreliable, the LM must take the timing and harmony from the kept streams."""
    B, K, T = codes.shape
    where = masked[:, :, None].expand(B, K, T).clone()
    where[:, :, :prefix_len] = False
    where &= (codes < card) & (torch.rand(B, K, T, device=codes.device) < p)  # not the special token
    return torch.where(where, torch.randint(0, card, (B, K, T), device=codes.device), codes)


def lm_loss(
    logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per stream, averaged over the streams, on frame logits (reference for `sequence_loss`).

    Args:
        logits: [B, K, T, card] (may hold NaN outside `mask`).
        codes: [B, K, T] targets.
        mask: [B, K, T] bool, positions that count.
    Returns:
        the loss (scalar) and the per-stream losses [K] (detached; 0 for a stream without positions).
    """
    card = logits.shape[-1]
    logits = torch.where(mask[..., None], logits.float(), torch.zeros((), device=logits.device))
    targets = codes.masked_fill(~mask, -100)
    ce = F.cross_entropy(logits.reshape(-1, card), targets.reshape(-1), ignore_index=-100, reduction="none")
    ce = ce.view_as(codes)  # [B, K, T]
    count = mask.sum(dim=(0, 2))  # [K]
    per_stream = ce.sum(dim=(0, 2)) / count.clamp(min=1)
    has = count > 0
    loss = per_stream[has].mean() if bool(has.any()) else ce.sum() * 0.0
    return loss, per_stream.detach()


def stream_names(parts: ModelParts) -> list[str]:
    """bass0, drums0, other0..3: one name per stream for logs."""
    layout = parts.config.layout
    return [f"{s}{i}" for s in layout.stems for i in range(len(layout.streams_of(s)))]
