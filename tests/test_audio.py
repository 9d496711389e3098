"""Tests for musicgen_stem.audio: loading (soundfile + PyAV fallback), conversion, saving."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.audio import convert_audio, duration_seconds, load_audio, pcm_round, save_audio
from musicgen_stem.errors import AudioError, MusicGenStemError


def _tone(sr: int, channels: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    """[C, T] float32 sine, a different frequency per channel."""
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amp * np.sin(2 * np.pi * (220 * (c + 1)) * t) for c in range(channels)]).astype(
        np.float32
    )


def _encode_pyav(path: Path, wav: np.ndarray, sr: int, codec: str) -> None:
    """Encode [C, T] float audio with PyAV, frame by frame at the codec's frame size."""
    layout = "mono" if wav.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        size = stream.codec_context.frame_size or 1024
        for start in range(0, wav.shape[-1], size):
            chunk = np.ascontiguousarray(wav[:, start : start + size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize(
    ("ext", "subtype", "sr", "channels"),
    [
        ("wav", "PCM_16", 44100, 1),
        ("wav", "PCM_24", 48000, 2),
        ("wav", "FLOAT", 44100, 2),
        ("flac", "PCM_16", 48000, 1),
        ("flac", "PCM_24", 44100, 2),
    ],
)
def test_load_soundfile_formats(tmp_path: Path, ext: str, subtype: str, sr: int, channels: int) -> None:
    ref = _tone(sr, channels)
    path = tmp_path / f"a.{ext}"
    sf.write(path, ref.T, sr, subtype=subtype)
    wav, got_sr = load_audio(path)
    assert got_sr == sr
    assert wav.dtype == torch.float32 and wav.shape == ref.shape
    assert np.allclose(wav.numpy(), ref, atol=2e-4)
    assert duration_seconds(path) == pytest.approx(ref.shape[-1] / sr)
    out = convert_audio(wav, sr, 32000, 1)
    assert out.shape == (1, ref.shape[-1] * 32000 // sr)


def test_load_float_keeps_values_above_one(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([[0.0], [1.5], [-2.0]], dtype=np.float32), 16000, subtype="FLOAT")
    wav, _ = load_audio(path)
    assert wav[0].tolist() == [0.0, 1.5, -2.0]


@pytest.mark.parametrize(("ext", "codec"), [("m4a", "aac"), ("mp3", "libmp3lame")])
@pytest.mark.parametrize("channels", [1, 2])
def test_load_compressed(tmp_path: Path, ext: str, codec: str, channels: int) -> None:
    sr = 44100
    ref = _tone(sr, channels, seconds=1.0)
    path = tmp_path / f"a.{ext}"
    _encode_pyav(path, ref, sr, codec)
    wav, got_sr = load_audio(path)
    assert got_sr == sr
    assert wav.dtype == torch.float32 and wav.shape[0] == channels
    # Lossy codecs add encoder delay / padding: length within a few frames of the original.
    assert abs(wav.shape[-1] - ref.shape[-1]) < 4096
    rms = float(wav[:, 4096:-4096].pow(2).mean().sqrt())  # a 0.5-amplitude sine: 0.354
    assert 0.3 < rms < 0.42
    assert duration_seconds(path) == pytest.approx(1.0, abs=0.1)
    out = convert_audio(wav, sr, 32000, 1)
    assert out.shape == (1, wav.shape[-1] * 32000 // sr)


def test_m4a_goes_through_pyav(tmp_path: Path) -> None:
    path = tmp_path / "a.m4a"
    _encode_pyav(path, _tone(48000, 2), 48000, "aac")
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    wav, sr = load_audio(path)
    assert sr == 48000 and wav.shape[0] == 2 and wav.is_contiguous()


def test_load_errors(tmp_path: Path) -> None:
    cases = {}
    cases["missing"] = tmp_path / "nope.wav"
    cases["directory"] = tmp_path
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.wav"
    (tmp_path / "text.wav").write_text("this is not audio\n" * 50)
    cases["text"] = tmp_path / "text.wav"
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), dtype=np.float32), 16000)
    cases["zero"] = tmp_path / "zero.wav"
    sf.write(tmp_path / "nan.wav", np.array([[0.1], [np.nan]], dtype=np.float32), 16000, subtype="FLOAT")
    cases["nan"] = tmp_path / "nan.wav"
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000, 1).T, 16000)
    (tmp_path / "trunc.wav").write_bytes(good.read_bytes()[:30])
    cases["truncated header"] = tmp_path / "trunc.wav"
    expected = {
        "missing": "file not found",
        "directory": "directory",
        "empty": "not a readable audio file",
        "text": "not a readable audio file",
        "zero": "no audio samples",
        "nan": "NaN",
        "truncated header": "",
    }
    for name, path in cases.items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg and ";" in msg, (name, msg)
        assert expected[name] in msg, (name, msg)
    assert issubclass(AudioError, MusicGenStemError)
    with pytest.raises(AudioError, match="file not found"):
        duration_seconds(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not a readable audio file"):
        duration_seconds(tmp_path / "text.wav")


def test_convert_audio_channels_and_rate() -> None:
    stereo = torch.stack([torch.ones(1000), -torch.ones(1000) * 0.5])  # [2, T]
    mono = convert_audio(stereo, 32000, 32000, 1)
    assert mono.shape == (1, 1000) and torch.allclose(mono, torch.full((1, 1000), 0.25))
    assert convert_audio(stereo, 32000, 32000, 2) is stereo  # no-op
    up = convert_audio(mono, 32000, 32000, 2)
    assert up.shape == (2, 1000) and torch.equal(up[0], up[1])
    four = torch.randn(4, 100)
    assert torch.equal(convert_audio(four, 16000, 16000, 2), four[:2])
    with pytest.raises(AudioError, match="mono"):
        convert_audio(stereo, 32000, 32000, 3)
    batched = torch.randn(3, 2, 4410)  # [B, C, T]
    out = convert_audio(batched, 44100, 32000, 1)
    assert out.shape == (3, 1, 3200)
    out48 = convert_audio(torch.randn(2, 48000), 48000, 32000, 1)
    assert out48.shape == (1, 32000) and out48.dtype == torch.float32
    # Resampling keeps a low tone's amplitude.
    tone = torch.from_numpy(_tone(48000, 1, seconds=1.0))
    assert float(convert_audio(tone, 48000, 32000, 1)[..., 1000:-1000].abs().max()) == pytest.approx(
        0.5, abs=0.01
    )
    ints = torch.ones(1, 48, dtype=torch.int16)
    assert convert_audio(ints, 48, 32, 1).is_floating_point()


@pytest.mark.parametrize(("ext", "subtype"), [("wav", "PCM_16"), ("wav", "PCM_24"), ("flac", "PCM_16")])
def test_save_roundtrip_exact_grid(tmp_path: Path, ext: str, subtype: str) -> None:
    x = torch.tensor([[1.0, -1.0, 0.5, 0.999, 1e-3, 0.0]])
    path = save_audio(tmp_path / f"a.{ext}", x, 32000, subtype)
    bits = 16 if subtype == "PCM_16" else 24
    ints, sr = sf.read(path, dtype="int32", always_2d=True)
    assert sr == 32000
    assert np.array_equal(
        ints[:, 0] >> (32 - bits), np.rint(pcm_round(x, subtype)[0] * (2 ** (bits - 1) - 1))
    )
    assert sf.info(str(path)).subtype == subtype


def test_save_float_and_stereo(tmp_path: Path) -> None:
    x = torch.randn(2, 500) * 3  # floats may exceed 1
    save_audio(tmp_path / "f.wav", x, 48000, "FLOAT")
    wav, sr = load_audio(tmp_path / "f.wav")
    assert sr == 48000 and torch.equal(wav, x)


def test_save_refuses(tmp_path: Path) -> None:
    ok = torch.zeros(1, 10)
    with pytest.raises(ValueError, match="clip"):
        save_audio(tmp_path / "a.wav", torch.full((1, 10), 1.01), 32000)
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "a.wav", torch.tensor([[0.0, float("nan")]]), 32000, "FLOAT")
    with pytest.raises(ValueError, match="extension"):
        save_audio(tmp_path / "a.mp3", ok, 32000)
    with pytest.raises(ValueError, match="FLOAT"):
        save_audio(tmp_path / "a.flac", ok, 32000, "FLOAT")
    with pytest.raises(ValueError, match="subtype"):
        save_audio(tmp_path / "a.wav", ok, 32000, "PCM_8")
    with pytest.raises(ValueError, match=r"\[C, T\]"):
        save_audio(tmp_path / "a.wav", torch.zeros(10), 32000)
    assert not list(tmp_path.iterdir())
    with pytest.raises(AudioError, match="cannot write"):
        save_audio(tmp_path / "missing_dir" / "a.wav", ok, 32000)
