"""The encoder and decoder kinds of a codec: one config per kind, holding only what that kind reads.

`ENCODER_KINDS` and `DECODER_KINDS` map each kind's name (its `kind`, written in config.json) to
its config class; `codec/model.py`'s `ENCODERS` and `DECODERS` map the same names to the modules
they build. A kind checks its own fields in `__post_init__` and, in `check`, those it shares with
the codec (rate, hop, latent size, causality, the encoder a decoder reads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

#: Latent sizes of the parametric encoders (the features are defined in harmonic.py and tonal.py).
PITCH_DIM = 8  # pitch, level, 6 harmonic band levels
PITCH_DETAIL_DIM = 15  # + attack and 6 finer bands above harmonic 8 (for a second codebook)
CHROMA_DIM = 21  # 12 pitch classes, 5 octave levels, envelope, 3 high bands
CHROMA_DETAIL_DIM = 38  # + attack, 12 band levels and 4 flatnesses from a shorter window (3rd codebook)

__all__ = [
    "CHROMA_DETAIL_DIM",
    "CHROMA_DIM",
    "DECODER_KINDS",
    "ENCODER_KINDS",
    "PITCH_DETAIL_DIM",
    "PITCH_DIM",
    "ChromaEncoderConfig",
    "HarmonicDecoderConfig",
    "ISTFTDecoderConfig",
    "KindConfig",
    "PitchEncoderConfig",
    "SEANetConfig",
    "STFTEncoderConfig",
    "TonalDecoderConfig",
]

K = TypeVar("K", bound="KindConfig")


class Codec(Protocol):
    """What a kind's `check` reads of its `CodecConfig`."""

    sample_rate: int
    dimension: int
    causal: bool
    encoder: KindConfig

    @property
    def hop_length(self) -> int: ...


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class KindConfig:
    """Base of the kind configs: the kind's name, its checks against the codec, (de)serialisation."""

    kind: ClassVar[str]
    #: {name in the flat config.json written before the nested form: field} (`from_flat`)
    flat_names: ClassVar[dict[str, str]] = {}

    def check(self, codec: Codec) -> None:
        """Refuse a codec whose shared fields this kind cannot work with (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """{"kind": name, field: value...}, JSON-safe (tuples become lists)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[K], d: dict[str, Any]) -> K:
        """Inverse of `to_dict` (its "kind" is the caller's to look up); missing fields take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - {"kind"})
        _require(not unknown, f"unknown {cls.__name__} fields {unknown}; known fields are {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    @classmethod
    def from_flat(cls: type[K], d: dict[str, Any]) -> K:
        """This kind's config out of a flat codec dict (the form written before the nested one)."""
        return cls(**cls._flat_fields(d))

    @classmethod
    def _flat_fields(cls, d: dict[str, Any]) -> dict[str, Any]:
        """{field: value} of the `flat_names` in `d` (the other kinds' are not its)."""
        return {field: d[flat] for flat, field in cls.flat_names.items() if flat in d}


@dataclass
class SEANetConfig(KindConfig):
    """SEANet (the released codecs): strided convolutions from the waveform (encoder), transposed
    ones back (decoder), `lstm` LSTM layers at the latent; `trim_right_ratio` is the decoder's."""

    kind: ClassVar[str] = "seanet"
    n_filters: int = 64
    n_residual_layers: int = 1
    elu_alpha: float = 1.0
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    dilation_base: int = 2
    pad_mode: str = "constant"
    true_skip: bool = True
    compress: int = 2
    lstm: int = 2
    trim_right_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_filters", "kernel_size", "residual_kernel_size", "last_kernel_size"):
            _require(getattr(self, name) >= 1, f"SEANetConfig.{name} must be >= 1, got {getattr(self, name)}")
        _require(
            min(self.dilation_base, self.compress) >= 1,
            "SEANetConfig.dilation_base and compress must be >= 1",
        )
        _require(
            self.n_residual_layers >= 0 and self.lstm >= 0,
            "SEANetConfig.n_residual_layers and lstm must be >= 0",
        )
        _require(
            self.pad_mode in ("constant", "reflect", "replicate", "circular"),
            f"SEANetConfig.pad_mode must be constant/reflect/replicate/circular, got {self.pad_mode!r}",
        )

    def check(self, codec: Codec) -> None:
        _require(codec.causal or self.trim_right_ratio == 1.0, "trim_right_ratio != 1.0 requires causal=True")


SEANetConfig.flat_names = {f.name: f.name for f in dataclasses.fields(SEANetConfig)}  # the same names


def _non_causal(kind: KindConfig, codec: Codec) -> None:
    _require(not codec.causal, f"{type(kind).__name__} (kind {kind.kind!r}) is non-causal: use causal=False")


@dataclass
class STFTEncoderConfig(KindConfig):
    """Multi-resolution log-magnitude STFT at hop / `down`, ConvNeXt blocks (`codec/istft.py`),
    `lstm` LSTM layers at the latent."""

    kind: ClassVar[str] = "stft"
    flat_names: ClassVar[dict[str, str]] = {
        "stft_width": "width",
        "stft_layers": "layers",
        "stft_n_ffts": "n_ffts",
        "stft_down": "down",
        "lstm": "lstm",
    }
    width: int = 256
    layers: int = 2
    n_ffts: tuple[int, ...] = (512, 2048)
    down: int = 4
    lstm: int = 2

    def __post_init__(self) -> None:
        self.n_ffts = tuple(int(n) for n in self.n_ffts)
        _require(self.width >= 1 and self.layers >= 0, "STFTEncoderConfig.width must be >= 1 and layers >= 0")
        _require(self.down >= 1 and self.lstm >= 0, "STFTEncoderConfig.down must be >= 1 and lstm >= 0")
        _require(bool(self.n_ffts), "STFTEncoderConfig.n_ffts must name at least one FFT size")

    def check(self, codec: Codec) -> None:
        _non_causal(self, codec)
        hop = codec.hop_length
        _require(hop % self.down == 0, f"STFTEncoderConfig.down must divide the hop length {hop}")
        _require(
            min(self.n_ffts) >= hop // self.down, "STFTEncoderConfig.n_ffts must be >= hop_length / down"
        )


@dataclass
class PitchEncoderConfig(KindConfig):
    """YIN f0, level and harmonic band levels between `fmin` and `fmax` Hz, no parameters
    (`codec/harmonic.py`; for monophonic stems); `detail` adds attack and finer bands."""

    kind: ClassVar[str] = "pitch"
    flat_names: ClassVar[dict[str, str]] = {"pitch_fmin": "fmin", "pitch_fmax": "fmax"}
    fmin: float = 30.0
    fmax: float = 400.0
    detail: bool = False

    def __post_init__(self) -> None:
        _require(0 < self.fmin < self.fmax, "PitchEncoderConfig.fmin must be positive and below fmax")

    @property
    def dimension(self) -> int:
        """The latent size it makes (`PITCH_DIM`, or `PITCH_DETAIL_DIM` with detail)."""
        return PITCH_DETAIL_DIM if self.detail else PITCH_DIM

    def check(self, codec: Codec) -> None:
        _require(
            codec.dimension == self.dimension,
            f"the pitch encoder makes a latent of dimension {self.dimension} ({PITCH_DIM}, or "
            f"{PITCH_DETAIL_DIM} with detail): the codec has dimension {codec.dimension}",
        )
        _require(
            (codec.hop_length * 8000) % codec.sample_rate == 0,
            "the pitch encoder needs hop_length * 8000 divisible by the sample rate",
        )

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> PitchEncoderConfig:
        """Detail told by the latent size: the flat form had no flag."""
        return cls(**cls._flat_fields(d), detail=d.get("dimension") == PITCH_DETAIL_DIM)


@dataclass
class ChromaEncoderConfig(KindConfig):
    """Semitone-band chroma, octave levels, envelope and high bands, no parameters (`codec/tonal.py`;
    for polyphonic stems); `detail` adds attack, band levels and flatnesses."""

    kind: ClassVar[str] = "chroma"
    detail: bool = False

    @property
    def dimension(self) -> int:
        """The latent size it makes (`CHROMA_DIM`, or `CHROMA_DETAIL_DIM` with detail)."""
        return CHROMA_DETAIL_DIM if self.detail else CHROMA_DIM

    def check(self, codec: Codec) -> None:
        _require(
            codec.dimension == self.dimension,
            f"the chroma encoder makes a latent of dimension {self.dimension} ({CHROMA_DIM}, or "
            f"{CHROMA_DETAIL_DIM} with detail): the codec has dimension {codec.dimension}",
        )

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> ChromaEncoderConfig:
        """Detail told by the latent size: the flat form had no flag."""
        return cls(detail=d.get("dimension") == CHROMA_DETAIL_DIM)


@dataclass
class ISTFTDecoderConfig(KindConfig):
    """Vocos-style: ConvNeXt blocks at the frame rate (after `lstm` LSTM layers) predicting STFT
    frames of `n_fft` at `hop`, their phase "integrated" or "absolute" (`codec/istft.py`)."""

    kind: ClassVar[str] = "istft"
    flat_names: ClassVar[dict[str, str]] = {
        "istft_width": "width",
        "istft_layers": "layers",
        "istft_n_fft": "n_fft",
        "istft_hop": "hop",
        "istft_phase": "phase",
        "lstm": "lstm",
    }
    width: int = 256
    layers: int = 4
    n_fft: int = 1024
    hop: int = 160
    phase: str = "integrated"
    lstm: int = 2

    def __post_init__(self) -> None:
        _require(
            self.width >= 1 and self.layers >= 0, "ISTFTDecoderConfig.width must be >= 1 and layers >= 0"
        )
        _require(self.hop >= 1 and self.lstm >= 0, "ISTFTDecoderConfig.hop must be >= 1 and lstm >= 0")
        _require(
            self.n_fft >= 2 * self.hop and (self.n_fft - self.hop) % 2 == 0,
            "ISTFTDecoderConfig.n_fft must be >= 2 * hop with an even difference",
        )
        _require(
            self.phase in ("integrated", "absolute"),
            f"ISTFTDecoderConfig.phase must be integrated/absolute: {self.phase!r}",
        )

    def check(self, codec: Codec) -> None:
        _non_causal(self, codec)
        _require(
            codec.hop_length % self.hop == 0,
            f"ISTFTDecoderConfig.hop must divide the hop length {codec.hop_length}, got {self.hop}",
        )


@dataclass
class _SynthDecoderConfig(KindConfig):
    """What the synthesising decoders share: oscillators plus `noise_bands` noise bands, their
    amplitudes from `layers` ConvNeXt blocks of `width` at the frame rate, from the latent of
    the encoder they `read`."""

    reads: ClassVar[str]
    flat_names: ClassVar[dict[str, str]] = {
        "synth_width": "width",
        "synth_layers": "layers",
        "synth_noise_bands": "noise_bands",
    }
    width: int = 128
    layers: int = 3
    noise_bands: int = 16

    def _sizes(self) -> tuple[int, ...]:
        return (self.width, self.noise_bands)

    def __post_init__(self) -> None:
        _require(
            min(self._sizes()) >= 1 and self.layers >= 0,
            f"{type(self).__name__} sizes (width, bands...) must be >= 1, layers >= 0",
        )

    def check(self, codec: Codec) -> None:
        _require(
            codec.encoder.kind == self.reads,
            f"the {self.kind} decoder reads the {self.reads} latent: use the {self.reads} encoder, "
            f"not {codec.encoder.kind}",
        )


@dataclass
class HarmonicDecoderConfig(_SynthDecoderConfig):
    """Harmonics of the pitch latent's f0 plus noise bands (`codec/harmonic.py`)."""

    kind: ClassVar[str] = "harmonic"
    reads: ClassVar[str] = "pitch"
    flat_names: ClassVar[dict[str, str]] = {
        **_SynthDecoderConfig.flat_names,
        "synth_harmonics": "harmonics",
    }
    harmonics: int = 32

    def _sizes(self) -> tuple[int, ...]:
        return (self.width, self.harmonics, self.noise_bands)


@dataclass
class TonalDecoderConfig(_SynthDecoderConfig):
    """Equal-tempered oscillators C2..C7 plus noise bands (`codec/tonal.py`)."""

    kind: ClassVar[str] = "tonal"
    reads: ClassVar[str] = "chroma"


#: encoder kind -> its config (waveform -> latent [B, dimension, F]).
ENCODER_KINDS: dict[str, type[KindConfig]] = {
    k.kind: k for k in (SEANetConfig, STFTEncoderConfig, PitchEncoderConfig, ChromaEncoderConfig)
}
#: decoder kind -> its config (latent -> waveform).
DECODER_KINDS: dict[str, type[KindConfig]] = {
    k.kind: k for k in (SEANetConfig, ISTFTDecoderConfig, HarmonicDecoderConfig, TonalDecoderConfig)
}
