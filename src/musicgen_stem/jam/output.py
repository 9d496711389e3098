"""A jam session written whole: every stem of every cycle played, sample-aligned with the loop at
the loop's own rate (the loop's stems repeated exactly as read; a live input as it was played, on
the session's clock), the mix, `codes.npy`, `stems.mid`, `meta.json` and `jam.json` (one record
per cycle)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import convert_audio
from ..outputs import write_stems_folder
from ..samples import Samples, lossless_subtype
from .player import CycleRecord
from .session import Jam


def session_stems(jam: Jam, cycles: int) -> tuple[dict[str, torch.Tensor], dict[str, Samples], int]:
    """({stem: [C, T]} the generated stems and the live input at the loop's rate, {stem: Samples}
    the loop repeated `cycles` times, the rate)."""
    loop = jam.loop
    rate, length = loop.sample_rate, cycles * loop.frames
    kept = {s: Samples(np.tile(x.data, (1, cycles)), x.subtype, x.sample_rate) for s, x in loop.stems.items()}
    channels = max(x.channels for x in loop.stems.values())
    model_samples = jam.timeline.sample(cycles)
    stems = {}
    played = {} if jam.recording is None else {jam.live: _played(jam, cycles)}
    for s, wav in (jam.finish() | played).items():
        w = torch.nn.functional.pad(wav, (0, max(0, model_samples - wav.shape[-1])))[:, :model_samples]
        w = convert_audio(w, jam.timeline.sample_rate, rate, channels)[:, :length]
        stems[s] = torch.nn.functional.pad(w, (0, length - w.shape[-1]))
    return stems, kept, rate


def _played(jam: Jam, cycles: int) -> torch.Tensor:
    """[C, T]: the live input as it was played over `cycles` cycles (model rate)."""
    assert jam.recording is not None
    return torch.from_numpy(jam.recording.segment(0, jam.timeline.sample(cycles)))


@dataclass
class SessionParts:
    """What a session's folder holds: `audio` {stem: [C, T]} at `sample_rate` (kept stems too),
    `kept` {stem: Samples} the loop's stems repeated exactly, `codes` [K, F], `jam_json`."""

    audio: dict[str, torch.Tensor]
    kept: dict[str, Samples]
    sample_rate: int
    codes: torch.Tensor
    jam_json: dict[str, Any]


def session_parts(jam: Jam, records: Sequence[CycleRecord]) -> SessionParts:
    """The session of `records` cycles, ready to write (the loop's codes re-encoded whole)."""
    cycles = len(records)
    stems, kept, rate = session_stems(jam, cycles)
    audio = {
        s: kept[s].to_tensor() if s in kept else stems[s] for s in jam.model.stems if s in kept or s in stems
    }
    codes = jam.codes[:, : jam.timeline.frame(cycles)]
    loop_rows = jam.model.layout.streams_of_stems(jam.kept_stems)
    whole = {s: jam.timeline.audio(s, 0, jam.timeline.sample(cycles)) for s in jam.loop.stems}
    if jam.recording is not None:
        whole[jam.live] = _played(jam, cycles)
    encoded = jam.model.encode_stems(
        whole, jam.timeline.sample_rate, num_samples=codes.shape[-1] * jam.timeline.hop
    )
    codes = codes.clone()
    codes[loop_rows] = encoded[0, loop_rows, : codes.shape[-1]]
    return SessionParts(audio, kept, rate, codes, {"cycles": [r.to_json() for r in records]})


def write_session(
    out: str | os.PathLike[str],
    jam: Jam,
    records: Sequence[CycleRecord],
    meta: Mapping[str, Any],
    force: bool = False,
    subtype: str | None = None,
) -> Path:
    """The session's folder (atomic; an existing one only with `force`)."""
    parts = session_parts(jam, records)
    return write_stems_folder(
        out,
        parts.audio,
        parts.sample_rate,
        parts.codes,
        meta,
        force=force,
        subtype=subtype or lossless_subtype(parts.kept.values()),
        kept=parts.kept,
        extra_files={"jam.json": json.dumps(parts.jam_json, indent=2) + "\n"},
    )
