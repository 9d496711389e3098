"""`CodecConfig`: one stem codec's shared sizes, its encoder's and decoder's configs, the RVQ's.

The defaults are the released MusicGen 32 kHz codec (SEANet both ways); `encoder` and `decoder`
hold a config of one of the kinds in `codec/kinds.py` (`ENCODER_KINDS`, `DECODER_KINDS`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .kinds import DECODER_KINDS, ENCODER_KINDS, KindConfig, SEANetConfig

__all__ = ["CodecConfig"]

_SECTIONS = {"encoder": ENCODER_KINDS, "decoder": DECODER_KINDS}


@dataclass
class CodecConfig:
    """Hyper-parameters of one stem codec (defaults: the released MusicGen 32 kHz sizes, n_q=4)."""

    sample_rate: int = 32000
    channels: int = 1
    dimension: int = 128  # latent rows
    ratios: tuple[int, ...] = (8, 5, 4, 4)  # decoder order; the encoder uses them reversed
    causal: bool = False
    encoder: KindConfig = field(default_factory=SEANetConfig)  # waveform -> latent
    decoder: KindConfig = field(default_factory=SEANetConfig)  # latent -> waveform
    # RVQ
    n_q: int = 4
    bins: int = 2048
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_init: bool = True
    kmeans_iters: int = 50
    threshold_ema_dead_code: float = 2.0
    commitment_weight: float = 1.0

    def __post_init__(self) -> None:
        self.ratios = tuple(int(r) for r in self.ratios)
        for name in ("sample_rate", "channels", "dimension", "n_q"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CodecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"CodecConfig.ratios must be non-empty ints >= 1, got {list(self.ratios)}")
        if self.bins < 2:
            raise ValueError(f"CodecConfig.bins must be >= 2, got {self.bins}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"CodecConfig.decay must be in (0, 1), got {self.decay}")
        for section, kinds in _SECTIONS.items():
            part = getattr(self, section)
            if kinds.get(getattr(part, "kind", None)) is not type(part):
                raise ValueError(
                    f"CodecConfig.{section} must be the config of a kind in {', '.join(kinds)}: {part!r}"
                )
        self.encoder.check(self)
        self.decoder.check(self)

    # --- derived -------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per latent frame (product of the ratios; 640 for the released codecs)."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (50.0 for the released codecs)."""
        return self.sample_rate / self.hop_length

    # --- presets -------------------------------------------------------------------------
    @classmethod
    def seanet(cls, seanet: SEANetConfig, **kw: Any) -> CodecConfig:
        """SEANet both ways (the released design): `seanet` for the encoder and the decoder."""
        return cls(encoder=seanet, decoder=dataclasses.replace(seanet), **kw)

    @classmethod
    def musicgen_32khz(cls, n_q: int = 4) -> CodecConfig:
        """The released MusicGen(-Stem) 32 kHz codec sizes (n_filters 64, dimension 128)."""
        return cls(n_q=n_q)

    @classmethod
    def mini(cls, n_q: int = 1) -> CodecConfig:
        """The shipped CPU-trained model's codec: 32 kHz, hop 640 (50 Hz), n_filters 8, dimension 64,
        1 LSTM layer, 1024 bins (0.7 M parameters)."""
        return cls.seanet(SEANetConfig(n_filters=8, lstm=1), n_q=n_q, dimension=64, bins=1024)

    @classmethod
    def tiny(cls, n_q: int = 1) -> CodecConfig:
        """Tiny sizes (n_filters 4, dimension 16) of the `ref6cb_tiny` test fixture."""
        return cls.seanet(SEANetConfig(n_filters=4), n_q=n_q, dimension=16)

    # --- serialisation -------------------------------------------------------------------
    @classmethod
    def _field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested dict: the shared fields, and `encoder`/`decoder` as {"kind": name, its
        fields...} (tuples become lists)."""
        out: dict[str, Any] = {}
        for name in self._field_names():
            value = getattr(self, name)
            if isinstance(value, KindConfig):
                value = value.to_dict()
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        """Inverse of `to_dict`, also reading the flat form written before (`from_flat`: no section is
        a dict); missing fields take their defaults, unknown ones are rejected."""
        if not any(isinstance(d.get(s), dict) for s in _SECTIONS):
            return cls.from_flat(d)
        known = set(cls._field_names())
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CodecConfig fields {unknown}; known fields are {sorted(known)}")
        kwargs = dict(d)
        for section, kinds in _SECTIONS.items():
            part = kwargs.get(section, {"kind": SEANetConfig.kind})
            if not isinstance(part, dict) or part.get("kind") not in kinds:
                raise ValueError(
                    f"CodecConfig.{section} must be a section {{'kind': one of {', '.join(kinds)}, its "
                    f"fields...}}: {part!r}"
                )
            kwargs[section] = kinds[part["kind"]].from_dict(part)
        return cls(**kwargs)

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> CodecConfig:
        """A config from the flat form written before the nested one (the model folders and codec
        exports of format 1): every field at the top, `encoder`/`decoder` naming the kinds, their
        fields prefixed (`stft_width`, `synth_layers`...), one `lstm` for all that read it and no
        detail flag (a parametric encoder's detail is told by the latent size)."""
        flat = {name for kinds in _SECTIONS.values() for k in kinds.values() for name in k.flat_names}
        known = set(cls._field_names()) | flat
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CodecConfig fields {unknown}; known fields are {sorted(known)}")
        kwargs = {k: v for k, v in d.items() if k in cls._field_names() and k not in _SECTIONS}
        for section, kinds in _SECTIONS.items():
            name = d.get(section, SEANetConfig.kind)
            if name not in kinds:
                raise ValueError(f"CodecConfig.{section} must be one of {', '.join(kinds)}: {name!r}")
            kwargs[section] = kinds[name].from_flat(d)
        return cls(**kwargs)
