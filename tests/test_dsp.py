"""Shared signal processing (`musicgen_stem.dsp`) against known answers and librosa."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from musicgen_stem.dsp import (
    MelSpectrogram,
    mel_distance,
    mel_filterbank,
    onset_strength,
    si_snr,
    stft_magnitude,
    to_mono,
)
from musicgen_stem.evaluation.fidelity import multiscale_mel_distance

SR = 16000


@pytest.mark.parametrize("scale,htk,norm", [("htk", True, None), ("slaney", False, "slaney")])
def test_mel_filterbank_matches_librosa(scale: str, htk: bool, norm: str | None):
    ours = mel_filterbank(22050, 2048, 64, 30.0, 8000.0, scale).numpy()
    ref = librosa.filters.mel(sr=22050, n_fft=2048, n_mels=64, fmin=30.0, fmax=8000.0, htk=htk, norm=norm)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * ref.max())


def test_stft_magnitude_of_a_bin_centred_sine():
    """A sine of amplitude A on bin k of an N-point periodic Hann window: |X[k]| = A * N / 4."""
    n, k, amp = 1024, 32, 0.7
    x = amp * torch.sin(2 * math.pi * k * torch.arange(SR) / n)
    mag = stft_magnitude(x[None, None], n, n // 4, torch.hann_window(n))  # [1, F, frames]
    frame = mag[0, :, 10]  # away from the padded edges
    assert int(frame.argmax()) == k
    assert float(frame[k]) == pytest.approx(amp * n / 4, rel=1e-4)
    assert float(frame[k + 3]) < 1e-3 * float(frame[k])  # a Hann window's leakage ends at +-2 bins


def test_mel_spectrogram_puts_a_tone_in_its_band():
    mel = MelSpectrogram(SR, 1024, n_mels=40)
    tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(SR) / SR)
    band = int(mel(tone[None, None])[0].mean(-1).argmax())
    fb = mel_filterbank(SR, 1024, 40)
    bin_1k = round(1000.0 * 1024 / SR)
    assert band == int(fb[:, bin_1k].argmax())  # the filter that peaks at 1 kHz


def test_si_snr_of_a_known_noise_level():
    """Noise orthogonal to the reference at 1/100 of its energy: 20 dB, whatever the scale."""
    t = torch.arange(SR) / SR
    ref = torch.sin(2 * math.pi * 440.0 * t)[None, None]
    noise = 0.1 * torch.cos(2 * math.pi * 440.0 * t)[None, None]  # orthogonal over whole periods
    assert float(si_snr(ref + noise, ref)) == pytest.approx(20.0, abs=1e-3)
    assert float(si_snr(3.0 * (ref + noise), ref)) == pytest.approx(20.0, abs=1e-3)
    assert float(si_snr(ref + 10 * noise, ref)) == pytest.approx(0.0, abs=1e-3)


def test_mel_distance_of_a_halved_signal_is_log10_2():
    """|log10(mel(x / 2)) - log10(mel(x))| = log10(2) in every band that is well above the floor."""
    y = torch.randn(1, 1, 2 * SR, generator=torch.Generator().manual_seed(0))
    assert float(mel_distance(0.5 * y, y, SR)) == pytest.approx(math.log10(2), abs=1e-4)
    assert float(multiscale_mel_distance(0.5 * y, y, SR)) == pytest.approx(math.log10(2), abs=1e-4)
    assert float(mel_distance(y, y, SR)) == 0.0


def test_onset_strength_peaks_at_the_clicks():
    times = np.arange(0.25, 2.0, 0.5)
    x = np.zeros(2 * SR, np.float32)
    for t in times:
        i = int(t * SR)
        x[i : i + 80] = np.hanning(160)[80:]  # a 5 ms decaying click
    env = onset_strength(np.stack([x, x]), SR)  # stereo: averaged to mono first
    assert env.frame_rate == pytest.approx(100.0)
    peaks = [
        int(np.argmax(env.env[int((t - 0.2) * 100) : int((t + 0.2) * 100)])) / 100 + t - 0.2 for t in times
    ]
    np.testing.assert_allclose(peaks, times, atol=0.02)
    assert env.env.std() == pytest.approx(1.0)


def test_to_mono():
    stereo = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(to_mono(stereo), np.array([2.0, 3.0], np.float32))
