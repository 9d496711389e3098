"""Sliding windows: long text -> stems, whole-song edits, time-range edits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from musicgen_stem import MusicGenStem
from musicgen_stem.errors import GenerationError
from musicgen_stem.generation.engine import UNKNOWN
from musicgen_stem.generation.tasks import PREFIX_STRIDE, Task
from musicgen_stem.generation.windows import fill_windows, plan_windows
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.presets import tiny

SILENCE = [7, 7, 7, 7, 7, 7]


def test_plan_short_span_is_centred():
    free = torch.zeros(100, dtype=torch.bool)
    free[40:50] = True
    assert plan_windows(free, 100, 30, 10) == [(30, 60)]
    free = torch.zeros(100, dtype=torch.bool)
    free[0:5] = True
    assert plan_windows(free, 100, 30, 10) == [(0, 30)]  # clamped at the start
    free = torch.zeros(100, dtype=torch.bool)
    free[95:] = True
    assert plan_windows(free, 100, 30, 10) == [(70, 100)]  # and at the end


def test_plan_long_span_overlaps_and_covers():
    free = torch.ones(100, dtype=torch.bool)
    plan = plan_windows(free, 100, 30, 10)
    assert plan[0] == (0, 30) and plan[-1][1] == 100
    assert all(b - a == 30 for a, b in plan)  # every window is full
    for (_, b0), (a1, _) in zip(plan[:-2], plan[1:-1], strict=True):
        assert b0 - a1 == 10  # consecutive windows share `overlap` frames (the last one more)
    assert plan_windows(torch.zeros(5, dtype=torch.bool), 5, 3, 1) == []
    with pytest.raises(GenerationError):
        plan_windows(free, 100, 30, 30)


class Recorder:
    """A stand-in for one window of the LM: fills unknown tokens with a counter, remembers inputs."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []
        self.starts: list[int] = []

    def __call__(self, known: torch.Tensor, start: int = -1, prefix: int = 0) -> torch.Tensor:
        self.calls.append(known.clone())
        self.starts.append(start)
        out = known.clone()
        out[out == UNKNOWN] = 1000 + len(self.calls)
        return out


def test_whole_song_edit_forces_kept_streams_in_every_window():
    T, window, overlap = 330, 100, 40
    codes = torch.randint(0, 900, (1, 6, T))
    free = torch.zeros(6, T, dtype=torch.bool)
    free[LAYOUT_6CB.streams_of("bass")] = True
    run = Recorder()
    out = fill_windows(run, LAYOUT_6CB, Task(codes, free, tuple(["bass"])), window, overlap, SILENCE)
    kept = LAYOUT_6CB.streams_of_stems(["drums", "other"])
    assert torch.equal(out[:, kept], codes[:, kept])  # bit-exact everywhere
    assert (out[:, 0] >= 1000).all()  # bass fully regenerated
    prefix_len = window // PREFIX_STRIDE + 1
    assert len(run.calls) > 1
    plan = plan_windows(free.any(dim=0), T, window, overlap)
    assert run.starts == [a - prefix_len for a, _ in plan]  # frame of known's first column (beat grid)
    for known in run.calls:
        prefix, main = known[..., :prefix_len], known[..., prefix_len:]
        assert (prefix[:, 0] == LAYOUT_6CB.special_token).all()  # bass masked in each window's prefix
        assert (prefix[:, kept, -1] == LAYOUT_6CB.special_token).all()  # transition step
        assert (main[:, kept] != UNKNOWN).all()  # kept streams forced in every window
    # from the second window on, the overlap of the regenerated stream is known (continuity)
    for known in run.calls[1:]:
        assert (known[:, 0, prefix_len : prefix_len + overlap] != UNKNOWN).all()


def test_time_range_edit_leaves_outside_bit_exact():
    T = 200
    codes = torch.randint(0, 900, (2, 6, T))
    free = torch.zeros(6, T, dtype=torch.bool)
    free[LAYOUT_6CB.streams_of("drums"), 80:120] = True
    run = Recorder()
    out = fill_windows(run, LAYOUT_6CB, Task(codes, free, tuple(["drums"])), 100, 40, SILENCE)
    changed = out != codes
    assert changed[:, 1, 80:120].all()
    assert not changed[:, :, :80].any() and not changed[:, :, 120:].any()
    assert not changed[:, [0, 2, 3, 4, 5]].any()
    assert len(run.calls) == 1
    main = run.calls[0][..., 100 // PREFIX_STRIDE + 1 :]
    assert (main[:, 1, :30] != UNKNOWN).all() and (main[:, 1, 30:70] == UNKNOWN).all()  # centred window


def test_long_text_windows_are_continuations():
    T = 250
    codes = torch.zeros(1, 6, T, dtype=torch.long)
    free = torch.ones(6, T, dtype=torch.bool)
    run = Recorder()
    out = fill_windows(run, LAYOUT_6CB, Task(codes, free, tuple(list(LAYOUT_6CB.stems))), 100, 40, None)
    assert (out >= 1000).all()
    assert all(k.shape[-1] == 100 for k in run.calls)  # no prefix
    assert (run.calls[0] == UNKNOWN).all()
    for known in run.calls[1:]:  # each later window starts from (at least) the previous one's last 40 frames
        n_known = int((known[0, 0] != UNKNOWN).sum())
        assert n_known >= 40 and (known[..., :n_known] != UNKNOWN).all()
        assert (known[..., n_known:] == UNKNOWN).all()


@pytest.fixture(scope="module")
def small_window_model():
    """Tiny model with a 1 s generation window and a 0.5 s edit window (fast multi-window tests)."""
    cfg = dataclasses.replace(tiny(), max_duration=1.0, edit_window=0.5)
    model = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    model.set_generation_params(use_sampling=True)
    return model


def test_api_long_generation_and_whole_song_edit(small_window_model):
    m = small_window_model
    out = m.generate(["a long one"], seed=3, duration=2.3)
    assert out.codes.shape == (1, 6, 115) and out["drums"].shape[-1] == round(2.3 * m.sample_rate)
    again = m.generate(["a long one"], seed=3, duration=2.3)
    assert torch.equal(out.codes, again.codes)  # seeded across windows
    edit = m.regenerate_from_codes(out.codes, ["bass"], ["new bass"], seed=4)
    kept = m.layout.streams_of_stems(["drums", "other"])
    assert edit.codes.shape == out.codes.shape
    assert torch.equal(edit.codes[:, kept], out.codes[:, kept])


def test_api_time_range_edit(small_window_model):
    m = small_window_model
    codes = torch.randint(0, 2048, (1, 6, 150))
    out = m.regenerate_range(codes, ["drums", "bass"], ["x"], seed=1, start=1.0, end=1.6)
    a, b = 50, 80
    inside = m.layout.streams_of_stems(["bass", "drums"])
    assert torch.equal(out.codes[..., :a], codes[..., :a]) and torch.equal(out.codes[..., b:], codes[..., b:])
    assert torch.equal(out.codes[:, [2, 3, 4, 5]], codes[:, [2, 3, 4, 5]])
    assert not torch.equal(out.codes[:, inside, a:b], codes[:, inside, a:b])
    with pytest.raises(GenerationError, match="range"):
        m.regenerate_range(codes, ["bass"], ["x"], start=2.0, end=1.0)
    with pytest.raises(GenerationError, match="after the end"):
        m.regenerate_range(codes, ["bass"], ["x"], start=5.0, end=6.0)


def test_90_second_edit_forces_kept_streams_in_every_window():
    """90 s at 50 Hz with the released 25 s edit window: every window is forced and prefixed."""
    T, window = 90 * 50, 1250
    codes = torch.randint(0, 2048, (1, 6, T))
    free = torch.zeros(6, T, dtype=torch.bool)
    free[LAYOUT_6CB.streams_of("bass")] = True
    run = Recorder()
    out = fill_windows(run, LAYOUT_6CB, Task(codes, free, tuple(["bass"])), window, 500, SILENCE)
    kept = LAYOUT_6CB.streams_of_stems(["drums", "other"])
    assert torch.equal(out[:, kept], codes[:, kept]) and (out[:, 0] >= 1000).all()
    assert len(run.calls) >= 4
    for known in run.calls:
        assert known.shape[-1] == window // PREFIX_STRIDE + 1 + window
        assert (known[:, kept, window // PREFIX_STRIDE + 1 :] != UNKNOWN).all()
