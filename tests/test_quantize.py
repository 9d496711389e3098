"""Int8/int4 CPU decoding: close to fp32, the KV cache matches a full pass, usable end to end.

Tolerances, measured on the tiny LM below over seeds 0-5 (max |logit error| / max |logit|, argmax
agreement with fp32): int8 0.009-0.011 and 0.965-0.993 (the former torch.ao path: 0.022-0.026 and
0.944-0.972); int4 (groups of 32) 0.10-0.14 and 0.77-0.81. Per-channel int8 weights have a step of
max|w| / 127, about 3 sigma / 127 for these Gaussian weights (0.7 % rms per weight) and bf16
activations add 2^-9; int4 groups of 32 have a step of (max - min) / 15, about 4 sigma / 15 (8 %
rms). The bounds below leave a factor 2-3 over the worst seed.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from musicgen_stem import MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.errors import ModelError
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.lm.quantize import (
    Int4Linear,
    Int8Linear,
    fbgemm_int8,
    quantize,
    quantize_int4,
    quantize_int8,
    weight_bytes,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def _tiny_lm(seed: int = 0) -> StemLM:
    torch.manual_seed(seed)
    return StemLM(LAYOUT_6CB, LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256)).eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randint(0, 2049, (2, 6, 12)), torch.randn(2, 3, 64)  # seq [B, K, T], memory [B, L, D]


def _ao_int8(lm: StemLM) -> StemLM:
    """The former path (torch.ao dynamic int8), to compare with while PyTorch still has it."""
    ao = pytest.importorskip("torch.ao.quantization")
    lm.split_projections()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao.quantize_dynamic(lm, {nn.Linear: ao.per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return lm.eval()


@pytest.mark.parametrize("mode, max_err, min_agree", [("int8", 0.03, 0.93), ("int4", 0.25, 0.65)])
def test_logits_close_and_cache_consistent(mode, max_err, min_agree):
    lm = _tiny_lm()
    seq, mem = _inputs()
    with torch.no_grad():
        ref = lm(seq, mem)
        quantize(lm, mode)
        assert lm.transformer.layers[0].self_attn.in_proj_weight is None  # replaced by quantized modules
        kind = Int8Linear if mode == "int8" else Int4Linear
        assert all(type(m) is not nn.Linear for m in lm.modules())
        assert isinstance(lm.transformer.layers[0].linear1, kind) and isinstance(lm.linears[0], kind)
        out = lm(seq, mem)
        assert (out - ref).abs().max() < max_err * ref.abs().max()
        assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > min_agree
        state = lm.new_state(mem, 12)
        steps = [lm(seq[..., :5], state=state)] + [lm(seq[..., t : t + 1], state=state) for t in range(5, 12)]
        inc = torch.cat(steps, dim=1)  # weight-only: a row's result does not depend on the others
        assert (inc - out).abs().max() < 1e-4 * out.abs().max()


def test_int8_tokens_match_the_former_torch_ao_path():
    """Teacher-forced argmaxes of the new int8 agree with the former path's (which is itself
    further from fp32: free-running greedy decoding of random tiny models diverges at near ties)."""
    lm = _tiny_lm()
    seq, mem = _inputs()
    with torch.no_grad():
        ref = lm(seq, mem).argmax(-1)
        old = _ao_int8(copy.deepcopy(lm))(seq, mem).argmax(-1)
        new = quantize_int8(lm)(seq, mem).argmax(-1)
    assert (new == old).float().mean() > 0.9
    assert (new == ref).float().mean() >= (old == ref).float().mean() - 0.02


def test_weight_bytes_and_fallbacks():
    lm = _tiny_lm()
    fp32 = weight_bytes(lm)
    int8 = weight_bytes(quantize_int8(copy.deepcopy(lm)))
    int4 = weight_bytes(quantize_int4(lm))
    assert int4 < int8 < fp32
    # int4 needs out % 16 == 0 and a group dividing in; int8 needs in % 8 == 0; else a step down
    m = nn.Sequential(nn.Linear(64, 40), nn.Linear(64, 48), nn.Linear(12, 16))
    from musicgen_stem.lm.quantize import _int8, _replace, int4_group

    _replace(m, lambda lin: _int8(lin) if int4_group(*lin.weight.shape, 32) is None else Int4Linear(lin, 32))
    assert [type(x) for x in m] == [Int8Linear, Int4Linear, nn.Linear]
    assert int4_group(48, 192, 128) == 64  # the group halves until it divides the inputs
    x = torch.randn(3, 64)
    assert m[0](x).shape == (3, 40) and m[1](x).shape == (3, 48)


def test_bad_modes_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="choose one of int8, int4$"):
        quantize(_tiny_lm(), "int3")
    with pytest.raises(ValueError, match="choose one of 32, 64, 128"):
        quantize_int4(_tiny_lm(), group_size=48)
    model = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.raises(ModelError, match="unknown quantization 'fp8': choose one of int8, int4") as err:
        model.quantize("fp8")
    assert "\n" not in str(err.value)


def test_torch_ao_quantization_only_behind_the_fbgemm_adapter():
    uses = [
        f"{path.relative_to(SRC)}:{i}"
        for path in SRC.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"^\s*(from|import) torch\.ao\b|from torch import ao\b|torch\.ao\.\w+\.\w+\(", line)
    ]
    assert all(u.startswith("musicgen_stem/lm/quantize.py:") for u in uses), uses
    lm = _tiny_lm()
    seq, mem = _inputs()
    with torch.no_grad():
        ref = lm(seq, mem)
        wide = quantize_int8(copy.deepcopy(lm), fbgemm_min=0)  # every layer as wide as medium's
        narrow = quantize_int8(lm)  # tiny's 64 inputs: the weight-only kernel
        kinds = {type(m).__name__ for m in wide.modules()}
        if fbgemm_int8(nn.Linear(8, 8)) is not None:  # PyTorch still ships fbgemm's int8
            assert "Linear" in kinds and "Int8Linear" not in kinds  # torch.ao's dynamic Linear
        assert isinstance(narrow.linears[0], Int8Linear)
        for q in (wide, narrow):
            out = q(seq, mem)
            assert (out - ref).abs().max() < 0.05 * ref.abs().max()
            assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_cli_generate_int8(tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    args = ["generate", "x", "--model", str(tiny_model_dir), "--quantize", "int8", "--duration", "0.3"]
    assert main(args + ["--seed", "1", "-q", "--out", str(out)]) == 0
    assert (out / "mix.wav").is_file()
    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize()  # int8 by default
    assert isinstance(m.lm.linears[0], Int8Linear)
    assert m.generate(["y"], seed=0, duration=0.2).codes.shape == (1, 6, 10)


def test_api_generate_int4(tiny_model_dir):
    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize("int4")
    assert isinstance(m.lm.linears[0], Int4Linear)
    assert m.generate(["y"], seed=0, duration=0.2).codes.shape == (1, 6, 10)


def test_a_quantized_model_is_not_saved_as_a_broken_folder(tiny_model_dir, tmp_path):
    model = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize("int4")
    with pytest.raises(ModelError, match="cannot be saved") as err:
        model.save(tmp_path / "q")
    assert "\n" not in str(err.value) and not (tmp_path / "q").exists()
