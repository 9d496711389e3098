"""Int8 inference for CPU decoding: fbgemm dynamic quantization of every projection.

Weights are stored as int8 with one scale per output channel (a quarter of the fp32 bytes every
decoding step must read); activations are quantized on the fly per step. Inference only: the
quantized LM cannot be trained or saved as a checkpoint.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .model import StemLM
from .packing import unpack


def quantize_int8(lm: StemLM) -> StemLM:
    """Quantize `lm` in place (CPU): q/k/v split into modules, then every `nn.Linear` int8."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if lm.device.type != "cpu":
        raise ValueError("int8 quantization runs on CPU (fbgemm); on GPU use bf16/fp16")
    unpack(lm)  # oneDNN-packed layers back to nn.Linear
    lm.split_projections()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        quantize_dynamic(lm, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return lm.eval()
