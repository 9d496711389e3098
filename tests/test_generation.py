"""Generation (generation/engine.py, sampling.py, tasks.py): CFG, sampling, forcing, tasks, parity."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from musicgen_stem.errors import GenerationError
from musicgen_stem.generation import (
    UNKNOWN,
    SamplingParams,
    continuation_task,
    edit_task,
    generate_codes,
    guide,
    sample_next,
    text_task,
)
from musicgen_stem.generation.windows import fill_windows
from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB
from musicgen_stem.lm.model import LMConfig, StemLM
from musicgen_stem.lm.pattern import build_sequence

TINY = LMConfig(dim=32, num_heads=4, num_layers=2, ff_dim=64)
GREEDY = SamplingParams(use_sampling=False)
SILENCE = [11, 22, 33, 44, 55, 66]
EDIT_WINDOW_FRAMES = 1250  # the released models' edit window (25 s at 50 Hz)


def _lm(layout=LAYOUT_6CB, seed: int = 0) -> StemLM:
    torch.manual_seed(seed)
    return StemLM(layout, TINY).eval()


def _mems(B: int = 1, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 2, TINY.dim, generator=g), torch.randn(B, 2, TINY.dim, generator=g) * 0.1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def lm6() -> StemLM:
    return _lm()


# ------------------------------------------------------------------------------ CFG


def test_guide_arithmetic():
    g = torch.Generator().manual_seed(0)
    cond, null = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    torch.testing.assert_close(guide(cond, null, 3.0), null + 3.0 * (cond - null))
    torch.testing.assert_close(guide(cond, null, 1.0), cond)
    torch.testing.assert_close(guide(cond, null, 0.0), null)


def test_engine_first_step_is_argmax_of_guided_logits(lm6):
    mem, null = _mems(2)
    codes = generate_codes(
        lm6, text_task(2, LAYOUT_6CB, 4).known(), mem, null, SamplingParams(False, cfg_coef=2.5)
    )
    first = torch.full((2, 6, 1), LAYOUT_6CB.special_token)
    with torch.no_grad():
        lc = lm6(first, mem)[:, 0]  # [B, K, card]
        ln = lm6(first, null)[:, 0]
    expected = (ln + 2.5 * (lc - ln)).argmax(-1)  # [B, K]
    zero_delay = [k for k, d in enumerate(LAYOUT_6CB.delays) if d == 0]
    assert torch.equal(codes[:, zero_delay, 0], expected[:, zero_delay])
    # and guidance really matters here: the unguided argmax differs somewhere
    codes_cond = generate_codes(lm6, text_task(2, LAYOUT_6CB, 4).known(), mem, None, GREEDY)
    assert not torch.equal(codes, codes_cond)


def test_cfg_coef_one_skips_null_batch(lm6, monkeypatch):
    mem, null = _mems(1)
    params = SamplingParams(False, cfg_coef=1.0)
    batches = []
    orig = StemLM.forward

    def spy(self, seq, *a, **kw):
        batches.append(seq.shape[0])
        return orig(self, seq, *a, **kw)

    monkeypatch.setattr(StemLM, "forward", spy)
    a = generate_codes(lm6, text_task(1, LAYOUT_6CB, 5).known(), mem, null, params)
    assert set(batches) == {1}
    b = generate_codes(lm6, text_task(1, LAYOUT_6CB, 5).known(), mem, None, params)
    assert torch.equal(a, b)
    batches.clear()
    generate_codes(lm6, text_task(1, LAYOUT_6CB, 5).known(), mem, null, GREEDY)
    assert set(batches) == {2}  # cfg 3.0: cond and null as one batch


# ------------------------------------------------------------------------------ sampling


def _logits(seed: int = 0, shape=(2, 3, 50)) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)) * 3


def test_greedy_equivalents():
    logits = _logits()
    greedy = sample_next(logits, GREEDY)
    assert torch.equal(greedy, logits.argmax(-1))
    for p in [
        SamplingParams(top_k=1),
        SamplingParams(top_k=0, top_p=1e-6),
        SamplingParams(top_k=250, top_p=1e-6),
        SamplingParams(temperature=0.0),
    ]:
        for seed in range(3):
            assert torch.equal(sample_next(logits, p, _gen(seed)), greedy), p


def test_greedy_streams_take_their_argmax_and_leave_the_other_draws():
    """`greedy_streams` replaces those streams' draws by their argmax; every other stream gets the
    draw it gets without them (the same generator state), at any top-k or top-p."""
    logits = _logits(shape=(4, 5, 50)) / 3  # flat enough that a draw is rarely the argmax
    for p in [SamplingParams(top_k=0), SamplingParams(top_k=20), SamplingParams(top_k=0, top_p=0.9)]:
        plain = sample_next(logits, p, _gen(1))
        mixed = sample_next(logits, replace(p, greedy_streams=(1, 4)), _gen(1))
        assert torch.equal(mixed[:, [1, 4]], logits[:, [1, 4]].argmax(-1))
        assert torch.equal(mixed[:, [0, 2, 3]], plain[:, [0, 2, 3]])
        assert not torch.equal(plain[:, [1, 4]], mixed[:, [1, 4]])  # the plain draws were not argmax


def test_seeded_sampling_is_reproducible(lm6):
    mem, null = _mems(1)
    params = SamplingParams(top_k=50)
    a = generate_codes(lm6, text_task(1, LAYOUT_6CB, 20).known(), mem, null, params, _gen(3))
    b = generate_codes(lm6, text_task(1, LAYOUT_6CB, 20).known(), mem, null, params, _gen(3))
    c = generate_codes(lm6, text_task(1, LAYOUT_6CB, 20).known(), mem, null, params, _gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a >= 0).all() and (a < LAYOUT_6CB.card).all()


def test_top_k_samples_only_from_top_k():
    logits = torch.zeros(1, 1, 20)
    logits[0, 0, [4, 9, 17]] = torch.tensor([5.0, 4.0, 4.5])
    logits[0, 0, 0] = 3.0  # fourth best: never drawn with k=3
    g = _gen(0)
    seen = {
        int(sample_next(logits.expand(64, 1, 20), SamplingParams(top_k=3), g).flatten()[i])
        for _ in range(20)
        for i in range(64)
    }
    assert seen == {4, 9, 17}


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()[None, None].expand(256, 1, 4)
    g = _gen(1)

    def drawn(p: float) -> set[int]:
        out = set()
        for _ in range(10):
            out |= set(sample_next(logits, SamplingParams(top_k=0, top_p=p), g).flatten().tolist())
        return out

    assert drawn(0.45) == {1}
    assert drawn(0.7) == {1, 3}
    assert drawn(0.9) == {1, 3, 2}
    assert drawn(1.0) == {0, 1, 2, 3}


def test_temperature_sharpens():
    logits = torch.tensor([1.0, 0.0])[None, None].expand(4000, 1, 2)
    hot = sample_next(logits, SamplingParams(top_k=0, temperature=2.0), _gen(0)).float().mean()
    cold = sample_next(logits, SamplingParams(top_k=0, temperature=0.25), _gen(0)).float().mean()
    assert cold < 0.05 < hot  # the fraction drawing the less likely token


@pytest.mark.parametrize(
    "params, match",
    [
        (SamplingParams(temperature=-0.1), "temperature"),
        (SamplingParams(temperature=float("nan")), "temperature"),
        (SamplingParams(top_k=2049), "top-k"),
        (SamplingParams(top_k=-1), "top-k"),
        (SamplingParams(top_p=1.5), "top-p"),
        (SamplingParams(top_p=-0.1), "top-p"),
        (SamplingParams(cfg_coef=-1.0), "guidance"),
        (SamplingParams(greedy_streams=(1, 6)), "greedy streams.*below 6.*6"),
        (SamplingParams(greedy_streams=(-1,)), "greedy streams"),
        (SamplingParams(chord_guide=-1.0), "chord guidance"),
    ],
)
def test_sampling_params_validate(params, match):
    with pytest.raises(GenerationError, match=match):
        params.validate(2048, 6)


def test_sampling_params_accept_their_bounds_and_refuse_what_is_past_them():
    SamplingParams().validate(2048)
    SamplingParams(top_k=2048, top_p=1.0, temperature=0.0, cfg_coef=0.0).validate(2048)  # the bounds
    past = [
        {"top_k": 2049},
        {"top_k": -1},
        {"top_p": 1.01},
        {"temperature": -0.01},
        {"cfg_coef": float("nan")},
        {"greedy_streams": (6,)},
    ]
    for bad in past:
        with pytest.raises(GenerationError, match=r"top-k|top-p|temperature|guidance|greedy"):
            SamplingParams(**bad).validate(2048, num_streams=6)


# ------------------------------------------------------------------------------ forcing


@pytest.mark.parametrize("layout", [LAYOUT_6CB, LAYOUT_7CB], ids=["6cb", "7cb"])
def test_forced_streams_are_bit_exact(layout):
    lm = _lm(layout, seed=1)
    B, T = 2, 12
    g = _gen(7)
    fixed = torch.randint(0, layout.card, (B, layout.num_streams, T), generator=g)
    known = torch.full_like(fixed, UNKNOWN)
    forced = layout.streams_of("bass") + layout.streams_of("other")[1:3]
    known[:, forced] = fixed[:, forced]
    known[:, :, :3] = fixed[:, :, :3]  # a prompt too
    mem, null = _mems(B)
    out = generate_codes(lm, known, mem, null, SamplingParams(top_k=100), _gen(2))
    assert out.shape == known.shape
    is_known = known != UNKNOWN
    assert torch.equal(out[is_known], known[is_known])
    assert (out[~is_known] >= 0).all() and (out[~is_known] < layout.card).all()
    assert not torch.equal(out[~is_known], fixed[~is_known])


def test_fully_known_returns_copy(lm6):
    known = torch.randint(0, 2048, (1, 6, 5))
    out = generate_codes(lm6, known, *_mems(1), GREEDY)
    assert torch.equal(out, known) and out is not known


def test_engine_rejects_mismatched_inputs(lm6):
    mem, null = _mems(1)
    with pytest.raises(ValueError, match="streams"):
        generate_codes(lm6, torch.full((1, 5, 3), -1), mem, null, GREEDY)
    with pytest.raises(ValueError, match="batch"):
        generate_codes(lm6, text_task(2, LAYOUT_6CB, 3).known(), mem, null, GREEDY)
    with pytest.raises(GenerationError):
        generate_codes(lm6, text_task(1, LAYOUT_6CB, 3).known(), mem, null, SamplingParams(top_p=2.0))


def test_progress_callback(lm6):
    calls = []
    generate_codes(
        lm6,
        text_task(1, LAYOUT_6CB, 6).known(),
        *_mems(1),
        GREEDY,
        callback=lambda d, t: calls.append((d, t)),
    )
    total = 6 + LAYOUT_6CB.max_delay  # steps 1 .. S-1
    assert calls == [(i, total) for i in range(1, total + 1)]


# ------------------------------------------------------------------------------ tasks


def _edit_window(codes, regenerate, frames, layout=LAYOUT_6CB, silence=SILENCE, run=None):
    """(known, prefix columns) of the one window an edit of `frames` frames runs, as the engine
    gets it from `fill_windows`, and the window's output."""
    seen = {}

    def record(known, on_frames=None, start=0, prefix=0):
        seen.update(known=known, prefix=prefix)
        return run(known) if run is not None else known.clamp(min=0)

    task = edit_task(codes, layout, regenerate, frames, silence)
    out = fill_windows(record, layout, task, EDIT_WINDOW_FRAMES, 0, silence)
    return seen["known"], seen["prefix"], out


def test_text_and_continuation_tasks():
    t = text_task(3, LAYOUT_7CB, 17)
    assert t.known().shape == (3, 7, 17) and t.known().dtype == torch.long and (t.known() == UNKNOWN).all()
    assert t.regenerate == LAYOUT_7CB.stems and not t.is_edit(LAYOUT_7CB)
    prompt = torch.randint(0, 2048, (2, 6, 10))
    c = continuation_task(prompt, 25, LAYOUT_6CB).known()
    assert c.shape == (2, 6, 25)
    assert torch.equal(c[..., :10], prompt) and (c[..., 10:] == UNKNOWN).all()
    for n in (10, 5):
        with pytest.raises(GenerationError, match="prompt"):
            continuation_task(prompt, n, LAYOUT_6CB)


def test_edit_window_layout():
    B, T = 2, 60
    codes = torch.randint(0, 2048, (B, 6, T), generator=_gen(0))
    task = edit_task(codes, LAYOUT_6CB, ["bass", "other"], T, SILENCE)
    assert task.regenerate == ("bass", "other") and task.is_edit(LAYOUT_6CB)
    known, prefix_len, _ = _edit_window(codes, ["bass", "other"], T)
    sp = LAYOUT_6CB.special_token
    assert prefix_len == 251
    assert known.shape == (B, 6, 251 + T)
    prefix, main = known[..., :250], known[..., 251:]
    kept, regen = [1], [0, 2, 3, 4, 5]
    # kept streams: every 5th frame then silence padding
    assert torch.equal(prefix[:, kept, :12], codes[:, kept, ::5])
    sil = torch.tensor(SILENCE)[None, :, None]
    assert (prefix[:, kept, 12:] == sil[:, kept]).all()
    assert (prefix[:, regen] == sp).all()
    assert (known[..., 250] == sp).all()  # transition step
    assert torch.equal(main[:, kept], codes[:, kept])
    assert (main[:, regen] == UNKNOWN).all()


def test_edit_output_shorter_and_longer_than_codes():
    codes = torch.randint(0, 2048, (1, 6, 40), generator=_gen(1))
    known, p, _ = _edit_window(codes, ["drums"], 30)
    assert known.shape[-1] == p + 30
    assert torch.equal(known[:, [0, 2, 3, 4, 5], p:], codes[:, [0, 2, 3, 4, 5], :30])
    known, p, _ = _edit_window(codes, ["drums"], 55)
    main = known[..., p:]
    assert main.shape[-1] == 55
    assert torch.equal(main[:, [0, 2, 3, 4, 5], :40], codes[:, [0, 2, 3, 4, 5]])
    assert (main[..., 40:] == UNKNOWN).all()  # past the end of codes every stream is generated
    task = edit_task(codes, LAYOUT_6CB, ["drums"], 55, SILENCE)
    assert (task.codes[:, :, 40:] == torch.tensor(SILENCE)[None, :, None]).all()  # silence, as in training


def test_edit_range_frees_only_its_frames():
    codes = torch.randint(0, 2048, (1, 6, 40), generator=_gen(5))
    task = edit_task(codes, LAYOUT_6CB, ["bass"], 40, SILENCE, start=10, end=20)
    assert task.free[0, 10:20].all() and task.free.sum() == 10


def test_edit_long_codes_prefix_covers_the_first_window():
    codes = torch.randint(0, 2048, (1, 6, EDIT_WINDOW_FRAMES), generator=_gen(2))
    known, p, _ = _edit_window(codes, ["bass"], EDIT_WINDOW_FRAMES)
    assert p == 251
    assert torch.equal(known[:, 1:, :250], codes[:, 1:, :EDIT_WINDOW_FRAMES:5])
    assert torch.equal(known[:, 1:, 251:], codes[:, 1:, :EDIT_WINDOW_FRAMES])


def test_edit_7cb_streams():
    codes = torch.randint(0, 2048, (1, 7, 10), generator=_gen(3))
    known, p, _ = _edit_window(codes, ["bass"], 10, LAYOUT_7CB, [1] * 7)
    main = known[..., p:]
    assert (main[:, :2] == UNKNOWN).all() and torch.equal(main[:, 2:], codes[:, 2:])
    assert (known[:, :2, :251] == 2048).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"regenerate": []}, "at least one"),
        ({"regenerate": ["piano"]}, "unknown stem"),
        ({"codes": torch.zeros(1, 5, 10, dtype=torch.long)}, "streams"),
        ({"silence_tokens": [1, 2, 3]}, "silence"),
    ],
)
def test_edit_task_errors(kwargs, match):
    args = {
        "layout": LAYOUT_6CB,
        "codes": torch.zeros(1, 6, 10, dtype=torch.long),
        "regenerate": ["bass"],
        "num_frames": 10,
        "silence_tokens": SILENCE,
    }
    args.update(kwargs)
    with pytest.raises(Exception, match=match) as info:
        edit_task(**args)
    # every user mistake is a package error (LayoutError for stem names)
    from musicgen_stem.errors import MusicGenStemError

    assert isinstance(info.value, MusicGenStemError)
    if "stem" not in match:
        assert isinstance(info.value, GenerationError)


def test_edit_generation_keeps_streams_and_prefix(lm6):
    codes = torch.randint(0, 2048, (1, 6, 15), generator=_gen(4))
    windows = []

    def run(known):
        windows.append(
            (known, out := generate_codes(lm6, known, *_mems(1), SamplingParams(top_k=10), _gen(0)))
        )
        return out

    _, p, out = _edit_window(codes, ["bass"], 15, run=run)
    assert torch.equal(out[:, 1:], codes[:, 1:])
    # the prefix is known, so the engine returns it untouched (specials included)
    known, whole = windows[0]
    assert torch.equal(whole[..., :p], known[..., :p])


def test_delay_alignment_of_forced_streams(lm6):
    # a delayed stream forced to known codes must come back exactly frame-aligned
    known = torch.full((1, 6, 8), UNKNOWN)
    known[:, 5] = torch.arange(100, 108)
    out = generate_codes(lm6, known, *_mems(1), GREEDY)
    assert torch.equal(out[0, 5], torch.arange(100, 108))
    seq, _ = build_sequence(out, LAYOUT_6CB.delays, 2048)
    assert torch.equal(seq[0, 5, 4:12], torch.arange(100, 108))


# ------------------------------------------------------------------------------ reference parity


@pytest.fixture(scope="module")
def ref(ref_fixture):
    from test_lm import load_reference_lm

    g = np.load(ref_fixture / "golden.npz")
    meta = json.loads((ref_fixture / "golden_meta.json").read_text())
    lm = load_reference_lm(ref_fixture)
    cond = torch.from_numpy(g["cond_embeds"])
    null = torch.from_numpy(g["null_cond_embeds"])
    return lm, g, meta, cond, null


def test_reference_greedy_text(ref):
    lm, g, _, cond, null = ref
    out = generate_codes(lm, text_task(1, LAYOUT_6CB, 50).known(), cond, null, GREEDY)
    assert torch.equal(out, torch.from_numpy(g["gen_greedy_text_1s"]))


def test_reference_greedy_continuation(ref):
    lm, g, _, cond, null = ref
    prompt = torch.from_numpy(g["prompt_codes"])
    out = generate_codes(lm, continuation_task(prompt, 150, LAYOUT_6CB).known(), cond, null, GREEDY)
    assert torch.equal(out, torch.from_numpy(g["gen_greedy_continuation_3s"]))


def test_reference_regenerate_from_codes(ref):
    lm, g, meta, cond, null = ref
    codes = torch.from_numpy(g["gen_greedy_text_1s"])
    run = lambda known: generate_codes(lm, known, cond, null, GREEDY)  # noqa: E731
    _, _, out = _edit_window(codes, ["bass"], 49, silence=meta["silence_tokens_tiny"], run=run)
    assert torch.equal(out, torch.from_numpy(g["patched_regenerate_from_codes_bass_tokens"]))


def test_reference_sampled_text(ref):
    lm, g, meta, cond, null = ref
    gen = torch.Generator().manual_seed(meta["seeds"]["sampled_generation"])
    out = generate_codes(lm, text_task(1, LAYOUT_6CB, 50).known(), cond, null, SamplingParams(), gen)
    assert torch.equal(out, torch.from_numpy(g["gen_sampled_text_1s_torchrng"]))
