"""Optimiser, learning-rate schedule and weight EMA (method.md §2: AdamW, cosine with warm-up, EMA).

Weight decay is decided by a parameter's role in its module, on the unsharded model (before DDP or
FSDP wrap it): decayed are the weight matrices of linear, convolution and recurrent layers;
not decayed are embeddings (token tables, the text look-up table), normalisation gains and
biases, weight-norm gains and biases. Codebooks are buffers (EMA-updated), never in the optimiser.
The decision is stored by name, so it is the same under DDP (which prefixes nothing we read: the
inner module is used) and FSDP (whose parameters are 1-D shards by the time the optimiser sees them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

DECAY, NO_DECAY = "decay", "no_decay"
#: Module types whose every parameter is a gain, a bias or a table (no decay).
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.Embedding,
        nn.EmbeddingBag,
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
        nn.modules.batchnorm._NormBase,
    )
    if t is not None
)


def decay_role(module: nn.Module, name: str, param: nn.Parameter) -> str:
    """DECAY or NO_DECAY for parameter `name` (its attribute name) of `module` (its owner)."""
    if isinstance(module, NO_DECAY_MODULES):
        return NO_DECAY
    if name == "bias" or name.startswith("bias_") or name.endswith("_bias"):  # Linear, LSTM, in_proj_bias
        return NO_DECAY
    if name.endswith("_g") or name in ("gamma", "scale", "gain"):  # weight-norm / layer-scale gains
        return NO_DECAY
    return DECAY if param.dim() >= 2 else NO_DECAY


def decay_groups(model: nn.Module) -> dict[str, list[str]]:
    """{"decay": [names], "no_decay": [names]} of the trainable parameters of the unsharded `model`."""
    groups: dict[str, list[str]] = {DECAY: [], NO_DECAY: []}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                groups[decay_role(module, name, p)].append(f"{mod_name}.{name}" if mod_name else name)
    return groups


def build_optimizer(
    model: nn.Module,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.1,
    groups: dict[str, list[str]] | None = None,
    lr_scales: dict[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW with one param group per role (`decay_groups`, named "decay" and "no_decay").

    groups: the roles decided on the unsharded model (default: decided on `model` now); the
    parameters are looked up by name in `model`, which may be sharded by then.
    lr_scales: {name prefix: learning-rate multiplier}: the parameters under a prefix get groups of
    their own ("decay:steps."...), whose rate `set_lr` scales (e.g. a new input layer that starts
    at zero learns faster than the weights it is added to).
    """
    groups = decay_groups(model) if groups is None else groups
    params = dict(model.named_parameters())
    param_groups = []
    for role, wd in ((DECAY, weight_decay), (NO_DECAY, 0.0)):
        names = list(groups[role])
        for prefix, scale in (lr_scales or {}).items():
            mine = [n for n in names if n.startswith(prefix)]
            names = [n for n in names if not n.startswith(prefix)]
            if mine:
                group = {"params": [params[n] for n in mine], "weight_decay": wd, "name": f"{role}:{prefix}"}
                param_groups.append(group | {"lr_scale": float(scale)})
        if names:
            param_groups.append({"params": [params[n] for n in names], "weight_decay": wd, "name": role})
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's rate: `lr` times its `lr_scale` (1 if it has none)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def cosine_lr(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to `min_ratio`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's trainable parameters, keyed by name.

    Under FSDP the parameters are shards (DTensors): the average is kept shard by shard.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach(), 1 - self.decay)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's parameters and the averages (twice: back as before)."""
        for n, p in model.named_parameters():
            if n in self.shadow:
                tmp = p.detach().clone()
                p.copy_(self.shadow[n])
                self.shadow[n].copy_(tmp)
