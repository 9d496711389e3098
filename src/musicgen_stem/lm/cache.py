"""The LM's decoding state: a static KV cache of every layer, allocated once and written in place
(as gpt-fast's `KVCache`), and the step and per-step conditions that incremental decoding carries."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import LMConfig


class KVCache:
    """Static decoding buffers of all layers, allocated once and written in place:
    self-attention keys/values k, v [L, B, H, S_max, Dh] and the cross-attention keys/values of
    the memory cross_k, cross_v [L, B, H, M_max, Dh] (rows >= mem_len masked by cross_mask [M_max])."""

    def __init__(
        self,
        cfg: LMConfig,
        batch: int,
        max_steps: int,
        device: torch.device,
        dtype: torch.dtype,
        mem_capacity: int = 0,
    ):
        heads, dh = cfg.num_heads, cfg.dim // cfg.num_heads
        shape = (cfg.num_layers, batch, heads, max_steps, dh)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        mem_shape = (cfg.num_layers, batch, heads, mem_capacity, dh)
        self.cross_k = torch.zeros(mem_shape, device=device, dtype=dtype)
        self.cross_v = torch.zeros(mem_shape, device=device, dtype=dtype)
        self.cross_mask = torch.zeros(mem_capacity, device=device, dtype=torch.bool)
        self.max_steps = max_steps
        self.mem_len = 0
        self.static = False  # addresses marked static for CUDA graphs

    def fits(self, batch: int, steps: int, mem_len: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether a decoding of `batch` rows, `steps` steps and a memory of `mem_len` fits here."""
        return (
            self.k.shape[1] == batch
            and steps <= self.max_steps
            and mem_len <= self.cross_k.shape[3]
            and self.k.device == device
            and self.k.dtype == dtype
        )

    def mark_static(self) -> None:
        """CUDA graphs replay on fixed addresses: every buffer is updated in place."""
        if not self.static:
            for t in (self.k, self.v, self.cross_k, self.cross_v, self.cross_mask):
                torch._dynamo.mark_static_address(t)
            self.static = True

    def update(
        self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, T, Dh] at steps [pos, pos + T); return all keys/values so far."""
        end = pos + k.shape[2]
        if end > self.max_steps:
            raise RuntimeError(f"KV cache holds {self.max_steps} steps, step {end} requested")
        self.k[layer, :, :, pos:end] = k
        self.v[layer, :, :, pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def write(
        self, layer: int, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Static-shape update: write k, v [B, H, 1, Dh] at step `pos` ([1] long tensor); return
        the whole cache of the layer, [B, H, S_max, Dh] (steps after pos must be masked)."""
        self.k[layer].index_copy_(2, pos, k)
        self.v[layer].index_copy_(2, pos, v)
        return self.k[layer], self.v[layer]

    def memory(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory keys/values of one layer: 2 x [B, H, mem_len, Dh]."""
        n = self.mem_len
        return self.cross_k[layer, :, :, :n], self.cross_v[layer, :, :, :n]


@dataclass
class DecodeState:
    """Everything incremental decoding carries between steps: the cache and the next step."""

    cache: KVCache
    pos: int = 0
    cond: torch.Tensor | None = None  # [B, S_max, D]: the per-step conditions' input term, made once
