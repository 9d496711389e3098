"""The multi-stream transformer LM, readable top to bottom.

K token streams -> summed embeddings + sinusoidal positions -> pre-norm blocks
(self-attention, cross-attention to the text memory, feed-forward) -> output norm -> K heads.
Incremental decoding uses a static, preallocated KV cache (no per-step concatenation), reused across
calls (`new_state(..., reuse=True)`). Each block projects the text memory's keys/values itself.
Module names follow the released checkpoints (`emb.k`, `transformer.layers.i.self_attn.in_proj_weight`,
`linears.k`, ...), so their weights map one to one.

Per-step conditions (`conditioning.steps`) reach the LM as one input term per step, `cond`
[B, T, D], summed into its input like the token embeddings; the released checkpoints have none.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layout import StemLayout
from .cache import DecodeState, KVCache
from .config import LMConfig
from .pattern import build_sequence, revert_logits


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Sinusoidal positions, cat[cos, sin]. positions: [T] -> [T, dim]."""
    half = dim // 2
    freqs = torch.arange(half, device=positions.device, dtype=torch.float32)
    phase = positions.float()[:, None] / (max_period ** (freqs / (half - 1)))[None, :]
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


#: Rows of the packed q/k/v matrix each kind of attention projects at once when its projections
#: are modules (self-attention: q, k, v together; cross-attention: q per step, k and v once).
SELF_GROUPS: tuple[tuple[int, ...], ...] = ((0, 1, 2),)
CROSS_GROUPS: tuple[tuple[int, ...], ...] = ((0,), (1, 2))


class Attention(nn.Module):
    """Multi-head attention with a packed q/k/v projection (`in_proj_weight` [3D, D])."""

    def __init__(self, dim: int, num_heads: int, bias: bool, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout
        # q/k/v as modules, one per group of parts (see split_projections), or None: the packed matrix
        self.groups: tuple[tuple[int, ...], ...] = ()
        self.parts: nn.ModuleList | None = None
        self._register_state_dict_hook(_join_parts)
        self._register_load_state_dict_pre_hook(_split_parts, with_module=True)

    def split_projections(self, groups: tuple[tuple[int, ...], ...]) -> None:
        """Replace the packed q/k/v matrix by one `nn.Linear` per group of parts (0: q, 1: k, 2: v),
        e.g. SELF_GROUPS or CROSS_GROUPS, so inference can swap modules (packed or int8 weights).
        `state_dict()` keys stay those of the checkpoint format (`in_proj_weight`)."""
        if self.parts is not None:
            raise RuntimeError("projections are already split")
        D = self.in_proj_weight.shape[1]
        parts = []
        for group in groups:
            rows = _rows(group, D)
            lin = nn.Linear(
                D, len(group) * D, bias=self.in_proj_bias is not None, device=self.in_proj_weight.device
            )
            lin.weight.data.copy_(self.in_proj_weight.data[rows])
            if self.in_proj_bias is not None:
                lin.bias.data.copy_(self.in_proj_bias.data[rows])
            parts.append(lin)
        self.groups, self.parts = tuple(groups), nn.ModuleList(parts)
        self.in_proj_weight = None  # type: ignore[assignment]
        self.in_proj_bias = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, Dh]
        B, T, D = x.shape
        return x.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2)

    def _proj(self, x: torch.Tensor, group: tuple[int, ...]) -> torch.Tensor:
        """Projections `group` (0: q, 1: k, 2: v; consecutive) of x [..., D] -> [..., len(group) * D]."""
        if self.parts is not None:
            return self.parts[self.groups.index(group)](x)
        rows = _rows(group, self.in_proj_weight.shape[1])
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        return F.linear(x, self.in_proj_weight[rows], bias)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: Any) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, **kw)  # [B, H, T, Dh]
        B, H, T, Dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * Dh))

    def self_attend(
        self, x: torch.Tensor, cache: KVCache | None, layer: int, pos: int | torch.Tensor
    ) -> torch.Tensor:
        """Causal self-attention over x [B, T, D] placed at steps [pos, pos + T).

        With `pos` a [1] tensor (static shapes, see `StemLM.decode_step`): one step, attending to
        the whole cache with the steps after pos masked."""
        T = x.shape[1]
        q, k, v = (self._heads(t) for t in self._proj(x, (0, 1, 2)).chunk(3, -1))
        if isinstance(pos, torch.Tensor):
            assert cache is not None and T == 1
            k, v = cache.write(layer, pos, k, v)
            visible = (torch.arange(cache.max_steps, device=x.device) <= pos)[None]  # [1, S_max]
            return self._attend(q, k, v, attn_mask=visible)
        if cache is not None:
            k, v = cache.update(layer, pos, k, v)
        if T == 1:
            return self._attend(q, k, v)
        if k.shape[2] == T:
            return self._attend(q, k, v, is_causal=True)
        q_pos = torch.arange(pos, pos + T, device=x.device)[:, None]
        allowed = torch.arange(k.shape[2], device=x.device)[None, :] <= q_pos  # [T, S]
        return self._attend(q, k, v, attn_mask=allowed)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the cross-attention memory [B, L, D] -> 2 x [B, H, L, Dh]."""
        k, v = self._proj(memory, (1, 2)).chunk(2, -1)
        return self._heads(k), self._heads(v)

    def cross_attend(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention from x [B, T, D] to memory keys/values. The text's padding is zeroed, not
        masked (as in the reference); `mask` [M] only hides unused rows of a static cache."""
        q = self._heads(self._proj(x, (0,)))
        return self._attend(q, *kv) if mask is None else self._attend(q, *kv, attn_mask=mask[None])


def _rows(group: tuple[int, ...], dim: int) -> slice:
    """Rows of the packed q/k/v matrix holding the consecutive parts `group`."""
    return slice(group[0] * dim, (group[-1] + 1) * dim)


def _join_parts(module: Attention, state: dict[str, Any], prefix: str, local: dict[str, Any]) -> None:
    """state_dict hook: split q/k/v modules are saved as the packed `in_proj_weight`/`in_proj_bias`."""
    if module.parts is None or f"{prefix}parts.0.weight" not in state:
        return  # packed already, or parts that have no float weights (int8: not a checkpoint)
    for name, suffix in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
        keys = [f"{prefix}parts.{i}.{suffix}" for i in range(len(module.groups))]
        if keys[0] in state:
            state[prefix + name] = torch.cat([state.pop(k) for k in keys])


def _split_parts(module: Attention, state: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
    """load_state_dict pre-hook: the packed matrix of a checkpoint goes to split q/k/v modules."""
    if module.parts is None:
        return
    for name, suffix in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
        if prefix + name in state:
            packed = state.pop(prefix + name)
            D = packed.shape[-1] if suffix == "weight" else packed.shape[0] // 3
            for i, group in enumerate(module.groups):
                state[f"{prefix}parts.{i}.{suffix}"] = packed[_rows(group, D)]


class Block(nn.Module):
    """x += self_attn(norm1(x)); x += cross_attention(norm_cross(x)); x += ff(norm2(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg.dim, cfg.num_heads, cfg.bias_attn, cfg.dropout)
        self.norm_cross = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.cross_attention = Attention(cfg.dim, cfg.num_heads, cfg.bias_attn, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.linear1 = nn.Linear(cfg.dim, cfg.ff_dim, bias=cfg.bias_ff)
        self.linear2 = nn.Linear(cfg.ff_dim, cfg.dim, bias=cfg.bias_ff)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None,
        layer: int,
        pos: int | torch.Tensor,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, T, D]; memory: the text memory [B, L, D], whose keys/values are projected here,
        inside the block (as FSDP needs: its weights are gathered only during the block's
        forward), or keys/values precomputed for decoding (2 x [B, H, L, Dh])."""
        kv = self.cross_attention.memory_kv(memory) if isinstance(memory, torch.Tensor) else memory
        drop = self.dropout if self.training else _same  # a module call per use costs a step 5 %
        x = x + drop(self.self_attn.self_attend(self.norm1(x), cache, layer, pos))
        x = x + drop(self.cross_attention.cross_attend(self.norm_cross(x), kv, memory_mask))
        return x + drop(self.linear2(drop(F.gelu(self.linear1(self.norm2(x))))))


class Transformer(nn.Module):
    """The stack of blocks (a container so that keys read `transformer.layers.i`)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))


class TokenEmbedding(nn.Embedding):
    """`nn.Embedding` initialised by `StemLM.reset_parameters` only: its own Gaussian init, on the
    meta device where weights are loaded into, would import torch._dynamo (seconds at startup)."""

    def reset_parameters(self) -> None:
        pass


class StemLM(nn.Module):
    """Decoder-only LM over the K parallel streams of a `StemLayout`."""

    def __init__(self, layout: StemLayout, cfg: LMConfig):
        super().__init__()
        self.layout = layout
        self.cfg = cfg
        K, card = layout.num_streams, layout.card
        self.emb = nn.ModuleList(TokenEmbedding(card + 1, cfg.dim) for _ in range(K))
        self.transformer = Transformer(cfg)
        self.out_norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.linears = nn.ModuleList(nn.Linear(cfg.dim, card, bias=cfg.bias_proj) for _ in range(K))
        self.compiled_step: Any = None  # decode_step under torch.compile (see compile_decoding)
        self.decode_cache: KVCache | None = None  # reused by `new_state(..., reuse=True)`
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Gaussian init with std 1/sqrt(fan_in), scaled by 1/sqrt(2 * depth) inside block `depth`."""

        def init(weight: torch.Tensor, fan_in: int, depth: int | None = None) -> None:
            std = 1.0 / math.sqrt(fan_in) / (math.sqrt(2 * depth) if depth else 1.0)
            nn.init.trunc_normal_(weight, std=std, a=-3 * std, b=3 * std)

        for e in self.emb:
            init(e.weight, self.cfg.dim)
        for i, block in enumerate(self.transformer.layers):
            for m in block.modules():
                if isinstance(m, Attention):
                    init(m.in_proj_weight, self.cfg.dim, i + 1)
                elif isinstance(m, nn.Linear):
                    init(m.weight, m.in_features, i + 1)
                if getattr(m, "bias", None) is not None and not isinstance(m, nn.LayerNorm):
                    nn.init.zeros_(m.bias)
        for lin in self.linears:
            init(lin.weight, self.cfg.dim)

    def _inputs(self, seq: torch.Tensor, steps: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings + positions (+ cond [B, T, D], the per-step conditions) of seq [B, K, T]
        at steps [T] -> [B, T, D]."""
        x = sum(F.embedding(seq[:, k], e.weight) for k, e in enumerate(self.emb))  # [B, T, D]
        pe = sin_embedding(steps, self.cfg.dim, self.cfg.max_period)  # [T, D]
        x = x + self.cfg.positional_scale * pe.to(x.dtype)
        return x if cond is None else x + cond.to(x.dtype)

    def split_projections(self) -> StemLM:
        """q/k/v of every attention as modules (self: one qkv matmul; cross: q, then k|v once), for
        inference layouts that swap modules (oneDNN-packed or int8 weights). Idempotent; returns self."""
        for block in self.transformer.layers:
            for attn, groups in ((block.self_attn, SELF_GROUPS), (block.cross_attention, CROSS_GROUPS)):
                if attn.parts is None:
                    attn.split_projections(groups)
        return self

    @property
    def device(self) -> torch.device:
        return self.out_norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.out_norm.weight.dtype

    def new_state(
        self, memory: torch.Tensor, max_steps: int, reuse: bool = False, cond: torch.Tensor | None = None
    ) -> DecodeState:
        """A decoding state for a batch whose conditioning memory is [B, L, D] and per-step
        conditions cond [B, S, D] (S >= max_steps; steps it does not reach get none).

        reuse: decode in the model's one cache (as gpt-fast's `setup_caches`), allocated for the
        first batch of its shape and reused by every later call and window that fits, so that a
        compiled step with CUDA graphs records once. A compiled model's cache rounds the steps up
        to a multiple of 256 and the memory up to a multiple of 16 (unused rows are masked); an
        eager model's is reused for the same shape only (eager steps read exact shapes).
        Without reuse, the state has a cache of its own, of exactly this shape.
        """
        B, L, _ = memory.shape
        device, dtype = memory.device, self.dtype
        compiled = self.compiled_step is not None
        cache = self.decode_cache if reuse else None
        if cache is not None and not cache.fits(B, max_steps, L, device, dtype):
            cache = None
        if cache is not None and cache.k.is_inference() and not torch.is_inference_mode_enabled():
            cache = None  # made under inference_mode: not writable outside it
        if cache is not None and not compiled and (cache.max_steps, cache.cross_k.shape[3]) != (max_steps, L):
            cache = None
        if cache is None:
            steps, rows = (max_steps, L)
            if compiled and reuse:
                steps, rows = _round_up(max_steps, 256), _round_up(L, 16)
            if reuse:
                self.decode_cache = None  # the old cache is freed before the new one is allocated
            cache = KVCache(self.cfg, B, steps, device, dtype, rows)
            if reuse:
                self.decode_cache = cache
        with torch.no_grad():
            memory = memory.to(dtype)
            for i, block in enumerate(self.transformer.layers):
                k, v = block.cross_attention.memory_kv(memory)  # [B, H, L, Dh]
                cache.cross_k[i, :, :, :L] = k
                cache.cross_v[i, :, :, :L] = v
            cache.cross_mask.copy_(torch.arange(cache.cross_mask.shape[0], device=device) < L)
        cache.mem_len = L
        if compiled and device.type == "cuda":
            cache.mark_static()
        if cond is None and compiled:  # one graph for steps with and without conditions
            cond = torch.zeros(B, 1, self.cfg.dim, device=device, dtype=dtype)
        if cond is not None:  # [B, S_max, D], zeros past the steps given
            steps = cache.max_steps
            cond = cond[:, :steps].to(device, dtype)
            if cond.shape[1] < steps:
                cond = torch.cat([cond, cond.new_zeros(B, steps - cond.shape[1], cond.shape[2])], 1)
        return DecodeState(cache=cache, cond=cond)

    def decode_step(self, tokens: torch.Tensor, pos: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One decoding step with static shapes (what torch.compile and CUDA graphs need).

        tokens [B, K, 1] at step `pos` ([1] long tensor on the model's device) -> logits of the
        next step [B, K, card]. Same result as `forward(tokens, state=state)`, but the self-attention
        reads the whole cache with later steps masked, so every step has the same shapes; the
        caller advances `state.pos`.
        """
        cond = None if state.cond is None else state.cond.index_select(1, pos)  # [B, 1, D]
        x = self._inputs(tokens, pos, cond)  # [B, 1, D]
        cache = state.cache
        for i, block in enumerate(self.transformer.layers):
            x = block(x, (cache.cross_k[i], cache.cross_v[i]), cache, i, pos, cache.cross_mask)
        x = self.out_norm(x[:, 0])
        return torch.stack([lin(x) for lin in self.linears], dim=1)

    def compile_decoding(self, mode: str | None = None, backend: str = "inductor") -> StemLM:
        """Decode steps through `torch.compile(decode_step)` (fullgraph). mode None picks
        "reduce-overhead" (CUDA graphs) on CUDA and the default elsewhere. The prefill and
        teacher forcing stay eager. Returns self."""
        if mode is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self.compiled_step = torch.compile(self.decode_step, mode=mode, fullgraph=True, backend=backend)
        return self

    def forward(
        self,
        seq: torch.Tensor,
        memory: torch.Tensor | None = None,
        state: DecodeState | None = None,
        last_only: bool = False,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for a delayed sequence.

        Args:
            seq: [B, K, T] tokens (special token allowed).
            memory: [B, L, D] conditioning memory; required unless `state` is given.
            state: incremental decoding state: seq is placed at steps [state.pos, state.pos + T)
                and state.pos advances by T.
            last_only: compute the heads on the last step only.
            cond: [B, T, D] per-step conditions of these steps (`conditioning.steps`; with `state`,
                those given to `new_state` are read).
        Returns:
            logits [B, T, K, card] (T = 1 when last_only); the output at step s predicts step s + 1.
        """
        B, K, T = seq.shape
        if K != len(self.emb):
            raise ValueError(f"sequence has {K} streams, the model has {len(self.emb)}")
        pos = 0 if state is None else state.pos
        if state is not None and T == 1 and self.compiled_step is not None:
            if pos >= state.cache.max_steps:
                raise RuntimeError(f"KV cache holds {state.cache.max_steps} steps, step {pos + 1} requested")
            logits = self.compiled_step(seq, torch.tensor([pos], device=seq.device), state)
            state.pos += 1
            return logits[:, None]
        steps = torch.arange(pos, pos + T, device=seq.device)
        if state is not None:
            cond = None if state.cond is None else state.cond[:, pos : pos + T]
        x = self._inputs(seq, steps, cond)  # [B, T, D]
        if state is None and memory is None:
            raise ValueError("memory is required without a decoding state")
        cache = None if state is None else state.cache
        for i, block in enumerate(self.transformer.layers):
            # memory keys/values: projected inside each block (training, FSDP) or cached (decoding)
            mem = cache.memory(i) if cache is not None else memory.to(x.dtype)  # type: ignore[union-attr]
            x = block(x, mem, cache, i, pos)
        if state is not None:
            state.pos += T
        if last_only:
            x = x[:, -1:]
        x = self.out_norm(x)
        return torch.stack([lin(x) for lin in self.linears], dim=2)  # [B, T, K, card]

    def frame_logits(
        self, codes: torch.Tensor, memory: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits [B, K, T, card] where [:, k, t] predicts codes[:, k, t], and the
        mask [K, T] of positions that have a prediction (the last delays[k] frames of stream k do not)."""
        T = codes.shape[-1]
        seq, _ = build_sequence(codes, self.layout.delays, self.layout.special_token, valid_steps_only=True)
        return revert_logits(self(seq, memory, cond=cond), self.layout.delays, T)
