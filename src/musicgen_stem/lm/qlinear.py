"""Int8 and int4 linear layers for CPU decoding, and how their weights are stored.

Each layer stores its weights in one portable form (`state_dict()`), whatever kernel runs it:

- int8: `weight_int8` int8 [out, in] and `scale` bf16 [out] (w ~= q * scale, symmetric, one scale
  per output channel); run by `Int8Linear` (`torch._weight_int8pack_mm`, bf16 activations) or, for
  wide layers while PyTorch ships it, `FbgemmInt8Linear` (fbgemm's dynamic int8);
- int4: `weight_int4` uint8 [out, in / 2] (two inputs a byte, the even one in the low nibble) and
  `scale_offset` bf16 [in / g, out, 2] (per group of g inputs, w ~= (q - 8) * scale + offset,
  q in [0, 15]); run by `Int4Linear` (`torch._weight_int4pack_mm_for_cpu`, whose packed layout
  depends on the CPU's vector width: it is made at load and read back by `int4_unpack`).

The quantization itself is `int8_weight` and `int4_weight`; every layer has `weight_bytes`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..memory import fresh_tensor

#: Group sizes the int4 kernel takes (inputs sharing one scale and offset).
INT4_GROUP_SIZES = (32, 64, 128)


def int8_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] -> (q int8 [out, in], scale bf16 [out]), q = round(w / scale)."""
    w = w.detach().float()
    scale = (w.abs().amax(1).clamp_min(1e-12) / 127).bfloat16()  # as the kernels read it
    q = torch.round(w / scale.float()[:, None]).clamp(-128, 127).to(torch.int8).contiguous()
    return q, scale


def int4_weight(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] -> (q uint8 in [0, 15] [out, in], scale_offset bf16 [in / g, out, 2])."""
    N, K = w.shape
    w = w.detach().float().reshape(N, K // group_size, group_size)
    lo, hi = w.amin(-1), w.amax(-1)  # [N, K / g]
    scale = ((hi - lo) / 15).clamp_min(1e-8).bfloat16()  # the kernel reads bf16 scales/offsets
    offset = (lo + 8 * scale.float()).bfloat16()  # the value of q = 8
    q = torch.round((w - offset.float()[..., None]) / scale.float()[..., None]) + 8
    q = q.clamp(0, 15).to(torch.uint8).reshape(N, K)
    return q, torch.stack([scale, offset], -1).transpose(0, 1).contiguous()


def nibbles(q: torch.Tensor) -> torch.Tensor:
    """q uint8 in [0, 15] [N, K] -> [N, K / 2], two a byte (the even column in the low nibble)."""
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()


def int4_pack(q: torch.Tensor) -> torch.Tensor:
    """q [N, K] in [0, 15] -> the CPU kernel's packed layout [N, K / 2] uint8 (for this CPU)."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)


def int4_pack_nibbles(b: torch.Tensor) -> torch.Tensor:
    """`int4_pack` of the q whose `nibbles` b [N, K / 2] uint8 are stored, unpacked into an int32
    [N, K] (8x the stored bytes) in a memory mapping of its own (`memory.fresh_tensor`): on the
    malloc heap the freed inputs of a medium LM's layers stayed resident, 4.1 GB of peak, not 2.4."""
    N, half = b.shape
    q = fresh_tensor((N, half, 2), torch.int32)
    q[..., 0], q[..., 1] = b & 15, b >> 4  # the even column in the low nibble
    return int4_pack(q.view(N, 2 * half))


def int4_unpack(packed: torch.Tensor, N: int, K: int) -> torch.Tensor:
    """Inverse of `int4_pack`, found by packing probes: the layout only moves nibbles, so packing
    4 bits of every element's index at a time tells where each one goes. -> q [N, K] uint8."""
    index = torch.arange(N * K, dtype=torch.int64)
    source = torch.zeros(N * K, dtype=torch.int64)  # packed nibble position -> element index
    for shift in range(0, max(1, math.ceil(math.log2(N * K))), 4):
        p = int4_pack(((index >> shift) & 15).reshape(N, K)).reshape(-1).to(torch.int64)
        source |= torch.stack([p & 15, p >> 4], -1).reshape(-1) << shift
    got = torch.stack([packed & 15, packed >> 4], -1).reshape(-1)
    q = torch.empty(N * K, dtype=torch.uint8)
    q[source] = got
    return q.reshape(N, K)


def int8_fits(in_features: int) -> bool:
    """Whether the int8 kernel takes rows of `in_features` (a multiple of 8: it crashes on others)."""
    return in_features % 8 == 0


def int4_group(out_features: int, in_features: int, group_size: int) -> int | None:
    """The int4 group for a [out, in] weight: `group_size`, halved until it divides `in_features`
    (down to 32), or None where the kernel cannot take the weight (no such group, or `out_features`
    not a multiple of 16): that layer then stays int8."""
    if out_features % 16:
        return None
    g = group_size
    while g >= min(INT4_GROUP_SIZES):
        if in_features % g == 0:
            return g
        g //= 2
    return None


def _bias(linear: nn.Linear) -> torch.Tensor | None:
    return None if linear.bias is None else linear.bias.detach().float().clone()


class Int8Linear(nn.Module):
    """`nn.Linear` (inference, CPU) with int8 weights; the product runs in bf16
    (`torch._weight_int8pack_mm`). Built by `from_linear`, or empty to load a state into."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None):
        super().__init__()
        if not int8_fits(in_features):
            raise ValueError(f"int8 needs in_features a multiple of 8, not {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_int8", torch.empty(out_features, in_features, dtype=torch.int8, device=device)
        )
        self.register_buffer("scale", torch.empty(out_features, dtype=torch.bfloat16, device=device))
        self.register_buffer("bias", torch.empty(out_features, device=device) if bias else None)
        self.weight_bytes = out_features * in_features + 2 * out_features + 4 * out_features * bias

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        layer.weight_int8, layer.scale = int8_weight(linear.weight)
        layer.bias = _bias(linear)
        return layer

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "scale" in state:  # stored bf16, read back in any float dtype: exact
            state[prefix + "scale"] = state[prefix + "scale"].bfloat16()
        super()._load_from_state_dict(state, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        x2 = x.reshape(-1, self.in_features).bfloat16().contiguous()  # [rows, in]
        y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scale).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class FbgemmInt8Linear(nn.Module):
    """The same int8 weights run by fbgemm's dynamic int8 kernel (activations quantized per call,
    `torch.ops.quantized`), 2.5x faster than `Int8Linear` on layers as wide as medium's
    (`lm.quantize`). Its weights are prepacked from a quantized tensor, which PyTorch deprecates
    with `torch.ao.quantization`: this class is the only place that touches them, and
    `fbgemm_available` says whether this PyTorch still has them."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.has_bias = in_features, out_features, bias
        self.packed: Any = None  # fbgemm's packed weights and bias, made by `set_weights`
        self.weight_bytes = out_features * in_features + 8 * out_features + 4 * out_features * bias

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FbgemmInt8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        layer.set_weights(*int8_weight(linear.weight), _bias(linear))
        return layer

    def set_weights(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Pack int8 weights q [out, in] with their scales [out] (and the bias) for fbgemm."""
        self.pack(self.quantized(q, scale), bias)

    def quantized(self, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """q [out, in] int8 and its scales [out] as the quantized tensor fbgemm packs from."""
        zero = torch.zeros(self.out_features, dtype=torch.int64)
        return torch._make_per_channel_quantized_tensor(q.contiguous(), scale.double(), zero, 0)

    def pack(self, qw: torch.Tensor, bias: torch.Tensor | None) -> None:
        """fbgemm's packing of a `quantized` weight (it releases the GIL: `load_quantized` runs it on
        a second thread while the next layer is read)."""
        self.packed = torch.ops.quantized.linear_prepack(qw, None if bias is None else bias.float())

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        qw, bias = torch.ops.quantized.linear_unpack(self.packed)
        destination[prefix + "weight_int8"] = qw.int_repr()
        destination[prefix + "scale"] = qw.q_per_channel_scales().bfloat16()  # made from bf16: exact
        if bias is not None:
            destination[prefix + "bias"] = bias.detach()

    def stored(
        self, state: dict[str, Any], prefix: str, missing: list[str], errors: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """This layer's stored (int8 weights, scales, bias) in `state`, checked; None (and the
        reason in `missing` / `errors`) when they are not there or do not fit."""
        names = ["weight_int8", "scale"] + (["bias"] if self.has_bias else [])
        if any(prefix + n not in state for n in names):
            missing.extend(prefix + n for n in names if prefix + n not in state)
            return None
        q, scale = state[prefix + "weight_int8"], state[prefix + "scale"]
        if tuple(q.shape) != (self.out_features, self.in_features) or q.dtype != torch.int8:
            want = (self.out_features, self.in_features)
            errors.append(f"{prefix}weight_int8: {tuple(q.shape)} {q.dtype}, not int8 {want}")
            return None
        return q, scale, state.get(prefix + "bias")

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        weights = self.stored(state, prefix, args[-3], args[-1])
        if weights is not None:
            self.set_weights(*weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        return torch.ops.quantized.linear_dynamic(x, self.packed, reduce_range=True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 fbgemm"


def fbgemm_available() -> bool:
    """Whether this PyTorch still ships fbgemm's dynamic int8 layer (`FbgemmInt8Linear`)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            FbgemmInt8Linear.from_linear(nn.Linear(8, 8))
    except Exception:  # gone from this PyTorch: the weight-only kernel takes over
        return False
    return True


class Int4Linear(nn.Module):
    """`nn.Linear` (inference, CPU) with int4 weights in groups of `group_size` inputs; the product
    runs in bf16 (`torch._weight_int4pack_mm_for_cpu`). Built by `from_linear`, or empty to load
    a state into."""

    def __init__(
        self, in_features: int, out_features: int, group_size: int, bias: bool = True, device: Any = None
    ):
        super().__init__()
        if int4_group(out_features, in_features, group_size) != group_size:
            raise ValueError(
                f"int4 needs out % 16 == 0 and a group of {INT4_GROUP_SIZES} dividing in, not {group_size}"
            )
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        N, K = out_features, in_features
        self.register_buffer(
            "packed", torch.empty(N, K // 2, dtype=torch.uint8, device=device), persistent=False
        )
        self.register_buffer(
            "scale_offset", torch.empty(K // group_size, N, 2, dtype=torch.bfloat16, device=device)
        )
        self.register_buffer("bias", torch.empty(N, device=device) if bias else None)
        self.weight_bytes = N * K // 2 + 2 * self.scale_offset.numel() + 4 * N * bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        N, K = linear.out_features, linear.in_features
        layer = cls(K, N, group_size, linear.bias is not None, device="meta")
        q, layer.scale_offset = int4_weight(linear.weight, group_size)
        layer.packed, layer.bias = int4_pack(q), _bias(linear)
        return layer

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)  # scale_offset, bias
        destination[prefix + "weight_int4"] = nibbles(
            int4_unpack(self.packed, self.out_features, self.in_features)
        )

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        key, N, K = prefix + "weight_int4", self.out_features, self.in_features
        if key in state:
            b = state.pop(key)
            if tuple(b.shape) != (N, K // 2) or b.dtype != torch.uint8:
                args[-1].append(f"{key}: {tuple(b.shape)} {b.dtype}, not uint8 {(N, K // 2)}")
            else:
                self.packed = int4_pack_nibbles(b)
        else:
            args[-3].append(key)  # missing
        if prefix + "scale_offset" in state:
            state[prefix + "scale_offset"] = state[prefix + "scale_offset"].bfloat16()
        super()._load_from_state_dict(state, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        x2 = x.reshape(-1, self.in_features).bfloat16().contiguous()  # [rows, in]
        y = torch._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size, self.scale_offset).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 g{self.group_size}"
