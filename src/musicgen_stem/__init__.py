"""musicgen-stem: multi-stem music generation and editing."""

__version__ = "0.1.0"

from .api import AudioChunk, AudioStream, MusicGenStem, StemAudio  # noqa: E402
from .layout import LAYOUT_6CB, LAYOUT_7CB, StemLayout  # noqa: E402

__all__ = [
    "LAYOUT_6CB",
    "LAYOUT_7CB",
    "AudioChunk",
    "AudioStream",
    "MusicGenStem",
    "StemAudio",
    "StemLayout",
    "__version__",
]
