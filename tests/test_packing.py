"""CPU decoding layout: oneDNN-packed projections give the same model, saved under the same keys."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from musicgen_stem.generation import SamplingParams, generate_codes, text_task
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.lm.packing import PackedLinear, onednn_available, pack_for_decoding, unpack
from musicgen_stem.lm.quantize import quantize_int8

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN")


def _lm(bias: bool = False) -> StemLM:
    torch.manual_seed(0)
    cfg = LMConfig(
        dim=64, num_heads=4, num_layers=2, ff_dim=128, bias_attn=bias, bias_ff=bias, bias_proj=bias
    )
    return StemLM(LAYOUT_6CB, cfg).eval()


@pytest.mark.parametrize("bias", [False, True])
def test_packed_logits_match_full_and_incremental(bias):
    lm = _lm(bias)
    seq = torch.randint(0, 2049, (2, 6, 10))
    mem = torch.randn(2, 3, 64)
    with torch.no_grad():
        ref = lm(seq, mem)
        packed = pack_for_decoding(copy.deepcopy(lm))
        assert all(type(m) is not nn.Linear for m in packed.modules())  # every projection packed
        assert isinstance(packed.transformer.layers[0].self_attn.parts[0], PackedLinear)
        assert (packed(seq, mem) - ref).abs().max() < 1e-5
        state = packed.new_state(mem, 10)
        steps = [packed(seq[..., :4], state=state)] + [
            packed(seq[..., t : t + 1], state=state) for t in range(4, 10)
        ]
        assert (torch.cat(steps, dim=1) - ref).abs().max() < 1e-5


def test_packed_state_dict_is_the_checkpoint_format():
    lm = _lm(bias=True)
    before = lm.state_dict()
    packed = pack_for_decoding(copy.deepcopy(lm))
    after = packed.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert not after[key].is_mkldnn and torch.equal(after[key], value), key
    # a checkpoint loads into a packed model (strict) and gives back the same weights
    other = pack_for_decoding(copy.deepcopy(_lm(bias=True)))
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(1.0)
    other.load_state_dict(lm.state_dict(), strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, lm.state_dict()[key]), key
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict({**lm.state_dict(), "linears.0.weight": torch.zeros(3, 64)})


def test_greedy_tokens_identical_packed_and_plain():
    lm = _lm()
    mem = torch.randn(1, 3, 64)
    params = SamplingParams(use_sampling=False, cfg_coef=3.0)
    known = text_task(1, lm.layout, 12).known()
    plain = generate_codes(lm, known, mem, torch.zeros_like(mem), params)
    packed = generate_codes(pack_for_decoding(copy.deepcopy(lm)), known, mem, torch.zeros_like(mem), params)
    assert torch.equal(plain, packed)


def test_unpack_and_quantize_after_packing():
    lm = _lm()
    seq = torch.randint(0, 2049, (1, 6, 5))
    mem = torch.randn(1, 3, 64)
    with torch.no_grad():
        ref = lm(seq, mem)
        restored = unpack(pack_for_decoding(copy.deepcopy(lm)))
        assert not any(isinstance(m, PackedLinear) for m in restored.modules())
        assert torch.allclose(restored(seq, mem), ref, atol=1e-5)
        quantized = quantize_int8(pack_for_decoding(copy.deepcopy(lm)))
        assert (quantized(seq, mem) - ref).abs().max() < 0.05 * ref.abs().max()


def test_other_dtypes_are_left_alone():
    lm = _lm().to(torch.float64)
    pack_for_decoding(lm)
    assert any(type(m) is nn.Linear for m in lm.modules())
    assert lm.transformer.layers[0].self_attn.parts is None


def test_compiled_decoding_of_a_packed_model():
    lm = _lm()
    mem = torch.randn(1, 3, 64)
    params = SamplingParams(use_sampling=False, cfg_coef=3.0)
    known = text_task(1, lm.layout, 6).known()
    plain = generate_codes(lm, known, mem, torch.zeros_like(mem), params)
    fast = pack_for_decoding(copy.deepcopy(lm)).compile_decoding(backend="aot_eager")
    assert torch.equal(generate_codes(fast, known, mem, torch.zeros_like(mem), params), plain)


def test_every_cpu_layout_gives_the_same_model_and_auto_picks_by_timing(monkeypatch):
    """ "row", "column", "onednn" and "auto" decode alike; the probe keeps oneDNN unless another
    layout is clearly faster, and takes the clearly faster one."""
    from musicgen_stem.lm import packing

    lm = _lm()
    seq, mem = torch.randint(0, 2049, (2, 6, 8)), torch.randn(2, 3, 64)
    with torch.no_grad():
        ref = lm(seq, mem)
        for layout in (*packing.LAYOUTS, "auto"):
            out = pack_for_decoding(copy.deepcopy(lm), layout)(seq, mem)
            assert (out - ref).abs().max() < 1e-5, layout
    assert packing.fastest_layout(128, 64) in packing.LAYOUTS
    assert packing.largest_projection(lm) == (lm.layout.card, 64)  # an output head: [card, dim]
    timings = {"row": 1.0, "column": 0.95, "onednn": 1.0}

    def fake_median(fn, repeats):
        return timings[next(calls)]

    monkeypatch.setattr(packing, "_median_seconds", fake_median)
    calls = iter(["row", "column", "onednn"])
    assert packing.fastest_layout(128, 64) == "onednn"  # 5 % faster is noise: keep the default
    timings["column"] = 0.5
    calls = iter(["row", "column", "onednn"])
    assert packing.fastest_layout(128, 64) == "column"
    with pytest.raises(ValueError, match="layout"):
        pack_for_decoding(copy.deepcopy(lm), "blocked")
