"""The thread policy: one CPU thread for small models unless the user chose (`--threads`, OMP_NUM_THREADS)."""

from __future__ import annotations

import argparse

import pytest
import torch

from musicgen_stem import cli
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.threads import SMALL_LM_PARAMS, choose_threads, use_threads


def test_choose_threads():
    small, large = 5_000_000, 1_500_000_000
    assert choose_threads(small, "cpu", env={}) == 1
    assert choose_threads(large, "cpu", env={}) is None  # torch's default
    assert choose_threads(SMALL_LM_PARAMS, "cpu", env={}) is None
    assert choose_threads(small, "cpu", requested=3, env={}) == 3  # the user's choice wins
    assert choose_threads(large, "cpu", requested=1, env={}) == 1
    assert choose_threads(small, "cpu", env={"OMP_NUM_THREADS": "4"}) is None  # set outside: left alone
    assert choose_threads(small, "cuda", env={}) is None
    with pytest.raises(MusicGenStemError, match="--threads"):
        choose_threads(small, "cpu", requested=0, env={})


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cli_model_options_apply_the_policy(tiny_model_dir, monkeypatch, restore_threads):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    parser = argparse.ArgumentParser()
    cli.add_model_options(parser)
    torch.set_num_threads(2)
    cli.load_model_from_args(str(tiny_model_dir), parser.parse_args(["--device", "cpu"]))
    assert torch.get_num_threads() == 1  # a tiny model: one thread
    cli.load_model_from_args(str(tiny_model_dir), parser.parse_args(["--device", "cpu", "--threads", "2"]))
    assert torch.get_num_threads() == 2


def test_use_threads_leaves_a_user_setting(tiny_model, monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert use_threads(tiny_model) == 2
