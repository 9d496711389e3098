"""`musicgen-stem prepare`: songs (separated by a small random HTDemucs) and multitrack folders -> tokens."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import separation
from musicgen_stem.audio import load_audio
from musicgen_stem.data import prepare
from musicgen_stem.errors import AudioError, ModelError, MusicGenStemError


def small_htdemucs(seed: int = 0) -> torch.nn.Module:
    """A fast random HTDemucs (no transformer, 2 layers, 1 s segments)."""
    import warnings

    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = ["drums", "bass", "other", "vocals"]
        model = HTDemucs(sources=sources, channels=8, depth=2, t_layers=0, nfft=512, segment=1, dconv_mode=0)
    return model.eval()


def _noise(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((int(seconds * sr), channels)) * 0.1).astype(np.float32)  # [T, C]


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path]:
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "a.wav", _noise(1.5, 44100, 2, 0), 44100)
    (songs / "a.txt").write_text("funky bass\n\nslow drums\n")
    sf.write(songs / "b.flac", _noise(1.2, 32000, 1, 1), 32000)
    (songs / "metadata.jsonl").write_text(json.dumps({"file": "b.flac", "caption": "ambient pad"}) + "\n")
    (songs / "broken.wav").write_bytes(b"RIFF nonsense")
    multi = tmp_path / "multi"
    track = multi / "song_00000"
    track.mkdir(parents=True)
    for i, stem in enumerate(("bass", "drums", "other", "mix")):
        sf.write(track / f"{stem}.wav", _noise(1.0, 32000, 1, 10 + i), 32000)
    (track / "meta.json").write_text(json.dumps({"caption": "rock", "captions": ["rock", "loud rock"]}))
    (multi / "metadata.jsonl").write_text(json.dumps({"path": "song_00000", "caption": "rock"}) + "\n")
    return songs, multi


@pytest.fixture
def counter(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = separation.separate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(separation, "separate", counting)
    return calls


def _run(inputs, model_dir, out, **kw):
    kw.setdefault("separator", small_htdemucs())
    return prepare.prepare_dataset(
        [str(p) for p in inputs], model_dir, out, device="cpu", progress=False, log=lambda m: None, **kw
    )


def _index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def test_prepare_end_to_end(inputs, tiny_model, tiny_model_dir, tmp_path, counter):
    out = tmp_path / "out"
    counts = _run(inputs, tiny_model_dir, out, chunk_seconds=0.3)  # several chunks per track
    assert counts == {"tracks": 4, "encoded": 3, "cached": 0, "separated": 2, "failed": 1}
    assert len(counter) == 2

    meta = json.loads((out / "prepare.json").read_text())
    assert meta["layout"] == tiny_model.layout.to_dict()
    assert meta["frame_rate"] == tiny_model.frame_rate and meta["sample_rate"] == tiny_model.sample_rate
    assert len(meta["codec_hash"]) == 64 and meta["version"]

    index = {Path(e["source"]).name: e for e in _index(out)}
    assert sorted(index) == ["a.wav", "b.flac", "song_00000"]
    assert index["a.wav"]["captions"] == ["funky bass", "slow drums"]
    assert index["b.flac"]["captions"] == ["ambient pad"]
    assert index["song_00000"]["captions"] == ["rock", "loud rock"]
    assert index["a.wav"]["duration"] == pytest.approx(1.5)
    assert len({e["id"] for e in index.values()}) == 3

    K = tiny_model.layout.num_streams
    for name, e in index.items():
        codes = np.load(out / e["tokens"])
        assert codes.dtype == np.int16 and codes.shape == (K, e["frames"])
        if name == "song_00000":
            folder = Path(e["source"])
        else:
            folder = out / "stems" / e["id"]
            assert sorted(p.name for p in folder.iterdir()) == [f"{s}.wav" for s in separation.SOURCES]
        audio = {s: load_audio(folder / f"{s}.wav") for s in ("bass", "drums", "other")}
        sr = audio["bass"][1]
        expected = tiny_model.encode_stems({s: w for s, (w, _) in audio.items()}, sr)[0]  # [K, F]
        assert torch.equal(torch.from_numpy(codes.astype(np.int64)), expected), name
    assert not (out / "stems" / index["song_00000"]["id"]).exists()  # multitracks are not separated

    # Re-run: everything is skipped, nothing separated, the separator is not even loaded.
    counts = _run(inputs, tiny_model_dir, out, separator="/nonexistent/weights.th")
    assert counts["cached"] == 3 and counts["encoded"] == 0 and len(counter) == 2
    assert {e["id"] for e in _index(out)} == {e["id"] for e in index.values()}

    # Kill-resume: a lost token file and index line are redone from the cached stems.
    lost = index["a.wav"]
    (out / lost["tokens"]).unlink()
    lines = [line for line in (out / "index.jsonl").read_text().splitlines() if lost["id"] not in line]
    (out / "index.jsonl").write_text("\n".join(lines) + "\n" + '{"id": "cut-by-a-ki')  # torn last line
    counts = _run(inputs, tiny_model_dir, out)
    assert counts["encoded"] == 1 and counts["cached"] == 2 and len(counter) == 2
    again = {Path(e["source"]).name: e for e in _index(out)}
    assert again == index
    assert np.array_equal(np.load(out / lost["tokens"]), np.load(out / again["a.wav"]["tokens"]))


def test_codec_change_refused_without_force(inputs, tiny_model_dir, tmp_path):
    from musicgen_stem.api import MusicGenStem

    out = tmp_path / "out"
    _run([inputs[1]], tiny_model_dir, out)
    other = MusicGenStem.from_config("tiny", seed=1, device="cpu").save(tmp_path / "other")
    with pytest.raises(MusicGenStemError, match="other codecs.*--force"):
        _run([inputs[1]], other, out)
    counts = _run([inputs[1]], other, out, force=True)
    assert counts["encoded"] == 1
    meta = json.loads((out / "prepare.json").read_text())
    assert [e["codec_hash"] for e in _index(out)] == [meta["codec_hash"]]


def test_bad_inputs(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AudioError, match="no audio found"):
        _run([empty], tiny_model_dir, tmp_path / "o1")
    with pytest.raises(ModelError, match="not a model folder"):
        _run([empty], empty, tmp_path / "o2")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mp3").write_bytes(b"\0" * 100)
    with pytest.raises(AudioError, match="could be read"):
        _run([bad], tiny_model_dir, tmp_path / "o3")


def test_cli(inputs, tiny_model_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["--input", str(inputs[1]), "-m", str(tiny_model_dir), "--out", str(out), "-q"])
    assert prepare.run(args) == 0
    assert "1 encoded" in capsys.readouterr().out
    assert len(_index(out)) == 1


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_codecs_load_without_the_lm(tiny_model, tiny_model_dir):
    """`modeldir.load_codecs`: the codecs, layout and silence codes of a model folder, as the whole
    model has them."""
    from musicgen_stem.modeldir import load_codecs

    codecs = load_codecs(tiny_model_dir)
    assert codecs.layout == tiny_model.layout
    assert codecs.silence_tokens == tiny_model.silence_tokens()
    assert [f.name for f in codecs.files] == [f"codec_{s}.safetensors" for s in tiny_model.stems]
    _same_weights(codecs.codec, tiny_model.codec)
    bundle = prepare.load_codecs(tiny_model_dir)
    assert bundle.hash == prepare.codec_hash(codecs.files) and bundle.layout == tiny_model.layout


def test_reference_codecs_load_without_the_lm(ref_fixture):
    from musicgen_stem.api import MusicGenStem
    from musicgen_stem.reference import load_reference_codecs

    model = MusicGenStem.from_pretrained(ref_fixture, device="cpu")
    codecs = load_reference_codecs(ref_fixture)
    assert codecs.layout == model.layout and codecs.silence_tokens == model.silence_tokens()
    _same_weights(codecs.codec, model.codec)
    assert prepare.load_codecs(ref_fixture).layout == model.layout
