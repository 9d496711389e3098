"""Tests of the per-stem codec: shapes, reference parity (ref6cb_tiny fixture) and training behaviour."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ties import assert_codes_match_up_to_ties

from musicgen_stem.codec import (
    CodecConfig,
    CodecOutput,
    ISTFTDecoderConfig,
    MultiStemCodec,
    StemCodec,
    STFTEncoderConfig,
)
from musicgen_stem.codec.quantizer import EuclideanCodebook
from musicgen_stem.codec.seanet import (
    StreamableConv1d,
    StreamableConvTranspose1d,
    conv_transpose_overlap_add,
    pad_1d,
)
from musicgen_stem.layout import StemLayout

FIXTURE_STEMS = {"bass": 1, "drums": 1, "other": 4}  # stem -> n_q, in stream order
FIXTURE_LAYOUT = StemLayout(("bass", "drums", "other"), (1, 1, 4), (0, 0, 0, 1, 2, 3), 2048)


def _small_cfg(n_q: int = 1, bins: int = 16, **kw: object) -> CodecConfig:
    return dataclasses.replace(CodecConfig.tiny(n_q), bins=bins, kmeans_iters=4, **kw)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def test_padding_and_conv_lengths() -> None:
    x = torch.arange(3.0).view(1, 1, 3)
    y = pad_1d(x, 4, 4, "reflect")  # wider than the input: zeros appended before reflecting
    assert y.shape[-1] == 11
    assert torch.equal(pad_1d(x, 1, 2), torch.tensor([[[0.0, 0.0, 1.0, 2.0, 0.0, 0.0]]]))
    conv = StreamableConv1d(1, 2, kernel_size=8, stride=4)
    convtr = StreamableConvTranspose1d(2, 1, kernel_size=8, stride=4)
    for length in (1, 3, 4, 5, 17, 64):
        out = conv(torch.randn(2, 1, length))
        assert out.shape == (2, 2, -(-length // 4))
        assert convtr(out).shape == (2, 1, out.shape[-1] * 4)


def test_weight_norm_params() -> None:
    torch.manual_seed(0)
    convtr = StreamableConvTranspose1d(6, 3, kernel_size=10, stride=5)
    p = convtr.convtr.convtr
    assert p.weight_g.shape == (6, 1, 1) and p.weight_v.shape == (6, 3, 10)
    torch.testing.assert_close(p.weight(), p.weight_v, atol=1e-6, rtol=1e-6)  # g = ||v|| at init
    with torch.no_grad():
        p.weight_g.mul_(torch.rand_like(p.weight_g) + 0.5)
    torch.testing.assert_close(p.weight(), p.weight_reference(), atol=1e-6, rtol=1e-6)
    p.weight().sum().backward()
    assert p.weight_g.grad is not None and p.weight_v.grad is not None


@pytest.mark.parametrize("stride,n,bias", [(4, 2, True), (5, 2, False), (3, 3, True), (2, 1, True)])
def test_conv_transpose_overlap_add_equals_conv_transpose(stride: int, n: int, bias: bool) -> None:
    torch.manual_seed(0)
    x, w = torch.randn(2, 6, 11), torch.randn(6, 3, n * stride)
    b = torch.randn(3) if bias else None
    ref = torch.nn.functional.conv_transpose1d(x, w, b, stride=stride)
    torch.testing.assert_close(conv_transpose_overlap_add(x, w, b, stride), ref, atol=1e-5, rtol=1e-5)


def test_inference_weight_is_kept_until_the_parameters_change() -> None:
    torch.manual_seed(0)
    conv = StreamableConvTranspose1d(6, 3, kernel_size=8, stride=4)
    x = torch.randn(1, 6, 5)
    p = conv.convtr.convtr
    with torch.inference_mode():
        first = p.weight()
        assert p.weight() is first and not first.is_inference()  # kept, usable outside inference
        y = conv(x)
    with torch.no_grad():
        p.weight_g.mul_(2.0)  # an in-place update (an optimizer step, load_state_dict)
        assert p.weight() is not first
        torch.testing.assert_close(p.weight(), p.weight_reference())
        torch.testing.assert_close(conv(x) - p.bias.view(1, 3, 1), 2 * (y - p.bias.view(1, 3, 1)))
    p.weight_v = torch.nn.Parameter(torch.randn(6, 3, 8))  # a new tensor
    with torch.no_grad():
        torch.testing.assert_close(p.weight(), p.weight_reference())
    out = conv(x)  # with autograd: the plain transposed convolution, gradients reach the weights
    out.sum().backward()
    assert p.weight_v.grad is not None and p.weight_g.grad is not None


def test_released_module_tree_shapes() -> None:
    with torch.device("meta"):
        codec = StemCodec(CodecConfig.musicgen_32khz(4))
    sd = codec.state_dict()
    assert sd["encoder.model.0.conv.conv.weight_v"].shape == (64, 1, 7)
    assert sd["encoder.model.12.conv.conv.weight_v"].shape == (1024, 512, 16)
    assert sd["encoder.model.13.lstm.weight_ih_l1"].shape == (4096, 1024)
    assert sd["encoder.model.15.conv.conv.weight_v"].shape == (128, 1024, 7)
    assert sd["decoder.model.3.convtr.convtr.weight_g"].shape == (1024, 1, 1)
    assert sd["decoder.model.15.conv.conv.weight_v"].shape == (1, 64, 7)
    assert sd["quantizer.vq.layers.3._codebook.embed"].shape == (2048, 128)
    assert not any(k.startswith("quantizer.vq.layers.4.") for k in sd)


# --------------------------------------------------------------------------------------------
# Shapes and input checks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 640, 641, 3 * 640 + 17])
def test_stem_codec_shapes(length: int) -> None:
    torch.manual_seed(0)
    codec = StemCodec(_small_cfg(n_q=2)).eval()
    wav = torch.randn(2, 1, length)
    frames = -(-length // 640)
    with torch.no_grad():
        codes = codec.encode(wav)
        assert codes.shape == (2, 2, frames) and codes.dtype == torch.int64
        assert codec.num_frames(length) == frames
        assert codec.decode(codes).shape == (2, 1, frames * 640)
        out = codec(wav)
    assert isinstance(out, CodecOutput)
    assert out.recon.shape == wav.shape
    assert out.latent.shape == out.quantized.shape == (2, 16, frames)
    assert torch.equal(out.codes, codes)
    assert float(out.commit_loss) == 0.0
    assert (codec.sample_rate, codec.channels, codec.hop_length, codec.frame_rate) == (32000, 1, 640, 50.0)
    assert (codec.n_q, codec.card) == (2, 16)


def test_stem_codec_input_errors() -> None:
    codec = StemCodec(_small_cfg(n_q=2)).eval()
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        codec.encode(torch.randn(1, 640))
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        codec.encode(torch.randn(1, 2, 640))
    with pytest.raises(ValueError, match=r"\[B, 2, F\]"):
        codec.decode(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        codec.decode(torch.full((1, 2, 4), 16, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# Multi-stem wrapper
# --------------------------------------------------------------------------------------------
def test_multistem_shapes_and_errors() -> None:
    torch.manual_seed(0)
    layout = StemLayout(("bass", "drums", "other"), (1, 1, 2), (0, 0, 0, 1), card=16)
    configs = {s: _small_cfg(n_q=n) for s, n in zip(layout.stems, layout.codebooks, strict=True)}
    msc = MultiStemCodec(layout, configs).eval()
    assert isinstance(msc.codecs["other"], StemCodec) and msc.layout is layout
    assert (msc.sample_rate, msc.channels, msc.hop_length, msc.frame_rate) == (32000, 1, 640, 50.0)
    wav = torch.randn(2, 3, 1, 1000)
    with torch.no_grad():
        codes = msc.encode(wav)
        assert codes.shape == (2, 4, 2)
        assert torch.equal(codes[:, 2:4], msc.encode_stem("other", wav[:, 2]))
        assert msc.decode(codes).shape == (2, 3, 1, 1280)
        stems = msc.decode_stems(codes)
    assert list(stems) == ["bass", "drums", "other"] and stems["drums"].shape == (2, 1, 1280)
    with pytest.raises(ValueError, match=r"\[B, 3, 1, T\]"):
        msc.encode(torch.randn(2, 2, 1, 640))
    with pytest.raises(ValueError, match=r"\[B, 4, F\]"):
        msc.decode(torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown stem"):
        msc.encode_stem("vocals", wav[:, 0])
    with pytest.raises(ValueError, match="n_q=1 but the layout gives it 2"):
        MultiStemCodec(layout, {**configs, "other": _small_cfg(n_q=1)})
    with pytest.raises(ValueError, match="missing"):
        MultiStemCodec(layout, {"bass": configs["bass"], "drums": configs["drums"]})
    with pytest.raises(ValueError, match="card"):
        MultiStemCodec(layout, {**configs, "bass": _small_cfg(n_q=1, bins=32)})
    with pytest.raises(ValueError, match="hop_length"):
        MultiStemCodec(layout, {**configs, "bass": _small_cfg(n_q=1, ratios=(8, 5, 4, 2))})


# --------------------------------------------------------------------------------------------
# Parity with the reference fixture
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden(ref_fixture: Path) -> dict[str, np.ndarray]:
    with np.load(ref_fixture / "golden.npz") as g:
        return {k: g[k] for k in g.files}


def _load_fixture_codec(folder: Path, stem: str) -> StemCodec:
    state = torch.load(folder / f"compression_state_dict_{stem}.bin", weights_only=True)["best_state"]
    codec = StemCodec(CodecConfig.tiny(FIXTURE_STEMS[stem]))
    codec.load_state_dict(state, strict=True)
    return codec.eval()


@pytest.fixture(scope="module")
def fixture_codecs(ref_fixture: Path) -> dict[str, StemCodec]:
    return {stem: _load_fixture_codec(ref_fixture, stem) for stem in FIXTURE_STEMS}


@pytest.mark.parametrize("index,stem", list(enumerate(FIXTURE_STEMS)))
def test_parity_with_reference(
    index: int, stem: str, golden: dict[str, np.ndarray], fixture_codecs: dict[str, StemCodec]
) -> None:
    codec = fixture_codecs[stem]
    streams = FIXTURE_LAYOUT.stream_slices()[stem]
    wav = torch.from_numpy(golden["wave_in"][:, index])  # [1, 1, 64000]
    ref_latent = torch.from_numpy(golden[f"codec_encoder_latents_{stem}"])
    ref_codes = torch.from_numpy(golden["codec_encode_codes"][:, streams])
    with torch.no_grad():
        latent = codec.encode_latent(wav)
        assert latent.shape == ref_latent.shape
        assert (latent - ref_latent).abs().max().item() < 1e-4
        # Quantizing the reference latents must reproduce the reference codes exactly.
        assert torch.equal(codec.quantize(ref_latent), ref_codes)
        # End to end, codes may only differ at float-level near-ties: a few frames at most.
        codes = codec.encode(wav)
        assert codes.shape == ref_codes.shape
        assert_codes_match_up_to_ties(codec, latent, codes, ref_codes)
        # Decoding the fixed random prompt codes.
        audio = codec.decode(torch.from_numpy(golden["prompt_codes"][:, streams]))
        ref_audio = torch.from_numpy(golden[f"codec_decode_{stem}"])
        assert audio.shape == ref_audio.shape
        assert (audio - ref_audio).abs().max().item() < 1e-4
        silence = torch.zeros(1, 1, 32000)
        ref_silence = torch.from_numpy(golden["codec_encode_silence_1s"][:, streams])
        assert_codes_match_up_to_ties(codec, codec.encode_latent(silence), codec.encode(silence), ref_silence)


def test_multistem_parity(golden: dict[str, np.ndarray], fixture_codecs: dict[str, StemCodec]) -> None:
    msc = MultiStemCodec(FIXTURE_LAYOUT, {s: c.cfg for s, c in fixture_codecs.items()})
    for stem, codec in fixture_codecs.items():
        msc.codecs[stem].load_state_dict(codec.state_dict(), strict=True)
    msc.eval()
    with torch.no_grad():
        codes = msc.encode(torch.from_numpy(golden["wave_in"]))
        ref_codes = torch.from_numpy(golden["codec_encode_codes"])
        assert codes.shape == ref_codes.shape == (1, 6, 100)
        for i, (stem, sl) in enumerate(FIXTURE_LAYOUT.stream_slices().items()):
            codec = msc.codecs[stem]
            latent = codec.encode_latent(torch.from_numpy(golden["wave_in"][:, i]))
            assert_codes_match_up_to_ties(codec, latent, codes[:, sl], ref_codes[:, sl])
        audio = msc.decode(torch.from_numpy(golden["prompt_codes"]))
    assert audio.shape == (1, 3, 1, 64000)
    for i, stem in enumerate(FIXTURE_STEMS):
        ref = torch.from_numpy(golden[f"codec_decode_{stem}"])
        assert (audio[:, i] - ref).abs().max().item() < 1e-4


# --------------------------------------------------------------------------------------------
# Training behaviour
# --------------------------------------------------------------------------------------------
@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny training steps run faster (and steadier on a busy machine) on a single thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.named_buffers()}


def test_kmeans_init_and_training_reduces_loss(one_thread: None) -> None:
    torch.manual_seed(0)
    codec = StemCodec(_small_cfg(n_q=2, bins=32)).train()
    layers = codec.quantizer.vq.layers
    assert all(float(layer._codebook.inited) == 0.0 for layer in layers)
    t = torch.arange(640 * 16) / 32000
    wav = 0.5 * torch.sin(2 * math.pi * torch.tensor([110.0, 220.0]).view(2, 1, 1) * t)  # [2, 1, T]
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = codec(wav)
        loss = (out.recon - wav).pow(2).mean() + out.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(float(layer._codebook.inited) == 1.0 for layer in layers)
    assert all(layer._codebook.embed.abs().sum() > 0 for layer in layers)
    assert codec.encoder.model[0].conv.conv.weight_v.grad is not None  # straight-through to the encoder
    assert losses[-1] < 0.95 * losses[0], losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses


def test_dead_codes_are_replaced() -> None:
    torch.manual_seed(0)
    cb = EuclideanCodebook(dim=4, bins=8, kmeans_init=False, threshold_ema_dead_code=2.0).train()
    with torch.no_grad():
        cb.embed[:4] = torch.randn(4, 4)
        cb.embed[4:] = 100.0  # far away: never selected
        cb.embed_avg.copy_(cb.embed * 5.0)
        cb.cluster_size[:4] = 5.0
        cb.cluster_size[4:] = 0.5  # below the threshold: dead
    x = torch.randn(64, 4)
    cb(x)
    dead = cb.embed[4:]
    assert (dead - 100.0).abs().min() > 50.0
    # each replaced code sits (up to EMA/smoothing rounding) on a vector of the batch
    assert torch.cdist(dead, x).min(dim=1).values.max() < 1e-3
    assert bool((cb.cluster_size[4:] >= 1.9).all())


def test_eval_mode_leaves_buffers_unchanged(one_thread: None) -> None:
    torch.manual_seed(0)
    codec = StemCodec(_small_cfg(n_q=2, bins=32)).eval()
    before = _buffers(codec)
    wav = torch.randn(2, 1, 640 * 4)
    with torch.no_grad():
        codec(wav)
        codec.encode(wav)
    after = _buffers(codec)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert float(codec.quantizer.vq.layers[0]._codebook.inited) == 0.0
    codec.train()
    codec(wav)  # training mode: k-means init and EMA update
    codec.eval()
    trained = _buffers(codec)
    key = "quantizer.vq.layers.0._codebook.embed"
    assert not torch.equal(trained[key], before[key])
    codec(wav)
    assert all(torch.equal(trained[k], v) for k, v in codec.named_buffers())


def test_chunked_encode_and_decode_equal_whole() -> None:
    """Long audio is processed in chunks with margins: same codes, same audio, bounded memory."""
    torch.manual_seed(0)
    codec = StemCodec(CodecConfig.mini(2)).eval()
    for layer in codec.quantizer.vq.layers:
        layer._codebook.embed.normal_()
    wav = torch.randn(1, 1, 32000 * 3 + 123) * 0.1
    with torch.no_grad():
        whole = codec.encode(wav, chunk_seconds=60.0)
        chunked = codec.encode(wav, chunk_seconds=0.5)
        assert torch.equal(whole, chunked)
        audio = codec.decode(whole, chunk_seconds=60.0)
        audio_chunked = codec.decode(whole, chunk_seconds=0.4)
    assert audio.shape == audio_chunked.shape
    assert (audio - audio_chunked).abs().max() < 1e-5


def test_istft_decoder_config_shapes_and_checks() -> None:
    """The Vocos-style decoder option: same shapes and chunking as SEANet; bad sizes refused."""
    cfg = _small_cfg(decoder=ISTFTDecoderConfig(width=16, layers=2, n_fft=256, hop=128))
    assert CodecConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    codec = StemCodec(cfg).eval()
    for layer in codec.quantizer.vq.layers:
        layer._codebook.embed.normal_()
    wav = torch.randn(2, 1, 640 * 9 + 17) * 0.1
    with torch.no_grad():
        out = codec(wav)
        codes = codec.encode(wav)
        audio = codec.decode(codes)
        chunked = codec.decode(codes, chunk_seconds=0.1)
    assert out.recon.shape == wav.shape and codes.shape == (2, 1, 10)
    assert audio.shape == (2, 1, 6400) and audio.abs().max() > 0
    assert (audio - chunked).abs().max() < 1e-5
    for bad, match in (
        ({"decoder": ISTFTDecoderConfig(n_fft=256, hop=96)}, "hop must divide"),
        ({"decoder": "wavenet"}, "decoder must be"),
        ({"causal": True}, "non-causal"),
    ):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(cfg, **bad)
    with pytest.raises(ValueError, match="n_fft must be >= 2 \\* hop"):
        ISTFTDecoderConfig(n_fft=100, hop=128)


def test_overlap_add_is_an_exact_inverse_stft() -> None:
    """Given log-magnitude and phase of a signal's STFT (frame j centred on sample j * hop + hop / 2),
    `OverlapAdd` gives the signal back; an absolute-phase `PhaseIntegrator` passes them through."""
    from musicgen_stem.codec.istft import OverlapAdd, PhaseIntegrator

    n_fft, h, up, frames = 256, 64, 4, 6
    ola = OverlapAdd(1, h * up, n_fft, h)
    x = torch.randn(1, frames * h * up, dtype=torch.float64)
    pad = (n_fft - h) // 2
    xp = torch.nn.functional.pad(x, (pad, pad + h))
    segs = xp.unfold(-1, n_fft, h)[:, : frames * up] * ola.window.double()  # [1, J, n_fft]
    spec = torch.fft.rfft(segs, dim=-1)[0].T  # [bins, J]
    y = torch.stack([spec.abs().clamp(min=1e-9).log(), spec.angle()])  # [2, bins, J]
    y = y.view(2, ola.bins, frames, up).permute(3, 0, 1, 2).reshape(1, up * 2 * ola.bins, frames)
    y = PhaseIntegrator(1, up, n_fft, h, integrate=False)(y.float())
    got = ola(y)
    assert got.shape == (1, 1, x.shape[-1])
    assert (got[0, 0].double() - x[0]).abs().max() < 1e-3


def test_integrated_phase_keeps_a_steady_tone_whatever_its_frequency() -> None:
    """Identical frames (a repeated code) give a steady tone at the frequency the deviation encodes,
    not a comb at the frame rate; streaming the integrator in pieces equals running it at once."""
    from musicgen_stem.codec.istft import OverlapAdd, PhaseIntegrator

    sr, n_fft, h, up, frames = 32000, 2048, 160, 4, 50
    bins = n_fft // 2 + 1
    f0 = 41.2  # E1: between bins 2 (31.25 Hz) and 3 (46.9 Hz), not a multiple of 50 Hz
    k = round(f0 * n_fft / sr)
    logmag = torch.full((bins,), -12.0)
    logmag[k] = 3.0
    deviation = 2 * math.pi * (f0 - k * sr / n_fft) * h / sr  # radians per STFT frame
    raw = torch.zeros(bins)
    raw[k] = math.atanh(deviation / math.pi)
    frame = torch.stack([logmag, raw]).repeat(up, 1, 1).reshape(-1)  # one latent frame's features
    feats = frame[None, :, None].expand(1, -1, frames).contiguous()  # every frame identical
    integ, ola = PhaseIntegrator(1, up, n_fft, h), OverlapAdd(1, h * up, n_fft, h)
    wav = ola(integ(feats))[0, 0].numpy()
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=1 << 18))
    peak = np.fft.rfftfreq(1 << 18, 1 / sr)[np.argmax(spec)]
    assert abs(1200 * np.log2(peak / f0)) < 10, peak
    a, state = integ.stream(feats[..., :17], None)
    b, _ = integ.stream(feats[..., 17:], state)
    assert (ola(torch.cat([a, b], -1)) - ola(integ(feats))).abs().max() < 1e-4  # phases equal mod 2 pi


def test_stft_encoder_config_shapes_and_chunking() -> None:
    """The spectral encoder option: frames, chunked encoding equal to whole, bad sizes refused."""
    cfg = _small_cfg(encoder=STFTEncoderConfig(width=16, layers=1, n_ffts=(256, 1024), down=4))
    assert CodecConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    codec = StemCodec(cfg).eval()
    for layer in codec.quantizer.vq.layers:
        layer._codebook.embed.normal_()
    wav = torch.randn(1, 1, 32000 * 2 + 77) * 0.1
    with torch.no_grad():
        latent = codec.encode_latent(wav)
        assert latent.shape == (1, cfg.dimension, codec.num_frames(wav.shape[-1]))
        assert torch.equal(codec.encode(wav, chunk_seconds=60.0), codec.encode(wav, chunk_seconds=0.5))
        # a tone and the same tone a fifth higher give different latents (the encoder sees pitch)
        t = torch.arange(32000) / 32000
        low = codec.encode_latent(torch.sin(2 * math.pi * 55 * t).view(1, 1, -1))
        high = codec.encode_latent(torch.sin(2 * math.pi * 82.4 * t).view(1, 1, -1))
        assert (low - high).abs().mean() > 1e-3 * low.abs().mean()
    for bad, match in (
        ({"encoder": STFTEncoderConfig(down=3)}, "down must divide"),
        ({"encoder": STFTEncoderConfig(n_ffts=(64,))}, "n_ffts must be"),
        ({"encoder": "conformer"}, "encoder must be"),
    ):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(cfg, **bad)
