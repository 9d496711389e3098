"""Our model folder format: `config.json` plus one safetensors file per component.

```
MODEL_DIR/
  config.json                  format, layout, LM, text encoder and codec configs, defaults
  lm.safetensors               the transformer LM (float, or int8/int4 projections: `lm.qlinear`)
  text_conditioner.safetensors the text projection (and the look-up table of a LUT encoder)
  step_conditioner.safetensors the per-step conditions (beat grid, chords), for models with any
  codec_<stem>.safetensors     one codec per stem
```
Frozen pretrained text encoders (T5, MiniLM) are not stored: the config names them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .codec import CodecConfig, MultiStemCodec
from .conditioning import TextConditioner, TextEncoderConfig
from .conditioning.steps import StepConditioner, StepConfig
from .errors import ModelError, MusicGenStemError, OutputExistsError
from .layout import StemLayout
from .lm import LMConfig, StemLM
from .lm.quantize import MODES as QUANTIZATION_MODES
from .lm.quantize import load_quantized, quantization_of
from .memory import OWN_MAPPING_BYTES, fresh_tensor
from .safeio import io_reason, make_temp_sibling, replace_dir

FORMAT = "musicgen-stem"
#: The format version written (2: codec configs nested by kind, LMs stored int8/int4), and the
#: newest read: a version that cannot read a folder says so, where it would misread it.
FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
LM_FILE = "lm.safetensors"
TEXT_FILE = "text_conditioner.safetensors"
STEPS_FILE = "step_conditioner.safetensors"


def codec_file(stem: str) -> str:
    return f"codec_{stem}.safetensors"


@dataclass
class ModelConfig:
    """Everything needed to build a model before its weights are loaded."""

    layout: StemLayout
    lm: LMConfig
    text: TextEncoderConfig
    codecs: dict[str, CodecConfig]
    name: str = "custom"
    #: The per-step conditions the LM reads (beat grid, chords).
    steps: StepConfig = field(default_factory=StepConfig)
    #: Longest text -> stems generation in one window, seconds (the training crop).
    max_duration: float = 30.0
    #: Longest edit in one window, seconds (the main region after the masked-stem prefix).
    edit_window: float = 25.0
    #: Codes of digital silence per stream, to pad an edit prefix; computed from the codecs if None.
    silence_tokens: list[int] | None = None
    #: The model's default sampling settings, `SamplingParams` fields (what `set_generation_params`
    #: falls back to; those not given: `SamplingParams`' defaults).
    sampling: dict[str, Any] = field(default_factory=dict)
    #: Free-form facts shown to users (licence, training data...).
    info: dict[str, Any] = field(default_factory=dict)
    #: "int8" / "int4" where the LM's projections are stored quantized (`lm.quantize`), else None.
    quantization: str | None = None
    #: The quantization this model keeps its music in, measured (`docs/experiments.md`): what
    #: `MusicGenStem.quantize("auto")` (the CLI's and app's default) applies on CPU. None: float32.
    cpu_quantization: str | None = None

    def __post_init__(self) -> None:
        missing = [s for s in self.layout.stems if s not in self.codecs]
        if missing:
            raise ModelError(f"model config has no codec for stem(s) {missing}")
        if self.silence_tokens is not None and len(self.silence_tokens) != self.layout.num_streams:
            raise ModelError(
                f"silence_tokens has {len(self.silence_tokens)} entries for {self.layout.num_streams} streams"
            )
        if not isinstance(self.sampling, dict):
            raise ModelError(f"sampling must be a mapping of sampling settings, got {self.sampling!r}")
        for key in ("quantization", "cpu_quantization"):
            if getattr(self, key) not in (None, *QUANTIZATION_MODES):
                raise ModelError(f"{key} must be int8 or int4, got {getattr(self, key)!r}")

    @property
    def file_names(self) -> list[str]:
        steps = [STEPS_FILE] if self.steps.any else []
        return [CONFIG_FILE, LM_FILE, TEXT_FILE, *steps] + [codec_file(s) for s in self.layout.stems]

    def to_dict(self) -> dict[str, Any]:
        quantized = {"quantization": self.quantization} if self.quantization else {}
        on_cpu = {"cpu_quantization": self.cpu_quantization} if self.cpu_quantization else {}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **quantized,
            "name": self.name,
            "layout": self.layout.to_dict(),
            "lm": self.lm.to_dict(),
            "steps": self.steps.to_dict(),
            "text_encoder": self.text.to_dict(),
            "codecs": {s: self.codecs[s].to_dict() for s in self.layout.stems},
            "max_duration": self.max_duration,
            "edit_window": self.edit_window,
            "silence_tokens": self.silence_tokens,
            "sampling": self.sampling,
            "info": self.info,
            **on_cpu,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if d.get("format") != FORMAT:
            raise ModelError(f"config.json is not a {FORMAT} model config (format={d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelError(
                f"model format version {d['format_version']} is newer than this package supports "
                f"({FORMAT_VERSION}): upgrade musicgen-stem"
            )
        try:
            lm = dict(d["lm"])
            steps = dict(d.get("steps") or {})
            if lm.pop("beat_grid", False):  # folders of 0.1 kept the beat grid in the LM
                steps["beat"] = True
            return cls(
                layout=StemLayout.from_dict(d["layout"]),
                lm=LMConfig.from_dict(lm),
                steps=StepConfig.from_dict(steps),
                text=TextEncoderConfig.from_dict(d["text_encoder"]),
                codecs={s: CodecConfig.from_dict(c) for s, c in d["codecs"].items()},
                name=str(d.get("name", "custom")),
                max_duration=float(d.get("max_duration", 30.0)),
                edit_window=float(d.get("edit_window", 25.0)),
                silence_tokens=d.get("silence_tokens"),
                sampling=d.get("sampling") or {},
                info=dict(d.get("info", {})),
                quantization=d.get("quantization"),
                cpu_quantization=d.get("cpu_quantization"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"config.json is malformed: {type(e).__name__}: {e}") from None


@dataclass
class ModelParts:
    """The modules of a model, built from a `ModelConfig`."""

    config: ModelConfig
    lm: StemLM
    text: TextConditioner
    codec: MultiStemCodec
    steps: StepConditioner | None = None  # None: the LM reads no per-step conditions


def build_parts(
    config: ModelConfig, device: str | torch.device = "cpu", empty: bool = False, lm: StemLM | None = None
) -> ModelParts:
    """Build freshly initialised modules; with `empty`, the LM is allocated on the meta device so
    that loading weights into it (with assign) keeps a single copy in memory; `lm`: one already
    built (and loaded). Codecs are always built for real: their fixed tables (windows, noise,
    oscillator tables) are buffers outside the weight files."""
    text = TextConditioner(config.text, config.lm.dim).to(device)
    if lm is None:
        with torch.device("meta") if empty else torch.device(device):
            lm = StemLM(config.layout, config.lm)
    with torch.device(device):
        codec = MultiStemCodec(config.layout, config.codecs)
        steps = StepConditioner(config.steps, config.lm.dim).eval() if config.steps.any else None
    return ModelParts(config, lm.eval(), text.eval(), codec.eval(), steps)


def check_target(target: Path, force: bool) -> None:
    """Refuse to write a model over a file, or over a non-empty folder without `force`."""
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"'{target}' exists and is not a folder; choose another path")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputExistsError(
            f"'{target}' already exists and is not empty; choose another path or pass --force"
        )


def _atomic_dir(target: Path, force: bool) -> Path:
    """A temporary sibling directory to write into before it replaces `target`."""
    check_target(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    return make_temp_sibling(target)  # a plain mkdir: as readable as any folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _contiguous_state(module: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The module's state on CPU; float32 tensors in `dtype` if given (a quantized layer's bf16
    scales stay as they are)."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.dtype == torch.float32:
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def save_model(
    parts: ModelParts, path: str | os.PathLike[str], force: bool = False, lm_dtype: torch.dtype | None = None
) -> Path:
    """Write a model folder atomically (a temporary folder renamed into place).

    lm_dtype: store the LM and text projection in this dtype (e.g. float16 to halve a shipped
    model); loading always upcasts to float32. Codecs are stored as they are. A quantized LM
    (`lm.quantize`) is stored as its int8/int4 weights, and the config says which.
    """
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()  # swap the folder, not the link
    try:
        tmp = _atomic_dir(target, force)
    except OSError as exc:
        raise MusicGenStemError(f"cannot create model folder '{target}': {io_reason(exc)}") from None
    try:
        cfg = dataclasses.replace(parts.config, quantization=quantization_of(parts.lm))
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        save_file(_contiguous_state(parts.lm, lm_dtype), str(tmp / LM_FILE), metadata={"format": "pt"})
        save_file(_contiguous_state(parts.text, lm_dtype), str(tmp / TEXT_FILE), metadata={"format": "pt"})
        if parts.steps is not None:
            save_file(
                _contiguous_state(parts.steps, lm_dtype), str(tmp / STEPS_FILE), metadata={"format": "pt"}
            )
        for stem in cfg.layout.stems:
            codec = parts.codec.codecs[stem]
            save_file(_contiguous_state(codec), str(tmp / codec_file(stem)), metadata={"format": "pt"})
        for f in tmp.iterdir():
            f.chmod(0o666 & ~_umask())
        replace_dir(tmp, target, lambda: check_target(target, force))
    except (OSError, SafetensorError) as exc:
        raise MusicGenStemError(
            f"cannot write model folder '{target}': {io_reason(exc)}; check free space and permissions"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def is_model_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(path: str | os.PathLike[str]) -> ModelConfig:
    p = Path(path) / CONFIG_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"'{path}' is not a musicgen-stem model folder: {CONFIG_FILE} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read '{p}': {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"'{p}' does not hold a JSON object")
    return ModelConfig.from_dict(data)


#: safetensors dtype names (all little-endian) -> torch dtypes.
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _map_tensor(f: BinaryIO, offset: int, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    """A tensor over the bytes of the open file `f` from `offset`, in a private (copy-on-write)
    memory mapping of its own: read lazily from the page cache, unmapped once dropped."""
    numel = math.prod(shape)
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    length = offset - base + numel * dtype.itemsize
    buffer = mmap.mmap(f.fileno(), length, offset=base, access=mmap.ACCESS_COPY)
    return torch.frombuffer(buffer, dtype=dtype, count=numel, offset=offset - base).view(shape)


#: Largest safetensors header we read (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("the header names a tensor twice")
    return dict(pairs)


def _entry(key: Any, info: Any) -> tuple[str, torch.dtype, list[int], int, int]:
    """One header entry, checked: (key, dtype, shape, begin, end)."""
    if not isinstance(key, str) or not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
        raise ValueError(f"tensor {str(key)[:60]!r} is not a tensor entry of a supported dtype")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    ints = [*(shape if isinstance(shape, list) else [None]), *(offsets if isinstance(offsets, list) else [])]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(i) is int and i >= 0 for i in ints):
        raise ValueError(f"tensor {key[:60]!r} has an invalid shape or data_offsets")
    dtype = _DTYPES[info["dtype"]]
    begin, end = offsets
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"tensor {key[:60]!r} has inconsistent shape and offsets")
    return key, dtype, list(shape), begin, end


def _read_header(f: BinaryIO, size: int) -> tuple[list[tuple[str, torch.dtype, list[int], int, int]], int]:
    """The tensors of an open safetensors file, in file order, as (key, dtype, shape, begin, end)
    with byte offsets from the returned data start. Refused unless the tensors tile the data
    exactly (in order, no overlap, no gap, nothing past the end of the file)."""
    head = f.read(8)
    if len(head) != 8:
        raise ValueError("the file is too short for a safetensors header")
    n = struct.unpack("<Q", head)[0]
    if n > size - 8 or n > MAX_HEADER_BYTES:
        raise ValueError(f"header length {n} exceeds the file size {size} (truncated?)")
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError("the header is truncated")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("the header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise ValueError("the header's __metadata__ is not a map of strings")
    start = 8 + n
    entries = sorted((_entry(k, v) for k, v in header.items()), key=lambda e: (e[3], e[4]))
    pos = 0
    for key, _, _, begin, end in entries:
        if begin != pos:
            what = "overlaps another" if begin < pos else "leaves a gap before it"
            raise ValueError(f"tensor {key[:60]!r} {what} (tampered or corrupt file)")
        pos = end
    if start + pos != size:
        what = "lie past the end of the file (truncated?)" if start + pos > size else "do not cover the file"
        raise ValueError(f"the tensors {what}")
    return entries, start


def _read_exactly(f: BinaryIO, buffer: memoryview, key: str) -> None:
    """Fill `buffer` from `f` (one read(2) returns at most ~2 GiB)."""
    done = 0
    while done < len(buffer):
        n = f.readinto(buffer[done:])
        if not n:
            raise ValueError(f"tensor '{key}' is truncated")
        done += n


def read_weights(file: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, floating ones converted to `dtype`, for loading a model.

    Loading holds one copy of the weights plus one source tensor. A big tensor is memory-mapped on
    its own (`_map_tensor`): used as it is when its dtype is already right (no copy; unmapped once
    dropped, e.g. when `pack_for_decoding` replaces it by its packed copy), else converted into
    memory of its own (`fresh_tensor`) and unmapped at once. Small tensors are plainly read.
    `safetensors.torch.load_file` maps the whole file at once instead, and every page read stays
    resident as long as any tensor of the file lives: the peak of loading medium was 1.9x its
    weight bytes from a float32 file and 1.4x from a float16 one (benchmarks/memory.py).
    """
    if sys.byteorder != "little":  # safetensors is little-endian: let the library swap bytes
        mapped = load_file(str(file))
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in mapped.items()}
    state: dict[str, torch.Tensor] = {}
    with open(file, "rb", buffering=0) as f:
        entries, start = _read_header(f, os.fstat(f.fileno()).st_size)
        for key, src, shape, begin, end in entries:
            out = dtype if src.is_floating_point else src
            if end - begin >= OWN_MAPPING_BYTES:
                t = _map_tensor(f, start + begin, src, shape)
                if out != src:
                    t = fresh_tensor(tuple(shape), out).copy_(t)
            else:
                raw = torch.empty(end - begin, dtype=torch.uint8)
                f.seek(start + begin)
                _read_exactly(f, memoryview(raw.numpy()), key)
                t = raw.view(src).view(shape).to(out)
            state[key] = t
    return state


def _read_state(file: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ModelError(f"model folder is incomplete: '{file}' is missing")
    try:
        return read_weights(file, dtype)
    except (ValueError, KeyError, TypeError, OSError, OverflowError) as e:
        raise ModelError(f"cannot read weights '{file}': {e}") from None


def _load_into(
    module: nn.Module,
    file: Path,
    dtype: torch.dtype = torch.float32,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    state = _read_state(file, dtype) if state is None else state
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ModelError(f"weights in '{file}' do not fit the config: {' '.join(first[:2])[:300]}") from None


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", text_encoder: str | None = None
) -> ModelParts:
    """Load a model folder written by `save_model` (weights as float32 on `device`).

    text_encoder: another location (local folder or hub id) for a T5 text encoder.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model folder '{path}' does not exist")
    config = read_config(path)
    if text_encoder is not None:
        if config.text.kind != "t5":
            raise ModelError(f"--text-encoder applies to T5 models; this one uses {config.text.kind}")
        config.text = TextEncoderConfig.from_dict({**config.text.to_dict(), "name": str(text_encoder)})
    if config.quantization and torch.device(device).type != "cpu":
        raise ModelError(
            f"'{path}' holds an {config.quantization} LM, which runs on CPU: load its float folder"
        )
    with torch.device("meta"):
        lm = StemLM(config.layout, config.lm)
    lm_state = _read_state(path / LM_FILE)
    legacy = {"beat.weight": lm_state.pop("beat.weight")} if "beat.weight" in lm_state else None
    if config.quantization:
        try:
            load_quantized(lm, lm_state)
        except (RuntimeError, ValueError, KeyError) as e:
            first = " ".join(str(e).strip().splitlines()[:2])[:300]
            raise ModelError(
                f"quantized weights in '{path / LM_FILE}' do not fit the config: {first}"
            ) from None
    else:
        _load_into(lm, path / LM_FILE, state=lm_state)
    parts = build_parts(config, device="cpu", lm=lm.eval())  # the codecs' initial weights after the LM
    for stem in config.layout.stems:
        _load_into(parts.codec.codecs[stem], path / codec_file(stem))
    _load_into(parts.text, path / TEXT_FILE)
    if parts.steps is not None:  # 0.1 folders: the beat grid's weight in the LM's file
        _load_into(parts.steps, path / (LM_FILE if legacy else STEPS_FILE), state=legacy)
    for module in (parts.lm, parts.text, parts.codec, parts.steps):
        if module is not None:
            module.to(device).eval()
    return parts


@dataclass
class Codecs:
    """The codecs of a model, enough to turn stems into tokens and back (no LM, no text encoder)."""

    codec: MultiStemCodec
    layout: StemLayout
    #: Codes of digital silence per stream (the config's, else measured on the codecs).
    silence_tokens: list[int]
    #: The weight files the codecs were read from, in layout order.
    files: list[Path]


def load_codecs(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Codecs:
    """Load only the codecs of a model folder written by `save_model` (float32, eval mode)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model folder '{path}' does not exist")
    config = read_config(path)
    codec = MultiStemCodec(config.layout, config.codecs)  # real tensors: see `build_parts`
    files = [path / codec_file(stem) for stem in config.layout.stems]
    for stem, file in zip(config.layout.stems, files, strict=True):
        _load_into(codec.codecs[stem], file)
    codec = codec.to(device).eval()
    silence = config.silence_tokens if config.silence_tokens is not None else codec.silence_codes()
    return Codecs(codec, config.layout, list(silence), files)


def read_codec_export(file: str | os.PathLike[str]) -> tuple[CodecConfig, dict[str, torch.Tensor]]:
    """A trained codec as exported by `train-codec`: `codec_<stem>.safetensors` + the `.json` beside it."""
    file = Path(file)
    cfg_file = file.with_suffix(".json")
    if not file.is_file() or not cfg_file.is_file():
        raise ModelError(f"codec export '{file}' needs both the .safetensors file and its .json config")
    try:
        cfg = CodecConfig.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")))
        state = load_file(str(file))
    except (ValueError, OSError, SafetensorError) as e:
        raise ModelError(f"cannot read codec export '{file}': {e}") from None
    return cfg, state


def read_trained_codec(
    file: str | os.PathLike[str],
) -> tuple[CodecConfig, dict[str, torch.Tensor], int | None]:
    """(config, weights, step) of a `train-codec` result: its export (`read_codec_export`, step None)
    or a run's `checkpoint.pt` (the raw weights at its step; read without unpickling code)."""
    file = Path(file)
    if file.name != "checkpoint.pt":
        return (*read_codec_export(file), None)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        return CodecConfig.from_dict(state["codec_config"]), state["model"], int(state["step"])
    except (ValueError, OSError, KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"cannot read codec checkpoint '{file}': {e}") from None
