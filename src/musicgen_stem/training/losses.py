"""Reconstruction losses, fidelity metrics and an optional STFT discriminator for codec training.

Everything works on waveforms shaped [B, C, T] (any channel count; channels are folded into the
batch for spectral terms). The STFT, the mel filterbank and spectrogram and the per-item metrics
live in `musicgen_stem.dsp` (shared with evaluation) and are re-exported here.

Losses (scalars, mean over the batch): `l1_loss`, `multiscale_mel_loss`, `multiscale_stft_loss`,
`ChromaLoss`.
Metrics (per item, [B]): `si_snr` (dB), `mel_distance`.
Adversarial (off by default): `MultiScaleSTFTDiscriminator`, `hinge_discriminator_loss`,
`hinge_generator_loss`, `feature_matching_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..dsp import MelSpectrogram, mel_distance, mel_filterbank, si_snr, stft_magnitude

__all__ = [
    "DEFAULT_MEL_SCALES",
    "ChromaLoss",
    "chroma_filterbank",
    "MelSpectrogram",
    "MultiScaleMelLoss",
    "MultiScaleSTFTDiscriminator",
    "STFTDiscriminator",
    "feature_matching_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "l1_loss",
    "mel_distance",
    "mel_filterbank",
    "multiscale_mel_loss",
    "multiscale_stft_loss",
    "si_snr",
    "stft_magnitude",
]

DEFAULT_MEL_SCALES: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)  # EnCodec: 2**5 .. 2**11


# --------------------------------------------------------------------------------------------
# Losses (scalars)
# --------------------------------------------------------------------------------------------
def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Time-domain mean absolute error between x and y [B, C, T]."""
    return F.l1_loss(x.float(), y.float())


class MultiScaleMelLoss(nn.Module):
    """EnCodec/audiocraft "msspec" loss over window sizes s (hop s // 4, `n_mels` HTK bands):

        sum_s [ L1(mel_s(x), mel_s(y)) + alpha_s * MSE(log10(mel_s(x) + floor), log10(mel_s(y) + floor)) ]
        / sum_s (1 + alpha_s),       alpha_s = sqrt(s - 1)

    with window-normalised magnitude spectrograms (audiocraft's `normalized=True`, `alphas=True`).
    The filterbanks are built once and cached as (non-persistent) buffers.
    """

    def __init__(
        self,
        sample_rate: int,
        scales: Sequence[int] = DEFAULT_MEL_SCALES,
        n_mels: int = 64,
        floor: float = 1e-5,
        mel_scale: str = "htk",
    ) -> None:
        super().__init__()
        self.floor = floor
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, n_fft=s, n_mels=n_mels, mel_scale=mel_scale, normalized=True)
            for s in scales
        )
        self.alphas = [math.sqrt(s - 1) for s in scales]
        self.total = sum(1 + a for a in self.alphas)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: [B, C, T] -> scalar loss."""
        total = x.new_zeros((), dtype=torch.float32)
        for mel, alpha in zip(self.mels, self.alphas, strict=True):
            mx, my = mel(torch.cat([x, y])).chunk(2)  # one STFT for both: [N, n_mels, frames] each
            total = total + F.l1_loss(mx, my)
            total = total + alpha * F.mse_loss(torch.log10(mx + self.floor), torch.log10(my + self.floor))
        return total / self.total


def multiscale_mel_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_rate: int,
    scales: Sequence[int] = DEFAULT_MEL_SCALES,
    n_mels: int = 64,
    mel_scale: str = "htk",
) -> torch.Tensor:
    """Functional `MultiScaleMelLoss` (builds the filterbanks each call: cache the module in loops)."""
    return MultiScaleMelLoss(sample_rate, scales, n_mels, mel_scale=mel_scale).to(x.device)(x, y)


def multiscale_stft_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    fft_sizes: Sequence[int] = (512, 1024, 2048),
    eps: float = 1e-7,
) -> torch.Tensor:
    """Spectral convergence `||Y - X||_F / ||Y||_F` plus mean `|log Y - log X|`, averaged over FFT sizes.

    x: estimate, y: reference, both [B, C, T]; Hann window of the FFT size, hop size // 4.
    """
    total = x.new_zeros((), dtype=torch.float32)
    for n_fft in fft_sizes:
        window = torch.hann_window(n_fft, device=x.device)
        mx = stft_magnitude(x, n_fft, n_fft // 4, window)
        my = stft_magnitude(y, n_fft, n_fft // 4, window)
        sc = torch.linalg.vector_norm(my - mx) / torch.linalg.vector_norm(my).clamp(min=eps)
        log_mag = F.l1_loss(mx.clamp(min=eps).log(), my.clamp(min=eps).log())
        total = total + sc + log_mag
    return total / len(fft_sizes)


def chroma_filterbank(sample_rate: int, n_fft: int, low_midi: int = 36, high_midi: int = 95) -> torch.Tensor:
    """[12, n_fft // 2 + 1]: each STFT bin's share of the pitch classes C..B, a triangle one semitone
    wide around every equal-tempered note from `low_midi` to `high_midi` (C2..B6 by default)."""
    hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    midi = 69.0 + 12.0 * torch.log2(hz.clamp(min=1e-3) / 440.0)  # [bins]
    notes = torch.arange(low_midi, high_midi + 1, dtype=torch.float64)  # [N]
    tri = (1.0 - (midi[None] - notes[:, None]).abs()).clamp(min=0.0)  # [N, bins]
    bank = torch.zeros(12, hz.shape[0], dtype=torch.float64)
    bank.index_add_(0, (notes.long() % 12), tri)
    return bank.float()


class ChromaLoss(nn.Module):
    """Harmony loss: 1 - Pearson correlation of the 12-bin chroma of x and y (STFT magnitude through
    `chroma_filterbank`), per frame, averaged with each frame weighted by y's chroma energy (silent
    frames count for nothing). x: estimate, y: reference, both [B, C, T]; hop n_fft // 4."""

    def __init__(self, sample_rate: int, n_fft: int = 8192) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("bank", chroma_filterbank(sample_rate, n_fft), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def chroma(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> chroma [B * C, 12, frames]."""
        return self.bank @ stft_magnitude(x, self.n_fft, self.n_fft // 4, self.window)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cx, cy = self.chroma(x), self.chroma(y)  # [N, 12, F]
        cx, cy = cx - cx.mean(1, keepdim=True), cy - cy.mean(1, keepdim=True)
        corr = (cx * cy).sum(1) / (cx.norm(dim=1) * cy.norm(dim=1)).clamp(min=1e-6)  # [N, F]
        weight = cy.norm(dim=1).detach()
        return ((1.0 - corr) * weight).sum() / weight.sum().clamp(min=1e-6)


# --------------------------------------------------------------------------------------------
# Adversarial part (EnCodec-style multi-scale STFT discriminator)
# --------------------------------------------------------------------------------------------
class STFTDiscriminator(nn.Module):
    """One STFT-scale discriminator: complex spectrogram (real, imag per channel) -> 2D conv stack.

    wav [B, C, T] -> (logits [B, 1, frames', freqs'], feature maps of every conv layer).
    """

    def __init__(
        self,
        channels: int = 1,
        filters: int = 32,
        n_fft: int = 1024,
        hop_length: int = 256,
        dilations: Sequence[int] = (1, 2, 4),
        kernel: tuple[int, int] = (3, 9),
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        pad = (kernel[0] // 2, kernel[1] // 2)
        convs = [weight_norm(nn.Conv2d(2 * channels, filters, kernel, padding=pad))]
        for d in dilations:
            convs.append(
                weight_norm(
                    nn.Conv2d(
                        filters, filters, kernel, stride=(1, 2), dilation=(d, 1), padding=(d * pad[0], pad[1])
                    )
                )
            )
        convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, _ = wav.shape
        flat = wav.float().reshape(b * c, -1)
        pad_mode = "reflect" if flat.shape[-1] > self.n_fft // 2 else "constant"
        spec = torch.stft(
            flat,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode=pad_mode,
            normalized=True,
            return_complex=True,
        )  # [B * C, F, frames]
        spec = torch.view_as_real(spec).reshape(b, c, spec.shape[-2], spec.shape[-1], 2)
        z = spec.permute(0, 1, 4, 3, 2).reshape(b, 2 * c, spec.shape[3], spec.shape[2])  # [B, 2C, frames, F]
        feats = []
        for conv in self.convs:
            z = self.act(conv(z))
            feats.append(z)
        return self.conv_post(z), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several `STFTDiscriminator`s at different FFT sizes (EnCodec: 2048, 1024, 512, hop size // 4)."""

    def __init__(
        self, channels: int = 1, filters: int = 32, n_ffts: Sequence[int] = (2048, 1024, 512)
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(channels, filters, n_fft=n, hop_length=n // 4) for n in n_ffts
        )

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """wav: [B, C, T] -> (logits per scale, feature maps per scale)."""
        logits, feats = [], []
        for d in self.discriminators:
            lg, ft = d(wav)
            logits.append(lg)
            feats.append(ft)
        return logits, feats


def hinge_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over scales of `relu(1 - D(real)) + relu(1 + D(fake))`."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def hinge_generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over scales of `relu(1 - D(fake))` (EnCodec's hinge generator loss)."""
    return torch.stack([F.relu(1 - f).mean() for f in fake]).mean()


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Relative L1 between discriminator features: mean of `|f_real - f_fake| / mean|f_real|`."""
    terms = []
    for fr_scale, ff_scale in zip(real, fake, strict=True):
        for fr, ff in zip(fr_scale, ff_scale, strict=True):
            fr = fr.detach()
            terms.append(F.l1_loss(ff, fr) / fr.abs().mean().clamp(min=1e-8))
    return torch.stack(terms).mean()
