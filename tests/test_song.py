"""Editing real songs: separated kept stems and vocals untouched, song rate/channels/length kept,
time-range edits bit-exact outside the range; the CLI's --song path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import separation
from musicgen_stem.cli import main
from musicgen_stem.errors import AudioError
from musicgen_stem.song import crossfade_into, edit_song, edit_stems

SR = 44100


def small_separator(seed: int = 0) -> torch.nn.Module:
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HTDemucs(
            sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=0, nfft=512, segment=1
        )
    return model.eval()


@pytest.fixture(scope="module")
def song() -> torch.Tensor:
    t = torch.arange(int(1.2 * SR)) / SR
    left = 0.3 * torch.sin(2 * torch.pi * 110 * t) + 0.1 * torch.randn(
        t.shape, generator=torch.Generator().manual_seed(0)
    )
    return torch.stack([left, 0.8 * left])  # [2, T] stereo


def test_crossfade_keeps_outside_untouched():
    old, new = torch.zeros(1, 100), torch.ones(1, 100)
    out = crossfade_into(old, new, 20, 60, 5)
    assert torch.equal(out[:, :20], old[:, :20]) and torch.equal(out[:, 60:], old[:, 60:])
    assert torch.equal(out[:, 25:55], new[:, 25:55])
    assert (out[:, 20:25] < 1).all() and (out[:, 20:25] > 0).all()  # fades in, no jump
    assert (torch.diff(out[0, 20:25]) > 0).all()


def test_song_edit_returns_every_stem_untouched_but_the_new_one(tiny_model, song):
    sep = small_separator()
    sources = separation.separate(sep, song, SR)
    edit = edit_song(tiny_model, song, SR, ["bass"], ["a new bass"], sep, seed=1)
    assert list(edit.stems) == ["bass", "drums", "other", "vocals"]
    for name in ("drums", "other", "vocals"):  # untouched, sample for sample (vocals included)
        assert torch.equal(edit.stems[name], sources[name])
    for w in edit.stems.values():
        assert w.shape == song.shape and w.dtype == torch.float32
    assert not torch.equal(edit.stems["bass"], sources["bass"])
    assert torch.allclose(edit.mix, sum(edit.stems.values()))
    assert edit.sample_rate == SR and edit.codes.shape[0] == 6


def test_time_range_edit_is_bit_exact_outside(tiny_model, song):
    sep = small_separator()
    sources = separation.separate(sep, song, SR)
    edit = edit_stems(tiny_model, sources, SR, ["drums"], ["fill"], start=0.4, end=0.8, seed=2)
    a, b = int(0.4 * SR), int(0.8 * SR)
    assert torch.equal(edit.stems["drums"][:, :a], sources["drums"][:, :a])
    assert torch.equal(edit.stems["drums"][:, b:], sources["drums"][:, b:])
    assert not torch.equal(edit.stems["drums"][:, a:b], sources["drums"][:, a:b])
    for name in ("bass", "other", "vocals"):
        assert torch.equal(edit.stems[name], sources[name])


def test_song_input_errors(tiny_model):
    sep = small_separator()
    with pytest.raises(AudioError, match="silent"):
        edit_song(tiny_model, torch.zeros(2, SR), SR, ["bass"], ["x"], sep)
    with pytest.raises(AudioError, match="at least"):
        edit_song(tiny_model, torch.randn(2, 100), SR, ["bass"], ["x"], sep)


def test_cli_song_edit(tiny_model_dir, song, tmp_path: Path):
    from demucs.states import get_state

    sep = small_separator()
    args, kwargs = sep._init_args_kwargs
    weights = tmp_path / "sep.th"
    torch.save({"klass": type(sep), "args": args, "kwargs": kwargs, "state": get_state(sep, None)}, weights)
    song_file = tmp_path / "song.flac"
    sf.write(song_file, song.T.numpy(), SR, subtype="PCM_24")
    before = song_file.read_bytes()
    out = tmp_path / "edited"
    argv = [
        "edit",
        "new drums",
        "--model",
        str(tiny_model_dir),
        "--song",
        str(song_file),
        "--regenerate",
        "drums",
    ]
    rc = main(
        argv
        + [
            "--separator",
            str(weights),
            "--bars",
            "2-2",
            "--bpm",
            "240",
            "--seed",
            "3",
            "-q",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert song_file.read_bytes() == before  # the input is never touched
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "bass.wav",
        "codes.npy",
        "drums.wav",
        "meta.json",
        "mix.wav",
        "other.wav",
        "stems.mid",
        "vocals.wav",
    ]
    infos = [sf.info(str(out / n)) for n in names if n.endswith(".wav")]
    assert {(i.samplerate, i.channels, i.frames) for i in infos} == {(SR, 2, song.shape[1])}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["range"] == [1.0, 2.0] and len(meta["song_sha256"]) == 64
    wav, _ = sf.read(str(out / "mix.wav"), always_2d=True)
    parts = sum(
        sf.read(str(out / f"{s}.wav"), always_2d=True)[0] for s in ("bass", "drums", "other", "vocals")
    )
    assert np.abs(wav - parts).max() < 4 / 32767
    assert main(argv + ["--separator", str(weights), "-q", "--out", str(out)]) == 2  # never overwrites
