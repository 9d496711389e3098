"""Spectral encoder and Vocos-style decoder (the kinds "stft" and "istft" of `codec/kinds.py`).

Decoder: ConvNeXt blocks at the frame rate, then a head that predicts STFT frames
(log-magnitude and phase) and an inverse STFT by overlap-add.

A transposed-convolution decoder must learn to interpolate samples between frames; undertrained,
it leaves a comb at multiples of the frame rate. This decoder never upsamples in the time domain:
each latent frame predicts `hop // istft_hop` STFT frames of `n_fft` bins, so pitch lives in
frequency bins and their phase advance, and there is nothing periodic at the frame rate.

Every module here is non-causal with a finite context and exposes `needs(a, b)` (the input
positions that outputs `[a, b]` read), so `StemCodec.decode` chunks and `StreamingDecoder`
streams it exactly as it does SEANet's convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ConvNeXtBlock",
    "Downsample",
    "FrameConv",
    "FrameNet",
    "ISTFTDecoder",
    "LatentNorm",
    "OverlapAdd",
    "PhaseIntegrator",
    "STFTEncoder",
    "STFTFeatures",
    "SpectralHead",
    "StackDecoder",
]


class FrameConv(nn.Module):
    """Same-length Conv1d at the frame rate: [B, C_in, F] -> [B, C_out, F]."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        half = self.conv.kernel_size[0] // 2
        return a - half, b + half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvNeXtBlock(nn.Module):
    """x + scale * MLP(LayerNorm(depthwise conv(x))), x: [B, dim, F]."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 7, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def needs(self, a: int, b: int) -> tuple[int, int]:
        half = self.dwconv.kernel_size[0] // 2
        return a - half, b + half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, F, dim]
        y = self.fc2(self.act(self.fc1(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class FrameNet(nn.Sequential):
    """[B, in, F] -> [B, out, F]: a width-7 convolution, ConvNeXt blocks, a 1x1 projection (`[-1]`)."""

    def __init__(self, in_ch: int, width: int, layers: int, out_ch: int) -> None:
        blocks = [ConvNeXtBlock(width, 3 * width, layer_scale=1.0 / max(1, layers)) for _ in range(layers)]
        super().__init__(FrameConv(in_ch, width, 7), *blocks, FrameConv(width, out_ch, 1))

    def needs(self, a: int, b: int) -> tuple[int, int]:
        for layer in reversed(self):
            a, b = layer.needs(a, b)
        return a, b


class StackDecoder(nn.Module):
    """A decoder that is one stack of layers, `model` (frame-rate layers, then audio), which
    `StemCodec.decode` chunks and `StreamingDecoder` streams layer by layer."""

    def __init__(self, channels: int, dimension: int, hop: int, layers: list[nn.Module]) -> None:
        super().__init__()
        self.channels, self.dimension, self.hop_length = channels, dimension, hop
        self.model = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model(latent)


class SpectralHead(nn.Module):
    """[B, dim, F] -> [B, C * up * 2 * bins, F]: per latent frame, `up` STFT frames of log-magnitude
    and raw phase (absolute phase, or its deviation from the bin's own advance: `PhaseIntegrator`)."""

    def __init__(self, dim: int, channels: int, up: int, bins: int) -> None:
        super().__init__()
        self.out_channels = channels * up * 2 * bins
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, self.out_channels)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x.transpose(1, 2))).transpose(1, 2)


class PhaseIntegrator(nn.Module):
    """The phase of each STFT frame as the running sum of per-frame advances (a phase vocoder):
    advance = the bin's centre frequency x hop + pi * tanh(deviation), so a steady tone keeps its
    exact frequency even when its code repeats. Without it (`integrate=False`, Vocos' way) the
    predicted phase is absolute: identical codes give identical frames, a comb at the frame rate.

    Features [B, C * up * 2 * bins, F] in, the same layout out with phases in [0, 2 pi). Stateful:
    `forward` starts at phase 0, `stream(x, state)` continues from `state` [B, C * bins] (float64).
    """

    def __init__(self, channels: int, up: int, n_fft: int, istft_hop: int, integrate: bool = True) -> None:
        super().__init__()
        self.channels, self.up, self.bins, self.integrate = channels, up, n_fft // 2 + 1, integrate
        k = torch.arange(self.bins, dtype=torch.float64)
        advance = 2 * torch.pi * torch.remainder(k * istft_hop, n_fft) / n_fft  # exact, mod 2 pi
        self.register_buffer("advance", advance, persistent=False)

    @property
    def stateful(self) -> bool:
        return self.integrate

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def stream(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C * up * 2 * bins, f] -> (same layout with integrated phases, new state)."""
        b, _, frames = x.shape
        c, up, n = self.channels, self.up, self.bins
        y = x.view(b, c, up, 2, n, frames)
        if state is None:
            state = x.new_zeros(b, c * n, dtype=torch.float64)
        if not self.integrate or frames == 0:
            return x, state
        dev = torch.pi * torch.tanh(y[:, :, :, 1].double())  # [B, C, up, n, f]
        steps = (self.advance[:, None] + dev).permute(0, 1, 3, 4, 2).reshape(b, c, n, frames * up)
        phase = state.view(b, c, n, 1) + steps.cumsum(dim=-1)  # [B, C, n, J]
        phase = torch.remainder(phase, 2 * torch.pi)
        new_state = phase[..., -1].reshape(b, c * n)
        phase = phase.view(b, c, n, frames, up).permute(0, 1, 4, 2, 3).to(x.dtype)  # [B, C, up, n, f]
        out = torch.stack([y[:, :, :, 0], phase], dim=3)  # [B, C, up, 2, n, f]
        return out.reshape(b, -1, frames), new_state.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream(x, None)[0]


class OverlapAdd(nn.Module):
    """[B, C * up * 2 * bins, F] (log-magnitude, phase) -> wav [B, C, F * hop] by inverse FFT and
    overlap-add, normalised by the summed squared Hann window. STFT frame j (j = f * up + u) is
    centred on sample j * istft_hop + istft_hop / 2: latent frame f owns [f * hop, (f + 1) * hop).
    Magnitudes are exp(log-magnitude) clamped at 100."""

    def __init__(self, channels: int, hop: int, n_fft: int, istft_hop: int) -> None:
        super().__init__()
        if hop % istft_hop:
            raise ValueError(f"istft_hop {istft_hop} must divide the codec hop length {hop}")
        if n_fft < 2 * istft_hop or (n_fft - istft_hop) % 2:
            raise ValueError(f"istft_n_fft {n_fft} must be >= 2 * istft_hop and n_fft - istft_hop even")
        self.channels, self.n_fft, self.istft_hop = channels, n_fft, istft_hop
        self.up, self.bins = hop // istft_hop, n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        """Latent frames read by output samples [a, b]."""
        h, half = self.istft_hop, self.n_fft // 2
        j_lo = -(-(a - h // 2 - half + 1) // h)
        j_hi = (b - h // 2 + half - 1) // h
        return j_lo // self.up, j_hi // self.up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, frames = x.shape
        c, up, n, h = self.channels, self.up, self.bins, self.istft_hop
        y = x.view(b, c, up, 2, n, frames).permute(0, 1, 3, 4, 5, 2).reshape(b * c, 2, n, frames * up)
        spec = torch.polar(torch.exp(y[:, 0].float()).clamp(max=100.0), y[:, 1].float())  # [B*C, n, J]
        seg = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # [B * C, n_fft, J]
        j = seg.shape[-1]
        total = (j - 1) * h + self.n_fft
        wav = nn.functional.fold(seg, (1, total), (1, self.n_fft), stride=(1, h))[:, 0, 0]  # [B*C, total]
        env = self.window.square()[None, :, None].expand(1, -1, j)
        env = nn.functional.fold(env, (1, total), (1, self.n_fft), stride=(1, h))[0, 0, 0]  # [total]
        pad = (self.n_fft - h) // 2
        wav = wav[:, pad : pad + j * h] / env[pad : pad + j * h].clamp(min=1e-3)
        return wav.view(b, c, j * h).to(x.dtype)


class STFTFeatures(nn.Module):
    """wav [B, C, T] -> log-magnitude STFT frames [B, C * sum(bins), ceil(T / hop)] at several FFT
    sizes (frame j centred on sample j * hop + hop / 2, zeros beyond the ends).

    Long windows resolve bass pitch (2048 at 32 kHz: 15.6 Hz bins), short ones keep transients.
    """

    def __init__(self, channels: int, n_ffts: tuple[int, ...], hop: int) -> None:
        super().__init__()
        self.n_ffts, self.hop, self.stride = tuple(n_ffts), hop, hop
        self.out_channels = channels * sum(n // 2 + 1 for n in self.n_ffts)
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        """Input samples read by output frames [a, b]."""
        half, mid = max(self.n_ffts) // 2, self.hop // 2
        return a * self.hop + mid - half, b * self.hop + mid + half - 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        b, c, length = wav.shape
        frames = -(-length // self.hop)
        x = wav.reshape(b * c, length).float()
        feats = []
        for n in self.n_ffts:
            left = (n - self.hop) // 2
            right = frames * self.hop - length + n - self.hop - left
            seg = nn.functional.pad(x, (left, right)).unfold(-1, n, self.hop)  # [B*C, frames, n]
            mag = torch.fft.rfft(seg * getattr(self, f"window_{n}"), dim=-1).abs()
            feats.append(torch.log(mag + 1e-5).transpose(1, 2))  # [B*C, bins, frames]
        return torch.cat(feats, dim=1).reshape(b, self.out_channels, frames).to(wav.dtype)


class Downsample(nn.Module):
    """Strided Conv1d: [B, C_in, F] -> [B, C_out, ceil(F / stride)], kernel 2 * stride, centred."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_ch, out_ch, 2 * stride, stride=stride)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        s = self.stride
        return a * s - s // 2, b * s + s + s - s // 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, frames = self.stride, x.shape[-1]
        out = -(-frames // s)
        x = nn.functional.pad(x, (s // 2, out * s - frames + s - s // 2))
        return self.conv(x)


class LatentNorm(nn.Module):
    """Each frame of [B, D, F] scaled to zero mean and unit variance over D (no parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x.transpose(1, 2), (self.dim,)).transpose(1, 2)


class STFTEncoder(nn.Module):
    """wav [B, C, T] -> latent [B, dimension, ceil(T / hop)]: multi-resolution log-magnitude STFT
    at `hop / down` frames, a ConvNeXt block, a strided convolution to the frame rate, ConvNeXt
    blocks, optional `SkipLSTM` (where SEANet's encoder has it), projection and `LatentNorm` (log
    spectra are large: unnormalised, the latent outgrows the EMA codebook and the codes collapse)."""

    def __init__(
        self,
        channels: int,
        dimension: int,
        hop: int,
        width: int,
        layers: int,
        n_ffts: tuple[int, ...],
        down: int,
        lstm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if hop % down:
            raise ValueError(f"stft encoder downsampling {down} must divide the hop length {hop}")
        feats = STFTFeatures(channels, n_ffts, hop // down)
        stack: list[nn.Module] = [feats, FrameConv(feats.out_channels, width, 3)]
        stack.append(ConvNeXtBlock(width, 3 * width, layer_scale=1.0 / max(1, layers)))
        stack.append(Downsample(width, width, down))
        stack += [ConvNeXtBlock(width, 3 * width, layer_scale=1.0 / max(1, layers)) for _ in range(layers)]
        if lstm is not None:
            stack.append(lstm)
        stack += [FrameConv(width, dimension, 3), LatentNorm(dimension)]
        self.model = nn.Sequential(*stack)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)


class ISTFTDecoder(StackDecoder):
    """Latent [B, dimension, F] -> waveform [B, channels, F * hop]: conv in, optional `SkipLSTM`,
    ConvNeXt blocks, `SpectralHead`, `PhaseIntegrator` (phase "integrated" or "absolute"),
    `OverlapAdd`. `model` is the layer stack; its stateful layers (LSTM, integrator) carry their
    state when streamed."""

    def __init__(
        self,
        channels: int,
        dimension: int,
        hop: int,
        width: int,
        layers: int,
        n_fft: int,
        istft_hop: int,
        lstm: nn.Module | None = None,
        phase: str = "integrated",
    ) -> None:
        stack: list[nn.Module] = [FrameConv(dimension, width, 7)]
        if lstm is not None:
            stack.append(lstm)
        stack += [ConvNeXtBlock(width, 3 * width, layer_scale=1.0 / max(1, layers)) for _ in range(layers)]
        ola = OverlapAdd(channels, hop, n_fft, istft_hop)
        stack += [
            SpectralHead(width, channels, ola.up, ola.bins),
            PhaseIntegrator(channels, ola.up, n_fft, istft_hop, integrate=phase == "integrated"),
            ola,
        ]
        super().__init__(channels, dimension, hop, stack)
