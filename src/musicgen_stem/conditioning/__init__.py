"""Conditioning of the LM: text encoders and the text conditioner (cross-attention memory)."""

from .text import (
    DEFAULT_T5,
    TEXT_ENCODER_KINDS,
    LUTTextEncoder,
    MiniLMTextEncoder,
    T5TextEncoder,
    TextConditioner,
    TextConfigError,
    TextEncoder,
    TextEncoderConfig,
    build_text_conditioner,
    build_text_encoder,
    drop_words,
    hash_trick,
    minilm_model_dir,
)

__all__ = [
    "DEFAULT_T5",
    "TEXT_ENCODER_KINDS",
    "LUTTextEncoder",
    "MiniLMTextEncoder",
    "T5TextEncoder",
    "TextConditioner",
    "TextConfigError",
    "TextEncoder",
    "TextEncoderConfig",
    "build_text_conditioner",
    "build_text_encoder",
    "drop_words",
    "hash_trick",
    "minilm_model_dir",
]
