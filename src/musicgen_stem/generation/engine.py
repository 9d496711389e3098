"""One decoding loop for every task.

Every task is expressed in frame space as `known: [B, K, T]`, the tokens fixed in advance
(a prompt, a masked-stem prefix, the forced streams of kept stems) with -1 wherever the
model must choose. The loop lays `known` out by the delay pattern, prefills the steps before
the first unknown token, then decodes one step at a time with a static KV cache, writing
model tokens only into unknown positions. Forcing therefore happens before the delay pattern,
so delayed streams stay aligned, and known tokens come out bit-identical.

`known` may live on any device: the plan is made on the CPU, then everything the loop touches is
on the model's device, in the model's one decoding cache (`StemLM.new_state(..., reuse=True)`,
reused by every call and window of the same batch shape, so CUDA graphs record once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..lm.model import StemLM
from ..lm.pattern import build_sequence, frame_index, revert_sequence
from .sampling import SamplingParams, guide, sample_next

UNKNOWN = -1
ProgressCallback = Callable[[int, int], None]
#: on_frames(codes [B, K, T], final): the frame tokens so far (-1 where still unknown) and the
#: number of leading frames whose tokens are all decided.
FramesCallback = Callable[[torch.Tensor, int], None]


def final_frames_after(unknown: torch.Tensor, delays: tuple[int, ...] | list[int]) -> list[int]:
    """For unknown [K, T] (True where some item of the batch has an unknown token): the number
    of leading frames that are final once step s has been decoded, at index s (0 <= s < S).

    Frame t of stream k is decoded at step t + 1 + delays[k] (lm/pattern.py); a known frame is
    final from the start.
    """
    K, T = unknown.shape
    d = torch.as_tensor(list(delays), dtype=torch.long)[:, None]
    step = torch.arange(T)[None, :] + 1 + d  # [K, T]
    ready = torch.where(unknown.cpu(), step, torch.full_like(step, -1)).amax(dim=0)  # [T]
    ready = torch.cummax(ready, dim=0).values if T else ready
    steps = torch.arange(T + 1 + max(delays))
    return torch.searchsorted(ready, steps, right=True).tolist()


@torch.inference_mode()
def generate_codes(
    lm: StemLM,
    known: torch.Tensor,
    memory: torch.Tensor,
    null_memory: torch.Tensor | None,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    on_frames: FramesCallback | None = None,
    cond: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fill the unknown (-1) tokens of `known`.

    Args:
        known: [B, K, T] frame tokens, -1 where the model chooses.
        memory: [B, L, D] conditioning memory (text).
        null_memory: [B, L, D] null condition for classifier-free guidance, or None for none.
            Guidance is skipped when cfg_coef == 1 (it would change nothing).
        callback: called as callback(steps_done, steps_total) after each step.
        on_frames: called as on_frames(codes, final) after each step that makes more leading
            frames final (every token of frames [0, final) decided: generated, or known in
            advance); `codes` [B, K, T] is a fresh tensor on the model's device (the callee may
            keep it) with -1 where a token is still unknown. The last call has final == T.
            An exception raised by a callback stops generation and propagates.
        cond: [B, S, D] per-step conditions of the window's steps (`conditioning.steps`), for
            models that read them; the null condition of guidance gets none.
        bias: [B, K, T, card] logit offsets per frame (`generation.harmony`), added after
            guidance, before sampling.
    Returns:
        codes [B, K, T]: `known` with every -1 replaced by a model token (< card).
    """
    layout = lm.layout
    params.validate(layout.card, layout.num_streams)
    B, K, T = known.shape
    if K != layout.num_streams:
        raise ValueError(f"known tokens have {K} streams, the model has {layout.num_streams}")
    if memory.shape[0] != B:
        raise ValueError(f"memory batch {memory.shape[0]} does not match tokens batch {B}")
    device = lm.device
    known = known.cpu().long()  # the plan is made on the CPU, the decoding on the model's device
    seq, valid = build_sequence(known, layout.delays, layout.special_token)  # [B, K, S], [K, S]
    S = seq.shape[-1]
    todo = (seq == UNKNOWN).any(dim=0).any(dim=0).nonzero()  # steps holding an unknown token
    if todo.numel() == 0:
        if on_frames is not None:
            on_frames(known.to(device, copy=True), T)
        return known.to(device, copy=True)
    start = int(todo[0])
    final_after = final_frames_after((known == UNKNOWN).any(dim=0), layout.delays) if on_frames else []
    reported = -1
    seq, valid = seq.to(device), valid.to(device)

    use_cfg = null_memory is not None and params.cfg_coef != 1.0
    mem = torch.cat([memory, null_memory.to(memory.device)], dim=0) if use_cfg else memory  # type: ignore[union-attr]
    if cond is not None and use_cfg:
        cond = torch.cat([cond, torch.zeros_like(cond)])
    state = lm.new_state(mem.to(device), max_steps=S - 1, reuse=True, cond=cond)
    if bias is not None:  # laid out by steps once, like the tokens: [B, K, S, card], 0 off the frames
        frame, on = frame_index(T, S, torch.as_tensor(list(layout.delays)))  # [K, S] each
        bias = bias.gather(2, frame[None, :, :, None].expand(B, K, S, bias.shape[-1])) * on[None, :, :, None]
        bias = bias.to(device)

    prev = 0
    total = S - start
    for step in range(start, S):
        inp = seq[..., prev:step]  # the prefill first, then one step at a time
        logits = lm(torch.cat([inp, inp]) if use_cfg else inp, state=state, last_only=True)[:, 0]
        logits = logits.float()  # [B or 2B, K, card]
        if use_cfg:
            logits = guide(logits[:B], logits[B:], params.cfg_coef)
        if bias is not None:
            logits = logits + bias[:, :, step]
        token = sample_next(logits, params, generator)  # [B, K]
        token = torch.where(valid[None, :, step], token, layout.special_token)
        col = seq[..., step]
        seq[..., step] = torch.where(col == UNKNOWN, token, col)
        prev = step
        if callback is not None:
            callback(step - start + 1, total)
        if on_frames is not None and final_after[step] > reported:
            reported = final_after[step]
            on_frames(revert_sequence(seq, layout.delays, T), reported)

    codes = revert_sequence(seq, layout.delays, T)
    assert not (codes == UNKNOWN).any(), "generation left unknown tokens"
    return codes
