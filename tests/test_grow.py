"""Growing a model by codebooks (`training/grow.py`): the layout, the LM's old streams untouched."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from musicgen_stem import presets
from musicgen_stem.codec import CodecConfig, HarmonicDecoderConfig, PitchEncoderConfig, StemCodec
from musicgen_stem.modeldir import build_parts, load_model, save_model
from musicgen_stem.training.codec import grown_state
from musicgen_stem.training.grow import grow_layout, grow_model, main

PITCH = dict(
    encoder=PitchEncoderConfig(),
    decoder=HarmonicDecoderConfig(width=16, layers=1, harmonics=8, noise_bands=4),
    dimension=8,
    n_q=1,
)


@pytest.fixture(scope="module")
def parts():
    """A tiny model whose bass codec is a pitch codec with one codebook."""
    cfg = presets.tiny()
    cfg.codecs["bass"] = dataclasses.replace(CodecConfig.tiny(), bins=cfg.layout.card, **PITCH)
    torch.manual_seed(0)
    return build_parts(cfg)


def _grown_bass(parts) -> StemCodec:
    """The model's bass codec grown to the detail latent and two codebooks (the second random)."""
    old = parts.codec.codecs["bass"]
    codec = StemCodec(
        dataclasses.replace(old.cfg, encoder=PitchEncoderConfig(detail=True), dimension=15, n_q=2)
    )
    codec.load_state_dict(grown_state(codec.state_dict(), old.state_dict()), strict=False)
    torch.manual_seed(0)
    first, second = (layer._codebook for layer in codec.quantizer.vq.layers)
    with torch.no_grad():  # (the tiny model's first codebook is untrained: zeros)
        first.embed[:, :8].normal_(std=20.0)  # grown: its detail dimensions stay zero
        second.embed.normal_()
    first.inited.fill_(1.0)
    second.inited.fill_(1.0)
    return codec.eval()


def test_grow_layout_inserts_the_new_codebooks_after_the_stems_own(parts):
    layout, source = grow_layout(parts.config.layout, "bass", 2)
    assert layout.codebooks == (2, 1, 4) and layout.delays == (0, 1, 0, 0, 1, 2, 3)
    assert source == [0, None, 1, 2, 3, 4, 5]
    with pytest.raises(Exception, match="nothing to grow"):
        grow_layout(parts.config.layout, "other", 2)


def test_grown_lm_predicts_the_old_streams_as_before(parts, tmp_path):
    codec = _grown_bass(parts)
    old_bass = StemCodec(parts.codec.codecs["bass"].cfg).eval()
    old_bass.load_state_dict(parts.codec.codecs["bass"].state_dict())
    with torch.no_grad():  # the same first codebook as the grown codec's
        old_bass.quantizer.vq.layers[0]._codebook.embed.copy_(
            codec.quantizer.vq.layers[0]._codebook.embed[:, :8]
        )
    parts.codec.codecs["bass"].load_state_dict(old_bass.state_dict())
    grown = grow_model(parts, "bass", codec)
    card = parts.config.layout.card
    torch.manual_seed(1)
    old_seq = torch.randint(0, card, (1, 6, 12))
    new_seq = torch.cat([old_seq[:, :1], torch.randint(0, card, (1, 1, 12)), old_seq[:, 1:]], dim=1)
    memory = torch.randn(1, 5, parts.lm.cfg.dim)
    with torch.no_grad():
        old, new = parts.lm(old_seq, memory), grown.lm(new_seq, memory)
    torch.testing.assert_close(new[:, :, [0, 2, 3, 4, 5, 6]], old, rtol=1e-5, atol=1e-5)
    assert not new[:, :, 1].any()  # a new head: uniform
    t = torch.arange(32000) / 32000  # the first codebook's codes are the old ones, on a bass line
    wav = (0.3 * torch.sin(2 * torch.pi * 55.0 * t) * torch.exp(-2 * t))[None, None]
    codes = grown.codec.codecs["bass"].encode(wav)
    assert codes.shape[1] == 2 and torch.equal(codes[:, :1], old_bass.encode(wav))
    again = load_model(save_model(grown, tmp_path / "grown"))
    assert again.config.layout.codebooks == (2, 1, 4)
    torch.testing.assert_close(again.lm.emb[1].weight, torch.zeros_like(again.lm.emb[1].weight))


def test_grow_command_and_its_errors(parts, tmp_path, capsys):
    model = save_model(parts, tmp_path / "model")
    codec = _grown_bass(parts)
    file = tmp_path / "codec_bass.safetensors"
    save_file(codec.state_dict(), str(file))
    (tmp_path / "codec_bass.json").write_text(json.dumps(codec.cfg.to_dict()))
    out = tmp_path / "grown"
    assert main([str(model), "--codec", f"bass={file}", "--out", str(out)]) == 0
    assert "7 streams" in capsys.readouterr().out
    assert main([str(model), "--codec", f"bass={file}", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err  # no --force: the folder stays
    assert main([str(model), "--codec", "bass", "--out", str(tmp_path / "x")]) == 1
    assert "STEM=FILE" in capsys.readouterr().err
    assert main([str(model), "--codec", f"piano={file}", "--out", str(tmp_path / "x")]) == 1
    assert "not in the model" in capsys.readouterr().err
    assert main([str(out), "--codec", f"bass={file}", "--out", str(tmp_path / "x")]) == 1
    assert "nothing to grow" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
