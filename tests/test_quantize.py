"""Int8 CPU decoding: close to fp32, the KV cache still matches a full pass, usable end to end."""

from __future__ import annotations

import torch

from musicgen_stem import MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.lm.quantize import quantize_int8


def test_int8_logits_close_and_cache_consistent():
    torch.manual_seed(0)
    lm = StemLM(LAYOUT_6CB, LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256)).eval()
    seq = torch.randint(0, 2049, (2, 6, 12))
    mem = torch.randn(2, 3, 64)
    with torch.no_grad():
        ref = lm(seq, mem)
        quantize_int8(lm)
        assert lm.transformer.layers[0].self_attn.in_proj_weight is None  # replaced by int8 modules
        out = lm(seq, mem)
        assert (out - ref).abs().max() < 0.05 * ref.abs().max()
        assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
        state = lm.new_state(mem, 12)
        steps = [lm(seq[..., :5], state=state)] + [lm(seq[..., t : t + 1], state=state) for t in range(5, 12)]
        inc = torch.cat(steps, dim=1)  # activations are quantized per call, so only close, not equal
        assert (inc - out).abs().max() < 0.05 * out.abs().max()
        assert (inc.argmax(-1) == out.argmax(-1)).float().mean() > 0.9


def test_cli_generate_int8(tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    args = ["generate", "x", "--model", str(tiny_model_dir), "--quantize", "int8", "--duration", "0.3"]
    assert main(args + ["--seed", "1", "-q", "--out", str(out)]) == 0
    assert (out / "mix.wav").is_file()
    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize("int8")
    assert m.generate(["y"], seed=0, duration=0.2).codes.shape == (1, 6, 10)
