"""Shared fixtures: tiny random models, the reference fixture folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread (and tests must not fight over the 2 cores).
torch.set_num_threads(1)

#: The reference-made tiny 6cb checkpoint with golden outputs, in ../shared beside the repository.
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ref6cb_tiny"
#: Set to 1 (e.g. in CI) to make a missing reference fixture an error instead of a skip.
REQUIRE_ENV = "MUSICGEN_STEM_REQUIRE_FIXTURES"


@pytest.fixture(scope="session")
def ref_fixture() -> Path:
    """The reference fixture folder; parity tests that use it skip, with the reason in pytest's
    summary (`-ra`), where it is absent, or fail when MUSICGEN_STEM_REQUIRE_FIXTURES=1."""
    if not (FIXTURE / "golden.npz").is_file():
        reason = (
            f"reference parity test not run: fixture folder {FIXTURE} (../shared/fixtures/ref6cb_tiny "
            "beside the repository) is missing; it holds a checkpoint and golden outputs made with the "
            f"reference implementation. Set {REQUIRE_ENV}=1 to fail instead of skipping"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
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
