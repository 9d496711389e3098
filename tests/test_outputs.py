"""Tests for musicgen_stem.outputs: the stems output folder (write, atomicity, batch, read back)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import audio
from musicgen_stem.errors import MusicGenStemError, OutputExistsError
from musicgen_stem.outputs import (
    PEAK_LIMIT,
    StemsItem,
    batch_folder_name,
    read_stems_folder,
    write_batch_folders,
    write_stems_folder,
)

SR = 32000
STEMS = ("bass", "drums", "other")
LSB = 1 / 32768


def _stems(seed: int = 0, amp: float = 0.1, length: int = 3200, channels: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: amp * torch.randn(channels, length, generator=g).clamp(-3, 3) for name in STEMS}


def _codes(k: int = 6, t: int = 10) -> np.ndarray:
    return np.arange(k * t, dtype=np.int32).reshape(k, t) % 2048


def _read(path: Path) -> np.ndarray:
    data, sr = sf.read(path, dtype="float64", always_2d=True)
    assert sr == SR
    return data.T  # [C, T]


def _no_temp_dirs(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".tmp-")]


def test_write_folder_contents(tmp_path: Path) -> None:
    stems = _stems()
    out = write_stems_folder(tmp_path / "song", stems, SR, _codes(), {"prompt": "funky bass – ünïcode"})
    assert out == tmp_path / "song"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["bass.wav", "drums.wav", "other.wav", "mix.wav", "codes.npy", "meta.json", "stems.mid"]
    )
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["prompt"] == "funky bass – ünïcode"
    assert meta["sample_rate"] == SR and meta["num_samples"] == 3200 and meta["duration"] == 0.1
    assert meta["stems"] == list(STEMS) and meta["gain"] == 1.0 and meta["channels"] == 1
    assert "ü" in (out / "meta.json").read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    codes = np.load(out / "codes.npy")
    assert codes.dtype == np.int64 and np.array_equal(codes, _codes())
    wavs = {name: _read(out / f"{name}.wav") for name in STEMS}
    for name in STEMS:  # no gain, no normalisation: the stems as given, up to quantisation
        assert np.abs(wavs[name] - stems[name].numpy()).max() <= 2 * LSB
    mix = _read(out / "mix.wav")
    assert np.abs(mix - sum(wavs.values())).max() <= 1e-12  # exact on the PCM grid
    assert np.abs(mix - sum(s.numpy() for s in stems.values())).max() <= 3 * LSB
    assert _no_temp_dirs(tmp_path)


def test_unequal_lengths_are_padded(tmp_path: Path) -> None:
    stems = _stems()
    stems["drums"] = stems["drums"][:, :3000]
    out = write_stems_folder(tmp_path / "o", stems, SR, _codes(), {})
    lengths = {sf.info(str(out / f"{n}.wav")).frames for n in (*STEMS, "mix")}
    assert lengths == {3200}
    assert np.all(_read(out / "drums.wav")[:, 3000:] == 0)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_shared_gain_when_too_loud(tmp_path: Path, subtype: str) -> None:
    stems = _stems(amp=0.6)  # the mix peaks well above 1
    raw_mix = sum(s.numpy().astype(np.float64) for s in stems.values())
    peak = max(np.abs(raw_mix).max(), *(s.abs().max().item() for s in stems.values()))
    assert peak > 1
    out = write_stems_folder(tmp_path / "o", stems, SR, _codes(), {}, subtype=subtype)
    meta = read_stems_folder(out).meta
    gain = meta["gain"]
    assert gain == pytest.approx(PEAK_LIMIT / peak) and meta["subtype"] == subtype
    wavs = {name: _read(out / f"{name}.wav") for name in STEMS}
    mix = _read(out / "mix.wav")
    assert np.abs(mix).max() <= PEAK_LIMIT + 1e-4
    assert all(np.abs(w).max() <= PEAK_LIMIT + 1e-4 for w in wavs.values())
    assert np.abs(mix - sum(wavs.values())).max() <= 1e-9  # mix == sum of stems
    assert np.abs(mix - gain * raw_mix).max() <= 3 * LSB  # one shared gain, no clipping
    for name in STEMS:
        assert np.abs(wavs[name] - gain * stems[name].numpy()).max() <= 2 * LSB


def test_gain_also_for_a_loud_stem_with_quiet_mix(tmp_path: Path) -> None:
    x = torch.full((1, 100), 0.8)
    stems = {"bass": 1.5 * x, "drums": -x, "other": -0.5 * x}  # mix = 0, bass peaks at 1.2
    out = write_stems_folder(tmp_path / "o", stems, SR, _codes(), {})
    gain = json.loads((out / "meta.json").read_text())["gain"]
    assert gain == pytest.approx(PEAK_LIMIT / 1.2)
    assert np.abs(_read(out / "bass.wav")).max() <= PEAK_LIMIT


def test_float_output_needs_no_gain(tmp_path: Path) -> None:
    stems = _stems(amp=0.6, channels=2)
    out = write_stems_folder(tmp_path / "o", stems, SR, torch.from_numpy(_codes()), {}, subtype="FLOAT")
    folder = read_stems_folder(out)
    assert folder.meta["gain"] == 1.0 and folder.meta["channels"] == 2
    loaded = folder.load_stems()
    assert list(loaded) == list(STEMS)
    assert all(torch.equal(loaded[n], stems[n]) for n in STEMS)
    mix = folder.load_mix()
    assert torch.allclose(mix, sum(stems.values()), atol=1e-6)


def test_refuses_existing_folder(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "bass.wav").write_bytes(b"precious")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force") as info:
        write_stems_folder(out, _stems(), SR, _codes(), {})
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "notes.txt"]
    assert (out / "bass.wav").read_bytes() == b"precious"
    assert _no_temp_dirs(tmp_path)
    # With force: our files are replaced, other files are kept.
    write_stems_folder(out, _stems(), SR, _codes(), {"take": 2}, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert read_stems_folder(out).meta["take"] == 2
    assert sf.info(str(out / "bass.wav")).frames == 3200
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["bass.wav", "drums.wav", "other.wav", "mix.wav", "codes.npy", "meta.json", "notes.txt", "stems.mid"]
    )
    assert _no_temp_dirs(tmp_path)


def test_empty_existing_folder_and_new_parents(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_stems_folder(tmp_path / "empty", _stems(), SR, _codes(), {})
    assert (tmp_path / "empty" / "mix.wav").is_file()
    deep = tmp_path / "a" / "b" / "c"
    write_stems_folder(deep, _stems(), SR, _codes(), {})
    assert (deep / "codes.npy").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert deep.stat().st_mode & 0o777 == 0o777 & ~umask  # like a plain mkdir, not 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        write_stems_folder(tmp_path / "file", _stems(), SR, _codes(), {}, force=True)


def _fail_after(real_save: Callable[..., Path], n_ok: int) -> Callable[..., Path]:
    """A save_audio that writes `n_ok` files, then raises."""
    count = [0]

    def save(*args: Any, **kwargs: Any) -> Path:
        count[0] += 1
        if count[0] > n_ok:
            raise RuntimeError("disk on fire")
        return real_save(*args, **kwargs)

    return save


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = audio.save_audio
    monkeypatch.setattr(audio, "save_audio", _fail_after(real_save, 2))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_stems_folder(tmp_path / "o", _stems(), SR, _codes(), {})
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temp dir

    # With force over an existing folder, a failure leaves the old content untouched.
    monkeypatch.setattr(audio, "save_audio", real_save)
    write_stems_folder(tmp_path / "old", _stems(seed=1), SR, _codes(), {"v": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    monkeypatch.setattr(audio, "save_audio", _fail_after(real_save, 3))
    with pytest.raises(RuntimeError):
        write_stems_folder(tmp_path / "old", _stems(seed=2), SR, _codes(), {"v": 2}, force=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before
    assert _no_temp_dirs(tmp_path)

    # Batch: a failure in the second variation leaves no batch folder at all.
    items = [StemsItem(_stems(seed=i), _codes(), {}) for i in range(2)]
    monkeypatch.setattr(audio, "save_audio", _fail_after(real_save, 5))  # var_00 has 4 wavs
    with pytest.raises(RuntimeError):
        write_batch_folders(tmp_path / "batch", items, SR)
    assert not (tmp_path / "batch").exists() and _no_temp_dirs(tmp_path)


def test_invalid_inputs_write_nothing(tmp_path: Path) -> None:
    bad_cases = [
        ({"bass": torch.zeros(100)}, _codes(), {}),  # not [C, T]
        ({"bass": torch.tensor([[0.0, float("nan")]])}, _codes(), {}),
        ({"mix": torch.zeros(1, 10)}, _codes(), {}),  # reserved name
        ({"../x": torch.zeros(1, 10)}, _codes(), {}),
        ({"bass": torch.zeros(1, 10), "drums": torch.zeros(2, 10)}, _codes(), {}),
        ({"bass": torch.zeros(1, 10)}, np.zeros((2, 3), dtype=np.float32), {}),  # float codes
        ({"bass": torch.zeros(1, 10)}, np.zeros(3, dtype=np.int64), {}),  # 1-D codes
        ({"bass": torch.zeros(1, 10)}, _codes(), {"x": object()}),  # not JSON
        ({}, _codes(), {}),
    ]
    for stems, codes, meta in bad_cases:
        with pytest.raises(ValueError):
            write_stems_folder(tmp_path / "o", stems, SR, codes, meta)
    assert list(tmp_path.iterdir()) == []


def test_meta_json_conversions(tmp_path: Path) -> None:
    meta = {
        "seed": np.int64(3),
        "cfg": np.float32(3.0),
        "path": tmp_path,
        "delays": (0, 1),
        "t": torch.ones(2),
    }
    out = write_stems_folder(tmp_path / "o", _stems(), SR, _codes(), meta)
    got = read_stems_folder(out).meta
    assert got["seed"] == 3 and got["cfg"] == 3.0 and got["path"] == str(tmp_path)
    assert got["delays"] == [0, 1] and got["t"] == [1.0, 1.0]


def test_batch_folders(tmp_path: Path) -> None:
    items = [
        StemsItem(_stems(seed=i, amp=0.1 + 0.4 * i), _codes(t=10 + i), {"prompt": "p"}) for i in range(3)
    ]
    paths = write_batch_folders(tmp_path / "b", items, SR)
    assert [p.name for p in paths] == ["var_00", "var_01", "var_02"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["var_00", "var_01", "var_02"]
    for i, p in enumerate(paths):
        folder = read_stems_folder(p)
        assert folder.meta["variation"] == i and folder.meta["batch_size"] == 3
        assert folder.meta["prompt"] == "p" and folder.codes.shape == (6, 10 + i)
        assert np.abs(_read(p / "mix.wav") - sum(_read(p / f"{n}.wav") for n in STEMS)).max() <= 1e-9
    gains = [read_stems_folder(p).meta["gain"] for p in paths]
    assert gains[0] == 1.0 and gains[2] < 1.0  # gain per variation, only when needed
    with pytest.raises(OutputExistsError):
        write_batch_folders(tmp_path / "b", items[:1], SR)
    write_batch_folders(tmp_path / "b", [(it.stems, it.codes, it.meta) for it in items[:2]], SR, force=True)
    assert read_stems_folder(tmp_path / "b" / "var_01").meta["batch_size"] == 2
    assert _no_temp_dirs(tmp_path)
    assert batch_folder_name(0, 1) == "var_00" and batch_folder_name(7, 150) == "var_007"
    with pytest.raises(ValueError):
        write_batch_folders(tmp_path / "c", [], SR)


def test_read_errors(tmp_path: Path) -> None:
    def err(path: Path) -> str:
        with pytest.raises(MusicGenStemError) as info:
            read_stems_folder(path)
        msg = str(info.value)
        assert "\n" not in msg and ";" in msg
        return msg

    assert "not found" in err(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    assert "not a folder" in err(tmp_path / "f.txt")
    d = tmp_path / "d"
    d.mkdir()
    assert err(d) == f"'{d}' is not a musicgen-stem output folder: codes.npy missing; " + (
        "give the output folder of a generation or edit"
    )
    np.save(d / "codes.npy", _codes())
    assert "meta.json missing" in err(d)
    (d / "meta.json").write_text("{not json")
    assert "meta.json is not valid JSON" in err(d)
    (d / "meta.json").write_text("[1, 2]")
    assert "JSON object" in err(d)
    (d / "meta.json").write_text(json.dumps({"stems": ["bass"]}))
    assert "sample_rate" in err(d)
    (d / "meta.json").write_text(json.dumps({"sample_rate": SR}))
    assert "stems" in err(d)
    (d / "codes.npy").write_bytes(b"garbage")
    assert "codes.npy is unreadable" in err(d)
    np.save(d / "codes.npy", np.zeros((2, 3), dtype=np.float32))
    assert "integers shaped [K, T]" in err(d)
    # A batch folder gets a hint.
    write_batch_folders(tmp_path / "b", [StemsItem(_stems(), _codes(), {})], SR)
    assert "var_NN" in err(tmp_path / "b")
    # Missing audio file or unknown stem when loading.
    folder = read_stems_folder(tmp_path / "b" / "var_00")
    assert folder.stems == list(STEMS) and folder.sample_rate == SR
    with pytest.raises(MusicGenStemError, match="no stem 'vocals'"):
        folder.load_stems(["vocals"])
    (folder.path / "drums.wav").unlink()
    with pytest.raises(MusicGenStemError, match="file not found"):
        folder.load_stems()
    assert set(folder.load_stems(["bass", "mix"])) == {"bass", "mix"}
