"""Source separation with a small random HTDemucs (pretrained weights cannot be downloaded here)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch

from musicgen_stem import separation
from musicgen_stem.errors import ModelError, OutputExistsError

SOURCES = ["drums", "bass", "other", "vocals"]


def small_htdemucs(seed: int = 0) -> torch.nn.Module:
    """A fast random HTDemucs (no transformer, 2 layers, 1 s segments)."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HTDemucs(sources=SOURCES, channels=8, depth=2, t_layers=0, nfft=512, segment=1, dconv_mode=0)
    return model.eval()


@pytest.fixture(scope="module")
def sep_model() -> torch.nn.Module:
    return separation.load_separator(small_htdemucs())


@pytest.mark.parametrize("channels,sr", [(1, 44100), (2, 44100), (1, 32000), (2, 32000)])
def test_separate_shapes_rate_channels(sep_model, channels, sr):
    wav = torch.randn(channels, int(sr * 1.3)) * 0.1
    out = separation.separate(sep_model, wav, sr)
    assert list(out) == SOURCES
    for w in out.values():
        assert w.shape == wav.shape
        assert w.dtype == torch.float32
        assert torch.isfinite(w).all()


def test_separate_deterministic(sep_model):
    wav = torch.randn(2, 32000 * 2) * 0.1
    a = separation.separate(sep_model, wav, 32000)
    b = separation.separate(sep_model, wav, 32000)
    assert all(torch.equal(a[s], b[s]) for s in SOURCES)


def test_separate_silence(sep_model):
    out = separation.separate(sep_model, torch.zeros(1, 8000), 16000)
    assert all(torch.isfinite(w).all() and w.shape == (1, 8000) for w in out.values())


def test_separate_file_layout_and_force(sep_model, tmp_path):
    song = tmp_path / "My Song.flac"
    sf.write(song, (torch.randn(24000, 2) * 0.1).numpy(), 24000)
    paths = separation.separate_file(song, tmp_path / "out", sep_model)
    folder = tmp_path / "out" / "My Song"
    assert sorted(paths) == sorted(SOURCES)
    assert {p.name for p in folder.iterdir()} == {f"{s}.wav" for s in SOURCES}
    info = sf.info(folder / "bass.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (24000, 2, 24000, "FLOAT")
    with pytest.raises(OutputExistsError, match="--force"):
        separation.separate_file(song, tmp_path / "out", sep_model)
    separation.separate_file(song, tmp_path / "out", sep_model, force=True, subtype="PCM_24")
    assert sf.info(folder / "drums.wav").subtype == "PCM_24"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_cli_run(sep_model, tmp_path, monkeypatch):
    song = tmp_path / "a.wav"
    sf.write(song, (torch.randn(16000) * 0.1).numpy(), 16000)
    monkeypatch.setattr(separation, "load_separator", lambda name, device=None: sep_model)
    parser = argparse.ArgumentParser()
    separation.add_arguments(parser)
    args = parser.parse_args([str(song), "--out", str(tmp_path / "o"), "-q"])
    assert separation.run(args) == 0
    assert sf.info(tmp_path / "o" / "a" / "vocals.wav").channels == 1
    with pytest.raises(OutputExistsError):
        separation.run(args)


def test_missing_separator_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import torch.hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ModelError, match=r"955717e8-8726e21a\.th.*--separator"):
        separation.load_separator("htdemucs")
    with pytest.raises(ModelError, match="not found"):
        separation.load_separator(str(tmp_path / "nope.th"))


def test_load_local_th_file_and_folder(tmp_path):
    from demucs.states import get_state

    model = small_htdemucs(seed=1)
    args, kwargs = model._init_args_kwargs  # what demucs' serialize_model stores
    pkg = {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    torch.save(pkg, tmp_path / "955717e8-deadbeef.th")
    wav = torch.randn(2, 16000) * 0.1
    ref = separation.separate(model, wav, 16000)
    for where in (tmp_path / "955717e8-deadbeef.th", tmp_path):
        loaded = separation.load_separator(Path(where))
        out = separation.separate(loaded, wav, 16000)
        assert all(torch.equal(out[s], ref[s]) for s in SOURCES)
    (tmp_path / "bad.th").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load separator weights"):
        separation.load_separator(tmp_path / "bad.th")
