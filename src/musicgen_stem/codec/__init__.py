"""Per-stem neural audio codec (EnCodec-style SEANet + residual VQ) and its multi-stem wrapper."""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": ("CodecConfig",),
        ".kinds": (
            "ChromaEncoderConfig",
            "HarmonicDecoderConfig",
            "ISTFTDecoderConfig",
            "PitchEncoderConfig",
            "SEANetConfig",
            "STFTEncoderConfig",
            "TonalDecoderConfig",
        ),
        ".model": (
            "CodecOutput",
            "MultiStemCodec",
            "StemCodec",
        ),
        ".streaming": (
            "MultiStemStreamingDecoder",
            "StreamingDecoder",
        ),
    },
)
