"""Helpers shared by the benchmark scripts (imported by them; run the scripts from the repository root).

Random-weight models of a preset: the LM is allocated once in its final dtype and filled with
normal(0, 0.02) (no init pass over 7 GB), the codecs and the text conditioner are initialised as
usual. A T5 text encoder is swapped for a look-up table (LUT): T5 weights cannot be fetched offline,
and text encoding is a negligible part of the time and memory (T5-base is 0.44 GB in fp32, not
counted in the figures of medium).
"""

from __future__ import annotations

import itertools
import resource
from pathlib import Path

import torch
from torch import nn

from musicgen_stem.codec import MultiStemCodec
from musicgen_stem.conditioning import TextEncoderConfig
from musicgen_stem.modeldir import ModelConfig, ModelParts, build_parts
from musicgen_stem.presets import preset

#: The LUT that stands in for T5 (one token per text; 768-d like T5-base's output).
LUT_FOR_T5 = TextEncoderConfig(kind="lut", n_bins=32, dim=768)
LUT_NOTE = "text encoder: LUT in place of T5-base (T5 weights are not available offline)"


def bench_config(name: str, lut: bool = False) -> tuple[ModelConfig, str]:
    """The preset's config and a note for the output. A T5 text encoder (or any, with `lut`) is
    replaced by a LUT."""
    cfg = preset(name)
    if cfg.text.kind == "t5" or (lut and cfg.text.kind != "lut"):
        was = cfg.text.kind
        cfg.text = LUT_FOR_T5
        return cfg, LUT_NOTE if was == "t5" else f"text encoder: LUT in place of {was}"
    return cfg, ""


def random_lm_(lm: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Allocate a meta-device LM on the CPU in `dtype` and fill it with normal(0, 0.02)."""
    lm = lm.to(dtype=dtype).to_empty(device="cpu")
    with torch.no_grad():
        for p in itertools.chain(lm.parameters(), lm.buffers()):
            if p.is_floating_point():
                p.normal_(0, 0.02)
    return lm.eval()


def random_parts(config: ModelConfig, lm_dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelParts:
    """A model of `config` with random weights (LM in `lm_dtype`, the rest float32)."""
    torch.manual_seed(seed)
    parts = build_parts(config, device="cpu", empty=True)  # LM and codecs on the meta device
    lm = random_lm_(parts.lm, lm_dtype)
    codec = MultiStemCodec(config.layout, config.codecs).eval()
    return ModelParts(config, lm, parts.text, codec)  # type: ignore[arg-type]


def module_bytes(*modules: nn.Module) -> int:
    """Bytes of the parameters and buffers of `modules` (each tensor once), floats counted as float32
    (as used on CPU); meta tensors included."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            total += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return total


def parts_bytes(parts: ModelParts) -> dict[str, int]:
    """Inference weight bytes of the LM, the text conditioner (with its frozen pretrained encoder,
    which is not a registered submodule) and the codecs."""
    text = [parts.text] + ([parts.text.encoder] if isinstance(parts.text.encoder, nn.Module) else [])
    return {"lm": module_bytes(parts.lm), "text": module_bytes(*text), "codec": module_bytes(parts.codec)}


def peak_rss() -> int:
    """Peak resident set size of this process so far, bytes (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_breakdown() -> dict[str, int]:
    """Current VmRSS, RssAnon and RssFile of this process, bytes (Linux /proc; {} elsewhere)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return {}
    out = {}
    for line in status.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"
