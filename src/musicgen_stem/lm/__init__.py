"""The multi-stream language model and its delay pattern."""

from .cache import DecodeState, KVCache
from .config import LMConfig
from .model import StemLM
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
