"""Shared fixtures: tiny random models, the reference fixture folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread (and tests must not fight over the 2 cores).
torch.set_num_threads(1)

#: The reference-made tiny 6cb checkpoint with golden outputs, in ../shared beside the repository.
#: Checkpoint and golden outputs made with the reference implementation (its README says how),
#: kept in the repository so that parity is checked in every clone.
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ref6cb_tiny"


@pytest.fixture(scope="session")
def ref_fixture() -> Path:
    """The reference fixture folder; a missing one fails the parity tests (never a skip)."""
    if not (FIXTURE / "golden.npz").is_file():
        pytest.fail(f"reference fixture {FIXTURE} is missing: restore tests/fixtures from git")
    return FIXTURE


@pytest.fixture(scope="session")
def tiny_model():
    from musicgen_stem.api import MusicGenStem

    model = MusicGenStem.from_config("tiny", seed=0, device="cpu")
    model.set_generation_params(duration=1.0)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    tiny_model.save(path)
    return path
