"""Model folders (modeldir.py) and presets (presets.py)."""

from __future__ import annotations

import gc
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import musicgen_stem.modeldir as modeldir
from musicgen_stem.api import MusicGenStem
from musicgen_stem.codec import (
    ChromaEncoderConfig,
    HarmonicDecoderConfig,
    ISTFTDecoderConfig,
    PitchEncoderConfig,
    SEANetConfig,
    TonalDecoderConfig,
)
from musicgen_stem.errors import ModelError, MusicGenStemError, OutputExistsError
from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB
from musicgen_stem.memory import fresh_tensor
from musicgen_stem.modeldir import (
    CONFIG_FILE,
    LM_FILE,
    TEXT_FILE,
    ModelConfig,
    codec_file,
    load_model,
    read_config,
    read_weights,
    save_model,
)
from musicgen_stem.presets import PRESETS, preset


@pytest.fixture()
def model_copy(tmp_path, tiny_model_dir):
    """A private copy of the tiny model folder that a test may damage."""
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def test_folder_contents(tiny_model_dir):
    names = sorted(p.name for p in tiny_model_dir.iterdir())
    expected = [CONFIG_FILE, LM_FILE, TEXT_FILE] + [codec_file(s) for s in LAYOUT_6CB.stems]
    assert names == sorted(expected)
    data = json.loads((tiny_model_dir / CONFIG_FILE).read_text())
    assert data["format"] == "musicgen-stem" and data["format_version"] == 2  # codec configs nested by kind
    assert data["lm"]["dim"] == 64 and data["layout"]["delays"] == [0, 0, 0, 1, 2, 3]


def test_round_trip_state_and_generation(tiny_model, tiny_model_dir):
    parts = load_model(tiny_model_dir)
    _states_equal(parts.lm, tiny_model.lm)
    _states_equal(parts.text, tiny_model.text)
    _states_equal(parts.codec, tiny_model.codec)
    assert all(p.device.type == "cpu" for p in parts.lm.parameters())
    loaded = MusicGenStem(parts, device="cpu")
    for m in (tiny_model, loaded):
        m.set_generation_params(use_sampling=False, duration=1.0)
    try:
        a = tiny_model.generate(["warm synth bass"], seed=0, duration=0.4)
        b = loaded.generate(["warm synth bass"], seed=0, duration=0.4)
    finally:
        tiny_model.set_generation_params(duration=1.0)
    assert torch.equal(a.codes, b.codes)
    for s in a:
        assert torch.equal(a[s], b[s])


def test_config_round_trip(tiny_model):
    cfg = tiny_model.config
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert again.layout == cfg.layout and again.lm == cfg.lm
    cfg2 = ModelConfig(cfg.layout, cfg.lm, cfg.text, cfg.codecs, name="x", silence_tokens=[1, 2, 3, 4, 5, 6])
    assert ModelConfig.from_dict(cfg2.to_dict()).silence_tokens == [1, 2, 3, 4, 5, 6]


def test_config_checks(tiny_model):
    cfg = tiny_model.config
    with pytest.raises(ModelError, match="silence_tokens"):
        ModelConfig(cfg.layout, cfg.lm, cfg.text, cfg.codecs, silence_tokens=[1, 2])
    with pytest.raises(ModelError, match="codec"):
        ModelConfig(cfg.layout, cfg.lm, cfg.text, {"bass": cfg.codecs["bass"]})


def _assert_one_line(err: pytest.ExceptionInfo) -> None:
    msg = str(err.value)
    assert msg and "\n" not in msg


def _edit_config(path, fn):
    data = json.loads((path / CONFIG_FILE).read_text())
    fn(data)
    (path / CONFIG_FILE).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: shutil.rmtree(p), "does not exist"),
        (lambda p: (p / CONFIG_FILE).unlink(), "config.json"),
        (lambda p: (p / CONFIG_FILE).write_text("{not json"), "cannot read"),
        (lambda p: (p / CONFIG_FILE).write_text("[1, 2]"), "JSON object"),
        (lambda p: _edit_config(p, lambda d: d.update(format="something-else")), "not a musicgen-stem"),
        (lambda p: _edit_config(p, lambda d: d.update(format_version=99)), "newer"),
        (lambda p: _edit_config(p, lambda d: d.pop("lm")), "malformed"),
        (lambda p: _edit_config(p, lambda d: d["lm"].update(bogus=1)), "malformed"),
        (lambda p: (p / LM_FILE).unlink(), "incomplete"),
        (lambda p: (p / codec_file("other")).unlink(), "incomplete"),
        (lambda p: (p / LM_FILE).write_bytes(b"\x00garbage" * 10), "cannot read weights"),
        (lambda p: (p / TEXT_FILE).write_bytes((p / TEXT_FILE).read_bytes()[:50]), "cannot read weights"),
        (lambda p: (p / LM_FILE).write_bytes((p / LM_FILE).read_bytes()[:-100]), "cannot read weights"),
        (lambda p: _edit_config(p, lambda d: d["lm"].update(dim=32, num_heads=4)), "do not fit"),
        (lambda p: _edit_config(p, lambda d: d["lm"].update(num_layers=3)), "do not fit"),
    ],
    ids=[
        "missing-folder",
        "no-config",
        "malformed-json",
        "json-not-object",
        "wrong-format",
        "newer-version",
        "missing-section",
        "unknown-field",
        "missing-lm",
        "missing-codec",
        "corrupt-lm",
        "truncated-text",
        "truncated-lm-data",
        "dim-mismatch",
        "layers-mismatch",
    ],
)
def test_load_errors(model_copy, damage, match):
    damage(model_copy)
    with pytest.raises(ModelError, match=match) as err:
        load_model(model_copy)
    _assert_one_line(err)


def test_read_weights_gives_what_safetensors_reads(tmp_path):
    """Every dtype bit-identical to safetensors' own reader, floats upcast to float32, whether the
    tensor is memory-mapped as it is (big float32), mapped and converted (big float16) or read."""
    tensors = {
        "big16": torch.randn(1024, 512).half(),  # 1 MiB: mapped, converted into memory of its own
        "big32": torch.randn(600, 512),  # mapped, used as it is
        "small16": torch.randn(3, 5).half(),
        "bf16": torch.randn(7).bfloat16(),
        "i64": torch.arange(5),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5).half(),
        "empty": torch.zeros(0, 4),
    }
    file = tmp_path / "w.safetensors"
    save_file(tensors, str(file), metadata={"format": "pt"})
    ref = load_file(str(file))
    got = read_weights(file)
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        want = v.float() if v.is_floating_point() else v
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        assert torch.equal(got[k], want), k
    got["big32"].add_(1.0)  # copy-on-write: the file is left as it was
    assert torch.equal(load_file(str(file))["big32"], tensors["big32"])


def _mapped(address: int) -> bool:
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_big_weights_go_back_to_the_system_when_dropped():
    t = fresh_tensor((1024, 1024), torch.float32)  # 4 MiB
    assert t.shape == (1024, 1024) and t.dtype == torch.float32
    t.fill_(1.0)
    start = t.data_ptr()
    assert _mapped(start) and _mapped(start + 4 * 2**20 - 1)
    del t
    gc.collect()
    assert not _mapped(start)  # unmapped, whatever malloc's state
    assert fresh_tensor((3,), torch.float16).shape == (3,)  # small ones come from torch.empty


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_big_mapped_weights_are_unmapped_when_dropped(tmp_path):
    file = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(512, 1024)}, str(file))  # 2 MiB of float32: mapped as it is
    w = read_weights(file)["w"]
    start = w.data_ptr()
    assert _mapped(start) and w.sum().isfinite()
    del w
    gc.collect()
    assert not _mapped(start)


def test_read_config_on_missing_config(tmp_path):
    with pytest.raises(ModelError, match="config.json is missing"):
        read_config(tmp_path)


def test_save_refuses_non_empty_folder(tiny_model, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="force"):
        save_model(_parts(tiny_model), target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".tmp-*"))
    file_target = tmp_path / "afile"
    file_target.write_text("x")
    with pytest.raises(OutputExistsError):
        save_model(_parts(tiny_model), file_target, force=True)
    assert file_target.read_text() == "x"


def test_save_into_empty_folder_and_force(tiny_model, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    save_model(_parts(tiny_model), target)  # empty folder: fine without force
    (target / LM_FILE).write_bytes(b"stale")
    (target / "notes.txt").write_text("user file")
    save_model(_parts(tiny_model), target, force=True)
    parts = load_model(target)  # the stale LM was replaced
    _states_equal(parts.lm, tiny_model.lm)
    assert (target / "notes.txt").read_text() == "user file"  # only our files are replaced
    assert not list(tmp_path.glob(".tmp-*"))


def _parts(model):
    return modeldir.ModelParts(model.config, model.lm, model.text, model.codec)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "force-existing"])
def test_failed_save_leaves_no_temp_dir(tiny_model, tmp_path, monkeypatch, existing):
    target = tmp_path / "m"
    if existing:
        save_model(_parts(tiny_model), target)
        before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []

    def boom(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return modeldir.__dict__["_real_save_file"](*a, **kw)

    monkeypatch.setitem(modeldir.__dict__, "_real_save_file", modeldir.save_file)
    monkeypatch.setattr(modeldir, "save_file", boom)
    with pytest.raises(MusicGenStemError, match="disk full; check free space") as err:
        save_model(_parts(tiny_model), target, force=existing)
    assert "\n" not in str(err.value)
    assert calls
    assert not list(tmp_path.glob(".tmp-*"))
    if existing:
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    else:
        assert not target.exists()


def test_from_pretrained_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="not a .*model folder"):
        MusicGenStem.from_pretrained(tmp_path)
    f = tmp_path / "file.bin"
    f.write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        MusicGenStem.from_pretrained(f)
    with pytest.raises(ModelError, match="neither an existing folder nor a hub id"):
        MusicGenStem.from_pretrained(str(tmp_path / "does" / "not" / "exist"))
    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu")
    assert m.name == str(tiny_model_dir) and m.layout == LAYOUT_6CB


# ------------------------------------------------------------------------------ presets


def test_tiny_preset():
    cfg = preset("tiny")
    assert cfg.layout == LAYOUT_6CB and cfg.name == "tiny"
    assert cfg.lm.dim == 64 and cfg.lm.num_layers == 2
    assert set(cfg.codecs) == set(LAYOUT_6CB.stems)


def test_unknown_preset_lists_choices():
    with pytest.raises(ModelError) as err:
        preset("large")
    msg = str(err.value)
    assert "large" in msg
    for name in PRESETS:
        assert name in msg


@pytest.mark.parametrize(
    "name, layout, streams", [("medium-6cb", LAYOUT_6CB, 6), ("medium-7cb", LAYOUT_7CB, 7)]
)
def test_medium_presets_have_released_shapes(name, layout, streams):
    cfg = preset(name)
    assert cfg.name == name
    assert cfg.layout == layout and cfg.layout.num_streams == streams
    assert (cfg.lm.dim, cfg.lm.num_layers, cfg.lm.num_heads, cfg.lm.ff_dim) == (1536, 48, 24, 6144)
    assert not (cfg.lm.bias_attn or cfg.lm.bias_ff or cfg.lm.bias_proj)
    assert cfg.text.kind == "t5" and cfg.text.name == "t5-base"
    assert [cfg.codecs[s].to_dict() for s in layout.stems]  # serialisable
    assert cfg.max_duration == 30.0
    # round trip through JSON without building anything
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()


def test_read_trained_codec_reads_a_running_checkpoint(tmp_path) -> None:
    """`read_trained_codec` takes a train-codec run's checkpoint.pt (raw weights and step) as well as
    an export, and refuses a checkpoint without a codec."""
    from musicgen_stem.codec import CodecConfig, StemCodec
    from musicgen_stem.modeldir import read_trained_codec

    cfg = CodecConfig.tiny(1)
    codec = StemCodec(cfg)
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 7, "codec_config": cfg.to_dict(), "model": codec.state_dict()}, path)
    got_cfg, weights, step = read_trained_codec(path)
    assert (got_cfg, step) == (cfg, 7)
    assert all(torch.equal(weights[k], v) for k, v in codec.state_dict().items())
    torch.save({"step": 7}, path)
    with pytest.raises(ModelError, match="cannot read codec checkpoint"):
        read_trained_codec(path)


@pytest.mark.parametrize(
    "codec",
    [
        {
            "encoder": SEANetConfig(n_filters=4, lstm=0),
            "decoder": ISTFTDecoderConfig(width=8, layers=1, n_fft=320, lstm=0),
        },
        {
            "encoder": PitchEncoderConfig(),
            "decoder": HarmonicDecoderConfig(width=8, layers=1),
            "dimension": 8,
        },
        {"encoder": ChromaEncoderConfig(), "decoder": TonalDecoderConfig(width=8, layers=1), "dimension": 21},
    ],
)
def test_saved_model_with_other_codec_designs_loads_and_decodes_the_same(codec, tmp_path):
    """Codecs with fixed tables (windows, noise, oscillators) outside their weight files load whole."""
    import dataclasses

    from musicgen_stem.api import MusicGenStem
    from musicgen_stem.modeldir import load_codecs, load_model
    from musicgen_stem.presets import preset

    config = preset("tiny")
    config.codecs["bass"] = dataclasses.replace(config.codecs["bass"], **codec)
    model = MusicGenStem.from_config(config, seed=0, device="cpu")
    model.save(tmp_path / "m")
    codes = torch.randint(0, 16, (1, model.layout.num_streams, 10))
    want = model.codec.decode(codes)
    for codecs in (load_model(tmp_path / "m").codec, load_codecs(tmp_path / "m").codec):
        assert torch.allclose(codecs.decode(codes), want, atol=1e-5)
