"""A BERT encoder for the frozen MiniLM text encoder, on `tokenizers` and torch's own layers.

all-MiniLM-L6-v2 is a 6-layer BERT: token, position and type embeddings, then post-norm encoder
layers (attention, add, LayerNorm; GELU feed-forward, add, LayerNorm), which are exactly torch's
`nn.TransformerEncoderLayer(norm_first=False, activation="gelu")`. Built here from the model
folder's `config.json`, `model.safetensors` (Hugging Face's key names) and `tokenizer.json` (read by
the `tokenizers` library, the tokenizer transformers itself runs), so that the default model does
not import transformers, for an encoder that runs in milliseconds: `benchmarks/cli_startup.py
--first-stem` on the 2-core CPU, quiet, medians of 3: a 2 s `generate` wrote its first stem after
4.9 s instead of 6.2 s, an `edit` after 5.2 s instead of 6.1 s (transformers' import: 1.4 s quiet,
3.4 s with other work running). The token states match transformers' `BertModel` to float
rounding (`tests/test_conditioning.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["BertEncoder", "BertTokenizer"]


class BertTokenizer:
    """`tokenizer.json` through `tokenizers`: texts -> (ids [B, L], attention mask [B, L]), padded
    to the longest and cut at `max_length` tokens."""

    def __init__(self, file: str | Path, max_length: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(file))
        pad = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
        if max_length is not None:
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in batch], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.long)
        return ids, mask


class BertEncoder(nn.Module):
    """BERT's encoder (no pooler): ids [B, L], mask [B, L] (1: token) -> states [B, L, hidden]."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        d, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        if (
            config.get("hidden_act", "gelu") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise ValueError("only BERT with GELU and absolute positions is supported")
        self.hidden_size = d
        self.words = nn.Embedding(int(config["vocab_size"]), d)
        self.positions = nn.Embedding(int(config["max_position_embeddings"]), d)
        self.types = nn.Embedding(int(config.get("type_vocab_size", 2)), d)
        self.norm = nn.LayerNorm(d, eps=eps)
        layer = dict(dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True, norm_first=False)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, int(config["num_attention_heads"]), int(config["intermediate_size"]), **layer
            )
            for _ in range(int(config["num_hidden_layers"]))
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> BertEncoder:
        """The encoder of a Hugging Face BERT folder (`config.json`, `model.safetensors`)."""
        folder = Path(folder)
        model = cls(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        model.load_hf_state(load_file(str(folder / "model.safetensors")))
        return model.eval()

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights under Hugging Face's `BertModel` key names (the pooler is not used)."""
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        ours = {
            "words.weight": state["embeddings.word_embeddings.weight"],
            "positions.weight": state["embeddings.position_embeddings.weight"],
            "types.weight": state["embeddings.token_type_embeddings.weight"],
            "norm.weight": state["embeddings.LayerNorm.weight"],
            "norm.bias": state["embeddings.LayerNorm.bias"],
        }
        for i in range(len(self.layers)):
            hf, at = f"encoder.layer.{i}.", f"layers.{i}."
            for part in ("weight", "bias"):
                qkv = [state[f"{hf}attention.self.{n}.{part}"] for n in ("query", "key", "value")]
                ours[f"{at}self_attn.in_proj_{part}"] = torch.cat(qkv)
                ours[f"{at}self_attn.out_proj.{part}"] = state[f"{hf}attention.output.dense.{part}"]
                ours[f"{at}norm1.{part}"] = state[f"{hf}attention.output.LayerNorm.{part}"]
                ours[f"{at}linear1.{part}"] = state[f"{hf}intermediate.dense.{part}"]
                ours[f"{at}linear2.{part}"] = state[f"{hf}output.dense.{part}"]
                ours[f"{at}norm2.{part}"] = state[f"{hf}output.LayerNorm.{part}"]
        self.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        pos = torch.arange(L, device=ids.device)
        x = self.norm(self.words(ids) + self.positions(pos)[None] + self.types(torch.zeros_like(ids)))
        padding = mask == 0  # [B, L] True: a padded key
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
        return x  # [B, L, D]
