"""The multi-stream language model and its delay pattern."""

from .model import DecodeState, KVCache, LMConfig, StemLM
from .pattern import build_sequence, num_steps, revert_logits, revert_sequence

__all__ = [
    "DecodeState",
    "KVCache",
    "LMConfig",
    "StemLM",
    "build_sequence",
    "num_steps",
    "revert_logits",
    "revert_sequence",
]
