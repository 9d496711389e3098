"""Named model configurations for `musicgen-stem init`."""

from __future__ import annotations

from collections.abc import Callable

from .codec import CodecConfig
from .conditioning import TextEncoderConfig
from .errors import ModelError
from .layout import LAYOUT_6CB, LAYOUT_7CB, StemLayout
from .lm import LMConfig
from .modeldir import ModelConfig


def _codecs(layout: StemLayout, make: Callable[[int], CodecConfig]) -> dict[str, CodecConfig]:
    return {s: make(n) for s, n in zip(layout.stems, layout.codebooks, strict=True)}


def tiny() -> ModelConfig:
    """Seconds-fast random model for tests: 6cb layout, 2 layers of width 64, LUT text encoder."""
    return ModelConfig(
        layout=LAYOUT_6CB,
        lm=LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256),
        text=TextEncoderConfig(kind="lut", n_bins=32, dim=32),
        codecs=_codecs(LAYOUT_6CB, CodecConfig.tiny),
        name="tiny",
    )


#: The shipped default model's layout: bass 1, drums 1, other 2 codebooks of 1024 entries.
LAYOUT_MINI = StemLayout(("bass", "drums", "other"), (1, 1, 2), (0, 0, 0, 1), 1024)


def mini() -> ModelConfig:
    """The small model trained on CPU and shipped with the package: MiniLM text encoder (offline) plus
    tempo and key tokens read from the text, 6-layer LM of width 192, small codecs, 10 s generation,
    8 s edit window; sampled at temperature 0.6 unless told otherwise (docs/experiments.md: its edits
    sit on the grid more tightly than at 1, with the same harmony), its pitched stems guided by the
    chords (`SamplingParams.chord_guide`: EVALUATION.md)."""
    return ModelConfig(
        layout=LAYOUT_MINI,
        lm=LMConfig(dim=192, num_heads=6, num_layers=6, ff_dim=768),
        text=TextEncoderConfig(kind="minilm", attributes=True),
        codecs=_codecs(LAYOUT_MINI, CodecConfig.mini),
        name="mini",
        max_duration=10.0,
        edit_window=8.0,
        sampling={"temperature": 0.6, "chord_guide": 4.0},
    )


def _medium(layout: StemLayout, name: str) -> ModelConfig:
    return ModelConfig(
        layout=layout,
        lm=LMConfig(),  # dim 1536, 24 heads, 48 layers, ff 6144
        text=TextEncoderConfig(kind="t5", name="t5-base"),
        codecs=_codecs(layout, CodecConfig.musicgen_32khz),
        name=name,
    )


def medium_6cb() -> ModelConfig:
    """The released facebook/musicgen-stem-6cb shapes (bass 1, drums 1, other 4 codebooks)."""
    return _medium(LAYOUT_6CB, "medium-6cb")


def medium_7cb() -> ModelConfig:
    """The released facebook/musicgen-stem-7cb shapes (bass 2, drums 1, other 4 codebooks)."""
    return _medium(LAYOUT_7CB, "medium-7cb")


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    "mini": mini,
    "medium-6cb": medium_6cb,
    "medium-7cb": medium_7cb,
}


def preset(name: str) -> ModelConfig:
    """The config of a named preset; clear error for unknown names."""
    if name not in PRESETS:
        raise ModelError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
