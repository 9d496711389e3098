"""Distribution metrics that run offline: Fréchet distance between embedding sets.

Embeddings available without extra downloads: (a) the model's own codec encoder latents pooled over
time (mean and std per dimension, per stem) and (b) log-mel statistics (mean and std per band).
VGGish / CLAP / PaSST embeddings need packages and weights we do not ship: `external_embedders()`
says which are installed and why the others are skipped.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch

from ..audio import convert_audio
from ..dsp import MelSpectrogram

__all__ = [
    "EXTERNAL_EMBEDDERS",
    "codec_latent_embedding",
    "external_embedders",
    "frechet_distance",
    "logmel_embedding",
]

#: name -> (import name, how to get it)
EXTERNAL_EMBEDDERS: dict[str, tuple[str, str]] = {
    "vggish": ("torchvggish", "pip install torchvggish (weights are fetched from the internet once)"),
    "clap": ("laion_clap", "pip install laion-clap and download a CLAP checkpoint"),
    "passt": ("hear21passt", "pip install hear21passt (weights are fetched from the internet once)"),
}


def frechet_distance(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to embeddings x [N, D] and y [M, D]:
    |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2)). Singular products get `eps` on the diagonal
    (as pytorch-fid); needs N, M >= 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected embeddings [N, D] and [M, D], got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Fréchet distance needs at least 2 embeddings per set")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    with warnings.catch_warnings():  # rank-deficient covariances (few items) are expected
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(s1)) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    fd = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(fd, 0.0)


def codec_latent_embedding(model: Any, stem: str, wav: torch.Tensor, sample_rate: int) -> np.ndarray:
    """Encoder latent of `stem`'s codec for `wav` [C, T], pooled over time: [2 * D] (mean, std)."""
    codec = model.codec.codecs[stem]
    x = convert_audio(wav.float(), sample_rate, codec.sample_rate, codec.channels)[None]  # [1, C, T]
    with torch.inference_mode():
        z = codec.encode_latent(x.to(model.device))[0].float().cpu()  # [D, F]
    return torch.cat([z.mean(-1), z.std(-1, unbiased=False)]).numpy().astype(np.float64)


def logmel_embedding(wav: torch.Tensor, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """Log-mel statistics of `wav` [C, T] (mono-mixed, 16 kHz, 25 ms / 10 ms frames): [2 * n_mels]."""
    x = convert_audio(wav.float(), sample_rate, 16000, 1)  # [1, T']
    mel = MelSpectrogram(16000, 512, n_mels, hop_length=160, win_length=400, log=True, normalized=True)
    with torch.no_grad():
        m = mel(x[None])[0]  # [n_mels, frames]
    return torch.cat([m.mean(-1), m.std(-1, unbiased=False)]).numpy().astype(np.float64)


def external_embedders(names: Sequence[str] = tuple(EXTERNAL_EMBEDDERS)) -> dict[str, str]:
    """{name: status}: whether each optional embedding package is importable, else how to get it.

    None of them is computed by this package (their weights are not available offline); a found
    package is reported so that its metric can be run with the package's own tools."""
    status = {}
    for name in names:
        module, hint = EXTERNAL_EMBEDDERS[name]
        if importlib.util.find_spec(module) is None:
            status[name] = f"skipped: package '{module}' is not installed ({hint})"
        else:
            status[name] = f"skipped: '{module}' is installed but its weights are not bundled; not computed"
    return status
