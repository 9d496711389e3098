"""Stem pack export: formats, shared gain, resampling, zip, .stem.mp4, atomicity and errors."""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import audio, export, outputs
from musicgen_stem.errors import MusicGenStemError, OutputExistsError
from musicgen_stem.export import export_stem_pack, file_sha256, ni_stems

SR = 32000


def _tone(freq: float, amp: float, channels: int = 2, seconds: float = 0.5, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    wav = amp * torch.sin(2 * torch.pi * freq * t)
    return torch.stack([wav * (1 - 0.2 * c) for c in range(channels)]).float()  # [C, T]


def _stems(amp: float = 0.2, channels: int = 2, seconds: float = 0.5) -> dict[str, torch.Tensor]:
    return {
        "bass": _tone(110, amp, channels, seconds),
        "drums": _tone(330, amp, channels, seconds),
        "other": _tone(660, amp, channels, seconds),
    }


def _read(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return data.T, sr  # [C, T]


def _decode(path: Path, index: int = 0) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[index]
        chunks = [f.to_ndarray() for f in c.decode(stream)]
        return np.concatenate(chunks, axis=-1).astype(np.float64), stream.rate  # [C, T]


def _no_temp_dirs(parent: Path) -> bool:
    return not any(p.name.startswith(".tmp-") for p in parent.iterdir())


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    ("fmt", "bits", "subtype", "tol"),
    [
        ("wav", "16", "PCM_16", 0.0),
        ("wav", "24", "PCM_24", 0.0),
        ("wav", "float", "FLOAT", 1e-6),
        ("flac", "16", "PCM_16", 0.0),
        ("flac", "24", "PCM_24", 0.0),
        ("flac", None, "PCM_24", 0.0),
    ],
)
def test_lossless_round_trip(tmp_path: Path, fmt: str, bits: str | None, subtype: str, tol: float) -> None:
    stems = _stems()
    res = export_stem_pack(tmp_path / "pack", stems, SR, fmt=fmt, bit_depth=bits, meta={"prompt": "p"})
    assert res.gain == 1.0
    assert set(res.files) == {"bass", "drums", "other", "mix"}
    read = {n: _read(p) for n, p in res.files.items()}
    assert all(sr == SR for _, sr in read.values())
    assert {x.shape for x, _ in read.values()} == {(2, stems["bass"].shape[-1])}
    assert sf.info(str(res.files["mix"])).subtype == subtype
    total = sum(read[n][0] for n in stems)
    np.testing.assert_allclose(read["mix"][0], total, atol=tol)
    # No per-stem normalisation: the stem levels are kept (up to quantisation).
    np.testing.assert_allclose(read["bass"][0], stems["bass"].double().numpy(), atol=5e-5)
    side = json.loads(res.sidecar.read_text())
    assert side["format"] == fmt and side["bit_depth"] == (bits or "24") and side["gain"] == 1.0
    assert side["prompt"] == "p" and side["sample_rate"] == SR and side["channels"] == 2
    assert {f["file"] for f in side["files"]} == {f"{n}.{fmt}" for n in res.files} | {"stems.mid"}


def test_mp3_round_trip(tmp_path: Path) -> None:
    stems = _stems()
    res = export_stem_pack(tmp_path / "pack", stems, SR, fmt="mp3", out_rate=44100)
    length = stems["bass"].shape[-1] * 44100 // SR
    mix, sr = _decode(res.files["mix"])
    assert sr == 44100 and mix.shape[0] == 2
    assert abs(mix.shape[-1] - length) <= 1152  # at most one MP3 frame of slack
    for name in ("bass", "drums", "other"):
        x, _ = _decode(res.files[name])
        assert abs(x.shape[-1] - mix.shape[-1]) <= 1
    expected = torch.stack([stems[n] for n in stems]).sum(0).double().numpy()
    rms = np.sqrt(np.mean(mix**2))
    assert rms == pytest.approx(np.sqrt(np.mean(expected**2)), rel=0.1)
    side = json.loads(res.sidecar.read_text())
    assert side["bit_depth"] is None and side["bit_rate"] == 320000


# ---------------------------------------------------------------------------------- the gain
def test_shared_gain_only_when_needed(tmp_path: Path) -> None:
    stems = _stems(amp=0.5)  # mix peaks above 1, each stem below
    res = export_stem_pack(tmp_path / "pack", stems, SR, bit_depth="24")
    expected_peak = float(sum(s.double() for s in stems.values()).abs().max())
    assert res.gain == pytest.approx(outputs.PEAK_LIMIT / expected_peak)
    mix, _ = _read(res.files["mix"])
    assert np.abs(mix).max() <= outputs.PEAK_LIMIT + 1e-6
    for name, wav in stems.items():  # the same gain on every stem
        x, _ = _read(res.files[name])
        np.testing.assert_allclose(x, wav.double().numpy() * res.gain, atol=1e-6)
    assert json.loads(res.sidecar.read_text())["gain"] == pytest.approx(res.gain)
    # Float WAV does not clip: no gain unless a .stem.mp4 is written too.
    assert export_stem_pack(tmp_path / "f", stems, SR, bit_depth="float").gain == 1.0
    # A single loud stem also triggers it.
    assert export_stem_pack(tmp_path / "one", {"bass": _tone(110, 1.5)}, SR).gain < 1.0


# ------------------------------------------------------------------------ rates and channels
@pytest.mark.parametrize("rate", [44100, 48000])
def test_resample_and_mono_to_stereo(tmp_path: Path, rate: int) -> None:
    stems = _stems(channels=1)
    stems["drums"] = stems["drums"][:, :-7]  # shorter stems are padded
    res = export_stem_pack(tmp_path / "pack", stems, SR, out_rate=rate, channels=2, bit_depth="float")
    length = stems["bass"].shape[-1] * rate // SR
    assert res.num_samples == length and res.sample_rate == rate and res.channels == 2
    for path in res.files.values():
        x, sr = _read(path)
        assert sr == rate and x.shape == (2, length)
        np.testing.assert_array_equal(x[0], x[1])  # dual mono
    bass, _ = _read(res.files["bass"])
    assert np.sqrt(np.mean(bass**2)) == pytest.approx(0.2 / np.sqrt(2), rel=0.02)


def test_stereo_to_mono_averages(tmp_path: Path) -> None:
    stems = _stems()
    res = export_stem_pack(tmp_path / "pack", stems, SR, channels=1, bit_depth="float")
    bass, _ = _read(res.files["bass"])
    assert bass.shape[0] == 1
    np.testing.assert_allclose(bass[0], stems["bass"].double().mean(0).numpy(), atol=1e-6)


# ------------------------------------------------------------------------------ zip, stem.mp4
def test_zip_contents(tmp_path: Path) -> None:
    res = export_stem_pack(tmp_path / "pack", _stems(), SR, fmt="flac", zip=True)
    assert res.zip_path == tmp_path / "pack" / export.ZIP_FILE
    with zipfile.ZipFile(res.zip_path) as zf:
        names = set(zf.namelist())
        assert names == {"bass.flac", "drums.flac", "other.flac", "mix.flac", "stems.json", "stems.mid"}
        assert zf.read("mix.flac") == res.files["mix"].read_bytes()
        assert json.loads(zf.read("stems.json"))["format"] == "flac"


def test_stem_mp4(tmp_path: Path) -> None:
    import av

    stems = _stems(amp=0.5, seconds=0.4)
    res = export_stem_pack(tmp_path / "song", stems, SR, stem_mp4=True, bit_depth="float")
    assert res.gain < 1.0  # the .stem.mp4 can clip: gain applied even for float WAV
    assert res.stem_mp4 == tmp_path / "song" / "song.stem.mp4"
    with av.open(str(res.stem_mp4)) as c:
        streams = c.streams.audio
        assert len(streams) == 5
        assert all(s.rate == 44100 and s.channels == 2 and s.codec_context.name == "aac" for s in streams)
    # Stream 0 is the mix, at 44.1 kHz (AAC: compare the overlap, roughly).
    master, _ = _decode(res.stem_mp4, 0)
    expected = sum(s.double() for s in stems.values()).numpy() * res.gain
    import julius

    expected = julius.resample_frac(torch.from_numpy(expected), SR, 44100).numpy()
    n = expected.shape[-1]
    assert master.shape[-1] >= n
    err = np.sqrt(np.mean((master[:, :n] - expected) ** 2)) / np.sqrt(np.mean(expected**2))
    assert err < 0.1
    # Stems in NI order drums, bass, other, vocals; vocals is missing -> silent.
    drums, _ = _decode(res.stem_mp4, 1)
    vocals, _ = _decode(res.stem_mp4, 4)
    assert np.sqrt(np.mean(drums**2)) > 0.1 and np.abs(vocals).max() < 1e-4
    # The NI metadata box sits in moov/udta.
    data = res.stem_mp4.read_bytes()
    top = {k: (p, e) for k, _, p, e in ni_stems._iter_boxes(data, 0, len(data))}
    moov = {k: (p, e) for k, _, p, e in ni_stems._iter_boxes(data, *top[b"moov"])}
    udta = {k: (p, e) for k, _, p, e in ni_stems._iter_boxes(data, *moov[b"udta"])}
    p, e = udta[b"stem"]
    meta = json.loads(data[p:e])
    assert [s["name"] for s in meta["stems"]] == ["Drums", "Bass", "Other", "Vocals"]
    assert meta["version"] == 1 and "mastering_dsp" in meta
    side = json.loads(res.sidecar.read_text())
    assert any(f["role"] == "ni_stems" and f["file"] == "song.stem.mp4" for f in side["files"])


def test_stem_mp4_at_the_rate_asked_and_the_tempo_the_model_read(tmp_path: Path) -> None:
    import av

    meta = {"prompt": "funk", "beat_grid": {"bpm": 110.0, "first_beat": 0.2, "swing": 0.0}}
    res = export_stem_pack(tmp_path / "p", _stems(seconds=0.4), SR, out_rate=48000, stem_mp4=True, meta=meta)
    with av.open(str(res.stem_mp4)) as c:
        assert {s.rate for s in c.streams.audio} == {48000}
    side = json.loads(res.sidecar.read_text())
    assert side["tempo"] == 110.0
    assert next(f for f in side["files"] if f["role"] == "ni_stems")["sample_rate"] == 48000


# ------------------------------------------------------------------ sidecar, atomicity, CLI
def test_sidecar_meta_and_song_hash(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    song.write_bytes(b"not really audio")
    meta = {"prompt": "funk", "seed": 7, "model": "tiny", "params": {"top_k": 250}, "bpm": 120}
    res = export_stem_pack(tmp_path / "pack", _stems(), SR, meta=meta, source_song=song)
    side = json.loads(res.sidecar.read_text())
    assert side["seed"] == 7 and side["model"] == "tiny" and side["params"] == {"top_k": 250}
    assert side["tempo"] == 120 and side["source_sha256"] == file_sha256(song)
    assert side["duration"] == pytest.approx(0.5) and side["meta"]["prompt"] == "funk"


def test_refuses_existing_and_force(tmp_path: Path) -> None:
    out = tmp_path / "pack"
    export_stem_pack(out, _stems(), SR)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        export_stem_pack(out, _stems(), SR)
    res = export_stem_pack(out, _stems(amp=0.1), SR, force=True)
    assert (out / "keep.txt").read_text() == "mine"
    assert np.abs(_read(res.files["bass"])[0]).max() == pytest.approx(0.1, abs=1e-3)
    assert _no_temp_dirs(tmp_path)


def test_no_temp_dir_left_after_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def boom(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise MusicGenStemError("disk full")
        return Path(path)

    monkeypatch.setattr(audio, "save_audio", boom)
    with pytest.raises(MusicGenStemError, match="disk full"):
        export_stem_pack(tmp_path / "pack", _stems(), SR)
    assert not (tmp_path / "pack").exists() and _no_temp_dirs(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "ogg"}, "unknown export format"),
        ({"fmt": "flac", "bit_depth": "float"}, "not available for FLAC"),
        ({"fmt": "mp3", "bit_depth": "24"}, "not available for MP3"),
        ({"bit_depth": "8"}, "not available for WAV"),
        ({"out_rate": 0}, "invalid output rate"),
        ({"out_rate": 44100.0}, "invalid output rate"),
        ({"channels": 3}, "invalid channel count"),
        ({"fmt": "mp3", "out_rate": 96000}, "MP3 cannot be written"),
    ],
)
def test_option_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(MusicGenStemError, match=match):
        export_stem_pack(tmp_path / "pack", _stems(), SR, **kwargs)
    assert not (tmp_path / "pack").exists()


def test_stem_errors(tmp_path: Path) -> None:
    with pytest.raises(MusicGenStemError, match="no stems"):
        export_stem_pack(tmp_path / "p", {}, SR)
    with pytest.raises(MusicGenStemError, match="same channel count"):
        export_stem_pack(tmp_path / "p", {"bass": _tone(110, 0.1, 1), "drums": _tone(110, 0.1, 2)}, SR)
    with pytest.raises(MusicGenStemError, match="zero samples"):
        export_stem_pack(tmp_path / "p", {"bass": torch.zeros(2, 0)}, SR)
    with pytest.raises(MusicGenStemError, match="invalid stem name"):
        export_stem_pack(tmp_path / "p", {"mix": _tone(110, 0.1)}, SR)
    bad = _tone(110, 0.1)
    bad[0, 3] = float("nan")
    with pytest.raises(MusicGenStemError, match="NaN"):
        export_stem_pack(tmp_path / "p", {"bass": bad}, SR)
    with pytest.raises(MusicGenStemError, match="source song"):
        song = tmp_path / "p" / "song.wav"
        song.parent.mkdir()
        song.write_bytes(b"x")
        export_stem_pack(tmp_path / "p", {"bass": _tone(110, 0.1)}, SR, source_song=song, force=True)


def test_cli_export(tmp_path: Path) -> None:
    src = tmp_path / "gen"
    meta = {"prompt": "hi", "seed": 3, "song_sha256": "ab" * 32}  # as an edit of a song records it
    outputs.write_stems_folder(src, _stems(), SR, np.zeros((4, 10), np.int64), meta)
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(
        [
            str(src),
            "--out",
            str(tmp_path / "pack"),
            "--format",
            "flac",
            "--bits",
            "16",
            "--rate",
            "48000",
            "--zip",
        ]
    )
    assert export.run(args) == 0
    side = json.loads((tmp_path / "pack" / "stems.json").read_text())
    assert side["prompt"] == "hi" and side["seed"] == 3 and side["sample_rate"] == 48000
    assert side["source_sha256"] == "ab" * 32
    assert (tmp_path / "pack" / "stems.zip").is_file()
    with pytest.raises(OutputExistsError, match="source folder"):
        export.run(parser.parse_args([str(src), "--out", str(src), "--force"]))


def test_missing_encoder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    monkeypatch.setattr(av, "codecs_available", frozenset())
    with pytest.raises(MusicGenStemError, match="libmp3lame.*pip install"):
        export_stem_pack(tmp_path / "pack", _stems(), SR, fmt="mp3")
    with pytest.raises(MusicGenStemError, match="aac"):
        export_stem_pack(tmp_path / "pack", _stems(), SR, stem_mp4=True)
    assert not (tmp_path / "pack").exists()
