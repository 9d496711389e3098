"""What a stem pack can be: formats, bit depths, rates and file names (no torch: the command's
options are built from these)."""

from __future__ import annotations

__all__ = [
    "BIT_DEPTHS",
    "COMMON_RATES",
    "FORMATS",
    "MP3_BIT_RATE",
    "MP3_RATES",
    "RATES",
    "SIDECAR_FILE",
    "ZIP_FILE",
]

#: Output rates a stem pack may have: the standard audio rates DAWs and players open.
RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
#: Allowed bit depths per format; the first one is the default.
BIT_DEPTHS: dict[str, tuple[str, ...]] = {
    "wav": ("24", "16", "float", "double"),
    "flac": ("24", "16"),
    "mp3": (),
}
FORMATS: tuple[str, ...] = tuple(BIT_DEPTHS)
COMMON_RATES = (32000, 44100, 48000)
MP3_RATES = (32000, 44100, 48000, 22050, 24000, 16000, 11025, 12000, 8000)
MP3_BIT_RATE = 320_000
SIDECAR_FILE = "stems.json"
ZIP_FILE = "stems.zip"
