"""Per-stem codec training: losses, one step, resume == uninterrupted, export, torchrun DDP, errors."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.codec import CodecConfig, HarmonicDecoderConfig, PitchEncoderConfig, StemCodec
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.training.codec import CodecTrainConfig, add_arguments, codec_loss, run, train_codec
from musicgen_stem.training.codec_config import codec_preset
from musicgen_stem.training.codec_data import StemSegments, find_songs, split_songs
from musicgen_stem.training.losses import (
    ChromaLoss,
    MelSpectrogram,
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    l1_loss,
    mel_distance,
    mel_filterbank,
    multiscale_mel_loss,
    multiscale_stft_loss,
    si_snr,
)

SR = 32000


def _write_songs(root: Path, n: int = 4, seconds: float = 1.0, sr: int = SR, channels: int = 1) -> Path:
    """Song folders with bass (sine), drums (gated noise) and other (sine) stems."""
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    for i in range(n):
        d = root / f"song{i:02d}"
        d.mkdir(parents=True)
        stems = {
            "bass": 0.3 * np.sin(2 * np.pi * 55 * (i + 1) * t),
            "drums": 0.2 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 4 * t) > 0),
            "other": 0.2 * np.sin(2 * np.pi * 440 * t),
        }
        for name, x in stems.items():
            data = np.stack([x] * channels, axis=1) if channels > 1 else x
            sf.write(d / f"{name}.wav", data.astype(np.float32), sr)
    return root


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    return _write_songs(tmp_path_factory.mktemp("songs"))


def _cfg(songs: Path, out: Path, **kw) -> CodecTrainConfig:
    base = dict(
        data=[str(songs)],
        stem="bass",
        out=str(out),
        codec="tiny",
        segment=0.25,
        batch_size=2,
        steps=4,
        warmup=1,
        log_every=2,
        checkpoint_every=2,
        val_every=4,
        val_batches=1,
        mel_scales=(64, 256),
        device="cpu",
    )
    base.update(kw)
    return CodecTrainConfig(**base)


# ------------------------------------------------------------------------------------ losses
def test_mel_filterbank_shape_and_positivity():
    for scale in ("htk", "slaney"):
        fb = mel_filterbank(SR, 1024, 64, mel_scale=scale)
        assert fb.shape == (64, 513)
        assert (fb >= 0).all()
        assert (fb.sum(dim=1) > 0).all()  # no empty filter at this resolution
    mel = MelSpectrogram(SR, 512, n_mels=32)
    assert set(dict(mel.named_buffers())) == {"window", "fb"}
    assert mel.state_dict() == {}  # buffers are not persistent
    out = mel(torch.randn(2, 1, 4000))
    assert out.shape[:2] == (2, 32) and (out >= 0).all()


def test_losses_zero_on_identical_inputs_and_gradients_flow():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 4000) * 0.1
    assert float(l1_loss(x, x)) == 0.0
    assert float(multiscale_mel_loss(x, x, SR, scales=(32, 256, 1024))) == 0.0
    assert float(multiscale_stft_loss(x, x, fft_sizes=(256, 512))) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(mel_distance(x, x, SR), torch.zeros(2))

    y = (x + 0.05 * torch.randn_like(x)).requires_grad_(True)
    msspec = MultiScaleMelLoss(SR, scales=(32, 256, 1024))
    loss = msspec(y, x) + multiscale_stft_loss(y, x, fft_sizes=(256,)) + l1_loss(y, x)
    assert float(loss.detach()) > 0
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_si_snr_scaled_copy_high_noise_low():
    torch.manual_seed(0)
    y = torch.randn(3, 2, 8000)
    high = si_snr(0.5 * y, y)
    low = si_snr(torch.randn_like(y), y)
    assert high.shape == (3,) and (high > 60).all()
    assert (low < 0).all()
    assert (mel_distance(torch.randn_like(y), y, SR) > mel_distance(y * 0.9, y, SR)).all()


def test_discriminator_and_adversarial_losses():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(channels=1, filters=4, n_ffts=(256, 128))
    real, fake = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000, requires_grad=True)
    lr, fr = disc(real)
    lf, ff = disc(fake)
    assert len(lr) == 2 and lr[0].shape[:2] == (2, 1)
    d = hinge_discriminator_loss(lr, [x.detach() for x in lf])
    g = hinge_generator_loss(lf) + feature_matching_loss(fr, ff)
    assert torch.isfinite(d) and torch.isfinite(g)
    g.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ data
def test_dataset_converts_rate_and_channels(tmp_path):
    root = _write_songs(tmp_path / "s", n=2, seconds=0.5, sr=16000, channels=2)
    files = find_songs([root], "drums")
    assert [f.parent.name for f in files] == ["song00", "song01"]
    train, val = split_songs(files, 0.5)
    assert [f.parent.name for f in val] == ["song01"] and len(train) == 1
    for cap in (1e9, 0.0):  # in memory / read from disk
        data = StemSegments(files, SR, 1, 4000, memory_cap_bytes=cap)
        assert data.in_memory == (cap > 0)
        assert data.lengths[0] == 16000  # 0.5 s at 32 kHz
        a = data.batch(torch.Generator().manual_seed(3), 3)
        b = data.batch(torch.Generator().manual_seed(3), 3)
        assert a.shape == (3, 1, 4000) and torch.equal(a, b)
        assert (a.pow(2).mean(dim=(1, 2)) > 1e-5).all()  # silent gaps of the gated noise are skipped


# ------------------------------------------------------------------------------------ training
def test_codec_steps_decrease_loss_on_fixed_batch(songs):
    torch.manual_seed(0)
    cfg = _cfg(songs, songs / "unused")
    model = StemCodec(CodecConfig.tiny())
    data = StemSegments(find_songs([songs], "bass"), SR, 1, 8000)
    wav = data.batch(torch.Generator().manual_seed(0), 2)  # [2, 1, 8000]
    msspec = MultiScaleMelLoss(SR, cfg.mel_scales)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=cfg.betas)
    losses = []
    for _ in range(8):
        out = model(wav)
        loss, terms = codec_loss(out.recon, wav, out.commit_loss, msspec, cfg)
        assert set(terms) == {"l1", "msspec", "commit"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert model.quantizer.vq.layers[0]._codebook.is_inited  # k-means ran on the real batch
    assert losses[-1] < losses[0]


def test_codebooks_stay_float32_under_autocast():
    """Under bf16 autocast the nearest-code search, k-means and EMA sums run in float32: the
    same codes and codebooks as without autocast."""
    torch.manual_seed(0)
    ref = StemCodec(CodecConfig.tiny(2)).train()
    amp = copy.deepcopy(ref)
    latent = torch.randn(4, ref.cfg.dimension, 50)  # [B, D, F]
    for _ in range(3):
        torch.manual_seed(1)
        _, codes, _ = ref.quantizer(latent)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, amp_codes, _ = amp.quantizer(latent)
        assert torch.equal(codes, amp_codes)
    for (name, a), b in zip(ref.quantizer.named_buffers(), amp.quantizer.buffers(), strict=True):
        assert b.dtype == torch.float32 and torch.equal(a, b), name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(amp.quantizer.encode(latent), ref.quantizer.encode(latent))


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def test_resume_equals_uninterrupted_and_export_loads(songs, tmp_path):
    full = tmp_path / "full"
    path = train_codec(_cfg(songs, full))
    half = tmp_path / "half"
    train_codec(_cfg(songs, half, steps=2))
    assert torch.load(half / "checkpoint.pt", weights_only=True)["step"] == 2
    train_codec(_cfg(songs, half))  # a fresh call continues from step 2 to 4
    a, b = _weights(full), _weights(half)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    ea = torch.load(full / "checkpoint.pt", weights_only=True)["ema"]
    eb = torch.load(half / "checkpoint.pt", weights_only=True)["ema"]
    for k in ea:
        assert torch.allclose(ea[k], eb[k], atol=1e-6, rtol=0), k

    # logs: one line per logged step, validation entries present
    records = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    assert any("val_si_snr" in r and "val_mel_distance" in r for r in records)

    # export: weights + config load back strictly
    assert path == full / "codec_bass.safetensors" and path.is_file()
    from safetensors.torch import load_file

    cfg = CodecConfig.from_dict(json.loads((full / "codec_bass.json").read_text()))
    assert cfg == CodecConfig.tiny(1)
    model = StemCodec(cfg)
    model.load_state_dict(load_file(str(path)), strict=True)
    assert model.quantizer.vq.layers[0]._codebook.is_inited
    codes = model.encode(torch.randn(1, 1, 3200))
    assert codes.shape == (1, 1, 5)

    # a finished run says so and exits
    assert train_codec(_cfg(songs, full)) == path


def test_stop_at_then_rerun_equals_uninterrupted(songs, tmp_path):
    """--stop-at N trains to step N on the full run's schedule (checkpoint and export), then the
    same command without it continues to the end as if never stopped."""
    full = train_codec(_cfg(songs, tmp_path / "full", steps=3, val_every=3))
    part = tmp_path / "part"
    train_codec(_cfg(songs, part, steps=3, val_every=3, stop_at=1))
    assert torch.load(part / "checkpoint.pt", weights_only=True)["step"] == 1
    assert (part / "codec_bass.safetensors").is_file()
    train_codec(_cfg(songs, part, steps=3, val_every=3))
    a, b = _weights(full.parent), _weights(part)
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_codec_presets_and_cli_arguments(songs, tmp_path):
    import argparse

    mini = codec_preset("mini", 4)
    assert (mini.encoder.n_filters, mini.encoder.lstm) == (8, 1)
    assert (mini.dimension, mini.bins, mini.n_q) == (64, 1024, 4)
    assert codec_preset("musicgen_32khz").encoder.n_filters == 64
    assert _cfg(songs, tmp_path, codec="mini", stem="other").codec_config().n_q == 4
    assert _cfg(songs, tmp_path, codec="mini", stem="bass", n_q=2).codec_config().n_q == 2

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [str(songs), "--stem", "bass", "--out", str(tmp_path / "cli"), "--codec", "tiny", "--steps", "1",
         "--batch-size", "1", "--segment", "0.1", "--log-every", "1", "--device", "cpu",
         "--mel-scales", "64", "128", "--grad-accum", "2"]
    )  # fmt: skip
    assert args.mel_scales == [64, 128] and args.stop_at is None and not args.fsdp
    assert run(args) == 0
    assert (tmp_path / "cli" / "codec_bass.json").is_file()


def test_bad_input_errors(songs, tmp_path):
    with pytest.raises(MusicGenStemError, match="steps must be > 0"):
        _cfg(songs, tmp_path, steps=0)
    with pytest.raises(MusicGenStemError, match="not found"):
        train_codec(_cfg(tmp_path / "nope", tmp_path / "o"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MusicGenStemError, match="no song folders"):
        train_codec(_cfg(empty, tmp_path / "o"))
    with pytest.raises(MusicGenStemError, match="stem 'vocals' is missing"):
        train_codec(_cfg(songs, tmp_path / "o", stem="vocals"))
    with pytest.raises(MusicGenStemError, match="unknown codec preset"):
        _cfg(songs, tmp_path, codec="huge").codec_config()
    # resuming with another codec config is refused
    out = tmp_path / "run"
    train_codec(_cfg(songs, out, steps=1))
    with pytest.raises(MusicGenStemError, match="different codec config"):
        train_codec(_cfg(songs, out, steps=2, n_q=2))


# ------------------------------------------------------------------------------------ torchrun
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_ddp_two_processes_gloo(songs, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "musicgen_stem.training.codec", str(songs), "--stem", "drums", "--out", str(out),
        "--codec", "tiny", "--steps", "2", "--batch-size", "2", "--segment", "0.25", "--log-every", "1",
        "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (out / "checkpoint.pt").is_file()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert (out / "codec_drums.safetensors").is_file()
    assert proc.stdout.count("step 2 | commit") == 1  # rank 0 logs only


def test_resume_from_a_checkpoint_older_than_new_codec_fields(songs, tmp_path):
    """A run checkpointed before CodecConfig grew a field (its defaults keep the codec unchanged), or
    in the flat form written before the nested one, continues; a real change of the codec is still
    refused."""
    out = tmp_path / "run"
    train_codec(_cfg(songs, out, steps=2))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["codec_config"]["decoder"]["true_skip"], ckpt["codec_config"]["epsilon"]  # at their defaults
    torch.save(ckpt, out / "checkpoint.pt")
    train_codec(_cfg(songs, out, stop_at=3))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)  # the flat form written before
    ckpt["codec_config"] = {"dimension": 16, "encoder": "seanet", "n_filters": 4, "n_q": 1, "stft_width": 8}
    torch.save(ckpt, out / "checkpoint.pt")
    train_codec(_cfg(songs, out))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["codec_config"]["bins"] = 7
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(MusicGenStemError, match="different codec config"):
        train_codec(_cfg(songs, out, steps=6))


def test_pitch_shift_crops_are_transposed(tmp_path):
    """--pitch-shift: whole semitones, by resampling; the crop keeps its length."""
    sr = 32000
    t = np.arange(sr * 3) / sr
    song = tmp_path / "s" / "song_0"
    song.mkdir(parents=True)
    sf.write(song / "bass.wav", 0.5 * np.sin(2 * np.pi * 110.0 * t), sr)
    data = StemSegments([song / "bass.wav"], sr, 1, sr // 2, pitch_shift=5)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(12):
        crop = data.crop(gen)[0].numpy()
        assert crop.shape == (sr // 2,)
        spec = np.abs(np.fft.rfft(crop * np.hanning(len(crop)), n=1 << 18))
        hz = np.argmax(spec) * sr / (1 << 18)
        semis = 12 * np.log2(hz / 110.0)
        assert abs(semis - round(semis)) < 0.1 and abs(semis) <= 5.1, semis
        seen.add(round(semis))
    assert len(seen) >= 4


# ------------------------------------------------------------------ decoder fine-tunes, chroma loss
def test_chroma_loss_tells_chords_apart():
    t = torch.arange(SR) / SR

    def chord(*midi: int) -> torch.Tensor:
        return sum(torch.sin(2 * torch.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in midi)[None, None] * 0.2

    loss = ChromaLoss(SR)
    c_major, c_octave_up, a_minor = chord(60, 64, 67), chord(72, 76, 79), chord(57, 60, 64)
    assert float(loss(c_major, c_major)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(c_octave_up, c_major)) < 0.05  # pitch classes, not octaves
    assert float(loss(a_minor, c_major)) > 0.3
    y = (a_minor + 0.01 * torch.randn_like(a_minor)).requires_grad_(True)
    loss(y, c_major).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_freeze_codes_trains_only_the_decoder(songs, tmp_path):
    """--init-from + --freeze-codes: the encoder and codebooks stay bit-exact (tokens an LM learnt
    stay valid), the decoder moves; the chroma loss is logged."""
    first = train_codec(_cfg(songs, tmp_path / "first", steps=2))
    from safetensors.torch import load_file

    start = load_file(str(first))
    path = train_codec(
        _cfg(songs, tmp_path / "ft", steps=3, init_from=str(first), freeze_codes=True, w_chroma=1.0)
    )
    end = load_file(str(path))
    frozen = [k for k in start if k.startswith(("encoder.", "quantizer."))]
    moved = [k for k in start if k.startswith("decoder.") and not torch.equal(start[k], end[k])]
    assert frozen and all(torch.equal(start[k], end[k]) for k in frozen)
    assert moved
    records = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert any("chroma" in r for r in records)

    with pytest.raises(MusicGenStemError, match="--init-from"):
        _cfg(songs, tmp_path / "x", freeze_codes=True)
    with pytest.raises(MusicGenStemError, match="does not exist"):
        train_codec(_cfg(songs, tmp_path / "y", init_from=str(tmp_path / "none.safetensors")))
    with pytest.raises(MusicGenStemError, match="does not fit"):
        train_codec(_cfg(songs, tmp_path / "z", init_from=str(first), n_q=2))


def test_keep_codebooks_grows_a_pitch_codec(songs, tmp_path):
    """--keep-codebooks 1 grows a pitch codec (latent 8 -> 15 rows, 1 -> 2 codebooks): the first
    codebook's codes stay bit-exact (an LM's tokens stay valid), the second is learnt."""
    import dataclasses

    from safetensors.torch import load_file

    harmonic = HarmonicDecoderConfig(width=16, layers=1, harmonics=8, noise_bands=4)
    small = CodecConfig(encoder=PitchEncoderConfig(), decoder=harmonic, dimension=8, n_q=1, bins=16)
    grown = dataclasses.replace(small, encoder=PitchEncoderConfig(detail=True), dimension=15, n_q=2)
    first = train_codec(_cfg(songs, tmp_path / "first", codec=small.to_dict(), steps=2))
    path = train_codec(
        _cfg(songs, tmp_path / "g", codec=grown.to_dict(), steps=3, init_from=str(first), keep_codebooks=1)
    )
    old, new = StemCodec(small).eval(), StemCodec(grown).eval()
    old.load_state_dict(load_file(str(first)))
    new.load_state_dict(load_file(str(path)))
    wav = torch.from_numpy(sf.read(songs / "song01" / "bass.wav", dtype="float32")[0])[None, None]
    codes_old, codes_new = old.encode(wav), new.encode(wav)
    assert codes_new.shape[1] == 2 and torch.equal(codes_new[:, :1], codes_old)
    assert new.quantizer.vq.layers[1]._codebook.is_inited
    start = load_file(str(first))["quantizer.vq.layers.0._codebook.embed"]
    assert torch.equal(new.quantizer.vq.layers[0]._codebook.embed[:, :8], start)
    assert not new.quantizer.vq.layers[0]._codebook.embed[:, 8:].any()

    with pytest.raises(MusicGenStemError, match="--init-from"):
        _cfg(songs, tmp_path / "x", keep_codebooks=1)
    with pytest.raises(MusicGenStemError, match="give one"):
        _cfg(songs, tmp_path / "x", init_from=str(first), keep_codebooks=1, freeze_codes=True)
    with pytest.raises(MusicGenStemError, match="--keep-codebooks 2"):
        train_codec(
            _cfg(songs, tmp_path / "y", codec=grown.to_dict(), init_from=str(first), keep_codebooks=2)
        )
    with pytest.raises(MusicGenStemError, match="does not grow|lacks"):
        train_codec(_cfg(songs, tmp_path / "z", init_from=str(first), keep_codebooks=1, codec="tiny", n_q=2))
