"""Kept audio comes back bit-exact: users' stems (--stem, app uploads), separated stems (--song)
and vocals keep their samples, rate, channels and sample format; never scaled. New stems and the
mix lose nothing of them (float by default); a mix a format cannot hold is scaled alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.cli import main
from musicgen_stem.outputs import PEAK_LIMIT, read_stems_folder, write_stems_folder
from musicgen_stem.samples import Samples, lossless_subtype, read_kept, read_samples, write_samples

INT = {"PCM_16", "PCM_24", "PCM_32", "PCM_U8"}


def make_input(
    path: Path, subtype: str, channels: int, sr: int, seconds: float = 0.6, amp: float = 0.9, seed: int = 0
) -> Path:
    """A noisy tone in the given sample format (float inputs above full scale too)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = amp * np.sin(2 * np.pi * 220 * (1 + seed) * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    if subtype in INT:
        x = np.clip(x, -1, 1)
    sf.write(path, x, sr, subtype=subtype, format=path.suffix[1:].upper())
    return path


def same_samples(a: Path, b: Path) -> None:
    """Same rate, channels, frames, sample format and samples (compared as stored)."""
    ia, ib = sf.info(str(a)), sf.info(str(b))
    subtype = {"PCM_S8": "PCM_U8"}.get(ia.subtype, ia.subtype)
    assert (ib.samplerate, ib.channels, ib.frames, ib.subtype) == (
        ia.samplerate,
        ia.channels,
        ia.frames,
        subtype,
    )
    dtype = "int32" if subtype in INT else "float64"
    np.testing.assert_array_equal(sf.read(str(b), dtype=dtype)[0], sf.read(str(a), dtype=dtype)[0])


def _codes() -> np.ndarray:
    return np.zeros((6, 10), dtype=np.int64)


# ---------------------------------------------------------------------------- the writers


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_kept_stems_written_bit_exact(tmp_path: Path, subtype: str, channels: int, sr: int):
    drums = make_input(tmp_path / "drums.wav", subtype, channels, sr)
    vocals = make_input(
        tmp_path / "vocals.flac" if subtype in ("PCM_16", "PCM_24") else tmp_path / "v.wav",
        subtype,
        channels,
        sr,
        seed=1,
    )
    kept, rate = read_kept({"drums": drums, "vocals": vocals})
    assert rate == sr and all(s.channels == channels for s in kept.values())
    n = kept["drums"].frames
    g = torch.Generator().manual_seed(0)
    new = {s: 0.8 * torch.randn(channels, n, generator=g).clamp(-1, 1) for s in ("bass", "other")}
    stems = {
        "bass": new["bass"],
        "drums": kept["drums"].to_tensor(),
        "other": new["other"],
        "vocals": kept["vocals"].to_tensor(),
    }
    out_subtype = lossless_subtype(kept.values())
    out = write_stems_folder(tmp_path / "o", stems, rate, _codes(), {}, subtype=out_subtype, kept=kept)
    same_samples(drums, out / "drums.wav")
    same_samples(vocals, out / "vocals.wav")
    meta = read_stems_folder(out).meta
    assert meta["kept"] == ["drums", "vocals"] and meta["gain"] == 1.0 and meta["mix_gain"] == 1.0
    assert meta["subtypes"]["drums"] == sf.info(str(drums)).subtype
    assert (
        meta["subtypes"]["mix"] == out_subtype == ("DOUBLE" if subtype in ("PCM_32", "DOUBLE") else "FLOAT")
    )
    mix = sf.read(str(out / "mix.wav"), dtype="float64", always_2d=True)[0].T
    total = sum(s.to_float64() for s in kept.values()) + sum(
        x.numpy().astype(np.float64) for x in new.values()
    )
    assert np.abs(mix).max() > 1.0  # a mix above full scale, held by float without any scaling
    np.testing.assert_allclose(mix, total, atol=1e-6 if out_subtype == "FLOAT" else 1e-12)


def test_integer_mix_is_scaled_alone_and_said_so(tmp_path: Path):
    drums = make_input(tmp_path / "drums.wav", "PCM_24", 2, 44100, amp=0.95)
    kept, sr = read_kept({"drums": drums})
    bass = 0.9 * torch.ones(2, kept["drums"].frames)
    out = write_stems_folder(
        tmp_path / "o",
        {"bass": bass, "drums": kept["drums"].to_tensor()},
        sr,
        _codes(),
        {},
        subtype="PCM_16",
        kept=kept,
    )
    same_samples(drums, out / "drums.wav")  # untouched, still 24-bit
    meta = json.loads((out / "meta.json").read_text())
    assert meta["gain"] == 1.0 and 0 < meta["mix_gain"] < 1 and meta["subtypes"]["mix"] == "PCM_16"
    assert np.abs(sf.read(str(out / "bass.wav"))[0] - 0.9).max() < 1e-4  # the new stem is not scaled
    mix = sf.read(str(out / "mix.wav"), always_2d=True)[0].T
    expected = (kept["drums"].to_float64() + 0.9) * meta["mix_gain"]
    assert np.abs(mix).max() <= PEAK_LIMIT + 1e-4 and np.abs(mix - expected).max() < 1e-4


def test_samples_round_trip_every_format(tmp_path: Path):
    for subtype, ext in [
        ("PCM_16", "wav"),
        ("PCM_24", "flac"),
        ("PCM_U8", "wav"),
        ("PCM_S8", "aiff"),
        ("FLOAT", "wav"),
        ("DOUBLE", "wav"),
    ]:
        src = make_input(tmp_path / f"in_{subtype}.{ext}", subtype, 2, 48000, seconds=0.05)
        write_samples(tmp_path / "out.wav", read_samples(src))
        same_samples(src, tmp_path / "out.wav")
    lossy = Samples.from_tensor(torch.tensor([[0.5, 1.5]]), 8000)
    assert lossy.subtype == "FLOAT" and lossy.to_tensor().dtype == torch.float32


def test_mismatched_stems_are_refused_not_converted(tmp_path: Path):
    from musicgen_stem.errors import AudioError

    a = make_input(tmp_path / "a.wav", "PCM_16", 2, 44100, seconds=0.05)
    b = make_input(tmp_path / "b.wav", "PCM_16", 2, 48000, seconds=0.05)
    c = make_input(tmp_path / "c.wav", "PCM_16", 1, 44100, seconds=0.05)
    with pytest.raises(AudioError, match="sample rate.*a: 44100 Hz, b: 48000 Hz"):
        read_kept({"a": a, "b": b})
    with pytest.raises(AudioError, match="channels"):
        read_kept({"a": a, "c": c})


# ---------------------------------------------------------------------------- the CLI


def _edit(model_dir: Path, out: Path, *args: str) -> int:
    return main(
        ["edit", "new parts", "--model", str(model_dir), *args, "--seed", "1", "-q", "--out", str(out)]
    )


@pytest.mark.parametrize(
    "subtype,channels,sr", [("PCM_24", 2, 44100), ("PCM_16", 1, 48000), ("FLOAT", 2, 48000)]
)
def test_cli_stem_edit_returns_given_stems_untouched(tiny_model_dir, tmp_path, subtype, channels, sr):
    """The issue's case: drums and vocals given, bass and other regenerated."""
    drums = make_input(tmp_path / "drums.wav", subtype, channels, sr, amp=0.98)
    vocals = make_input(tmp_path / "vocals.wav", subtype, channels, sr, amp=0.98, seed=1)
    before = drums.read_bytes(), vocals.read_bytes()
    out = tmp_path / "out"
    rc = _edit(
        tiny_model_dir,
        out,
        "--stem",
        f"drums={drums}",
        "--stem",
        f"vocals={vocals}",
        "--regenerate",
        "bass",
        "other",
    )
    assert rc == 0
    same_samples(drums, out / "drums.wav")
    same_samples(vocals, out / "vocals.wav")
    assert (drums.read_bytes(), vocals.read_bytes()) == before
    meta = json.loads((out / "meta.json").read_text())
    assert (
        meta["subtypes"]["mix"] == "FLOAT" and meta["mix_gain"] == 1.0 and meta["kept"] == ["drums", "vocals"]
    )
    mix = sf.read(str(out / "mix.wav"), always_2d=True)[0]
    parts = sum(
        sf.read(str(out / f"{s}.wav"), always_2d=True)[0] for s in ("bass", "drums", "other", "vocals")
    )
    assert np.abs(mix - parts).max() < 1e-6  # the mix is the plain sum, above 0 dBFS if need be


def test_cli_range_edit_keeps_everything_outside(tiny_model_dir, tmp_path):
    drums = make_input(tmp_path / "drums.wav", "PCM_24", 2, 44100, seconds=1.0)
    other = make_input(tmp_path / "other.wav", "PCM_24", 2, 44100, seconds=1.0, seed=2)
    out = tmp_path / "out"
    rc = _edit(
        tiny_model_dir,
        out,
        "--stem",
        f"drums={drums}",
        "--stem",
        f"other={other}",
        "--regenerate",
        "bass",
        "--start",
        "0.3",
        "--end",
        "0.6",
        "--bits",
        "24",
    )
    assert rc == 0
    same_samples(drums, out / "drums.wav")
    same_samples(other, out / "other.wav")
    assert sf.info(str(out / "bass.wav")).subtype == "PCM_24"  # --bits sets the new stems' format


def test_cli_song_edit_returns_separated_stems_exactly(tiny_model_dir, tmp_path):
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state

    from musicgen_stem.audio import load_audio
    from musicgen_stem.separation import separate

    torch.manual_seed(0)
    sep = HTDemucs(
        sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=0, nfft=512, segment=1
    ).eval()
    args, kwargs = sep._init_args_kwargs
    weights = tmp_path / "sep.th"
    torch.save({"klass": type(sep), "args": args, "kwargs": kwargs, "state": get_state(sep, None)}, weights)
    song = make_input(tmp_path / "song.wav", "PCM_16", 2, 48000, seconds=0.8)
    out = tmp_path / "out"
    assert (
        _edit(tiny_model_dir, out, "--song", str(song), "--separator", str(weights), "--regenerate", "bass")
        == 0
    )
    sources = separate(sep, load_audio(song)[0], 48000)
    for name in ("drums", "other", "vocals"):
        got, sr = sf.read(str(out / f"{name}.wav"), dtype="float32", always_2d=True)
        assert sr == 48000 and sf.info(str(out / f"{name}.wav")).subtype == "FLOAT"
        np.testing.assert_array_equal(got.T, sources[name].numpy())


# ------------------------------------------------------- new stems never below the model's rate


def test_cli_low_rate_stem_edit_writes_new_stems_at_the_model_rate(tiny_model, tiny_model_dir, tmp_path):
    """An 8 kHz bass kept: it comes back bit-exact at 8 kHz; the new stems and the mix are at the
    model's rate (not 8 kHz), and meta.json gives each file's rate; `export` packs every file at
    the highest rate."""
    bass = make_input(tmp_path / "bass8k.wav", "PCM_16", 1, 8000, seconds=1.0)
    out = tmp_path / "out"
    assert _edit(tiny_model_dir, out, "--stem", f"bass={bass}", "--regenerate", "drums", "other") == 0
    same_samples(bass, out / "bass.wav")
    model_sr = tiny_model.sample_rate
    for name in ("drums", "other", "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert (info.samplerate, info.frames) == (model_sr, model_sr)  # 1 s at the model's rate
    meta = json.loads((out / "meta.json").read_text())
    rates = {"bass": 8000, "drums": model_sr, "other": model_sr, "mix": model_sr}
    assert meta["sample_rates"] == rates and meta["sample_rate"] == model_sr
    assert meta["num_samples"] == model_sr and meta["duration"] == 1.0
    folder = read_stems_folder(out)
    stems = folder.load_stems()  # each file at its own rate
    assert stems["bass"].shape[-1] == 8000 and folder.rate_of("bass") == 8000
    from musicgen_stem.audio import convert_audio

    parts = convert_audio(stems["bass"], 8000, model_sr, 1) + stems["drums"] + stems["other"]
    assert torch.allclose(folder.load_mix(), parts, atol=1e-6)  # the mix: the sum at the highest rate
    pack = tmp_path / "pack"
    assert main(["export", str(out), "--out", str(pack), "--format", "wav"]) == 0
    assert {sf.info(str(pack / f"{n}.wav")).samplerate for n in rates} == {model_sr}


def test_kept_pack_writes_each_file_at_its_rate(tmp_path: Path):
    """The app's writer (a stem pack with kept stems): a kept 8 kHz stem exactly as read, the new
    stems at theirs (32 kHz), the mix at the highest; the sidecar gives each file's rate."""
    from musicgen_stem.export import export_stem_pack

    kept = read_samples(make_input(tmp_path / "bass.wav", "PCM_16", 1, 8000, seconds=0.5))
    drums = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 16000)) * 0.1)
    result = export_stem_pack(
        tmp_path / "pack",
        {"bass": torch.zeros(1, 4000), "drums": drums},
        8000,
        bit_depth="float",
        kept={"bass": kept},
        rates={"drums": 32000},
    )
    same_samples(tmp_path / "bass.wav", result.files["bass"])
    assert sf.info(str(result.files["drums"])).samplerate == 32000
    assert sf.info(str(result.files["mix"])).samplerate == 32000 and result.sample_rate == 32000
    assert result.num_samples == 16000
    rates = {f["name"]: f["sample_rate"] for f in result.sidecar_data["files"] if f.get("name")}
    assert rates == {"bass": 8000, "drums": 32000, "mix": 32000}
