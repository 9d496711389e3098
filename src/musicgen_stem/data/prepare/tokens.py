"""Tokens of a track: the codecs of a model folder (`load_codecs`, hashed into `codec_hash`) and
`encode_track`, chunked but equal to encoding the whole track at once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...audio import convert_audio
from ...devices import resolve_device
from ...errors import ModelError
from ...layout import StemLayout

__all__ = ["CodecBundle", "codec_hash", "encode_track", "load_codecs"]

PathLike = str | os.PathLike


@dataclass
class CodecBundle:
    """The codecs of a model folder, enough to tokenize stems."""

    layout: StemLayout
    codec: nn.Module  # MultiStemCodec
    model_dir: Path
    hash: str
    device: torch.device

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.codec.frame_rate)


def codec_hash(files: Sequence[Path]) -> str:
    """sha256 over the codec weight files (in layout order)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_codecs(model_dir: PathLike, device: str | torch.device = "cpu") -> CodecBundle:
    """Load only the codecs of a model folder (ours or the released format)."""
    from ...modeldir import is_model_dir
    from ...modeldir import load_codecs as load_our_codecs
    from ...reference import is_reference_dir, load_reference_codecs

    path = Path(model_dir)
    if not path.is_dir():
        raise ModelError(f"--model '{path}' is not a folder; give a model folder (see `musicgen-stem init`)")
    dev = resolve_device(device)
    if is_model_dir(path):
        codecs = load_our_codecs(path, dev)
    elif is_reference_dir(path):
        codecs = load_reference_codecs(path, dev)
    else:
        raise ModelError(
            f"'{path}' is not a model folder (no config.json, no state_dict.bin); "
            "create one with `musicgen-stem init` or `musicgen-stem convert`"
        )
    if codecs.layout.card > 32768:
        raise ModelError(f"codebooks of {codecs.layout.card} entries do not fit the int16 token files")
    return CodecBundle(codecs.layout, codecs.codec, path, codec_hash(codecs.files), dev)


def encode_track(
    bundle: CodecBundle,
    stems: dict[str, tuple[torch.Tensor, int]],
    chunk_seconds: float = 30.0,
) -> np.ndarray:
    """{stem: (wav [C, T], sample_rate)} -> int16 codes [K, F] in layout order.

    Stems are converted to the codec's rate and channels, zero-padded to the longest (missing stems
    are silence) and encoded chunk by chunk (see the package docstring): the result equals
    `MusicGenStem.encode_stems` of the same audio.
    """
    codec = bundle.codec
    wavs = {
        s: convert_audio(w[None].float(), sr, codec.sample_rate, codec.channels)  # [1, C, T']
        for s, (w, sr) in stems.items()
    }
    length = max(w.shape[-1] for w in wavs.values())
    codes = []
    with torch.inference_mode():
        for stem in bundle.layout.stems:
            wav = torch.zeros(1, codec.channels, length)
            if stem in wavs:
                wav[..., : wavs[stem].shape[-1]] = wavs[stem]
            codes.append(codec.codecs[stem].encode(wav.to(bundle.device), chunk_seconds).cpu())
    out = torch.cat(codes, dim=1)[0]  # [K, F]
    return out.numpy().astype(np.int16)
