"""Int8/int4 CPU decoding: close to fp32, the KV cache matches a full pass, usable end to end.

Tolerances, measured on the tiny LM below over seeds 0-5 (max |logit error| / max |logit|, argmax
agreement with fp32): int8 0.009-0.011 and 0.965-0.993 (the former torch.ao path: 0.022-0.026 and
0.944-0.972); int4 (groups of 32) 0.10-0.14 and 0.77-0.81. Per-channel int8 weights have a step of
max|w| / 127, about 3 sigma / 127 for these Gaussian weights (0.7 % rms per weight) and bf16
activations add 2^-9; int4 groups of 32 have a step of (max - min) / 15, about 4 sigma / 15 (8 %
rms). The bounds below leave a factor 2-3 over the worst seed.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from musicgen_stem import MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.commands.options import prepare_model
from musicgen_stem.errors import ModelError
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.lm.qlinear import FbgemmInt8Linear, Int4Linear, Int8Linear, fbgemm_available, int4_group
from musicgen_stem.lm.quantize import (
    _int8,
    _replace,
    load_quantized,
    quantization_of,
    quantize,
    quantize_int4,
    quantize_int8,
    weight_bytes,
)
from musicgen_stem.modeldir import load_model

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
    _replace(
        m,
        lambda lin, _: (
            _int8(lin, False)
            if int4_group(*lin.weight.shape, 32) is None
            else Int4Linear.from_linear(lin, 32)
        ),
    )
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
    with pytest.raises(ModelError, match="unknown quantization 'fp8': choose one of auto, int8, int4") as err:
        model.quantize("fp8")
    assert "\n" not in str(err.value)


def _deprecated_uses(path: Path) -> list[str]:
    """Where the code (not its docs) of `path` reaches torch.ao or quantized tensors."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            text = " ".join(names)
        elif isinstance(node, ast.Attribute):
            text = ast.unparse(node)
        else:
            continue
        if re.search(r"torch\.ao\b|quantized_tensor|ops\.quantized\.", text):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_deprecated_quantized_tensors_only_behind_the_fbgemm_adapter():
    uses = [u for path in SRC.rglob("*.py") for u in _deprecated_uses(path)]
    assert uses and all(u.startswith("musicgen_stem/lm/qlinear.py:") for u in uses), uses
    lm = _tiny_lm()
    seq, mem = _inputs()
    with torch.no_grad():
        ref = lm(seq, mem)
        wide = quantize_int8(copy.deepcopy(lm), fbgemm_min=0)  # every layer as wide as medium's
        narrow = quantize_int8(lm)  # tiny's 64 inputs: the weight-only kernel
        kinds = {type(m).__name__ for m in wide.modules()}
        if fbgemm_available():  # PyTorch still ships fbgemm's int8
            assert "FbgemmInt8Linear" in kinds and "Int8Linear" not in kinds
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


def test_auto_is_the_model_s_own_choice(tiny_model_dir, tmp_path):
    """`quantize("auto")` (the CLI's default) applies the config's `cpu_quantization` to a float32
    LM on CPU and nothing else: released-style folders without it, LMs loaded quantized and
    models a user asked to compile stay as they are."""
    plain = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize("auto")
    assert quantization_of(plain.lm) is None
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert "cpu_quantization" not in config
    chosen = tmp_path / "chosen"
    MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").save(chosen)
    config["cpu_quantization"] = "int8"
    (chosen / "config.json").write_text(json.dumps(config))
    model = MusicGenStem.from_pretrained(chosen, device="cpu")
    assert model.config.cpu_quantization == "int8"
    assert quantization_of(model.quantize("auto").lm) == "int8"
    stored = tmp_path / "stored4"
    MusicGenStem.from_pretrained(chosen, device="cpu").quantize("int4").save(stored)
    assert quantization_of(MusicGenStem.from_pretrained(stored, device="cpu").quantize("auto").lm) == "int4"
    assert prepare_model(MusicGenStem.from_pretrained(chosen, device="cpu")).lm_precision == "int8"
    compiled = prepare_model(MusicGenStem.from_pretrained(chosen, device="cpu"), compile=True)
    assert compiled.lm_precision == "float32"
    asked_float = prepare_model(MusicGenStem.from_pretrained(chosen, device="cpu"), quantize="none")
    assert asked_float.lm_precision == "float32"
    for flags, precision in (([], "int8"), (["--quantize", "none"], "float32")):
        out = tmp_path / f"o{precision}"
        args = ["generate", "x", "--model", str(chosen), "--duration", "0.3", "--seed", "1", "-q"]
        assert main(args + flags + ["--out", str(out)]) == 0
        assert json.loads((out / "meta.json").read_text())["lm"] == precision
    config["cpu_quantization"] = "fp8"
    (chosen / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="cpu_quantization must be int8 or int4, got 'fp8'"):
        MusicGenStem.from_pretrained(chosen, device="cpu")


def test_api_generate_int4(tiny_model_dir):
    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize("int4")
    assert isinstance(m.lm.linears[0], Int4Linear)
    assert m.generate(["y"], seed=0, duration=0.2).codes.shape == (1, 6, 10)


@pytest.mark.parametrize("mode, fbgemm_min", [("int8", 1024), ("int8", 0), ("int4", 1024)])
def test_quantized_state_loads_back_exactly_without_float_weights(mode, fbgemm_min):
    """The stored int8/int4 weights are portable (int4's kernel layout depends on the CPU) and
    load into a meta-device LM as the same layers, bit-exact."""
    if fbgemm_min == 0 and not fbgemm_available():
        pytest.skip("this PyTorch has no fbgemm int8")
    lm = _tiny_lm()
    seq, mem = _inputs()
    with torch.no_grad():
        quantize_int8(lm, fbgemm_min=fbgemm_min) if mode == "int8" else quantize_int4(lm)
        ref = lm(seq, mem)
    state = lm.state_dict()
    stored = {k.rsplit(".", 1)[-1] for k in state}
    assert ("weight_int8" if mode == "int8" else "weight_int4") in stored and "in_proj_weight" not in stored
    with torch.device("meta"):
        empty = StemLM(LAYOUT_6CB, LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256))
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # as read
    loaded = load_quantized(empty, floats, fbgemm_min=fbgemm_min)
    kinds = {type(a) for a in lm.modules()}
    assert {type(b) for b in loaded.modules()} == kinds and quantization_of(loaded) == mode
    assert (FbgemmInt8Linear in kinds) == (fbgemm_min == 0)
    with torch.no_grad():
        assert torch.equal(loaded(seq, mem), ref)
    assert weight_bytes(loaded) == weight_bytes(lm)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_quantized_model_saves_and_loads_quantized(tiny_model_dir, tmp_path, mode):
    model = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu").quantize(mode)
    ref = model.generate(["y"], seed=0, duration=0.3).codes
    model.save(tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization"] == mode and config["format_version"] == 2
    loaded = MusicGenStem.from_pretrained(tmp_path / "q", device="cpu")
    assert quantization_of(loaded.lm) == mode
    assert torch.equal(loaded.generate(["y"], seed=0, duration=0.3).codes, ref)
    assert loaded.quantize(mode) is loaded  # already so: nothing to do
    other = "int4" if mode == "int8" else "int8"
    with pytest.raises(ModelError, match=f"is {mode} already: load its float weights") as err:
        loaded.quantize(other)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="runs on CPU"):
        load_model(tmp_path / "q", device="cuda")


def test_cli_convert_quantize(tiny_model_dir, tmp_path, capsys):
    dst = tmp_path / "int4"
    assert main(["convert", str(tiny_model_dir), str(dst), "--quantize", "int4"]) == 0
    assert "int4 LM" in capsys.readouterr().out
    size = (dst / "lm.safetensors").stat().st_size  # the int4 weights (and float embeddings, norms)
    lm = MusicGenStem.from_pretrained(dst, device="cpu").lm
    assert quantization_of(lm) == "int4" and abs(size - weight_bytes(lm)) < 0.02 * size
    assert size < 0.6 * (tiny_model_dir / "lm.safetensors").stat().st_size
    out = tmp_path / "o"
    assert main(["generate", "x", "--model", str(dst), "--duration", "0.3", "-q", "--out", str(out)]) == 0
    assert (out / "mix.wav").is_file()
    assert main(["convert", str(dst), str(tmp_path / "again"), "--quantize", "int8"]) == 2
    assert "is int4 already" in capsys.readouterr().err and not (tmp_path / "again").exists()
