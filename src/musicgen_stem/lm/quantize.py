"""Int8 and int4 weights for CPU decoding, on kernels PyTorch keeps (`torch.ao.quantization` only
behind one adapter, `fbgemm_int8`, for the wide layers of large LMs while PyTorch still ships it).

A decoding step multiplies 2 rows (batch 1 with CFG) by every projection, so it streams weights:
fewer bytes per weight, faster steps, as long as the kernel keeps up. Both modes are weight-only
(activations stay float, computed in bf16) and replace every `nn.Linear` of the LM (q/k/v split
first; embeddings and norms stay fp32); inference only. A quantized LM saves its int8/int4
weights in a portable form (`lm.qlinear`) and `load_quantized` reads them back without
re-quantizing (`musicgen-stem convert --quantize`):

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

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

from .model import StemLM
from .packing import unpack
from .qlinear import (
    INT4_GROUP_SIZES,
    FbgemmInt8Linear,
    Int4Linear,
    Int8Linear,
    fbgemm_available,
    int4_group,
    int8_fits,
)

#: Quantization modes of `quantize`.
MODES = ("int8", "int4")
#: Layers with at least this many inputs take fbgemm's int8 while PyTorch ships it
#: (`FbgemmInt8Linear`): on medium's projections 2.5x faster than the weight-only kernel; on
#: mini's (192) slower.
FBGEMM_MIN_FEATURES = 1024
#: Default int4 group (see `benchmarks/quantize_quality.py`: smaller groups are more accurate,
#: larger ones a little faster and smaller).
INT4_GROUP_SIZE = 32


def _replace(module: nn.Module, convert: Callable[[nn.Linear, str], nn.Module]) -> None:
    """Swap every plain `nn.Linear` below `module` for `convert(linear, its state prefix)`."""
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if type(sub) is nn.Linear:
                setattr(child, attr, convert(sub, f"{name}.{attr}." if name else f"{attr}."))


def _int8(lin: nn.Linear, fbgemm: bool) -> nn.Module:
    """The int8 layer for `lin`: fbgemm where `fbgemm` (wide layers, while PyTorch has it), else
    `Int8Linear`; odd widths stay float32."""
    if fbgemm:
        return FbgemmInt8Linear.from_linear(lin)
    return Int8Linear.from_linear(lin) if int8_fits(lin.in_features) else lin


def _prepare(lm: StemLM, mode: str) -> None:
    if is_quantized(lm):
        raise ValueError(f"the LM is {quantization_of(lm)} already: load its float weights to quantize again")
    if lm.device.type != "cpu":
        raise ValueError(f"{mode} quantization runs on CPU; on GPU use bf16/fp16")
    if lm.dtype != torch.float32:
        raise ValueError(f"{mode} quantization starts from float32 weights, not {lm.dtype}")
    unpack(lm)  # oneDNN-packed layers back to nn.Linear
    lm.split_projections()


@torch.no_grad()
def quantize_int8(lm: StemLM, fbgemm_min: int = FBGEMM_MIN_FEATURES) -> StemLM:
    """Quantize `lm` in place (CPU): q/k/v split into modules, then every `nn.Linear` -> int8:
    layers with at least `fbgemm_min` inputs on fbgemm while PyTorch has it
    (`FbgemmInt8Linear`), the others `Int8Linear` (a layer whose inputs are not a multiple of 8
    stays float32)."""
    _prepare(lm, "int8")
    fbgemm = fbgemm_available()
    _replace(lm, lambda lin, _: _int8(lin, fbgemm and lin.in_features >= fbgemm_min))
    return lm.eval()


@torch.no_grad()
def quantize_int4(lm: StemLM, group_size: int = INT4_GROUP_SIZE) -> StemLM:
    """Quantize `lm` in place (CPU): every `nn.Linear` -> `Int4Linear` (a layer whose inputs no
    group divides, or whose outputs are not a multiple of 16, becomes int8).

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
    fbgemm = fbgemm_available()

    def convert(lin: nn.Linear, _: str) -> nn.Module:
        g = int4_group(lin.out_features, lin.in_features, group_size)
        if g is None:
            return _int8(lin, fbgemm and lin.in_features >= FBGEMM_MIN_FEATURES)
        return Int4Linear.from_linear(lin, g)

    _replace(lm, convert)
    return lm.eval()


def quantize(lm: StemLM, mode: str = "int8", group_size: int = INT4_GROUP_SIZE) -> StemLM:
    """Quantize `lm` in place: `mode` one of `MODES` (group_size: int4 only)."""
    if mode == "int8":
        return quantize_int8(lm)
    if mode == "int4":
        return quantize_int4(lm, group_size)
    raise ValueError(f"unknown quantization {mode!r}: choose one of {', '.join(MODES)}")


def quantization_of(lm: StemLM) -> str | None:
    """The LM's quantization, "int4" or "int8" (int4 LMs keep a few int8 layers), or None."""
    kinds = {type(m) for m in lm.modules()}
    if Int4Linear in kinds:
        return "int4"
    return "int8" if kinds & {Int8Linear, FbgemmInt8Linear} else None


def is_quantized(lm: StemLM) -> bool:
    """Whether `quantize` (or `load_quantized`) has replaced any of the LM's layers."""
    return quantization_of(lm) is not None


@torch.no_grad()
def load_quantized(lm: StemLM, state: dict[str, Any], fbgemm_min: int = FBGEMM_MIN_FEATURES) -> StemLM:
    """Load the state of a quantized LM (`lm.state_dict()` after `quantize`) into `lm`, a float LM
    of the same config (on the meta device, so that nothing float is allocated): each layer
    becomes the kind its stored tensors name (`weight_int4`: `Int4Linear` with the group their
    scales tell; `weight_int8`: int8 on the kernel `quantize_int8` would choose); the state's
    int8/int4 tensors are used as they are, nothing is quantized again.

    `state` is emptied as it loads: a layer's stored tensors are dropped as soon as its kernel
    has its own copy (fbgemm, int4 repack), so the peak stays near the quantized weight bytes."""
    lm.split_projections()
    fbgemm = fbgemm_available()
    errors: list[str] = []
    jobs: list[tuple[nn.Module, str, dict[str, torch.Tensor]]] = []  # (layer, prefix, its tensors)

    def skeleton(lin: nn.Linear, prefix: str) -> nn.Module:
        N, K, bias = lin.out_features, lin.in_features, lin.bias is not None
        if prefix + "weight_int4" in state:
            layer: nn.Module = Int4Linear(K, N, K // state[prefix + "scale_offset"].shape[0], bias, "meta")
        elif prefix + "weight_int8" in state:
            wide = fbgemm and K >= fbgemm_min
            layer = FbgemmInt8Linear(K, N, bias) if wide else Int8Linear(K, N, bias, "meta")
        else:
            return lin
        jobs.append((layer, prefix, {k: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}))
        return layer

    _replace(lm, skeleton)
    loaded = tuple(prefix for _, prefix, _ in jobs)
    # one layer at a time on this thread (worker threads' allocations, in malloc arenas of their
    # own, raised the peak of loading medium by 0.6-1.9 GB), but fbgemm's packing, which releases
    # the GIL and allocates only what it keeps, on a second thread while the next layer is read
    with ThreadPoolExecutor(1) as packer:
        packing: deque[Future[None]] = deque()
        while jobs:
            layer, prefix, own = jobs.pop()
            missing: list[str] = []
            if isinstance(layer, FbgemmInt8Linear):
                if (weights := layer.stored(own, prefix, missing, errors)) is not None:
                    q, scale, bias = weights
                    packing.append(packer.submit(layer.pack, layer.quantized(q, scale), bias))
                    if len(packing) > 2:  # at most two layers' copies wait for the packer
                        packing.popleft().result()
            else:
                layer._load_from_state_dict(
                    own, prefix, {"assign_to_params_buffers": True}, True, missing, [], errors
                )
            errors.extend(f"missing {k}" for k in missing)
            del own  # the stored copy goes as soon as the kernel has its own
        for done in packing:
            done.result()
    result = lm.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.startswith(loaded)]
    errors += [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in result.unexpected_keys]
    if errors:
        raise RuntimeError(f"the quantized state does not fit the LM: {'; '.join(errors[:3])}")
    state.clear()
    return lm.eval()


def weight_bytes(lm: StemLM) -> int:
    """Bytes of the LM's weights as stored (quantized layers at their int8/int4 size)."""
    quantized = [m for m in lm.modules() if hasattr(m, "weight_bytes")]
    inside = {id(t) for m in quantized for t in [*m.parameters(), *m.buffers()]}
    plain = sum(p.numel() * p.element_size() for p in lm.parameters() if id(p) not in inside)
    return plain + sum(m.weight_bytes for m in quantized)
