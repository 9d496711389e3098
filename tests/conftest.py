"""Shared fixtures: tiny random models, the reference fixture folder, click loops."""

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


def write_clicks(path: Path, sr: int = 32000, seconds: float = 1.0, bpm: float = 240.0) -> Path:
    """A click every beat for `seconds`, as a 16-bit WAV at `path` (a drum loop for jams)."""
    import numpy as np
    import soundfile as sf

    x = np.zeros(round(seconds * sr))
    for beat in np.arange(0, seconds, 60 / bpm):
        i = round(beat * sr)
        x[i : i + 200] = np.hanning(400)[200:] * np.sign(np.sin(np.arange(200)))
    sf.write(path, x, sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def clicks():
    """`write_clicks`, for tests in any folder below this one."""
    return write_clicks
