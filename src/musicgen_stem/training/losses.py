"""Reconstruction losses, fidelity metrics and an optional STFT discriminator for codec training.

Everything works on waveforms shaped [B, C, T] (any channel count; channels are folded into the
batch for spectral terms). No torchaudio/librosa: the mel filterbank is built here with the
**HTK** mel scale (`mel = 2595 * log10(1 + f / 700)`) and no area normalisation, i.e. the same
filters as `torchaudio.transforms.MelSpectrogram`'s defaults (`mel_scale="htk", norm=None`), which
EnCodec's "msspec" loss uses. `mel_scale="slaney"` (librosa's default scale, linear below 1 kHz and
logarithmic above, with Slaney area normalisation) is available too.

Losses (scalars, mean over the batch): `l1_loss`, `multiscale_mel_loss`, `multiscale_stft_loss`.
Metrics (per item, [B]): `si_snr` (dB), `mel_distance`.
Adversarial (off by default): `MultiScaleSTFTDiscriminator`, `hinge_discriminator_loss`,
`hinge_generator_loss`, `feature_matching_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "DEFAULT_MEL_SCALES",
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
# Mel filterbank
# --------------------------------------------------------------------------------------------
def _hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp
    )


def _mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
) -> torch.Tensor:
    """Triangular mel filters [n_mels, n_fft // 2 + 1] (float32, >= 0).

    `mel_scale="htk"`: HTK formula, unnormalised triangles (peak 1), as torchaudio's default.
    `mel_scale="slaney"`: Slaney formula with area normalisation, as librosa's default.
    With few FFT bins (small `n_fft`), some low filters may be empty (all zero); that is harmless.
    """
    if mel_scale not in ("htk", "slaney"):
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    n_freqs = n_fft // 2 + 1
    freqs = np.linspace(0, sample_rate / 2, n_freqs)  # [F]
    m_pts = np.linspace(
        _hz_to_mel(np.array(f_min), mel_scale), _hz_to_mel(np.array(f_max), mel_scale), n_mels + 2
    )
    f_pts = _mel_to_hz(m_pts, mel_scale)  # [n_mels + 2]
    f_diff = np.diff(f_pts)  # [n_mels + 1]
    slopes = f_pts[None, :] - freqs[:, None]  # [F, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))  # [F, n_mels]
    if mel_scale == "slaney":
        fb *= (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]
    return torch.from_numpy(fb.T.astype(np.float32))


def _fold(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T] (or [B, T] / [T]) -> [B * C, T]."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    return x.reshape(-1, x.shape[-1])


def stft_magnitude(
    x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, power: float = 1.0
) -> torch.Tensor:
    """x: [B, C, T] -> |STFT|**power [B * C, n_fft // 2 + 1, frames] (centred, reflect pad if possible)."""
    flat = _fold(x).float()
    pad_mode = "reflect" if flat.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(
        flat,
        n_fft,
        hop_length=hop,
        win_length=window.shape[-1],
        window=window,
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )
    mag = spec.abs()
    return mag if power == 1.0 else mag.pow(power)


class MelSpectrogram(nn.Module):
    """Mel magnitude spectrogram [B, C, T] -> [B * C, n_mels, frames]; window and filters cached.

    Hann window of `win_length` (default `n_fft`), hop default `win_length // 4`, magnitude (power 1)
    by default. `normalized=True` divides the STFT by the window's L2 norm (torchaudio's
    `normalized=True`), which makes scales comparable. `log=True` returns `log10(mel + floor)`.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        n_mels: int = 64,
        hop_length: int | None = None,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        mel_scale: str = "htk",
        normalized: bool = False,
        log: bool = False,
        floor: float = 1e-5,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or max(1, self.win_length // 4)
        self.power = power
        self.log = log
        self.floor = floor
        window = torch.hann_window(self.win_length)
        self.scale = float(window.pow(2).sum().rsqrt()) if normalized else 1.0
        self.register_buffer("window", window, persistent=False)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale)
        self.register_buffer("fb", fb, persistent=False)  # [n_mels, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = stft_magnitude(x, self.n_fft, self.hop_length, self.window)  # [N, F, frames]
        if self.scale != 1.0:
            mag = mag * self.scale
        if self.power != 1.0:
            mag = mag.pow(self.power)
        mel = torch.matmul(self.fb, mag)  # [N, n_mels, frames]
        return torch.log10(mel + self.floor) if self.log else mel


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


# --------------------------------------------------------------------------------------------
# Metrics (per item)
# --------------------------------------------------------------------------------------------
def si_snr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB of estimate x against reference y, both [B, C, T] -> [B].

    Channels and time of each item are flattened; both signals are made zero-mean first.
    """
    x = x.float().reshape(x.shape[0], -1)
    y = y.float().reshape(y.shape[0], -1)
    x = x - x.mean(dim=-1, keepdim=True)
    y = y - y.mean(dim=-1, keepdim=True)
    proj = (x * y).sum(-1, keepdim=True) / (y.pow(2).sum(-1, keepdim=True) + eps) * y  # [B, N]
    noise = x - proj
    ratio = proj.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio + eps)


def mel_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_rate: int,
    n_fft: int = 2048,
    n_mels: int = 80,
    hop_length: int | None = None,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Mean L1 distance between log10 mel spectrograms of x and y [B, C, T] -> [B]; lower is better.

    Hann window `n_fft`, hop `n_fft // 4` by default, HTK mel scale, window-normalised magnitude,
    `log10(mel + floor)`.
    """
    mel = MelSpectrogram(
        sample_rate, n_fft, n_mels, hop_length=hop_length, normalized=True, log=True, floor=floor
    )
    mel = mel.to(x.device)
    b = x.shape[0]
    diff = (mel(x) - mel(y)).abs()  # [B * C, n_mels, frames]
    return diff.reshape(b, -1).mean(dim=-1)


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
