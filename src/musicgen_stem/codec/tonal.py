"""Chroma encoder and tone-bank decoder (the kinds "chroma" and "tonal" of `codec/kinds.py`):
a parametric codec for polyphonic stems (chords, pads, leads) whose codes keep the harmony.

- `ChromaEncoder` (no parameters): per frame, an 8192-point STFT (frames centred on (f + 1) * hop,
  as in `codec/harmonic.py`) summed into semitone bands C2..C7; latent [B, 21, F] = (chroma, the
  12 pitch-class energies over the frame's strongest, x `CHROMA_SCALE`; the level of each of the
  five octaves relative to the frame's level, 10 dB units down to -40 dB; the level in a 40 ms
  window (the envelope), 6 dB units;
  three high bands 2-4, 4-8, 8-16 kHz relative to the level, 10 dB units). Chroma spans the
  largest distances, so the first codebook's k-means sorts frames by harmony, the next ones by
  register, level and timbre. With `detail` (latent [B, 38, F], the first 21 rows the same): the
  frame's attack (the largest log-mel flux around it, 6 dB units, as the bass codec's), 12 band
  levels (0-65 Hz, then octaves to 2 kHz, half octaves to 11.8 kHz and the rest) from a 2048-point
  STFT relative to its level, and the spectral flatness of four broad bands (130-520 Hz, 0.5-2 kHz,
  2-5.9 kHz, above: partials or noise), 10 dB units: the sub-bass, stab releases, bright partials
  and noise floor that the 8192-point analysis blurs, for a third codebook. Every feature reads
  only samples within 4096 of its frame, so chunked encoding stays exact.
- `TonalDecoder`: `ToneControls` (ConvNeXt blocks at the frame rate) predicts the amplitude of
  each semitone oscillator C2..C7 and noise band gains, on top of the note energies the latent
  itself implies (chroma share x octave level: right before any training); `FrameCounter`
  (stateful) numbers the frames; `ToneSynth` renders fixed equal-tempered sines (A = 440 Hz)
  whose phase is a function of the absolute sample, plus band-limited noise, with amplitudes
  moving linearly inside each frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .harmonic import (
    attack_db,
    band_noise,
    exp_sigmoid,
    flux_mel,
    frame_power,
    midi_to_hz,
    noise_table,
    previous_frame,
    short_level_db,
)
from .istft import FrameNet, StackDecoder
from .kinds import CHROMA_DETAIL_DIM, CHROMA_DIM

__all__ = [
    "CHROMA_DETAIL_DIM",
    "CHROMA_DIM",
    "ChromaEncoder",
    "ChromaFeatures",
    "FrameCounter",
    "ToneControls",
    "ToneSynth",
    "TonalDecoder",
]

LOW_NOTE, OCTAVES = 36, 5  # C2, five octaves: the oscillators are MIDI 36..95
NOTES = 12 * OCTAVES
assert CHROMA_DIM == 12 + OCTAVES + 1 + 3  # chroma, octave levels, envelope, high bands
CHROMA_SCALE = 10.0  # latent units of a pitch class at the frame's strongest
LEVEL_DB, BAND_DB, BAND_FLOOR, SILENCE_DB = 6.0, 10.0, -40.0, -60.0
HIGH_BANDS = (2000.0, 4000.0, 8000.0, 16000.0)
N_FFT = 8192
DETAIL_N_FFT = 2048
DETAIL_HZ = (0.0, 65.0, 130.0, 260.0, 520.0, 1040.0, 2080.0, 2940.0, 4160.0, 5880.0, 8320.0, 11760.0)
FLAT_HZ = (130.0, 520.0, 2080.0, 5880.0)  # the flatness bands: 130-520 Hz, ..., 5.9 kHz and up
DETAIL_FLOOR = -80.0  # dB: detail band levels below the frame's level are floored here
FLUX_FLOOR_DB = -40.0  # log-mel magnitudes floored here: about 90 dB below a full-scale sine
assert CHROMA_DETAIL_DIM == CHROMA_DIM + 1 + len(DETAIL_HZ) + len(FLAT_HZ)


class ChromaFeatures(nn.Module):
    """wav [B, C, T] -> latent [B, 21, ceil(T / hop)] ([B, 38, ...] with `detail`; see the module
    docstring); no parameters."""

    def __init__(self, sample_rate: int, hop: int, detail: bool = False) -> None:
        super().__init__()
        self.sample_rate, self.hop = sample_rate, hop
        self.flux = flux_mel(sample_rate) if detail else None  # buffers only, none in the state dict
        if detail:  # band masks over the 2048-point STFT's bins: sums [12, bins], means [4, bins]
            hz = torch.arange(DETAIL_N_FFT // 2 + 1) * (sample_rate / DETAIL_N_FFT)
            edges = torch.tensor(DETAIL_HZ + (math.inf,))
            sums = (hz[None] >= edges[:-1, None]) & (hz[None] < edges[1:, None])
            self.register_buffer("detail_bands", sums.float(), persistent=False)
            edges = torch.tensor(FLAT_HZ + (math.inf,))
            means = ((hz[None] >= edges[:-1, None]) & (hz[None] < edges[1:, None])).float()
            self.register_buffer("flat_bands", means / means.sum(1, keepdim=True), persistent=False)
        freqs = torch.arange(N_FFT // 2 + 1) * (sample_rate / N_FFT)
        midi = 69.0 + 12.0 * torch.log2(freqs.clamp(min=1.0) / 440.0)
        # triangular semitone bands: weight 1 at the note, 0 one semitone away
        notes = torch.arange(LOW_NOTE, LOW_NOTE + NOTES, dtype=torch.float32)
        bands = (1 - (midi[None] - notes[:, None]).abs()).clamp(min=0)  # [NOTES, bins]
        self.register_buffer("bands", bands, persistent=False)
        edges = torch.tensor(HIGH_BANDS)
        high = (freqs[None] >= edges[:-1, None]) & (freqs[None] < edges[1:, None])
        self.register_buffer("high", high.float(), persistent=False)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        """Input samples read by output frames [a, b]."""
        return (a + 1) * self.hop - N_FFT // 2, (b + 1) * self.hop + N_FFT // 2 - 1

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        b, _, length = wav.shape
        hop, frames = self.hop, -(-length // self.hop)
        mono = nn.functional.pad(wav.float().mean(1), (0, frames * hop - length))  # [B, F * hop]
        power = frame_power(mono, frames, hop, N_FFT)  # [B, F, bins]
        level = 10 * torch.log10(power.sum(-1) + 1e-10)  # [B, F]
        notes = (power @ self.bands.t()).view(b, frames, OCTAVES, 12)  # [B, F, octave, pitch class]
        chroma = notes.sum(2)
        chroma = chroma / chroma.amax(-1, keepdim=True).clamp(min=1e-10)
        octave = 10 * torch.log10(notes.sum(3) + 1e-10) - level[..., None]
        high = 10 * torch.log10(power @ self.high.t() + 1e-10) - level[..., None]
        level = short_level_db(wav.mean(1), frames, hop)  # the envelope: stabs, attacks
        voiced = (level > SILENCE_DB)[..., None]
        latent = torch.cat(
            [
                chroma * CHROMA_SCALE * voiced,
                octave.clamp(min=BAND_FLOOR) / BAND_DB,
                level[..., None].clamp(-90.0, 6.0) / LEVEL_DB,
                high.clamp(min=BAND_FLOOR) / BAND_DB,
            ],
            dim=-1,
        ).transpose(1, 2)  # [B, 21, F]
        if self.flux is not None:
            power = frame_power(mono, frames, hop, DETAIL_N_FFT)  # [B, F, bins]
            total = power.sum(-1, keepdim=True) + 1e-10
            bands = 10 * torch.log10(power @ self.detail_bands.t() + 1e-10) - 10 * torch.log10(total)
            # spectral flatness (geometric over arithmetic mean power) of the broad bands: lines or noise
            log_power = torch.log(power + 1e-12)
            flat = (log_power @ self.flat_bands.t()) - torch.log(power @ self.flat_bands.t() + 1e-12)
            flat = 10 / math.log(10) * flat  # dB, <= 0
            attack = attack_db(mono, frames, hop, self.flux, FLUX_FLOOR_DB)  # [B, F]
            rows = [
                attack[..., None] / LEVEL_DB,
                bands.clamp(min=DETAIL_FLOOR) / BAND_DB,
                flat.clamp(min=BAND_FLOOR) / BAND_DB,
            ]
            detail = torch.cat(rows, dim=-1).transpose(1, 2) * voiced.transpose(1, 2)
            latent = torch.cat([latent, detail], dim=1)  # [B, 38, F]
        return latent.to(wav.dtype)


class ChromaEncoder(nn.Module):
    """`ChromaFeatures` as a one-layer stack (`model`), which `StemCodec.encode` chunks exactly."""

    def __init__(self, sample_rate: int, hop: int, detail: bool = False) -> None:
        super().__init__()
        self.model = nn.Sequential(ChromaFeatures(sample_rate, hop, detail))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)

    @staticmethod
    def chroma_of(latent: torch.Tensor) -> torch.Tensor:
        """latent [D, N] -> each frame's share of energy per pitch class [N, 12] (sums to 1; zero
        where the frame is below `SILENCE_DB`)."""
        chroma = latent[:12].T.clamp(min=0)  # [N, 12]
        sounding = latent[12 + OCTAVES] * LEVEL_DB > SILENCE_DB
        return chroma / chroma.sum(-1, keepdim=True).clamp(min=1e-6) * sounding[:, None]


class ToneControls(nn.Module):
    """latent [B, D, F] -> [B, NOTES + 1 + N, F]: note logits, amplitude logit, noise gain logits.
    The note logits are the learned ones plus log(amplitude) of each note as the latent implies it:
    its pitch class's share of the chroma times its octave's level."""

    def __init__(self, dimension: int, width: int, layers: int, noise_bands: int) -> None:
        super().__init__()
        self.net = FrameNet(dimension, width, layers, NOTES + 1 + noise_bands)
        head = self.net[-1].conv
        with torch.no_grad():  # start from the implied notes, without noise
            head.weight.mul_(0.01)
            head.bias.zero_()
            head.bias[NOTES + 1 :] = -4.0
        self.register_buffer("scale", torch.full((dimension, 1), 0.5), persistent=False)
        self.scale[:12] = 1.0 / CHROMA_SCALE

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return self.net.needs(a, b)

    @staticmethod
    def implied(latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D, F] -> log amplitude of each note [B, NOTES, F] (up to a constant)."""
        chroma = latent[:, :12].clamp(min=0) / CHROMA_SCALE
        share = chroma / chroma.sum(1, keepdim=True).clamp(min=1e-6)  # [B, 12, F]
        octave_db = latent[:, 12 : 12 + OCTAVES] * BAND_DB  # [B, O, F]
        energy = share[:, None] * torch.pow(10.0, octave_db / 10)[:, :, None]  # [B, O, 12, F]
        return 0.5 * torch.log(energy.flatten(1, 2) + 1e-8)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.net(latent * self.scale)
        return torch.cat([out[:, :NOTES] + self.implied(latent), out[:, NOTES:]], dim=1)


class FrameCounter(nn.Module):
    """x [B, R, F] -> [B, 1 + R, F] with each frame's index in the stream first. Stateful:
    `stream(x, state)` continues from `state` [B, 1] (frames so far)."""

    stateful = True

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def stream(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, frames = x.shape
        if state is None:
            state = torch.zeros(b, 1, dtype=torch.float64, device=x.device)
        index = state + torch.arange(frames, device=x.device, dtype=torch.float64)  # [B, F]
        return torch.cat([index[:, None].to(x.dtype), x], dim=1), state + frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream(x, None)[0]


class ToneSynth(nn.Module):
    """[B, 1 + NOTES + 1 + N, F] (from `FrameCounter`) -> wav [B, C, F * hop]: sines at MIDI
    36..95 with amplitudes amplitude x softmax(note logits), plus N noise bands."""

    def __init__(self, channels: int, sample_rate: int, hop: int, noise_bands: int) -> None:
        super().__init__()
        self.channels, self.sample_rate, self.hop, self.noise_bands = channels, sample_rate, hop, noise_bands
        hz = midi_to_hz(torch.arange(LOW_NOTE, LOW_NOTE + NOTES, dtype=torch.float64))
        self.register_buffer("cycles", hz / sample_rate, persistent=False)  # [NOTES] per sample
        self.register_buffer("noise", noise_table(sample_rate, noise_bands), persistent=False)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a // self.hop - 1, b // self.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, frames = x.shape
        hop, n = self.hop, self.noise_bands
        start = x[:, 0].double().round() * hop  # [B, F] first sample of each frame
        # sin(a + c) = sin a cos c + cos a sin c: a the phase at each frame's start (a function of
        # the absolute sample, so chunks join exactly), c the advance inside the frame (a table)
        a = 2 * math.pi * torch.remainder(start[:, None] * self.cycles[None, :, None], 1.0)  # [B, K, F]
        c = 2 * math.pi * torch.remainder(self.cycles[:, None] * torch.arange(hop, device=x.device), 1.0)
        table = torch.cat([torch.cos(c), torch.sin(c)]).to(x.dtype)  # [2K, hop]
        sin_a, cos_a = torch.sin(a).to(x.dtype), torch.cos(a).to(x.dtype)
        amps = exp_sigmoid(x[:, 1 + NOTES : 2 + NOTES]) * torch.softmax(x[:, 1 : 1 + NOTES], dim=1)
        prev = previous_frame(amps)
        slope = amps - prev  # amplitudes move linearly from the previous frame's: prev + slope * w
        w = torch.arange(1, hop + 1, device=x.device, dtype=x.dtype) / hop
        base = torch.einsum("bkf,kn->bfn", torch.cat([prev * sin_a, prev * cos_a], dim=1), table)
        ramp = torch.einsum("bkf,kn->bfn", torch.cat([slope * sin_a, slope * cos_a], dim=1), table)
        tones = base + ramp * w  # [B, F, hop]
        noise = band_noise(x[:, 2 + NOTES : 2 + NOTES + n], start.long(), hop, self.noise)  # [B, F, hop]
        wav = (tones + noise).reshape(b, 1, frames * hop)
        return wav.expand(b, self.channels, frames * hop).contiguous()


class TonalDecoder(StackDecoder):
    """Latent of `ChromaEncoder` [B, 21, F] -> waveform [B, channels, F * hop]; `model` is the stack
    `ToneControls`, `FrameCounter` (stateful), `ToneSynth`."""

    def __init__(
        self,
        channels: int,
        dimension: int,
        sample_rate: int,
        hop: int,
        width: int,
        layers: int,
        noise_bands: int,
    ) -> None:
        stack = [
            ToneControls(dimension, width, layers, noise_bands),
            FrameCounter(),
            ToneSynth(channels, sample_rate, hop, noise_bands),
        ]
        super().__init__(channels, dimension, hop, stack)
