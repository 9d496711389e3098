"""Pitch-feature encoder and harmonic-plus-noise decoder (the kinds "pitch" and "harmonic" of
`codec/kinds.py`): a DDSP-style codec for monophonic stems such as bass.

Waveform encoders trained for a few thousand CPU steps leave bass pitch out of the codes (TRAINING.md:
every note of a bass line came back as one drone). This codec has pitch in its latent by construction:

- `PitchEncoder` (no parameters): per frame, f0 by YIN (`librosa.yin` at 8 kHz) and, from a 4096-point
  STFT, the frame's level and the level of six bands around harmonics 1, 2, 3-4, 5-8, 9-16 and above.
  Latent [B, 8, F] = (pitch in tenths of a semitone above E1, or `SILENT`; level (40 ms window: the
  envelope) in 3 dB units; band levels relative to the frame's level in 6 dB units). A semitone is
  10 units, more than any level or timbre difference, so the codebook's k-means keeps notes apart
  and splits each by level and timbre. With `detail` (latent [B, 15, F], the first 8 rows the same):
  the frame's attack (the largest log-mel flux in 5 ms steps around it, in 3 dB units: a re-attacked
  note that keeps its level) and six finer bands above harmonic 8 (9-12, 13-16, 17-24, 25-32, 33-48,
  49 and up) from a 2048-point STFT: what a second codebook adds to the first's notes.
- `HarmonicDecoder`: `HarmonicControls` (ConvNeXt blocks at the frame rate) predicts harmonic
  amplitudes and noise band gains, and passes on the pitch read from the latent: a code's pitch is
  exact without any learning. `HarmonicPhase` integrates the phase frame by frame (stateful: it streams
  exactly), `HarmonicSynth` renders the samples: harmonics of f0 plus noise from a fixed band-limited
  table, indexed by absolute sample so that chunks join seamlessly.

Frame f describes sample (f + 1) * hop: inside frame f, f0 and amplitudes move from frame f - 1's
values to frame f's (f0 holds at a note's first frame, so a note never glides in from silence).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..dsp import MelSpectrogram
from .istft import FrameNet, StackDecoder

__all__ = [
    "attack_db",
    "band_levels",
    "flux_mel",
    "band_noise",
    "frame_power",
    "HarmonicControls",
    "HarmonicDecoder",
    "HarmonicPhase",
    "HarmonicSynth",
    "PitchEncoder",
]

SEMITONE = 10.0  # latent units per semitone
LOW_MIDI = 28.0  # E1: pitch 0 in the latent
SILENT = -150.0  # latent pitch of frames without a note
SILENCE_DB = -60.0  # frames below this level (dB re a full-scale sine) are silent
LEVEL_DB = 3.0  # dB per latent unit of level
BAND_DB = 6.0  # dB per latent unit of band level
BAND_EDGES = (0.5, 1.5, 2.5, 4.5, 8.5, 16.5)  # multiples of f0; the last band runs to Nyquist
DETAIL_EDGES = (8.5, 12.5, 16.5, 24.5, 32.5, 48.5)  # the finer bands of `detail`, same convention
DETAIL_N_FFT = 2048
FLUX_HOP = 160  # samples at 32 kHz (5 ms) between the attack's log-mel frames
FLUX_N_FFT = 1024
FLUX_MELS = 64
FLUX_RANGE_DB = 80.0  # log-mel levels are floored this far below the input's peak
PITCH_RATE = 8000  # YIN runs at this rate
N_FFT = 4096
HOLD_MIDI = 40.0  # f0 held before the first note (inaudible: its amplitude is 0)
NOISE_TABLE = 32768  # samples of the fixed noise table (periodic)


def midi_to_hz(midi: torch.Tensor) -> torch.Tensor:
    return 440.0 * torch.pow(2.0, (midi - 69.0) / 12.0)


def short_level_db(mono: torch.Tensor, frames: int, hop: int) -> torch.Tensor:
    """mono [B, >= frames * hop] -> level (dB re a full-scale sine) [B, frames] in a Hann window of
    2 * hop samples centred on (f + 1) * hop: the envelope at the frame rate (note attacks, stabs),
    which a long analysis window would smear."""
    x = mono.float()[:, : frames * hop]
    x = nn.functional.pad(x, (0, (frames + 1) * hop - x.shape[-1]))  # zeros past the end
    seg = x.unfold(-1, 2 * hop, hop)[:, :frames]  # [B, F, 2 hop]
    w = torch.hann_window(2 * hop, periodic=False, device=mono.device)
    power = (seg * w).square().sum(-1) / w.square().sum()
    return 10 * torch.log10(2 * power + 1e-10)


def frame_power(mono: torch.Tensor, frames: int, hop: int, n_fft: int) -> torch.Tensor:
    """mono [B, >= frames * hop] -> power spectrum [B, frames, n_fft // 2 + 1] of an `n_fft` Hann
    window centred on (f + 1) * hop (zeros outside the input), scaled so that a full-scale sine sums
    to ~1."""
    window = torch.hann_window(n_fft, device=mono.device)
    left = n_fft // 2 - hop
    x = nn.functional.pad(mono.float()[:, : frames * hop], (left, n_fft - hop - left))
    seg = x.unfold(-1, n_fft, hop)[:, :frames]  # [B, F, n_fft]
    power = torch.fft.rfft(seg * window, dim=-1).abs().square()
    return power * (4.0 / (n_fft * window.square().sum()))


def band_levels(
    mono: torch.Tensor, f0: torch.Tensor, hop: int, sample_rate: int, n_fft: int, edges: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """mono [B, F * hop], f0 [B, F] -> (level dB [B, F], levels dB of the bands between successive
    `edges` x f0 (the last to Nyquist) relative to it [B, len(edges), F]) from an `n_fft` Hann STFT
    centred on (f + 1) * hop; a full-scale sine is 0 dB."""
    power = frame_power(mono, f0.shape[-1], hop, n_fft)  # [B, F, bins]
    total = power.sum(-1)  # [B, F]
    level = 10 * torch.log10(total + 1e-10)
    bounds = torch.tensor(edges + (math.inf,), device=mono.device)
    hz = f0[..., None, None] * bounds  # [B, F, 1, E + 1]
    lo, hi = hz[..., :-1], hz[..., 1:]
    f = (torch.arange(n_fft // 2 + 1, device=mono.device) * (sample_rate / n_fft))[:, None]  # [bins, 1]
    bands = (power[..., None] * ((f >= lo) & (f < hi))).sum(-2)  # [B, F, E]
    rel = 10 * torch.log10(bands + 1e-10) - level[..., None]
    return level, rel.clamp(min=-60.0).transpose(1, 2)


def flux_mel(sample_rate: int) -> MelSpectrogram:
    """The log-mel analysis of `attack_db`: 1024-point windows (at 32 kHz) in 5 ms steps, 64 bands."""
    step = max(1, round(FLUX_HOP * sample_rate / 32000))
    return MelSpectrogram(sample_rate, FLUX_N_FFT, FLUX_MELS, hop_length=step, f_min=30.0, log=False)


def attack_db(
    mono: torch.Tensor, frames: int, hop: int, mel: MelSpectrogram, floor_db: float | None = None
) -> torch.Tensor:
    """mono [B, >= frames * hop] -> attack [B, frames] in dB: the largest log-mel flux (mean rise
    over the bands of `mel` (`flux_mel`), levels floored 80 dB below the input's peak, or at
    `floor_db` (dB of `mel`'s magnitudes) so that each frame reads only samples near it; timed as
    `dsp.onset_strength` times it) among the steps within half a frame of (f + 1) * hop. A note's
    attack, or the re-attack of a held note, rises there whatever its level does."""
    step = mel.hop_length
    x = mono.float()[:, : frames * hop]
    x = nn.functional.pad(x, (0, frames * hop - x.shape[-1]))
    spec = mel(x[:, None])  # [B, mels, N] magnitudes, step n centred on n * step
    db = 20 * torch.log10(spec.clamp(min=1e-8))
    if floor_db is None:
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - FLUX_RANGE_DB)
    else:
        db = db.clamp(min=floor_db)
    flux = nn.functional.pad((db[..., 1:] - db[..., :-1]).clamp(min=0).mean(1), (1, 0))  # [B, N]
    lag = max(0, round(FLUX_N_FFT / 2 / step) - 1)  # a rise enters a centred window ahead of it
    flux = nn.functional.pad(flux[:, lag:], (0, lag))
    per = hop // step
    centre = (torch.arange(frames, device=mono.device) + 1) * per  # the step of each frame's sample
    offsets = torch.arange(-(per // 2), per - per // 2, device=mono.device)
    idx = (centre[:, None] + offsets).clamp(0, flux.shape[-1] - 1)  # [F, per]
    return flux[:, idx].amax(-1)  # [B, F]


class PitchEncoder(nn.Module):
    """wav [B, C, T] -> latent [B, 8, ceil(T / hop)] ([B, 15, ...] with `detail`; see the module
    docstring). Not differentiable, no parameters; the whole input is analysed at once (YIN reads
    the whole signal)."""

    def __init__(
        self, sample_rate: int, hop: int, fmin: float = 30.0, fmax: float = 400.0, detail: bool = False
    ) -> None:
        super().__init__()
        if (hop * PITCH_RATE) % sample_rate:
            raise ValueError(f"the pitch encoder needs hop * {PITCH_RATE} divisible by the sample rate")
        self.sample_rate, self.hop, self.fmin, self.fmax = sample_rate, hop, fmin, fmax
        self.detail = detail
        self.flux = flux_mel(sample_rate) if detail else None  # buffers only, none in the state dict

    def f0(self, mono: torch.Tensor, frames: int) -> torch.Tensor:
        """mono [B, frames * hop] -> f0 [B, frames] in Hz at samples (f + 1) * hop (YIN, 8 kHz)."""
        import librosa

        hop8 = self.hop * PITCH_RATE // self.sample_rate
        x = mono.detach().double().cpu().numpy()
        if self.sample_rate != PITCH_RATE:
            x = librosa.resample(x, orig_sr=self.sample_rate, target_sr=PITCH_RATE, axis=-1)
        length = frames * hop8
        x = np.pad(x[..., :length], [(0, 0), (0, max(0, length - x.shape[-1]))])
        f0 = librosa.yin(
            x, fmin=self.fmin, fmax=self.fmax, sr=PITCH_RATE, frame_length=1024, hop_length=hop8, center=True
        )  # [B, frames + 1], frame j centred on sample j * hop
        return torch.from_numpy(np.ascontiguousarray(f0[:, 1 : frames + 1])).to(mono.device, torch.float32)

    def levels(self, mono: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """mono [B, F * hop], f0 [B, F] -> (level dB [B, F], band levels dB [B, 6, F]) stacked [B, 7, F]."""
        hz = f0.clamp(min=self.fmin)
        _, rel = band_levels(mono, hz, self.hop, self.sample_rate, N_FFT, BAND_EDGES)
        level = short_level_db(mono, f0.shape[-1], self.hop)  # the envelope; the bands keep the long window
        return torch.cat([level[:, None], rel], dim=1)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        b, _, length = wav.shape
        frames = -(-length // self.hop)
        mono = nn.functional.pad(wav.float().mean(1), (0, frames * self.hop - length))  # [B, F * hop]
        f0 = self.f0(mono, frames)
        lv = self.levels(mono, f0)  # [B, 7, F]
        voiced = lv[:, 0] > SILENCE_DB
        midi = 69.0 + 12.0 * torch.log2(f0.clamp(min=1.0) / 440.0)
        pitch = torch.where(voiced, (midi - LOW_MIDI) * SEMITONE, torch.full_like(midi, SILENT))
        level = lv[:, :1].clamp(-90.0, 6.0) / LEVEL_DB
        rows = [pitch[:, None], level, lv[:, 1:] / BAND_DB]
        if self.detail:
            hz = f0.clamp(min=self.fmin)
            _, fine = band_levels(mono, hz, self.hop, self.sample_rate, DETAIL_N_FFT, DETAIL_EDGES)
            assert self.flux is not None
            attack = attack_db(mono, frames, self.hop, self.flux) * voiced
            rows += [(attack / LEVEL_DB)[:, None], fine * voiced[:, None] / BAND_DB]
        return torch.cat(rows, dim=1).to(wav.dtype)

    @staticmethod
    def chroma_of(latent: torch.Tensor) -> torch.Tensor:
        """latent [D, N] -> the pitch class of each frame's note [N, 12] (one-hot; zero where silent)."""
        pitch = latent[0]
        voiced = pitch > SILENT / 2
        pc = torch.remainder(torch.round(pitch / SEMITONE + LOW_MIDI).long(), 12)
        return nn.functional.one_hot(pc, 12).float() * voiced[:, None]


def exp_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's positive amplitude nonlinearity: 2 * sigmoid(x) ** ln(10) + 1e-7."""
    return 2.0 * torch.sigmoid(x).pow(math.log(10.0)) + 1e-7


def previous_frame(x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., F] shifted right by one frame; frame 0 gets `first` [...] (default: itself)."""
    head = x[..., :1] if first is None else first[..., None].to(x.dtype)
    return torch.cat([head, x[..., :-1]], dim=-1)


def frame_ramp(x: torch.Tensor, hop: int) -> torch.Tensor:
    """Per-frame values x [..., F] -> per-sample [..., F, hop], moving linearly from the previous
    frame's value to this frame's (reached at the frame's last sample)."""
    prev = previous_frame(x)
    w = torch.arange(1, hop + 1, device=x.device, dtype=x.dtype) / hop
    return prev[..., None] + (x - prev)[..., None] * w


def _frame_f0(
    prev_midi: torch.Tensor, prev_voiced: torch.Tensor, midi: torch.Tensor, hop: int
) -> torch.Tensor:
    """f0 (Hz) of each sample of each frame [..., F, hop]: from the previous frame's note to this
    one's, linearly in semitones; held at this frame's note when the previous frame was silent."""
    start = torch.where(prev_voiced > 0.5, prev_midi, midi)
    w = torch.arange(1, hop + 1, device=midi.device, dtype=midi.dtype) / hop
    return midi_to_hz(start[..., None] + (midi - start)[..., None] * w)


class HarmonicControls(nn.Module):
    """latent [B, 8, F] -> controls [B, 2 + H + 1 + N, F]: MIDI note and voicing read from the
    latent's pitch, then the learned harmonic logits (H), amplitude logit and noise gain logits (N)."""

    def __init__(self, dimension: int, width: int, layers: int, harmonics: int, noise_bands: int) -> None:
        super().__init__()
        self.harmonics, self.noise_bands = harmonics, noise_bands
        scale = torch.tensor([1.0 / (12 * SEMITONE), LEVEL_DB / 30.0] + [0.5] * (dimension - 2))
        self.register_buffer("scale", scale[:, None], persistent=False)
        self.net = FrameNet(dimension, width, layers, harmonics + 1 + noise_bands)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return self.net.needs(a, b)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        pitch = latent[:, :1]
        voiced = (pitch > SILENT / 2).to(latent.dtype)
        midi = torch.where(voiced > 0, LOW_MIDI + pitch / SEMITONE, torch.zeros_like(pitch))
        return torch.cat([midi, voiced, self.net(latent * self.scale)], dim=1)


class HarmonicPhase(nn.Module):
    """controls [B, 2 + R, F] -> [B, 4 + R, F]: the MIDI note held through silent frames, voicing,
    the phase at each frame's first sample and the frame's index, then the rest unchanged.
    Stateful: `stream(x, state)` continues from `state` [B, 4] (float64: last note, its voicing,
    next phase, frames so far); `forward` starts a new stream."""

    stateful = True

    def __init__(self, sample_rate: int, hop: int) -> None:
        super().__init__()
        self.sample_rate, self.hop = sample_rate, hop

    def needs(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def stream(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, frames = x.shape
        if state is None:
            start = torch.tensor([HOLD_MIDI, 0.0, 0.0, 0.0], dtype=torch.float64, device=x.device)
            state = start.repeat(b, 1)
        if frames == 0:
            return x.new_zeros(b, x.shape[1] + 2, 0), state
        midi, voiced = x[:, 0].double(), x[:, 1].double()
        pos = torch.arange(frames, device=x.device).expand(b, frames)
        last = torch.where(voiced > 0.5, pos, torch.full_like(pos, -1)).cummax(dim=-1).values
        held = torch.where(last >= 0, midi.gather(1, last.clamp(min=0)), state[:, :1])  # [B, F]
        prev_midi, prev_voiced = previous_frame(held, state[:, 0]), previous_frame(voiced, state[:, 1])
        f0 = _frame_f0(prev_midi, prev_voiced, held, self.hop)  # [B, F, hop]
        advance = 2 * math.pi * f0.sum(-1) / self.sample_rate  # [B, F]
        phase = state[:, 2:3] + advance.cumsum(-1) - advance  # at each frame's first sample
        index = state[:, 3:4] + pos
        next_phase = torch.remainder(phase[:, -1] + advance[:, -1], 2 * math.pi)
        new_state = torch.stack([held[:, -1], voiced[:, -1], next_phase, index[:, -1] + 1], dim=1)
        extra = torch.stack([torch.remainder(phase, 2 * math.pi), index.double()], dim=1).to(x.dtype)
        out = torch.cat([held[:, None].to(x.dtype), x[:, 1:2], extra, x[:, 2:]], dim=1)
        return out, new_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream(x, None)[0]


def noise_table(sample_rate: int, bands: int, length: int = NOISE_TABLE, seed: int = 0) -> torch.Tensor:
    """[bands, length] periodic white noise split into `bands` log-spaced bands (20 Hz to Nyquist),
    each of unit RMS; the same numbers on every machine (CPU generator, fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(length, generator=gen, dtype=torch.float64))
    freqs = torch.arange(spec.shape[0], dtype=torch.float64) * sample_rate / length
    edges = np.geomspace(20.0, sample_rate / 2, bands + 1)
    edges[-1] = math.inf
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = torch.fft.irfft(spec * ((freqs >= lo) & (freqs < hi)), n=length)
        out.append(band / band.square().mean().sqrt().clamp(min=1e-12))
    return torch.stack(out).float()


def band_noise(logits: torch.Tensor, start: torch.Tensor, hop: int, table: torch.Tensor) -> torch.Tensor:
    """Noise of frames [B, F, hop]: the bands of `table` [N, L] read at absolute samples from
    `start` [B, F] (int64, each frame's first sample: chunks join exactly), with gains
    exp_sigmoid(logits [B, N, F]) / 10 moving linearly from the previous frame's."""
    gains = frame_ramp(exp_sigmoid(logits) * 0.1, hop)  # [B, N, F, hop]
    pos = (start[..., None] + torch.arange(hop, device=logits.device)) % table.shape[1]  # [B, F, hop]
    return (gains * table[:, pos].permute(1, 0, 2, 3)).sum(1)


class HarmonicSynth(nn.Module):
    """[B, 4 + H + 1 + N, F] (from `HarmonicPhase`) -> wav [B, C, F * hop]: the sum of H harmonics of
    f0 (amplitudes = amplitude x softmax of the harmonic logits, zero above Nyquist and in silent
    frames) plus N noise bands; every control moves linearly from the previous frame's value."""

    def __init__(self, channels: int, sample_rate: int, hop: int, harmonics: int, noise_bands: int) -> None:
        super().__init__()
        self.channels, self.sample_rate, self.hop = channels, sample_rate, hop
        self.harmonics, self.noise_bands = harmonics, noise_bands
        self.register_buffer("noise", noise_table(sample_rate, noise_bands), persistent=False)
        self.register_buffer("k", torch.arange(1, harmonics + 1, dtype=torch.float32), persistent=False)

    def needs(self, a: int, b: int) -> tuple[int, int]:
        """Frames read by output samples [a, b]: their own and the one before."""
        return a // self.hop - 1, b // self.hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, frames = x.shape
        hop, h, n = self.hop, self.harmonics, self.noise_bands
        midi, voiced, phase0, index = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
        f0 = _frame_f0(previous_frame(midi), previous_frame(voiced), midi, hop)  # [B, F, hop]
        phase = phase0[..., None] + 2 * math.pi * (f0.cumsum(-1) - f0) / self.sample_rate  # [B, F, hop]
        top = torch.maximum(f0[..., 0], f0[..., -1])  # [B, F]
        audible = self.k[:, None, None] * top < self.sample_rate / 2  # [H, B, F]
        amps = exp_sigmoid(x[:, 4 + h : 5 + h]) * torch.softmax(x[:, 4 : 4 + h], dim=1)  # [B, H, F]
        amps = amps * audible.permute(1, 0, 2) * voiced[:, None]
        amps = frame_ramp(amps, hop)  # [B, H, F, hop]
        harmonic = (amps * torch.sin(self.k[None, :, None, None] * phase[:, None])).sum(1)  # [B, F, hop]
        noise = band_noise(x[:, 5 + h : 5 + h + n], index.long() * hop, hop, self.noise)  # [B, F, hop]
        wav = (harmonic + noise).reshape(b, 1, frames * hop)
        return wav.expand(b, self.channels, frames * hop).contiguous()


class HarmonicDecoder(StackDecoder):
    """Latent of `PitchEncoder` [B, 8, F] -> waveform [B, channels, F * hop]; `model` is the stack
    `HarmonicControls`, `HarmonicPhase` (stateful), `HarmonicSynth`."""

    def __init__(
        self,
        channels: int,
        dimension: int,
        sample_rate: int,
        hop: int,
        width: int,
        layers: int,
        harmonics: int,
        noise_bands: int,
    ) -> None:
        stack = [
            HarmonicControls(dimension, width, layers, harmonics, noise_bands),
            HarmonicPhase(sample_rate, hop),
            HarmonicSynth(channels, sample_rate, hop, harmonics, noise_bands),
        ]
        super().__init__(channels, dimension, hop, stack)
