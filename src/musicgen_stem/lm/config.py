"""The transformer's sizes (one dataclass, read by the model and its cache)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class LMConfig:
    """Transformer sizes. Defaults are the released "medium" model."""

    dim: int = 1536
    num_heads: int = 24
    num_layers: int = 48
    ff_dim: int = 6144
    max_period: float = 10000.0
    positional_scale: float = 1.0
    norm_eps: float = 1e-5
    bias_attn: bool = False
    bias_ff: bool = False
    bias_proj: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.dim % 2:
            raise ValueError("dim must be even for sinusoidal positions")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LM config fields {sorted(unknown)}")
        return cls(**d)
