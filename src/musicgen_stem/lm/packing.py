"""Weights laid out for fast CPU decoding.

A decoding step multiplies a few rows (batch x CFG) by every weight matrix of the LM, so its speed
is how fast the weights stream from memory. Measured on the 2-core CPU here (fp32, 2 threads, rows
= 2): `F.linear` reads row-major weights at ~9 GB/s and column-major ones at ~12 GB/s, while
oneDNN's matmul on weights reordered once into its blocked layout reads ~27 GB/s, close to what
`x.sum()` reaches (~32 GB/s). `pack_for_decoding` therefore replaces every projection by a
`PackedLinear` holding the oneDNN layout, in place (no second copy of the weights), falling back
to column-major storage when PyTorch has no oneDNN. `state_dict()` still gives plain tensors
under the checkpoint's keys, so a packed model saves like any other.

Which layout wins depends on the CPU (oneDNN's kernel choice, caches, page size): with
`layout="auto"` a probe at load (`fastest_layout`, about 0.1 s) times each layout on a matrix the
size of the model's largest projection and keeps the fastest.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from .model import StemLM

#: Rows per matmul the reorder is tuned for (batch 1 with CFG); other row counts still work.
PACK_ROWS = 2
#: CPU weight layouts: oneDNN's blocked one, column-major (W.t() contiguous), row-major (as loaded).
LAYOUTS = ("onednn", "column", "row")


def onednn_available() -> bool:
    """Whether this PyTorch can reorder weights for oneDNN's matmul (CPU builds with mkldnn)."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class PackedLinear(nn.Module):
    """`nn.Linear` (inference only) whose weight [out, in] is stored in oneDNN's blocked layout."""

    def __init__(self, linear: nn.Linear, rows: int = PACK_ROWS):
        super().__init__()
        self.in_features, self.out_features, self.rows = linear.in_features, linear.out_features, rows
        self.weight = nn.Parameter(_reorder(linear.weight.detach(), rows), requires_grad=False)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")

    def to_linear(self) -> nn.Linear:
        """The same layer as a plain `nn.Linear` (dense weight)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin.weight = nn.Parameter(self.weight.to_dense())
        if self.bias is not None:
            lin.bias = nn.Parameter(self.bias.detach().clone())
        return lin

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight.to_dense()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(
        self,
        state: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing: list[str],
        unexpected: list[str],
        errors: list[str],
    ) -> None:
        expected = {"weight": (self.out_features, self.in_features)}
        if self.bias is not None:
            expected["bias"] = (self.out_features,)
        for name, shape in expected.items():
            key = prefix + name
            if key not in state:
                missing.append(key)
            elif tuple(state[key].shape) != shape:
                errors.append(f"size mismatch for {key}: {tuple(state[key].shape)} vs {shape}")
            elif name == "weight":
                self.weight = nn.Parameter(_reorder(state[key].float(), self.rows), requires_grad=False)
            else:
                self.bias.data.copy_(state[key])


def _reorder(weight: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.float().contiguous(), rows)


def _replace_linears(module: nn.Module, convert: Any) -> None:
    """Swap every child that `convert(child)` maps to a new module (recursively)."""
    for name, child in module.named_children():
        new = convert(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _replace_linears(child, convert)


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up (first-touch, kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def fastest_layout(
    out_features: int, in_features: int, rows: int = PACK_ROWS, budget_s: float = 0.1, margin: float = 0.15
) -> str:
    """The layout whose [rows, in] x [in, out] product is fastest here (median of a few timed
    products, within about `budget_s`), among those this PyTorch has; the default layout (oneDNN,
    else column-major) stays unless another is faster by more than `margin`, so that a noisy
    machine does not switch layouts (and float rounding) from one load to the next."""
    w = torch.randn(out_features, in_features)
    x = torch.randn(rows, in_features)
    products: dict[str, Any] = {
        "row": lambda: torch.nn.functional.linear(x, w),
        "column": (lambda wt: lambda: torch.nn.functional.linear(x, wt))(w.t().contiguous().t()),
    }
    if onednn_available():
        packed = _reorder(w, rows)
        products["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    t0 = time.perf_counter()
    products["row"]()
    once = max(time.perf_counter() - t0, 1e-6)
    repeats = int(min(15, max(3, budget_s / len(products) / once)))
    speed = {name: _median_seconds(fn, repeats) for name, fn in products.items()}
    best = min(speed, key=lambda name: speed[name])
    keep = "onednn" if "onednn" in speed else "column"  # the default, unless clearly slower
    return keep if speed[keep] <= (1 + margin) * speed[best] else best


def largest_projection(lm: StemLM) -> tuple[int, int]:
    """(out, in) of the biggest 2-D projection weight of `lm` (embeddings excluded)."""
    shapes = [
        tuple(p.shape)
        for m in lm.modules()
        if not isinstance(m, nn.Embedding)
        for name in ("weight", "in_proj_weight")
        if isinstance(p := getattr(m, name, None), nn.Parameter) and p.dim() == 2
    ]
    return max(shapes, key=lambda s: s[0] * s[1])  # type: ignore[return-value]


@torch.no_grad()
def pack_for_decoding(lm: StemLM, layout: str = "onednn") -> StemLM:
    """Lay `lm`'s fp32 CPU weights out for decoding, in place (see the module docstring).

    layout: one of `LAYOUTS`, or "auto" (`fastest_layout` on the model's largest projection);
    "onednn" falls back to "column" without oneDNN. Embeddings keep their layout (rows are
    gathered). Other dtypes/devices are left unchanged.
    """
    if layout not in (*LAYOUTS, "auto"):
        raise ValueError(f"unknown CPU weight layout {layout!r}: choose auto or one of {', '.join(LAYOUTS)}")
    if lm.device.type != "cpu" or lm.dtype != torch.float32:
        return lm
    if layout == "auto":
        layout = fastest_layout(*largest_projection(lm))
    if layout == "row":
        return lm
    if layout == "column" or not onednn_available():
        for m in lm.modules():  # column-major: MKL reads W.t() faster for few-row products
            for name in ("weight", "in_proj_weight"):
                p = getattr(m, name, None)
                if isinstance(p, nn.Parameter) and p.dim() == 2 and not isinstance(m, nn.Embedding):
                    p.data = p.data.t().contiguous().t()
        return lm
    lm.split_projections()
    # exact type: subclasses (dynamically quantized layers) are left alone
    _replace_linears(lm, lambda m: PackedLinear(m) if type(m) is nn.Linear else None)
    return lm


@torch.no_grad()
def unpack(lm: StemLM) -> StemLM:
    """Back to plain `nn.Linear` layers (q/k/v stay split), e.g. before quantizing."""
    _replace_linears(lm, lambda m: m.to_linear() if isinstance(m, PackedLinear) else None)
    return lm
