"""The released checkpoint format (facebook/musicgen-stem-6cb / -7cb and reference-made models).

A reference model is a folder (or hub repo) holding `state_dict.bin` (the LM, fp16) and
`compression_state_dict_{bass,drums,other}.bin` (one codec per stem). Each file is a
`torch.save` dict `{'best_state': state_dict, 'xp.cfg': YAML text, ...}` holding only tensors and
plain containers, so it is read with `weights_only=True`, memory-mapped; float16 weights are
converted to float32 one tensor at a time, dropping the mapped pages of each as it is copied, so
loading holds one copy of the weights. Every module is rebuilt from the stored config (OmegaConf
YAML with `${...}` interpolations) and the weights map one to one onto ours.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .codec import CodecConfig, MultiStemCodec, SEANetConfig
from .conditioning import TextEncoderConfig
from .errors import ModelError, load_failure
from .layout import LAYOUT_6CB, StemLayout
from .lm import LMConfig
from .memory import fresh_tensor
from .modeldir import Codecs, ModelConfig, ModelParts, build_parts

STEMS = LAYOUT_6CB.stems  # the released files' stems (7cb: the same three)
LM_FILE = "state_dict.bin"
TEXT_PREFIX = "condition_provider.conditioners.description."

#: Codes of digital silence of the released codecs (method.md §4), by hub id.
RELEASED_SILENCE_TOKENS = {
    "facebook/musicgen-stem-6cb": [870, 530, 83, 2044, 2019, 1770],
    "facebook/musicgen-stem-7cb": [1035, 1823, 530, 83, 2044, 2019, 1770],
}
RELEASED_LICENSE = "CC-BY-NC 4.0 (weights released by Meta with MusicGen-Stem)"


def codec_file(stem: str) -> str:
    return f"compression_state_dict_{stem}.bin"


def reference_files() -> list[str]:
    return [LM_FILE] + [codec_file(s) for s in STEMS]


def is_reference_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / LM_FILE).is_file()


# ------------------------------------------------------------------------------------ file access


def locate(name_or_path: str | os.PathLike[str]) -> Path:
    """A local folder holding the four files, downloading them from the hub if needed (cached)."""
    path = Path(name_or_path)
    if path.is_dir():
        missing = [f for f in reference_files() if not (path / f).is_file()]
        if missing:
            raise ModelError(f"reference checkpoint folder '{path}' lacks {', '.join(missing)}")
        return path
    repo = str(name_or_path)
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise ModelError(f"'{repo}' is neither an existing folder nor a hub id (owner/name)")
    try:
        from huggingface_hub import hf_hub_download

        local = [Path(hf_hub_download(repo, f)) for f in reference_files()]
    except Exception as e:  # offline, missing repo, auth: all fixed by the user
        raise ModelError(
            f"cannot fetch '{repo}' from the Hugging Face hub ({type(e).__name__}): download "
            f"{', '.join(reference_files())} from the hub repo {repo} into one folder on a machine "
            "with network, and pass that folder instead"
        ) from None
    return local[0].parent


def _read(file: Path) -> tuple[dict[str, torch.Tensor], DictConfig]:
    """best_state and the parsed xp.cfg of one reference file (memory-mapped, weights only)."""
    try:
        pkg = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a corrupt or foreign file
        raise ModelError(f"cannot read reference checkpoint '{file}': {load_failure(e)}") from None
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        raise ModelError(f"'{file}' is not a reference checkpoint (expected keys best_state and xp.cfg)")
    try:
        cfg = OmegaConf.create(pkg["xp.cfg"])
    except OmegaConfBaseException as e:
        raise ModelError(f"cannot parse the xp.cfg stored in '{file}': {e}") from None
    return pkg["best_state"], cfg


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """A resolved config value (only the nodes we read are resolved)."""
    try:
        value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    except OmegaConfBaseException as e:
        raise ModelError(f"cannot resolve '{key}' in the stored config: {e}") from None
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ModelError(f"unsupported reference model: {what}")


# ---------------------------------------------------------------------------------- config mapping


def codec_config(cfg: DictConfig) -> CodecConfig:
    """Our CodecConfig from a compression model's xp.cfg."""
    _require(_get(cfg, "compression_model") == "encodec", "compression_model must be encodec")
    _require(
        _get(cfg, "encodec.autoencoder") == "seanet" and _get(cfg, "encodec.quantizer") == "rvq",
        "only seanet + rvq codecs are supported",
    )
    _require(not _get(cfg, "encodec.renormalize", False), "encodec.renormalize is not supported")
    _require(_get(cfg, "seanet.norm") == "weight_norm", "seanet.norm must be weight_norm")
    _require(_get(cfg, "seanet.activation") == "ELU", "seanet.activation must be ELU")
    _require(
        int(_get(cfg, "seanet.disable_norm_outer_blocks", 0)) == 0, "disable_norm_outer_blocks must be 0"
    )
    _require(
        _get(cfg, "seanet.decoder.final_activation") is None, "a decoder final activation is not supported"
    )
    dec = _get(cfg, "seanet.decoder", {}) or {}
    seanet = SEANetConfig(
        n_filters=int(_get(cfg, "seanet.n_filters")),
        n_residual_layers=int(_get(cfg, "seanet.n_residual_layers")),
        elu_alpha=float((_get(cfg, "seanet.activation_params") or {}).get("alpha", 1.0)),
        kernel_size=int(_get(cfg, "seanet.kernel_size")),
        residual_kernel_size=int(_get(cfg, "seanet.residual_kernel_size")),
        last_kernel_size=int(_get(cfg, "seanet.last_kernel_size")),
        dilation_base=int(_get(cfg, "seanet.dilation_base")),
        pad_mode=str(_get(cfg, "seanet.pad_mode")),
        true_skip=bool(_get(cfg, "seanet.true_skip")),
        compress=int(_get(cfg, "seanet.compress")),
        lstm=int(_get(cfg, "seanet.lstm")),
        trim_right_ratio=float(dec.get("trim_right_ratio", 1.0)),
    )
    return CodecConfig.seanet(
        seanet,
        sample_rate=int(_get(cfg, "sample_rate")),
        channels=int(_get(cfg, "channels")),
        dimension=int(_get(cfg, "seanet.dimension")),
        ratios=tuple(int(r) for r in _get(cfg, "seanet.ratios")),
        causal=bool(_get(cfg, "seanet.causal")),
        n_q=int(_get(cfg, "rvq.n_q")),
        bins=int(_get(cfg, "rvq.bins")),
        decay=float(_get(cfg, "rvq.decay")),
        kmeans_init=bool(_get(cfg, "rvq.kmeans_init")),
        kmeans_iters=int(_get(cfg, "rvq.kmeans_iters")),
        threshold_ema_dead_code=float(_get(cfg, "rvq.threshold_ema_dead_code")),
    )


def lm_config(cfg: DictConfig) -> tuple[LMConfig, list[int], int]:
    """Our LMConfig, the delays and the cardinality from the LM's xp.cfg."""
    t = _get(cfg, "transformer_lm")
    _require(_get(cfg, "lm_model") == "transformer_lm", "lm_model must be transformer_lm")
    _require(
        _get(cfg, "codebooks_pattern.modeling") == "delay", "only the delay codebook pattern is supported"
    )
    _require(
        t.get("norm_first", False) and t.get("norm", "layer_norm") == "layer_norm", "pre-norm LayerNorm only"
    )
    _require(t.get("activation", "gelu") == "gelu", "only the gelu activation is supported")
    _require(t.get("positional_embedding", "sin") == "sin", "only sinusoidal positions are supported")
    _require(t.get("layer_scale") is None, "layer_scale is not supported")
    _require(
        not t.get("qk_layer_norm") and not t.get("qk_layer_norm_cross"), "qk_layer_norm is not supported"
    )
    _require(
        int(t.get("kv_repeat", 1)) == 1 and t.get("past_context") is None,
        "kv_repeat/past_context unsupported",
    )
    _require(
        _get(cfg, "fuser.cross") == ["description"]
        and not _get(cfg, "fuser.prepend")
        and not _get(cfg, "fuser.sum"),
        "the text must be fused by cross-attention only",
    )
    pattern = _get(cfg, "codebooks_pattern.delay")
    _require(
        int(pattern.get("flatten_first", 0)) == 0 and int(pattern.get("empty_initial", 0)) == 0,
        "flatten_first/empty_initial delay patterns are not supported",
    )
    dim = int(t["dim"])
    lm = LMConfig(
        dim=dim,
        num_heads=int(t["num_heads"]),
        num_layers=int(t["num_layers"]),
        ff_dim=int(t.get("hidden_scale", 4) * dim),
        max_period=float(t.get("max_period", 10000.0)),
        positional_scale=float(t.get("positional_scale", 1.0)),
        bias_attn=bool(t.get("bias_attn", True)),
        bias_ff=bool(t.get("bias_ff", True)),
        bias_proj=bool(t.get("bias_proj", True)),
        dropout=float(t.get("dropout", 0.0)),
    )
    return lm, [int(d) for d in pattern["delays"]], int(t["card"])


def model_config(
    lm_cfg: DictConfig, codec_cfgs: dict[str, DictConfig], name: str, text_encoder: str | None
) -> ModelConfig:
    """The whole ModelConfig of a reference model."""
    lm, delays, card = lm_config(lm_cfg)
    codecs = {s: codec_config(c) for s, c in codec_cfgs.items()}
    layout = StemLayout(STEMS, tuple(codecs[s].n_q for s in STEMS), tuple(delays), card)
    text = TextEncoderConfig.from_audiocraft(_get(lm_cfg, "conditioners.description"))
    if text_encoder is not None:
        _require(text.kind == "t5", f"--text-encoder applies to T5 models, this one uses {text.kind}")
        text = TextEncoderConfig.from_dict({**text.to_dict(), "name": str(text_encoder)})
    return ModelConfig(
        layout=layout,
        lm=lm,
        text=text,
        codecs=codecs,
        name=name,
        max_duration=float(_get(lm_cfg, "dataset.segment_duration", 30.0)),
        silence_tokens=RELEASED_SILENCE_TOKENS.get(name),
        info={
            "converted_from": name,
            "cfg_coef": float(_get(lm_cfg, "classifier_free_guidance.inference_coef", 3.0)),
            **({"license": RELEASED_LICENSE} if name in RELEASED_SILENCE_TOKENS else {}),
        },
    )


# ------------------------------------------------------------------------------------------ loading


#: madvise(2) advice that drops a range's pages from this process (Linux).
MADV_DONTNEED = 4


def _private_mappings(file: Path) -> list[tuple[int, int]]:
    """Address ranges of this process's private (copy-on-write) memory mappings of `file`, from
    /proc/self/maps; [] where that cannot be read."""
    target = os.path.realpath(file)
    ranges = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(maxsplit=5)
                if len(fields) == 6 and fields[5] == target and fields[1].endswith("p"):
                    start, end = fields[0].split("-")
                    ranges.append((int(start, 16), int(end, 16)))
    except OSError:
        return []
    return ranges


def _page_releaser(file: Path) -> Callable[[torch.Tensor], None]:
    """A function that drops the resident pages of a tensor memory-mapped from `file` (by
    `torch.load(mmap=True)`) once it has been copied: madvise(MADV_DONTNEED) on the whole pages
    inside it. The mapping is a private mapping of the file that nothing writes to, so a page
    read again is re-read from the file, identical: nothing is lost, the pages just stop counting
    in this process's memory. Does nothing off Linux or when the tensor is not in such a mapping."""
    ranges = _private_mappings(file) if sys.platform.startswith("linux") else []
    if not ranges:
        return lambda t: None
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE

    def release(t: torch.Tensor) -> None:
        if not t.is_contiguous():
            return
        first = t.data_ptr()
        last = first + t.numel() * t.element_size()
        a, b = -(-first // page) * page, last // page * page  # whole pages inside the tensor
        if b > a and any(lo <= a and b <= hi for lo, hi in ranges):
            madvise(a, b - a, MADV_DONTNEED)

    return release


def _assign(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    release: Callable[[torch.Tensor], None],
) -> None:
    """Load `state` as float32 into a meta-built module (one copy of the weights in memory).

    Float32 tensors are used as they are (memory-mapped). Others are converted one at a time
    into memory of their own, and `release` drops the pages of each source once copied: converting
    the whole float16 LM before releasing anything held it beside its float32 copy, 1.4x the
    weight bytes for medium (benchmarks/memory.py).
    """
    converted = {}
    for k, v in state.items():
        if v.is_floating_point() and v.dtype != torch.float32:
            out = fresh_tensor(tuple(v.shape), torch.float32)
            out.copy_(v)
            release(v)
            v = out
        converted[k] = v
    try:
        module.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise ModelError(f"the {what} weights do not fit their config: {' '.join(lines[:2])[:300]}") from None


def load_reference(name_or_path: str | os.PathLike[str], text_encoder: str | None = None) -> ModelParts:
    """Build our modules from a reference-format folder or hub id, with its weights.

    text_encoder: a local folder (or hub id) to use for the T5 encoder instead of the one named
    in the config.
    """
    folder = locate(name_or_path)
    name = str(name_or_path)
    lm_state, lm_cfg = _read(folder / LM_FILE)
    codec_states, codec_cfgs = {}, {}
    for stem in STEMS:
        codec_states[stem], codec_cfgs[stem] = _read(folder / codec_file(stem))
    config = model_config(lm_cfg, codec_cfgs, name, text_encoder)
    parts = build_parts(config, device="cpu", empty=True)
    text_state = {k[len(TEXT_PREFIX) :]: v for k, v in lm_state.items() if k.startswith(TEXT_PREFIX)}
    other = [k for k in lm_state if k.startswith("condition_provider.") and not k.startswith(TEXT_PREFIX)]
    _require(not other, f"conditioners other than the text description are not supported ({other[:3]})")
    release = _page_releaser(folder / LM_FILE)
    lm_only = {k: v for k, v in lm_state.items() if not k.startswith("condition_provider.")}
    _assign(parts.lm, lm_only, "LM", release)
    _assign(parts.text, text_state, "text conditioner", release)
    for stem in STEMS:
        _assign(
            parts.codec.codecs[stem],
            codec_states[stem],
            f"{stem} codec",
            _page_releaser(folder / codec_file(stem)),
        )
    del lm_state, codec_states
    return parts


def load_reference_codecs(name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Codecs:
    """Only the codecs of a reference-format folder or hub id (the LM file is read for the stream
    layout only; no LM or text encoder is built)."""
    folder = locate(name_or_path)
    _, lm_cfg = _read(folder / LM_FILE)
    _, delays, card = lm_config(lm_cfg)
    states, configs = {}, {}
    for stem in STEMS:
        states[stem], cfg = _read(folder / codec_file(stem))
        configs[stem] = codec_config(cfg)
    layout = StemLayout(STEMS, tuple(configs[s].n_q for s in STEMS), tuple(delays), card)
    with torch.device("meta"):
        codec = MultiStemCodec(layout, configs)
    for stem in STEMS:
        release = _page_releaser(folder / codec_file(stem))
        _assign(codec.codecs[stem], states[stem], f"{stem} codec", release)
    codec = codec.to(device).eval()
    silence = RELEASED_SILENCE_TOKENS.get(str(name_or_path)) or codec.silence_codes()
    return Codecs(codec, layout, list(silence), [folder / codec_file(s) for s in STEMS])
