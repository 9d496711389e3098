"""The parametric codecs: pitch encoder + harmonic decoder (bass), chroma encoder + tone bank (other)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from musicgen_stem.codec import (
    ChromaEncoderConfig,
    CodecConfig,
    HarmonicDecoderConfig,
    PitchEncoderConfig,
    StemCodec,
    TonalDecoderConfig,
)
from musicgen_stem.codec.harmonic import SEMITONE, SILENT, HarmonicDecoder
from musicgen_stem.codec.tonal import LOW_NOTE, NOTES, TonalDecoder

SR = 32000


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _line(notes: list[list[int]], seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    """Decaying sines, one chord (list of MIDI notes) per `seconds`: wav [1, 1, T]."""
    t = np.arange(int(SR * seconds)) / SR
    parts = [sum(np.sin(2 * np.pi * _hz(m) * t) for m in chord) * np.exp(-2 * t) * amp for chord in notes]
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))[None, None]


def _cfg(kind: str, detail: bool = False, **kw: object) -> CodecConfig:
    """A small pitch/harmonic or chroma/tonal codec (`detail`: the larger latent)."""
    if kind == "pitch":
        enc = PitchEncoderConfig(detail=detail)
        parts = {
            "encoder": enc,
            "decoder": HarmonicDecoderConfig(width=16, layers=1, harmonics=8, noise_bands=4),
        }
    else:
        enc = ChromaEncoderConfig(detail=detail)
        parts = {"encoder": enc, "decoder": TonalDecoderConfig(width=16, layers=1, noise_bands=4), "n_q": 2}
    return CodecConfig(**{"dimension": enc.dimension, "bins": 64, "n_q": 1, **parts, **kw})  # type: ignore[arg-type]


def _peak_hz(wav: torch.Tensor) -> float:
    x = wav.detach().flatten().double().numpy()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 20))
    freqs = np.fft.rfftfreq(1 << 20, 1 / SR)
    spec[freqs < 20] = 0
    return float(freqs[np.argmax(spec)])


def _cents(f: float, ref: float) -> float:
    return float(1200 * np.log2(f / ref))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CodecConfig(encoder=PitchEncoderConfig(), dimension=16), r"dimension 8 \(8, or 15"),
        (lambda: CodecConfig(encoder=ChromaEncoderConfig(), dimension=8), r"dimension 21 \(21, or 38"),
        (lambda: CodecConfig(decoder=HarmonicDecoderConfig()), "use the pitch encoder"),
        (
            lambda: CodecConfig(encoder=PitchEncoderConfig(), decoder=TonalDecoderConfig(), dimension=8),
            "use the chroma encoder",
        ),
        (lambda: PitchEncoderConfig(fmin=500.0), "fmin must be positive and below fmax"),
        (lambda: HarmonicDecoderConfig(harmonics=0), "HarmonicDecoderConfig sizes"),
    ],
)
def test_parametric_config_checks(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_pitch_latent_follows_the_bass_line_and_codes_differ_per_note() -> None:
    """The issue's probe: A1, C2, E2, G2 got one code sequence from the shipped codec."""
    notes = [33, 36, 40, 43]
    wav = torch.cat([_line([[m] for m in notes]), torch.zeros(1, 1, SR // 2)], dim=-1)
    codec = StemCodec(_cfg("pitch"))
    latent = codec.encode_latent(wav)  # [1, 8, F]
    assert latent.shape == (1, 8, codec.num_frames(wav.shape[-1]))
    for i, m in enumerate(notes):  # the middle of each second
        pitch = latent[0, 0, i * 50 + 10 : i * 50 + 40] / SEMITONE + 28
        assert (pitch - m).abs().max() < 0.2, (m, pitch)
    assert (latent[0, 0, -10:] == SILENT).all()  # the silent half second
    codec.train()
    for _ in range(300):  # k-means initialisation, then EMA updates until the init is forgotten
        codec.quantizer(latent)
    codes = codec.eval().encode(wav)[0, 0]
    per_note = [set(codes[i * 50 + 10 : i * 50 + 40].tolist()) for i in range(4)]
    assert all(not (a & b) for j, a in enumerate(per_note) for b in per_note[j + 1 :])


def test_detail_latent_marks_reattacks_of_a_held_note() -> None:
    """dimension 15: the first 8 rows are the plain latent's; the attack row rises where a held A1
    is re-struck (a 10 ms dip and a pick click, its level the same before and after)."""
    t = np.arange(2 * SR) / SR
    env = np.ones_like(t)
    strikes = [0.5, 1.0, 1.5]
    for s in strikes:
        env[(t >= s - 0.01) & (t < s)] = 0.1
    x = 0.3 * env * np.sin(2 * np.pi * _hz(33) * t)
    rng = np.random.default_rng(0)
    for s in strikes:
        i = int(s * SR)
        x[i : i + 64] += 0.2 * rng.standard_normal(64) * np.hanning(64)
    wav = torch.from_numpy(x.astype(np.float32))[None, None]
    plain = StemCodec(_cfg("pitch")).encode_latent(wav)
    detail = StemCodec(_cfg("pitch", detail=True, n_q=2)).encode_latent(wav)
    assert detail.shape == (1, 15, plain.shape[-1]) and torch.equal(detail[:, :8], plain)
    attack = detail[0, 8]
    hits = [int(s * 50) - 1 + k for s in strikes for k in (-1, 0)]  # frame f describes (f + 1) * hop
    rest = attack[10:90][[f - 10 not in [h - 10 for h in hits] for f in range(10, 90)]]
    assert float(attack[hits].reshape(3, 2).amax(1).min()) > 3 * float(rest.median()) + 0.5
    assert torch.isfinite(detail).all()


@pytest.mark.parametrize("midi", [28, 43, 55])
def test_harmonic_decoder_plays_the_latent_pitch(midi: int) -> None:
    dec = HarmonicDecoder(1, 8, SR, 640, width=8, layers=1, harmonics=8, noise_bands=4)
    head = dec.model[0].net[-1].conv
    with torch.no_grad():  # all the amplitude on the first harmonic, no noise
        head.weight.zero_()
        head.bias.fill_(-20.0)
        head.bias[0] = 10.0
        head.bias[8] = 5.0
    latent = torch.zeros(1, 8, 50)
    latent[0, 0] = (midi - 28) * SEMITONE
    wav = dec(latent)
    assert wav.shape == (1, 1, 50 * 640)
    assert abs(_cents(_peak_hz(wav[..., 3200:]), _hz(midi))) < 5
    latent[0, 0] = SILENT  # silent frames: no tone
    assert dec(latent)[..., 3200:].abs().max() < 1e-3


def test_chroma_latent_names_the_chords_and_chunks_exactly() -> None:
    chords = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # C, Am, F, G
    wav = _line(chords, amp=0.2)
    codec = StemCodec(_cfg("chroma"))
    latent = codec.encode_latent(wav)
    for i, chord in enumerate(chords):
        chroma = latent[0, :12, i * 50 + 25]
        assert set(chroma.topk(3).indices.tolist()) == {m % 12 for m in chord}
    codec.train()
    codec(wav)
    codec.eval()
    assert torch.equal(codec.encode(wav, chunk_seconds=0.7), codec.encode(wav))


def test_chroma_detail_latent_marks_restruck_chords_and_chunks_exactly() -> None:
    """dimension 38: the first 21 rows are the plain latent's; the attack row rises where a held
    chord is struck again (its level the same before and after), the band levels say where its
    energy is, the flatness that it is lines, not noise, and chunked encoding with a third codebook
    gives the same codes."""
    t = np.arange(2 * SR) / SR
    env = np.ones_like(t)
    strikes = [0.5, 1.0, 1.5]
    for s in strikes:
        env[(t >= s - 0.01) & (t < s)] = 0.05
    x = 0.1 * env * sum(np.sin(2 * np.pi * _hz(m) * t) for m in (60, 64, 67))
    wav = torch.from_numpy(x.astype(np.float32))[None, None]
    plain = StemCodec(_cfg("chroma")).encode_latent(wav)
    codec = StemCodec(_cfg("chroma", detail=True, n_q=3))
    detail = codec.encode_latent(wav)
    assert detail.shape == (1, 38, plain.shape[-1]) and torch.equal(detail[:, :21], plain)
    attack = detail[0, 21]
    hits = [int(s * 50) - 1 + k for s in strikes for k in (-1, 0)]  # frame f describes (f + 1) * hop
    rest = attack[10:90][[f not in hits for f in range(10, 90)]]
    assert float(attack[hits].reshape(3, 2).amax(1).min()) > 3 * float(rest.median()) + 0.5
    bands = detail[0, 22:34, 60]  # 0-65 Hz, octaves to 2080 Hz, ...: C4-G4 lie in 260-520 Hz
    assert int(bands.argmax()) == 3 and float(bands[0]) < -4
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1)
    flat_noise = codec.encode_latent(noise[None, None])[0, 34, 60]  # 130-520 Hz of white noise
    assert float(detail[0, 34, 60]) < -2 < float(flat_noise) < 0  # below -20 dB for lines, near 0 for noise
    codec.train()
    codec(wav)
    codec.eval()
    assert torch.equal(codec.encode(wav, chunk_seconds=0.7), codec.encode(wav))


def test_tone_bank_plays_equal_tempered_notes() -> None:
    dec = TonalDecoder(1, 21, SR, 640, width=8, layers=1, noise_bands=4)
    head = dec.model[0].net[-1].conv
    a4 = 69 - LOW_NOTE
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-20.0)
        head.bias[a4] = 10.0
        head.bias[NOTES] = 5.0
    wav = dec(torch.zeros(1, 21, 50))
    assert abs(_cents(_peak_hz(wav[..., 3200:]), 440.0)) < 5


@pytest.mark.parametrize("kind", ["pitch", "chroma"])
def test_parametric_codec_trains_and_reloads(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    codec = StemCodec(_cfg(kind))
    wav = _line([[40, 47], [43, 50]], seconds=0.5)
    opt = torch.optim.Adam(codec.decoder.parameters(), lr=3e-3)
    codec.train()
    losses = []
    for _ in range(12):
        out = codec(wav)
        loss = (out.recon - wav).abs().mean() + torch.stft(
            (out.recon - wav)[0], 512, window=torch.hann_window(512), return_complex=True
        ).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    codec.eval()
    state = codec.state_dict()
    assert not any("noise" in k or "window" in k for k in state)  # fixed tables are not weights
    again = StemCodec(_cfg(kind))
    again.load_state_dict(state, strict=True)
    again.eval()
    codes = codec.encode(wav)
    assert torch.equal(again.encode(wav), codes)
    assert torch.allclose(again.decode(codes), codec.decode(codes))
