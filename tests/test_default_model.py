"""The shipped default model `mini`: loads offline, generates three stems that sound like their roles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musicgen_stem.api import MusicGenStem, default_model_path
from musicgen_stem.cli import main
from musicgen_stem.modeldir import read_config

pytestmark = pytest.mark.skipif(
    not (default_model_path() / "config.json").is_file(), reason="the default model is not installed"
)


@pytest.fixture(scope="module")
def mini(monkeypatch_module) -> MusicGenStem:
    model = MusicGenStem.default(device="cpu")
    model.set_generation_params(top_k=250, cfg_coef=3.0)
    return model


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield mp


def _centroid(wav: torch.Tensor, sr: int) -> float:
    spec = (
        torch.stft(wav.flatten(), 2048, 512, window=torch.hann_window(2048), return_complex=True).abs() ** 2
    )
    freqs = torch.linspace(0, sr / 2, spec.shape[0])
    return float((spec.sum(1) * freqs).sum() / spec.sum().clamp_min(1e-12))


def _flux(wav: torch.Tensor) -> float:
    """Mean positive spectral flux per unit energy: high for percussive, low for sustained sounds."""
    spec = torch.stft(wav.flatten(), 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    diff = (spec[:, 1:] - spec[:, :-1]).clamp_min(0).sum(0)
    return float(diff.mean() / spec.sum(0).mean().clamp_min(1e-12))


def test_config_and_size():
    cfg = read_config(default_model_path())
    assert cfg.text.kind == "minilm" and cfg.name == "mini"
    size = sum(f.stat().st_size for f in default_model_path().iterdir())
    assert size <= 40 * 2**20


def test_greedy_streams_are_the_ones_the_lm_barely_reads(mini):
    """mini takes argmax on exactly the two streams grown after its LM was trained (the bass's
    attacks, the other stem's third codebook): their embeddings were zero until the chord
    fine-tune, which let them learn a tenth of the others' size; a draw there is per-frame noise
    later steps hardly see (`SamplingParams.greedy_streams`)."""
    norms = [float(emb.weight.norm(dim=1).mean()) for emb in mini.lm.emb]
    typical = sorted(norms)[len(norms) // 2]
    faint = {k for k, n in enumerate(norms) if n < 0.25 * typical}
    assert faint and set(mini.defaults.greedy_streams) == faint


def test_generates_stems_that_sound_like_their_roles(mini):
    """Three 4 s items: bass below the chords, drums more percussive than the sustained chords in
    each, and on average more than the (slapped, so percussive too) bass."""
    flux = {"bass": [], "drums": [], "other": []}
    for seed in range(3):
        out = mini.generate(["funky drums and slap bass at 110 bpm"], seed=seed, duration=4.0)
        stems = {s: out[s][0] for s in ("bass", "drums", "other")}
        for s, w in stems.items():
            assert torch.isfinite(w).all()
            assert w.pow(2).mean().sqrt() > 1e-3, f"{s} is silent"
            flux[s].append(_flux(w))
        sr = out.sample_rate
        assert _centroid(stems["bass"], sr) < _centroid(stems["other"], sr)  # bass is low
        assert flux["drums"][-1] > flux["other"][-1]  # drums are percussive
    assert sum(flux["drums"]) > sum(flux["bass"])


def test_cli_without_model_uses_the_default(tmp_path, monkeypatch_module):
    out = tmp_path / "out"
    assert (
        main(["generate", "a calm piano ballad", "--duration", "1", "--seed", "1", "-q", "--out", str(out)])
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model"] == "mini"
    assert np.load(out / "codes.npy").shape == (6, 50)  # bass 2, drums 1, other 3 codebooks


def test_loading_the_default_model_does_not_import_torch_dynamo() -> None:
    """Building the LM on the meta device ran nn.Embedding's own init, which imported torch._dynamo
    (1.5 s or more of every command's start); loading must stay clear of it."""
    import subprocess
    import sys

    code = (
        "import sys; from musicgen_stem import MusicGenStem; m = MusicGenStem.default('cpu'); "
        "m.quantize('auto'); print(m.lm_precision, 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["int8", "False"]
