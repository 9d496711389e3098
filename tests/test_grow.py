"""Growing a model by codebooks (`training/grow.py`): the layout, the LM's old streams untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from musicgen_stem.api import default_model_path
from musicgen_stem.codec import StemCodec
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.modeldir import load_model, save_model
from musicgen_stem.training.codec import grown_state
from musicgen_stem.training.grow import grow_layout, grow_model, main


def _grown_bass(parts) -> StemCodec:
    """The shipped bass codec grown to the detail latent and two codebooks (the second random)."""
    old = parts.codec.codecs["bass"]
    codec = StemCodec(dataclasses.replace(old.cfg, dimension=15, n_q=2))
    state = grown_state(codec.state_dict(), old.state_dict())
    codec.load_state_dict(state, strict=False)
    torch.manual_seed(0)
    book = codec.quantizer.vq.layers[1]._codebook
    book.embed.normal_()
    book.inited.fill_(1.0)
    return codec.eval()


def test_grow_layout_inserts_the_new_codebooks_after_the_stems_own():
    parts = load_model(default_model_path())
    layout, source = grow_layout(parts.config.layout, "bass", 2)
    assert layout.codebooks == (2, 1, 2) and layout.delays == (0, 1, 0, 0, 1)
    assert source == [0, None, 1, 2, 3]
    with pytest.raises(MusicGenStemError, match="nothing to grow"):
        grow_layout(parts.config.layout, "other", 2)


def test_grown_lm_predicts_the_old_streams_as_before(tmp_path):
    parts = load_model(default_model_path())
    grown = grow_model(parts, "bass", _grown_bass(parts))
    torch.manual_seed(1)
    old_seq = torch.randint(0, 1024, (1, 4, 12))
    new_seq = torch.cat([old_seq[:, :1], torch.randint(0, 1024, (1, 1, 12)), old_seq[:, 1:]], dim=1)
    memory = torch.randn(1, 5, parts.lm.cfg.dim)
    grid = torch.tensor([[120.0, 0.0, 4.0]])
    with torch.no_grad():
        old = parts.lm(old_seq, memory, grid=grid if parts.lm.beat is not None else None)
        new = grown.lm(new_seq, memory, grid=grid if grown.lm.beat is not None else None)
    torch.testing.assert_close(new[:, :, [0, 2, 3, 4]], old, rtol=1e-5, atol=1e-5)
    assert torch.equal(new[:, :, 1], torch.zeros_like(new[:, :, 1]))  # a new head: uniform
    # the first codebook's codes are the model's old ones, on a bass line
    t = torch.arange(32000) / 32000
    wav = (0.3 * torch.sin(2 * torch.pi * 55.0 * t) * torch.exp(-2 * t))[None, None]
    codes = grown.codec.codecs["bass"].encode(wav)
    assert codes.shape[1] == 2 and torch.equal(codes[:, :1], parts.codec.codecs["bass"].encode(wav))
    save_model(grown, tmp_path / "grown")
    again = load_model(tmp_path / "grown")
    assert again.config.layout.codebooks == (2, 1, 2) and len(again.config.silence_tokens or [0] * 5) == 5


def test_grow_command_and_its_errors(tmp_path, capsys):
    parts = load_model(default_model_path())
    codec = _grown_bass(parts)
    from safetensors.torch import save_file

    file = tmp_path / "codec_bass.safetensors"
    save_file(codec.state_dict(), str(file))
    (tmp_path / "codec_bass.json").write_text(__import__("json").dumps(codec.cfg.to_dict()))
    out = tmp_path / "grown"
    assert main([str(default_model_path()), "--codec", f"bass={file}", "--out", str(out)]) == 0
    assert "5 streams" in capsys.readouterr().out
    assert main([str(default_model_path()), "--codec", f"bass={file}", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err  # no --force: the folder stays
    assert main([str(default_model_path()), "--codec", "bass", "--out", str(tmp_path / "x")]) == 1
    assert "STEM=FILE" in capsys.readouterr().err
    assert main([str(default_model_path()), "--codec", f"piano={file}", "--out", str(tmp_path / "x")]) == 1
    assert "not in the model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
