"""Per-stem neural audio codec (EnCodec-style SEANet + residual VQ) and its multi-stem wrapper."""

from .config import CodecConfig
from .model import CodecOutput, MultiStemCodec, StemCodec
from .streaming import MultiStemStreamingDecoder, StreamingDecoder

__all__ = [
    "CodecConfig",
    "CodecOutput",
    "MultiStemCodec",
    "MultiStemStreamingDecoder",
    "StemCodec",
    "StreamingDecoder",
]
