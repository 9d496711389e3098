"""`CodecConfig`: every hyper-parameter of one stem codec, its checks and presets.

The defaults are the released MusicGen 32 kHz codec; `encoder`/`decoder` choose the other designs
(spectral encoder, iSTFT decoder, the parametric pitch/harmonic and chroma/tone-bank codecs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

#: Latent sizes of the parametric encoders (the features are defined in harmonic.py and tonal.py).
PITCH_DIM = 8  # pitch, level, 6 harmonic band levels
PITCH_DETAIL_DIM = 15  # + attack and 6 finer bands above harmonic 8 (for a second codebook)
CHROMA_DIM = 21  # 12 pitch classes, 5 octave levels, envelope, 3 high bands
CHROMA_DETAIL_DIM = 38  # + attack, 12 band levels and 4 flatnesses from a shorter window (3rd codebook)

__all__ = ["CodecConfig", "VARIANT_FIELDS"]

#: The fields only some encoders or decoders read (the rest, rates, sizes, ratios and the
#: quantizer's, every codec reads; the convolutions' `causal` is checked by all).
VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    "seanet": (
        "n_filters",
        "n_residual_layers",
        "elu_alpha",
        "kernel_size",
        "residual_kernel_size",
        "last_kernel_size",
        "dilation_base",
        "pad_mode",
        "true_skip",
        "compress",
        "trim_right_ratio",
    ),
    "lstm": ("lstm",),
    "stft": ("stft_width", "stft_layers", "stft_n_ffts", "stft_down"),
    "pitch": ("pitch_fmin", "pitch_fmax"),
    "istft": ("istft_width", "istft_layers", "istft_n_fft", "istft_hop", "istft_phase"),
    "synth": ("synth_width", "synth_layers", "synth_harmonics", "synth_noise_bands"),
}


@dataclass
class CodecConfig:
    """Hyper-parameters of one stem codec (defaults: the released MusicGen 32 kHz sizes, n_q=4)."""

    sample_rate: int = 32000
    channels: int = 1
    # SEANet
    dimension: int = 128
    n_filters: int = 64
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 4)  # decoder order; the encoder uses them reversed
    elu_alpha: float = 1.0
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    dilation_base: int = 2
    causal: bool = False
    pad_mode: str = "constant"
    true_skip: bool = True
    compress: int = 2
    lstm: int = 2
    trim_right_ratio: float = 1.0
    # encoder: "seanet" (strided convolutions on the waveform, the released codecs) or "stft"
    # (multi-resolution log-magnitude STFT at hop / stft_down, ConvNeXt blocks; `codec/istft.py`)
    encoder: str = "seanet"
    stft_width: int = 256
    stft_layers: int = 2
    stft_n_ffts: tuple[int, ...] = (512, 2048)
    stft_down: int = 4
    # "pitch": YIN f0, level and harmonic band levels, no parameters (`codec/harmonic.py`);
    # dimension 8, or 15 adding attack and finer bands; for monophonic stems (bass)
    pitch_fmin: float = 30.0
    pitch_fmax: float = 400.0
    # decoder head: "seanet" (transposed convolutions, the released codecs) or "istft" (Vocos-style:
    # ConvNeXt blocks at the frame rate predicting STFT frames; `codec/istft.py`)
    decoder: str = "seanet"
    istft_width: int = 256
    istft_layers: int = 4
    istft_n_fft: int = 1024
    istft_hop: int = 160
    istft_phase: str = "integrated"  # or "absolute" (Vocos): see `codec/istft.py` PhaseIntegrator
    # or "harmonic" (with encoder "pitch"): harmonics of the latent's pitch plus noise bands, their
    # amplitudes from ConvNeXt blocks at the frame rate (`codec/harmonic.py`)
    synth_width: int = 128
    synth_layers: int = 3
    synth_harmonics: int = 32
    synth_noise_bands: int = 16
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
        self.stft_n_ffts = tuple(int(n) for n in self.stft_n_ffts)
        positive = {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "dimension": self.dimension,
            "n_filters": self.n_filters,
            "kernel_size": self.kernel_size,
            "residual_kernel_size": self.residual_kernel_size,
            "last_kernel_size": self.last_kernel_size,
            "dilation_base": self.dilation_base,
            "compress": self.compress,
            "n_q": self.n_q,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"CodecConfig.{name} must be >= 1, got {value}")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"CodecConfig.ratios must be non-empty ints >= 1, got {list(self.ratios)}")
        if self.bins < 2:
            raise ValueError(f"CodecConfig.bins must be >= 2, got {self.bins}")
        if self.n_residual_layers < 0 or self.lstm < 0:
            raise ValueError("CodecConfig.n_residual_layers and lstm must be >= 0")
        if self.pad_mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(
                f"CodecConfig.pad_mode must be constant/reflect/replicate/circular, got {self.pad_mode!r}"
            )
        if self.encoder not in ("seanet", "stft", "pitch", "chroma"):
            raise ValueError(f"CodecConfig.encoder must be seanet, stft, pitch or chroma: {self.encoder!r}")
        if self.encoder == "chroma" and self.dimension not in (CHROMA_DIM, CHROMA_DETAIL_DIM):
            raise ValueError(
                f"CodecConfig.encoder='chroma' needs dimension={CHROMA_DIM} or {CHROMA_DETAIL_DIM} "
                f"(with attack and band levels): {self.dimension}"
            )
        if self.encoder == "pitch":
            if self.dimension not in (PITCH_DIM, PITCH_DETAIL_DIM):
                raise ValueError(
                    f"CodecConfig.encoder='pitch' needs dimension {PITCH_DIM} or {PITCH_DETAIL_DIM} "
                    f"(with attack and finer bands): {self.dimension}"
                )
            if (self.hop_length * 8000) % self.sample_rate:
                raise ValueError("CodecConfig.encoder='pitch' needs hop_length * 8000 divisible by the rate")
            if not 0 < self.pitch_fmin < self.pitch_fmax:
                raise ValueError("CodecConfig.pitch_fmin must be positive and below pitch_fmax")
        if self.encoder == "stft":
            if self.causal:
                raise ValueError("CodecConfig.encoder='stft' is non-causal: use causal=False")
            if self.stft_down < 1 or self.hop_length % self.stft_down:
                raise ValueError(f"CodecConfig.stft_down must divide the hop length {self.hop_length}")
            if not self.stft_n_ffts or min(self.stft_n_ffts) < self.hop_length // self.stft_down:
                raise ValueError("CodecConfig.stft_n_ffts must be >= hop_length / stft_down")
            if self.stft_width < 1 or self.stft_layers < 0:
                raise ValueError("CodecConfig.stft_width must be >= 1 and stft_layers >= 0")
        if self.decoder not in ("seanet", "istft", "harmonic", "tonal"):
            raise ValueError(f"CodecConfig.decoder must be seanet/istft/harmonic/tonal: {self.decoder!r}")
        if self.decoder == "tonal" and self.encoder != "chroma":
            raise ValueError("CodecConfig.decoder='tonal' reads the chroma latent: use encoder='chroma'")
        if self.decoder == "harmonic" and self.encoder != "pitch":
            raise ValueError("CodecConfig.decoder='harmonic' reads the pitch latent: use encoder='pitch'")
        if self.decoder in ("harmonic", "tonal"):
            sizes = (self.synth_width, self.synth_harmonics, self.synth_noise_bands)
            if min(sizes) < 1 or self.synth_layers < 0:
                raise ValueError("CodecConfig.synth_width/harmonics/noise_bands must be >= 1, layers >= 0")
        if self.decoder == "istft":
            if self.causal:
                raise ValueError("CodecConfig.decoder='istft' is non-causal: use causal=False")
            if self.istft_hop < 1 or self.hop_length % self.istft_hop:
                raise ValueError(
                    f"CodecConfig.istft_hop must divide the hop length {self.hop_length}, "
                    f"got {self.istft_hop}"
                )
            if self.istft_n_fft < 2 * self.istft_hop or (self.istft_n_fft - self.istft_hop) % 2:
                raise ValueError("CodecConfig.istft_n_fft must be >= 2 * istft_hop with an even difference")
            if self.istft_phase not in ("integrated", "absolute"):
                raise ValueError(f"CodecConfig.istft_phase must be integrated/absolute: {self.istft_phase!r}")
            if self.istft_width < 1 or self.istft_layers < 0:
                raise ValueError("CodecConfig.istft_width must be >= 1 and istft_layers >= 0")
        if not self.causal and self.trim_right_ratio != 1.0:
            raise ValueError("CodecConfig.trim_right_ratio != 1.0 requires causal=True")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"CodecConfig.decay must be in (0, 1), got {self.decay}")

    # --- derived -------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per latent frame (product of the ratios; 640 for the released codecs)."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (50.0 for the released codecs)."""
        return self.sample_rate / self.hop_length

    @property
    def detail(self) -> bool:
        """A parametric encoder's latent with its detail features (attack, finer bands: what a
        second or third codebook codes), told by its size: `PITCH_DETAIL_DIM`, `CHROMA_DETAIL_DIM`."""
        return self.dimension == {"pitch": PITCH_DETAIL_DIM, "chroma": CHROMA_DETAIL_DIM}.get(self.encoder)

    # --- presets -------------------------------------------------------------------------
    @classmethod
    def musicgen_32khz(cls, n_q: int = 4) -> CodecConfig:
        """The released MusicGen(-Stem) 32 kHz codec sizes (n_filters 64, dimension 128)."""
        return cls(n_q=n_q)

    @classmethod
    def mini(cls, n_q: int = 1) -> CodecConfig:
        """The shipped CPU-trained model's codec: 32 kHz, hop 640 (50 Hz), n_filters 8, dimension 64,
        1 LSTM layer, 1024 bins (0.7 M parameters)."""
        return cls(n_q=n_q, n_filters=8, dimension=64, lstm=1, bins=1024)

    @classmethod
    def tiny(cls, n_q: int = 1) -> CodecConfig:
        """Tiny sizes (n_filters 4, dimension 16) of the `ref6cb_tiny` test fixture."""
        return cls(n_q=n_q, n_filters=4, dimension=16)

    # --- serialisation -------------------------------------------------------------------
    @classmethod
    def _field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    def unused_fields(self) -> set[str]:
        """The fields no module of this codec reads (`VARIANT_FIELDS` of the kinds it does not use)."""
        seanet = "seanet" in (self.encoder, self.decoder)
        used = {
            "seanet": seanet,
            "lstm": seanet or self.encoder == "stft" or self.decoder == "istft",
            "stft": self.encoder == "stft",
            "pitch": self.encoder == "pitch",
            "istft": self.decoder == "istft",
            "synth": self.decoder in ("harmonic", "tonal"),
        }
        return {f for group, fields in VARIANT_FIELDS.items() if not used[group] for f in fields}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields its encoder, decoder and quantizer read (tuples become
        lists); the others are left out (`from_dict` gives them their defaults)."""
        out: dict[str, Any] = {}
        unused = self.unused_fields()
        for name in self._field_names():
            if name in unused:
                continue
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        """Inverse of `to_dict`; missing fields take their defaults, unknown ones are rejected."""
        known = set(cls._field_names())
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CodecConfig fields {unknown}; known fields are {sorted(known)}")
        kwargs = dict(d)
        if "ratios" in kwargs:
            kwargs["ratios"] = tuple(kwargs["ratios"])
        return cls(**kwargs)
