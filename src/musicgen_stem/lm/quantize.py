"""Int8 and int4 weights for CPU decoding, on kernels PyTorch keeps (`torch.ao.quantization` only
behind one adapter, `fbgemm_int8`, for the wide layers of large LMs while PyTorch still ships it).

A decoding step multiplies 2 rows (batch 1 with CFG) by every projection, so it streams weights:
fewer bytes per weight, faster steps, as long as the kernel keeps up. Both modes are weight-only
(activations stay float, computed in bf16) and replace every `nn.Linear` of the LM (q/k/v split
first; embeddings and norms stay fp32); inference only, the result is not a checkpoint:

- int8 (`Int8Linear`): symmetric int8 weights, one scale per output channel;
  `torch._weight_int8pack_mm` with bf16 activations (its vectorised path); layers of 1024 inputs
  or more (medium's) on fbgemm's dynamic int8 while it exists (2.5x faster there, table below).
- int4 (`Int4Linear`): asymmetric int4, one scale and offset per group of `group_size` inputs
  (32 by default: the most accurate, and the others are barely faster);
  `torch._weight_int4pack_mm_for_cpu` with bf16 activations. Half of int8's weight bytes.

Kernels measured (AMD EPYC, 2 cores, AVX-512 with VNNI and BF16, torch 2.13.0, shared with another
process): [2 x 1536] @ [1536 x 6144] as in a CFG step of medium, 8 weight copies in rotation so that
they stream from memory, medians of 21 rounds alternating the candidates in one process, ms:

    kernel                                         1 thread  2 threads  1 thread, ATen+oneDNN AVX2
    fp32 oneDNN-packed (unquantized)                 3.07       1.79       3.30
    int8 fbgemm dynamic (old `quantize_dynamic`)     0.37       0.33       0.39
    int8 fbgemm `quantized.linear_dynamic` direct    0.36       0.30       -
    int8 oneDNN `qlinear_pointwise` + act. quant     0.93-1.02  0.57       1.77-1.92
    int8 `torch._int_mm` + per-row act. quant        1.26-1.30  0.73       1.85-1.91
    int8 `_weight_int8pack_mm`, bf16 act. (chosen)   1.30       1.20       1.52
                               fp32 activations     15.6
    int4 `_weight_int4pack_mm_for_cpu`, bf16 act.,
         groups of 32 / 64 / 128 (chosen)            0.67 / 0.64 / 0.63    1.25 / - / 1.20
                               fp32 activations     33.2
    int4 `_dyn_quant_matmul_4bit` (x86 fallback)    28.3
    int4 dequantize-then-matmul, eager              17.6

(the AVX2 column: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; fbgemm ignores them). fbgemm is
the fastest int8 kernel here, but its weights are prepacked from a quantized tensor
(`torch.quantize_per_channel`), which torch 2.13 deprecates (pytorch/pytorch#184982) along with
`torch.ao.quantization`. Of the int8 paths left, oneDNN's is 20 % faster than `_weight_int8pack_mm`
on this large product with AVX-512, but slower under AVX2, and on the small products of the
shipped mini LM (dim 192) per-call costs decide: [2 x 192] @ [192 x 576] takes 23 us in fp32,
15 us with fbgemm, 14 us with `_weight_int8pack_mm`, 19 us int4, 87 us with oneDNN (its kernel
alone 26 us plus 6 small ops quantizing the activations), which made mini's steps slower than
fp32. Whole greedy CFG steps (1 thread, medians of alternating rounds in one process, steps/s):
mini (trained weights) fp32 223, old fbgemm int8 328, int8 here 424, int4 g32/g64/g128
471/460/459; medium-6cb (random weights) fp32 1.8, old fbgemm int8 10.6, int8 here 4.3, int4 7.2:
on large LMs the deprecated fbgemm kernel is still 2.5x faster than any int8 kernel left, and
int4 is the fastest of those left. Weight-only int8 is also closer to fp32 than the old dynamic
path (`benchmarks/quantize_quality.py`). torchao 0.18 (PyPI) is not used: its wheel has no CPU
kernels built (`da8w4_linear_cpu`) and its CPU int4 layout calls the same
`_weight_int4pack_mm_for_cpu`. `benchmarks/decode.py --quantize none int8 int4` times
whole steps of any preset.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .model import StemLM
from .packing import unpack

#: Quantization modes of `quantize`.
MODES = ("int8", "int4")
#: Group sizes the int4 kernel takes (inputs sharing one scale and offset).
INT4_GROUP_SIZES = (32, 64, 128)
#: Layers with at least this many inputs take fbgemm's int8 while PyTorch ships it (`fbgemm_int8`):
#: on medium's projections 2.5x faster than the weight-only kernel; on mini's (192) slower.
FBGEMM_MIN_FEATURES = 1024
#: Default int4 group (see `benchmarks/quantize_quality.py`: smaller groups are more accurate,
#: larger ones a little faster and smaller).
INT4_GROUP_SIZE = 32


def int8_fits(in_features: int) -> bool:
    """Whether the int8 kernel takes rows of `in_features` (a multiple of 8: it crashes on others)."""
    return in_features % 8 == 0


class Int8Linear(nn.Module):
    """`nn.Linear` (inference, CPU) with int8 weights [out, in], one scale per output channel
    (symmetric, weight-only); the product runs in bf16 (`torch._weight_int8pack_mm`)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not int8_fits(linear.in_features):
            raise ValueError(f"int8 needs in_features a multiple of 8, not {linear.in_features}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float().contiguous()  # [out, in] (may be column-major: packing)
        scale = (w.abs().amax(1).clamp_min(1e-12) / 127).bfloat16()  # [out], as the kernel reads it
        q = torch.round(w / scale.float()[:, None]).clamp(-128, 127).to(torch.int8).contiguous()
        self.register_buffer("weight_int8", q, persistent=False)  # [out, in]; not a checkpoint tensor
        self.register_buffer("scale", scale, persistent=False)
        bias = linear.bias
        self.register_buffer(
            "bias", None if bias is None else bias.detach().float().clone(), persistent=False
        )
        self.weight_bytes = q.numel() + 2 * scale.numel() + (0 if bias is None else 4 * bias.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        x2 = x.reshape(-1, self.in_features).bfloat16().contiguous()  # [rows, in]
        y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scale).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


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


class Int4Linear(nn.Module):
    """`nn.Linear` (inference, CPU) with int4 weights [out, in]: per group of `group_size` inputs
    of a row, w ~= (q - 8) * scale + offset, q in [0, 15] (asymmetric, as the kernel stores)."""

    def __init__(self, linear: nn.Linear, group_size: int = INT4_GROUP_SIZE):
        super().__init__()
        N, K = linear.out_features, linear.in_features
        if int4_group(N, K, group_size) != group_size:
            raise ValueError(
                f"int4 needs out % 16 == 0 and a group of {INT4_GROUP_SIZES} dividing in, not {group_size}"
            )
        self.in_features, self.out_features, self.group_size = K, N, group_size
        w = linear.weight.detach().float().contiguous().reshape(N, K // group_size, group_size)
        lo, hi = w.amin(-1), w.amax(-1)  # [N, K / g]
        scale = ((hi - lo) / 15).clamp_min(1e-8).bfloat16()  # the kernel reads bf16 scales/offsets
        offset = (lo + 8 * scale.float()).bfloat16()  # the value of q = 8
        q = torch.round((w - offset.float()[..., None]) / scale.float()[..., None]) + 8
        q = q.clamp(0, 15).to(torch.int32).reshape(N, K).contiguous()
        self.register_buffer(
            "packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), persistent=False
        )  # [N, K / 2] uint8
        scale_offset = torch.stack([scale, offset], -1).transpose(0, 1).contiguous()  # [K / g, N, 2]
        self.register_buffer("scale_offset", scale_offset, persistent=False)
        bias = linear.bias
        self.register_buffer(
            "bias", None if bias is None else bias.detach().float().clone(), persistent=False
        )
        self.weight_bytes = (
            self.packed.numel() + 2 * scale_offset.numel() + (0 if bias is None else 4 * bias.numel())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        x2 = x.reshape(-1, self.in_features).bfloat16().contiguous()  # [rows, in]
        y = torch._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size, self.scale_offset).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 g{self.group_size}"


def _replace(module: nn.Module, convert: Callable[[nn.Linear], nn.Module]) -> None:
    """Swap every plain `nn.Linear` below `module` for `convert(linear)` (recursively)."""
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, convert(child))
        else:
            _replace(child, convert)


def fbgemm_int8(linear: nn.Linear) -> nn.Module | None:
    """fbgemm's dynamic int8 layer for `linear` (per-channel weights, activations quantized per
    call), or None once PyTorch no longer ships it. Its API is deprecated (torch.ao.quantization,
    quantized tensors): this adapter is the only place that touches it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
            from torch.ao.quantization import per_channel_dynamic_qconfig

            linear.qconfig = per_channel_dynamic_qconfig  # type: ignore[assignment]
            layer = DynamicLinear.from_float(linear)
    except Exception:  # gone from this PyTorch: the weight-only kernel takes over
        return None
    layer.weight_bytes = linear.in_features * linear.out_features + 8 * linear.out_features
    return layer


def _int8(lin: nn.Linear, fbgemm_min: int = FBGEMM_MIN_FEATURES) -> nn.Module:
    """The int8 layer for `lin`: fbgemm for wide layers while it exists, else `Int8Linear`;
    odd widths stay float32."""
    if lin.in_features >= fbgemm_min and (layer := fbgemm_int8(lin)) is not None:
        return layer
    return Int8Linear(lin) if int8_fits(lin.in_features) else lin


def _prepare(lm: StemLM, mode: str) -> None:
    if lm.device.type != "cpu":
        raise ValueError(f"{mode} quantization runs on CPU; on GPU use bf16/fp16")
    if lm.dtype != torch.float32:
        raise ValueError(f"{mode} quantization starts from float32 weights, not {lm.dtype}")
    unpack(lm)  # oneDNN-packed layers back to nn.Linear
    lm.split_projections()


@torch.no_grad()
def quantize_int8(lm: StemLM, fbgemm_min: int = FBGEMM_MIN_FEATURES) -> StemLM:
    """Quantize `lm` in place (CPU): q/k/v split into modules, then every `nn.Linear` -> int8:
    layers with at least `fbgemm_min` inputs on fbgemm while PyTorch has it (`fbgemm_int8`), the
    others `Int8Linear` (a layer whose inputs are not a multiple of 8 stays float32)."""
    _prepare(lm, "int8")
    _replace(lm, lambda lin: _int8(lin, fbgemm_min))
    return lm.eval()


@torch.no_grad()
def quantize_int4(lm: StemLM, group_size: int = INT4_GROUP_SIZE) -> StemLM:
    """Quantize `lm` in place (CPU): every `nn.Linear` -> `Int4Linear` (a layer whose inputs no
    group divides, or whose outputs are not a multiple of 16, becomes `Int8Linear`).

    Half the weight bytes of int8, a little over an eighth of fp32's, and less accurate (mini:
    88 % of guided argmaxes as fp32's against 99.7 % for int8, `benchmarks/quantize_quality.py`).
    Its kernel is vectorised for bf16 only (activations are converted per call): on the CPU
    measured it is faster than int8 and fp32 (module docstring), also with ATen kept to AVX2; its
    fp32 path, and the other int4 kernels of PyTorch, are 5-10x slower than fp32: elsewhere, time
    `benchmarks/decode.py --quantize none int8 int4` before counting on more than memory.
    """
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(
            f"int4 group size {group_size}: choose one of {', '.join(map(str, INT4_GROUP_SIZES))}"
        )
    _prepare(lm, "int4")

    def convert(lin: nn.Linear) -> nn.Module:
        g = int4_group(lin.out_features, lin.in_features, group_size)
        return _int8(lin) if g is None else Int4Linear(lin, g)

    _replace(lm, convert)
    return lm.eval()


def quantize(lm: StemLM, mode: str = "int8", group_size: int = INT4_GROUP_SIZE) -> StemLM:
    """Quantize `lm` in place: `mode` one of `MODES` (group_size: int4 only)."""
    if mode == "int8":
        return quantize_int8(lm)
    if mode == "int4":
        return quantize_int4(lm, group_size)
    raise ValueError(f"unknown quantization {mode!r}: choose one of {', '.join(MODES)}")


def is_quantized(lm: StemLM) -> bool:
    """Whether `quantize` has replaced any of the LM's layers (such an LM is not a checkpoint)."""
    return any(hasattr(m, "weight_bytes") for m in lm.modules())


def weight_bytes(lm: StemLM) -> int:
    """Bytes of the LM's weights as stored (quantized layers at their int8/int4 size)."""
    plain = sum(p.numel() * p.element_size() for p in lm.parameters())  # float layers, norms, embeddings
    return plain + sum(getattr(m, "weight_bytes", 0) for m in lm.modules() if m is not lm)
