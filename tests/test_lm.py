"""The transformer LM (lm/model.py): KV-cache decoding, causality, names, reference parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB
from musicgen_stem.lm.model import LMConfig, StemLM, sin_embedding
from musicgen_stem.lm.pattern import build_sequence, revert_logits

TINY = LMConfig(dim=32, num_heads=4, num_layers=2, ff_dim=64)


def _tiny_lm(layout=LAYOUT_6CB, seed: int = 0) -> StemLM:
    torch.manual_seed(seed)
    return StemLM(layout, TINY).eval()


def _random_seq(layout, B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # include the special token as in real delayed sequences
    return torch.randint(0, layout.card + 1, (B, layout.num_streams, T), generator=g)


def _memory(B: int, L: int = 3, D: int = TINY.dim, seed: int = 2) -> torch.Tensor:
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", [LAYOUT_6CB, LAYOUT_7CB], ids=["6cb", "7cb"])
@pytest.mark.parametrize("chunks", [[5, 1, 1, 1, 1, 1], [3, 2, 1, 4], [1] * 10, [10]], ids=str)
def test_incremental_decoding_equals_full_forward(layout, chunks):
    lm = _tiny_lm(layout)
    B, T = 2, sum(chunks)
    seq, mem = _random_seq(layout, B, T), _memory(B)
    with torch.no_grad():
        full = lm(seq, mem)  # [B, T, K, card]
        assert full.shape == (B, T, layout.num_streams, layout.card)
        state = lm.new_state(mem, max_steps=T)
        outs, pos = [], 0
        for n in chunks:
            outs.append(lm(seq[..., pos : pos + n], state=state))
            pos += n
            assert state.pos == pos
    inc = torch.cat(outs, dim=1)
    assert inc.shape == full.shape
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-5)


def test_last_only_equals_last_position():
    lm = _tiny_lm()
    seq, mem = _random_seq(LAYOUT_6CB, 2, 7), _memory(2)
    with torch.no_grad():
        full = lm(seq, mem)
        last = lm(seq, mem, last_only=True)
        assert last.shape == (2, 1, LAYOUT_6CB.num_streams, LAYOUT_6CB.card)
        torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)
        # and with a state: prefill 4 then 3, last only
        state = lm.new_state(mem, 7)
        lm(seq[..., :4], state=state)
        last_inc = lm(seq[..., 4:], state=state, last_only=True)
    torch.testing.assert_close(last_inc[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)


def test_kv_cache_is_static_and_bounded():
    lm = _tiny_lm()
    mem = _memory(1)
    seq = _random_seq(LAYOUT_6CB, 1, 6)
    state = lm.new_state(mem, max_steps=6)
    k_ptr, v_ptr = state.cache.k.data_ptr(), state.cache.v.data_ptr()
    shape = tuple(state.cache.k.shape)
    assert shape == (TINY.num_layers, 1, TINY.num_heads, 6, TINY.dim // TINY.num_heads)
    with torch.no_grad():
        lm(seq[..., :3], state=state)
        for t in range(3, 6):
            lm(seq[..., t : t + 1], state=state)
            assert state.cache.k.data_ptr() == k_ptr and state.cache.v.data_ptr() == v_ptr
            assert tuple(state.cache.k.shape) == shape
        # the cache was actually written (not still all zeros)
        assert state.cache.k[:, :, :, :6].abs().sum() > 0
        with pytest.raises(RuntimeError, match="KV cache"):
            lm(seq[..., :1], state=state)


def test_prefill_beyond_max_steps_raises():
    lm = _tiny_lm()
    state = lm.new_state(_memory(1), max_steps=4)
    with torch.no_grad(), pytest.raises(RuntimeError):
        lm(_random_seq(LAYOUT_6CB, 1, 5), state=state)


def test_causality_later_tokens_do_not_change_earlier_logits():
    lm = _tiny_lm()
    seq, mem = _random_seq(LAYOUT_6CB, 1, 12), _memory(1)
    changed = seq.clone()
    changed[:, :, 8:] = (changed[:, :, 8:] + 7) % LAYOUT_6CB.card
    with torch.no_grad():
        a, b = lm(seq, mem), lm(changed, mem)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_memory_conditions_output():
    lm = _tiny_lm()
    seq = _random_seq(LAYOUT_6CB, 1, 4)
    with torch.no_grad():
        a, b = lm(seq, _memory(1, seed=3)), lm(seq, _memory(1, seed=4))
    assert not torch.allclose(a, b)


def test_wrong_stream_count_and_missing_memory_raise():
    lm = _tiny_lm()
    with pytest.raises(ValueError, match="streams"):
        lm(torch.zeros(1, 5, 3, dtype=torch.long), _memory(1))
    with pytest.raises(ValueError, match="memory"):
        lm(torch.zeros(1, 6, 3, dtype=torch.long))


def test_state_dict_uses_released_names_and_no_biases():
    lm = _tiny_lm()
    keys = set(lm.state_dict())
    for k in [
        "emb.0.weight",
        "emb.5.weight",
        "transformer.layers.0.self_attn.in_proj_weight",
        "transformer.layers.0.self_attn.out_proj.weight",
        "transformer.layers.0.cross_attention.in_proj_weight",
        "transformer.layers.0.cross_attention.out_proj.weight",
        "transformer.layers.1.linear1.weight",
        "transformer.layers.1.linear2.weight",
        "transformer.layers.1.norm1.weight",
        "transformer.layers.1.norm_cross.bias",
        "transformer.layers.1.norm2.weight",
        "linears.0.weight",
        "linears.5.weight",
        "out_norm.weight",
        "out_norm.bias",
    ]:
        assert k in keys, k
    biases = [k for k in keys if k.endswith("bias") and "norm" not in k]
    assert biases == []
    sd = lm.state_dict()
    assert sd["emb.0.weight"].shape == (LAYOUT_6CB.card + 1, TINY.dim)
    assert sd["linears.0.weight"].shape == (LAYOUT_6CB.card, TINY.dim)
    assert sd["transformer.layers.0.self_attn.in_proj_weight"].shape == (3 * TINY.dim, TINY.dim)
    assert len([k for k in keys if k.startswith("emb.")]) == LAYOUT_6CB.num_streams
    assert len([k for k in keys if k.startswith("linears.")]) == LAYOUT_6CB.num_streams


def _param_formula(K: int, card: int, cfg: LMConfig) -> int:
    D, F, L = cfg.dim, cfg.ff_dim, cfg.num_layers
    per_layer = 4 * D * D + 4 * D * D + 2 * D * F + 3 * 2 * D  # self, cross, ff, 3 layer norms
    return K * (card + 1) * D + L * per_layer + 2 * D + K * card * D


def test_param_count_matches_formula_tiny():
    lm = _tiny_lm()
    n = sum(p.numel() for p in lm.parameters())
    assert n == _param_formula(6, 2048, TINY)


def test_medium_param_count_on_meta_device():
    with torch.device("meta"):
        lm = StemLM(LAYOUT_6CB, LMConfig())
    n = sum(p.numel() for p in lm.parameters())
    assert n == _param_formula(6, 2048, LMConfig())
    assert 1.8e9 < n < 1.9e9
    assert lm.device.type == "meta"


def test_sinusoidal_embedding():
    pos = torch.arange(5)
    emb = sin_embedding(pos, 16, 10000.0)
    assert emb.shape == (5, 16)
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))
    # cat[cos, sin]: first frequency is 1 (max_period ** 0)
    torch.testing.assert_close(emb[3, 0], torch.cos(torch.tensor(3.0)))
    torch.testing.assert_close(emb[3, 8], torch.sin(torch.tensor(3.0)))
    # last frequency is 1 / max_period
    torch.testing.assert_close(emb[4, 7], torch.cos(torch.tensor(4.0 / 10000.0)))
    torch.testing.assert_close(emb[4, 15], torch.sin(torch.tensor(4.0 / 10000.0)))


def test_config_rejects_bad_sizes_and_round_trips():
    with pytest.raises(ValueError):
        LMConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError):
        LMConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    assert LMConfig.from_dict(TINY.to_dict()) == TINY


# --------------------------------------------------------------------------- reference parity


def load_reference_lm(ref_fixture) -> StemLM:
    state = torch.load(ref_fixture / "state_dict.bin", weights_only=True)["best_state"]
    state = {k: v.float() for k, v in state.items() if not k.startswith("condition_provider.")}
    lm = StemLM(LAYOUT_6CB, LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256))
    lm.load_state_dict(state, strict=True)
    return lm.eval()


def test_reference_teacher_forced_logits(ref_fixture):
    lm = load_reference_lm(ref_fixture)
    g = np.load(ref_fixture / "golden.npz")
    codes = torch.from_numpy(g["tf_codes"])
    T = codes.shape[-1]
    delays = LAYOUT_6CB.delays
    seq, _ = build_sequence(codes, delays, LAYOUT_6CB.special_token, valid_steps_only=True)
    assert torch.equal(seq, torch.from_numpy(g["tf_pattern_sequence"]))
    expected_mask = torch.from_numpy(g["tf_logits_mask"])[0]
    for memory_key, logits_key in [("cond_embeds", "tf_logits_cond"), ("null_cond_embeds", "tf_logits_null")]:
        with torch.no_grad():
            out = lm(seq, torch.from_numpy(g[memory_key]))
        logits, mask = revert_logits(out, delays, T)
        assert torch.equal(mask, expected_mask)
        ref = torch.from_numpy(g[logits_key])
        torch.testing.assert_close(logits[:, mask], ref[:, mask], atol=1e-4, rtol=0)
        assert torch.isnan(logits[:, ~mask]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_static_decode_step_equals_incremental_forward(dtype):
    """decode_step (static shapes: whole cache, masked) gives the logits of the sliced-cache path."""
    lm = _tiny_lm().to(dtype)
    seq, mem = _random_seq(LAYOUT_6CB, 2, 9), _memory(2).to(dtype)
    with torch.no_grad():
        a, b = lm.new_state(mem, 9), lm.new_state(mem, 9)
        lm(seq[..., :3], state=a)
        lm(seq[..., :3], state=b)
        for t in range(3, 9):
            ref = lm(seq[..., t : t + 1], state=a)[:, 0]
            out = lm.decode_step(seq[..., t : t + 1], torch.tensor([t]), b)
            b.pos += 1
            tol = 1e-5 if dtype == torch.float32 else 0.05 * ref.float().abs().max()
            assert (out.float() - ref.float()).abs().max() <= tol
        assert torch.equal(a.cache.k[0], b.cache.k[0])  # the first layer's keys: same inputs
        assert (a.cache.v.float() - b.cache.v.float()).abs().max() <= (
            1e-5 if dtype == torch.float32 else 0.05
        )


def test_compiled_decoding_captures_one_graph_and_matches():
    """torch.compile(fullgraph) of the decode step (aot_eager: capture and functionalization of the
    in-place cache writes, no code generation) decodes like the eager model."""
    lm = _tiny_lm()
    seq, mem = _random_seq(LAYOUT_6CB, 2, 8), _memory(2)
    with torch.no_grad():
        ref = lm(seq, mem)
        lm.compile_decoding(backend="aot_eager")
        state = lm.new_state(mem, 8)
        steps = [lm(seq[..., :2], state=state)] + [lm(seq[..., t : t + 1], state=state) for t in range(2, 8)]
        assert (torch.cat(steps, dim=1) - ref).abs().max() < 1e-5
        assert state.pos == 8
        with pytest.raises(RuntimeError, match="KV cache holds 8 steps"):
            lm(seq[..., :1], state=state)
