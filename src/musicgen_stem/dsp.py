"""Signal processing shared by training and evaluation: STFT magnitude, mel filterbank and
spectrogram, SI-SNR, log-mel distance, onset strength.

numpy and torch only. Waveforms are [B, C, T] for the spectral functions (channels are folded into
the batch) and [T] or [..., C, T] for `onset_strength` (channels averaged). The mel filterbank uses
the **HTK** scale (`mel = 2595 * log10(1 + f / 700)`) without area normalisation by default, i.e.
the filters of `torchaudio.transforms.MelSpectrogram` (`mel_scale="htk", norm=None`), which EnCodec's
"msspec" loss uses; `mel_scale="slaney"` gives librosa's default filters (Slaney scale and area
normalisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "MelSpectrogram",
    "OnsetEnvelope",
    "beat_phase",
    "estimate_tempo",
    "fold_channels",
    "mel_distance",
    "mel_filterbank",
    "onset_strength",
    "si_snr",
    "stft_magnitude",
    "to_mono",
]


# ------------------------------------------------------------------------------------ mel filters
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
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # [F]
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


# ------------------------------------------------------------------------------------ spectrograms
def fold_channels(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T] (or [B, T] / [T]) -> [B * C, T]."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    return x.reshape(-1, x.shape[-1])


def stft_magnitude(
    x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, power: float = 1.0
) -> torch.Tensor:
    """x: [B, C, T] -> |STFT|**power [B * C, n_fft // 2 + 1, frames] (centred, reflect pad if possible)."""
    flat = fold_channels(x).float()
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


# ------------------------------------------------------------------------------------ distances
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
    ).to(x.device)
    diff = (mel(x) - mel(y)).abs()  # [B * C, n_mels, frames]
    return diff.reshape(x.shape[0], -1).mean(dim=-1)


# ------------------------------------------------------------------------------------ onsets
def to_mono(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """[T] or [..., C, T] -> float32 [T] (channels and leading axes averaged)."""
    x = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    while x.ndim > 1:
        x = x.mean(axis=0)
    return x.astype(np.float32, copy=False)


def mono_at(wav: np.ndarray | torch.Tensor, sample_rate: int, target: int) -> np.ndarray:
    """[T] or [..., C, T] -> float32 mono [T'] at `target` Hz (polyphase filter, scipy)."""
    from scipy.signal import resample_poly

    x = to_mono(wav)
    if sample_rate == target:
        return x
    g = math.gcd(int(sample_rate), int(target))
    return resample_poly(x, target // g, sample_rate // g).astype(np.float32)


@dataclass
class OnsetEnvelope:
    """Onset strength per frame: `env` [N] (>= 0, unit-std), frame `i` at time `i / frame_rate` s."""

    env: np.ndarray
    frame_rate: float

    def times(self) -> np.ndarray:
        """[N] frame times in seconds."""
        return np.arange(len(self.env)) / self.frame_rate


def onset_strength(
    wav: np.ndarray | torch.Tensor, sample_rate: int, hop_seconds: float = 0.01, n_mels: int = 64
) -> OnsetEnvelope:
    """Spectral-flux onset strength of `wav` ([T] or [C, T]) on a log-mel spectrogram.

    Window ~23 ms (power of two), hop `hop_seconds`; flux = mean over bands of max(0, diff(log mel)),
    with the frame of each rise placed at the centre of the window that first sees it (the envelope is
    advanced by half a window), a slow local mean removed and the result scaled to unit std.
    """
    x = to_mono(wav)
    hop = max(1, round(hop_seconds * sample_rate))
    n_fft = int(2 ** round(np.log2(0.023 * sample_rate)))
    mel = MelSpectrogram(sample_rate, n_fft, n_mels, hop_length=hop, f_min=30.0, log=False)
    with torch.no_grad():
        spec = mel(torch.from_numpy(x)[None, None])[0].numpy()  # [n_mels, N]
    logmel = np.log10(spec + 1e-4 * max(float(spec.max()), 1e-8))  # 80 dB range relative to the peak
    flux = np.maximum(0.0, np.diff(logmel, axis=1)).mean(axis=0)  # [N - 1], flux[i]: frame i -> i + 1
    env = np.concatenate([[0.0], flux])  # [N]
    # A rise enters a centred window half a window before it happens: advance by half a window.
    lag = max(0, round(n_fft / 2 / hop) - 1)
    env = np.concatenate([env[lag:], np.zeros(lag)]) if lag else env
    frame_rate = sample_rate / hop
    width = max(1, round(0.1 * frame_rate)) * 2 + 1  # ~200 ms local mean (high-pass)
    env = np.maximum(0.0, env - np.convolve(env, np.ones(width) / width, mode="same"))
    std = env.std()
    env = env / std if std > 1e-12 else np.zeros_like(env)
    return OnsetEnvelope(env.astype(np.float64), frame_rate)


def beat_phase(envelope: OnsetEnvelope, bpm: float, bins: int = 48) -> float:
    """Seconds in [0, 60 / bpm) of the beats that best fit the onsets at a known tempo: every
    envelope frame is folded onto one beat period and its strength summed into `bins` bins
    (smoothed over neighbours); the centre of the strongest bin. 0.0 without onsets."""
    e = envelope.env
    if bpm <= 0 or not np.any(e):
        return 0.0
    period = 60.0 / float(bpm)
    phase = np.mod(envelope.times(), period) / period  # [N] in [0, 1)
    hist = np.bincount((phase * bins).astype(np.int64) % bins, weights=e, minlength=bins)
    smooth = hist + 0.5 * (np.roll(hist, 1) + np.roll(hist, -1))
    return float((np.argmax(smooth) + 0.5) / bins * period)


def estimate_swing(
    envelope: OnsetEnvelope, bpm: float, beat: float, width: float = 0.02, min_ratio: float = 4.0
) -> tuple[float, float]:
    """(swing, beat): the swing of the 8ths (0..1: the off-beat 8th comes swing / 6 of a beat late,
    as `lm.model.swing_warp` reads it) of onsets at a known tempo and 8th grid, and the time in s of
    a beat. `beat` may be an off-beat (`beat_phase` takes the strongest 8th): a swung off-beat then
    shows 0.5 - swing / 6 of a beat after it, and the returned beat is moved onto the beat. The
    off-beat is the strongest window of ±`width` beats between 1/3 and 2/3 of a beat, refined to its
    centroid; it counts as swung when 0.2 or more of a swing away from the straight 8th and holding
    `min_ratio` times the straight 8th's strength, else (0.0, beat)."""
    e = envelope.env
    if bpm <= 0 or not np.any(e):
        return 0.0, beat
    period = 60.0 / float(bpm)
    pos = np.mod(envelope.times() - beat, period) / period  # [N] in [0, 1)

    def near(centre: float, w: float) -> np.ndarray:
        return np.abs(pos - centre) < w

    centres = np.linspace(1 / 3, 2 / 3, 41)
    best = float(centres[int(np.argmax([e[near(c, width)].sum() for c in centres]))])
    around = near(best, 2 * width)
    centre = float(np.average(pos[around], weights=e[around])) if e[around].any() else best
    s = float(np.clip((centre - 0.5) * 6, -1.0, 1.0))  # negative: `beat` was the swung off-beat
    straight = float(e[near(0.5, width)].sum())
    if abs(s) < 0.2 or e[near(centre, width)].sum() < min_ratio * max(straight, 1e-9):
        return 0.0, beat
    if s < 0:  # the beat sits 0.5 - |s| / 6 of a beat after the off-beat we were given
        beat = (beat + (0.5 + s / 6) * period) % period
    return abs(s), beat


def estimate_tempo(
    envelope: OnsetEnvelope,
    min_bpm: float = 40.0,
    max_bpm: float = 240.0,
    prior_bpm: float = 120.0,
    prior_octaves: float = 1.0,
) -> float:
    """Tempo in BPM from the onset envelope's autocorrelation, weighted by a log-Gaussian prior around
    `prior_bpm` (std `prior_octaves`), with parabolic refinement of the best lag; 0.0 if no pulse."""
    e = envelope.env - envelope.env.mean()
    fr = envelope.frame_rate
    n = len(e)
    lo, hi = max(1, int(np.floor(60 * fr / max_bpm))), int(np.ceil(60 * fr / min_bpm))
    hi = min(hi, n - 2)
    if n < 4 or hi <= lo or not np.any(e):
        return 0.0
    spec = np.fft.rfft(e, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[:n]  # [n] autocorrelation
    acf = acf / np.maximum(n - np.arange(n), 1)  # unbiased: long lags see fewer products
    lags = np.arange(lo, hi + 1)
    weight = np.exp(-0.5 * (np.log2(60 * fr / lags / prior_bpm) / prior_octaves) ** 2)
    score = acf[lags] * weight
    i = int(np.argmax(score))
    if score[i] <= 0:
        return 0.0
    lag = float(lags[i])
    if 0 < i < len(lags) - 1:  # refine on the unweighted ACF
        a, b, c = acf[lags[i] - 1], acf[lags[i]], acf[lags[i] + 1]
        den = a - 2 * b + c
        if abs(den) > 1e-12:
            lag += float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return 60.0 * fr / lag
