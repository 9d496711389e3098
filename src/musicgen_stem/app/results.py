"""Job folders and results on disk: one stem pack per result, described by a plain dict of paths.

A result dict holds the settings of the job (`kind`, `prompt`, `seed`, `params`, ...) and the
paths the page links to: `folder`, `stems` ({stem: wav}), `mix`, `zip`, `stem_mp4` (None when
this machine has no AAC encoder) and `codes` (the tokens, for exact edits of a generated result).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..samples import Samples

__all__ = ["KEEP_JOBS", "new_job_dir", "stem_mp4_available", "write_result"]

#: Job folders kept in the work folder; older ones are deleted when a new job starts.
KEEP_JOBS = 64


def new_job_dir(workdir: Path) -> Path:
    """A fresh folder for one job; the oldest job folders beyond KEEP_JOBS are deleted."""
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = sorted((p for p in workdir.iterdir() if p.is_dir() and p.name.startswith("job-")), key=str)
    for old in jobs[: max(0, len(jobs) - KEEP_JOBS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    path = workdir / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def stem_mp4_available() -> bool:
    """Whether PyAV can encode AAC here (needed for `.stem.mp4`)."""
    try:
        import av

        av.codec.Codec("aac", "w")
        return True
    except Exception:
        return False


def write_result(
    folder: Path,
    stems: Mapping[str, torch.Tensor],
    sample_rate: int,
    codes: torch.Tensor | np.ndarray,
    meta: Mapping[str, Any],
    name: str,
    kept: Mapping[str, Samples] | None = None,
    rates: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Export one result (a stem pack with zip and .stem.mp4, plus codes.npy) into `folder`;
    returns the result dict the app works with (paths are strings). `kept` stems are written
    exactly as read, the others and the mix in a format that loses nothing of them (16-bit
    when nothing is kept); `rates`: {stem: rate} of stems at another rate than `sample_rate`
    (new stems beside kept ones at a lower rate: the model's)."""
    from ..export import export_stem_pack
    from ..samples import lossless_subtype

    folder.mkdir(parents=True, exist_ok=True)
    bits = {"FLOAT": "float", "DOUBLE": "double"}[lossless_subtype(kept.values())] if kept else "16"
    pack = export_stem_pack(
        folder / name,
        {k: v.detach().cpu() for k, v in stems.items()},
        int(sample_rate),
        bit_depth=bits,
        zip=True,
        stem_mp4=stem_mp4_available(),
        meta=dict(meta),
        kept=kept,
        rates=rates,
    )
    codes_path = folder / "codes.npy"
    np.save(codes_path, np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64))
    files = {k: str(v) for k, v in pack.files.items()}
    return {
        **dict(meta),
        "folder": str(pack.out_dir),
        "stems": {k: v for k, v in files.items() if k != "mix"},
        "mix": files["mix"],
        "zip": str(pack.zip_path) if pack.zip_path else None,
        "stem_mp4": str(pack.stem_mp4) if pack.stem_mp4 else None,
        "codes": str(codes_path),
        "sample_rate": pack.sample_rate,
        "duration": pack.num_samples / pack.sample_rate,
        "gain": pack.gain,
        "kept": sorted(kept or {}),
        "subtypes": pack.sidecar_data.get("subtypes"),
    }
