"""The Native Instruments STEMS file (`<name>.stem.mp4`): 5 AAC streams, the master then the NI
slots drums, bass, other, vocals, and the NI metadata box appended to the MP4 after PyAV wrote it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MusicGenStemError
from .formats import _encode_streams

__all__ = ["NI_SLOTS", "STEM_MP4_RATE", "STEM_MP4_SUFFIX", "stem_mp4_rate"]

STEM_MP4_SUFFIX = ".stem.mp4"
STEM_MP4_RATE = 44100
STEM_MP4_BIT_RATE = 256_000

# NI STEMS: exactly 4 stems after the master, with their default colours.
NI_SLOTS: tuple[str, ...] = ("drums", "bass", "other", "vocals")
NI_COLORS: dict[str, str] = {"drums": "#009E73", "bass": "#D55E00", "other": "#CC79A7", "vocals": "#56B4E9"}
NI_OTHER = "other"
NI_MASTERING_DSP: dict[str, Any] = {
    "compressor": {
        "enabled": False,
        "input_gain": 0.5,
        "output_gain": 0.5,
        "threshold": 0,
        "dry_wet": 50,
        "attack": 0.003,
        "release": 0.3,
        "ratio": 3,
        "hp_cutoff": 300,
    },
    "limiter": {"enabled": False, "threshold": 0, "ceiling": -0.35, "release": 0.05},
}


def _ni_slots(stems: Mapping[str, np.ndarray], num_samples: int) -> dict[str, np.ndarray]:
    """Our stems -> the 4 NI slots [2, T] each (unknown names go into `other`, missing ones silent)."""
    slots = {s: np.zeros((2, num_samples)) for s in NI_SLOTS}
    for name, x in stems.items():
        slots[name if name in slots else NI_OTHER] = slots[name if name in slots else NI_OTHER] + x
    return slots


def _ni_metadata() -> dict[str, Any]:
    stems = [{"name": s.capitalize(), "color": NI_COLORS[s]} for s in NI_SLOTS]
    return {"stems": stems, "mastering_dsp": NI_MASTERING_DSP, "version": 1}


def _iter_boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """MP4 boxes in data[start:end] as (type, box start, payload start, box end)."""
    boxes = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"malformed MP4 box {kind!r} at byte {pos}")
        boxes.append((kind, pos, pos + header, pos + size))
        pos += size
    return boxes


def _add_udta_box(path: Path, kind: bytes, payload: bytes) -> None:
    """Append a `moov/udta/<kind>` box to an MP4 whose `moov` follows its media data.

    Only `moov` (and `udta`) grow, so chunk offsets into `mdat` stay valid.
    """
    data = path.read_bytes()
    top = _iter_boxes(data, 0, len(data))
    moov = [b for b in top if b[0] == b"moov"]
    mdat_ends = [b[3] for b in top if b[0] == b"mdat"]
    if len(moov) != 1 or any(end > moov[0][1] for end in mdat_ends):
        raise ValueError("expected one moov box after the media data")
    _, m_start, m_payload, m_end = moov[0]
    if data[m_start : m_start + 4] == b"\x00\x00\x00\x01" or m_end - m_start + len(payload) + 16 >= 2**32:
        raise ValueError("moov box too large")
    box = struct.pack(">I4s", 8 + len(payload), kind) + payload
    udta = [b for b in _iter_boxes(data, m_payload, m_end) if b[0] == b"udta"]
    if udta:
        _, u_start, _, u_end = udta[0]
        new_udta = struct.pack(">I", u_end - u_start + len(box)) + data[u_start + 4 : u_end] + box
        body = data[m_payload:u_start] + new_udta + data[u_end:m_end]
    else:
        body = data[m_payload:m_end] + struct.pack(">I4s", 8 + len(box), b"udta") + box
    new_moov = struct.pack(">I4s", 8 + len(body), b"moov") + body
    path.write_bytes(data[:m_start] + new_moov + data[m_end:])


def stem_mp4_rate(rate: int) -> int:
    """The rate of a .stem.mp4 for a pack at `rate`: 44.1 or 48 kHz as asked, else 44.1 kHz."""
    return rate if rate in (44100, 48000) else STEM_MP4_RATE


def _write_stem_mp4(
    path: Path, mix: np.ndarray, slots: Mapping[str, np.ndarray], rate: int = STEM_MP4_RATE
) -> None:
    """Master [2, T] + the 4 NI slots [2, T] at `rate` -> 5-stream AAC .stem.mp4 with NI metadata."""
    tracks = [("Master", mix)] + [(s.capitalize(), slots[s]) for s in NI_SLOTS]
    _encode_streams(path, "mp4", "aac", STEM_MP4_BIT_RATE, rate, tracks)
    meta = json.dumps(_ni_metadata(), separators=(",", ":")).encode("utf-8")
    try:
        _add_udta_box(path, b"stem", meta)
    except ValueError as exc:
        raise MusicGenStemError(f"cannot add the NI stem metadata to '{path}': {exc}") from exc
