"""Codec fidelity per stem: SI-SNR, multi-scale mel distance and bitrate of each stem's codec."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..audio import convert_audio
from ..dsp import mel_distance, si_snr

__all__ = [
    "MEL_SCALES",
    "bitrate",
    "codec_fidelity",
    "fidelity_metrics",
    "multiscale_mel_distance",
    "round_trip",
]

MEL_SCALES: tuple[int, ...] = (512, 1024, 2048)


def bitrate(n_q: int, bins: int, frame_rate: float) -> float:
    """Bits per second of a residual-VQ token stream: n_q x log2(bins) x frame_rate."""
    return n_q * math.log2(bins) * frame_rate


def multiscale_mel_distance(
    x: torch.Tensor, y: torch.Tensor, sample_rate: int, scales: Sequence[int] = MEL_SCALES
) -> torch.Tensor:
    """Mean over FFT sizes of `dsp.mel_distance` (log10 mel L1), x, y [B, C, T] -> [B]."""
    dists = [mel_distance(x, y, sample_rate, n_fft=s, n_mels=min(80, s // 8)) for s in scales]
    return torch.stack(dists).mean(dim=0)


def round_trip(
    codec: Any, wav: torch.Tensor, sample_rate: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode then decode `wav` [C, T] through one stem codec.

    Returns (input [1, C', T'] float CPU at the codec's rate and channels, codes [1, n_q, F] CPU,
    round trip [1, C', T'] float CPU, cut or zero-padded to the input's length).
    """
    x = convert_audio(wav.float(), sample_rate, codec.sample_rate, codec.channels)[None]  # [1, C, T]
    device = device if device is not None else next(codec.parameters()).device
    with torch.inference_mode():
        codes = codec.encode(x.to(device))  # [1, n_q, F]
        recon = codec.decode(codes)[..., : x.shape[-1]].float().cpu()  # [1, C, T]
    recon = torch.nn.functional.pad(recon, (0, x.shape[-1] - recon.shape[-1]))
    return x, codes.cpu(), recon


def fidelity_metrics(codec: Any, x: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    """{si_snr_db, mel_distance, bitrate_bps, n_q, bins, frame_rate} of a round trip `recon` of `x`
    (both [1, C, T] at the codec's rate). A digitally silent input gives NaN SI-SNR."""
    silent = float(x.abs().max()) == 0.0
    return {
        "si_snr_db": float("nan") if silent else float(si_snr(recon, x)[0]),
        "mel_distance": float(multiscale_mel_distance(recon, x, codec.sample_rate)[0]),
        "bitrate_bps": bitrate(codec.n_q, codec.card, codec.frame_rate),
        "n_q": float(codec.n_q),
        "bins": float(codec.card),
        "frame_rate": float(codec.frame_rate),
    }


def codec_fidelity(
    model: Any, stems: Mapping[str, torch.Tensor], sample_rate: int
) -> dict[str, dict[str, float]]:
    """Round-trip each stem {stem: [C, T]} through its own codec (`model.codec.codecs[stem]`).

    Returns {stem: {si_snr_db, mel_distance, bitrate_bps, n_q, bins, frame_rate}}; stems the model does
    not have are skipped. Digitally silent stems give NaN SI-SNR (no reference energy).
    """
    out: dict[str, dict[str, float]] = {}
    for stem, wav in stems.items():
        if stem not in model.layout.stems:
            continue
        codec = model.codec.codecs[stem]
        x, _, recon = round_trip(codec, wav, sample_rate, model.device)
        out[stem] = fidelity_metrics(codec, x, recon)
    return out
