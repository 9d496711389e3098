"""The Python API (the `api` package) on the tiny random model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from musicgen_stem.api import StemAudio
from musicgen_stem.errors import GenerationError, MusicGenStemError

SR = 32000
FPS = 50


@pytest.fixture()
def model(tiny_model):
    """The session's tiny model with default parameters (restored afterwards)."""
    tiny_model.set_generation_params(duration=1.0)
    yield tiny_model
    tiny_model.set_generation_params(duration=1.0)


def _codes(T: int, B: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2048, (B, 6, T), generator=torch.Generator().manual_seed(seed))


def test_generate_shapes_and_mix(model):
    out = model.generate(["funky slap bass"], seed=1, duration=0.5)
    assert isinstance(out, StemAudio)
    assert list(out) == ["bass", "drums", "other"] and len(out) == 3
    assert out.sample_rate == SR == model.sample_rate
    for s in out:
        assert out[s].shape == (1, 1, SR // 2)
        assert out[s].dtype == torch.float32
        assert torch.isfinite(out[s]).all()
    torch.testing.assert_close(out.mix, out["bass"] + out["drums"] + out["other"])
    assert out.codes.shape == (1, 6, 25) and out.codes.dtype == torch.long
    assert ((out.codes >= 0) & (out.codes < 2048)).all()
    assert out.seed == 1
    assert out.duration == pytest.approx(0.5)
    assert out.params["model"] == model.name and "version" in out.params


def test_default_duration_and_return_tokens(model):
    audio, tokens = model.generate("a", seed=0, return_tokens=True)
    assert tokens.shape == (1, 6, 50)  # set_generation_params(duration=1.0)
    assert torch.equal(tokens, audio.codes)
    assert audio["drums"].shape == (1, 1, SR)


def test_batch_of_descriptions_and_none(model):
    out = model.generate(["rock", "jazz", None], seed=3, duration=0.2)
    assert out.codes.shape == (3, 6, 10)
    for s in out:
        assert out[s].shape == (3, 1, int(0.2 * SR))
    # unconditional alone works too
    out2 = model.generate([None], seed=3, duration=0.2)
    assert out2.codes.shape == (1, 6, 10)
    with pytest.raises(GenerationError):
        model.generate([], seed=0, duration=0.2)


def test_seeds(model):
    a = model.generate(["x"], seed=5, duration=0.4)
    b = model.generate(["x"], seed=5, duration=0.4)
    c = model.generate(["x"], seed=6, duration=0.4)
    assert torch.equal(a.codes, b.codes) and torch.equal(a["bass"], b["bass"])
    assert not torch.equal(a.codes, c.codes)
    d = model.generate(["x"], duration=0.2)  # no seed: one is drawn and reported
    assert isinstance(d.seed, int)
    e = model.generate(["x"], seed=d.seed, duration=0.2)
    assert torch.equal(d.codes, e.codes)


def test_greedy_ignores_seed(model):
    model.set_generation_params(use_sampling=False)
    a = model.generate(["x"], seed=1, duration=0.2)
    b = model.generate(["x"], seed=2, duration=0.2)
    assert torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), -float("inf"), 601.0, 1e9, 0.001])
def test_duration_errors(model, bad):
    with pytest.raises(GenerationError) as err:
        model.generate(["x"], seed=0, duration=bad)
    msg = str(err.value)
    assert "duration" in msg and "\n" not in msg
    if isinstance(bad, float) and math.isfinite(bad) and bad > 600:
        assert "600" in msg  # names the limit
    with pytest.raises(GenerationError, match="duration"):
        model.set_generation_params(duration=bad)
    assert model.duration == 1.0  # unchanged


def test_set_generation_params_validates(model):
    with pytest.raises(GenerationError, match="top-k"):
        model.set_generation_params(top_k=5000)
    with pytest.raises(GenerationError, match="temperature"):
        model.set_generation_params(temperature=-1)
    assert model.params.top_k == 250  # nothing was changed by the failed calls


def test_regenerate_bass_keeps_others(model):
    src = model.generate(["x"], seed=1, duration=0.6)
    out = model.regenerate_from_codes(src.codes, ["bass"], ["new bass"], seed=2)
    assert out.codes.shape == src.codes.shape
    assert torch.equal(out.codes[:, 1:], src.codes[:, 1:])
    assert not torch.equal(out.codes[:, 0], src.codes[:, 0])
    # 2-D codes work too
    out2 = model.regenerate_from_codes(src.codes[0], ["bass"], ["new bass"], seed=2)
    assert torch.equal(out2.codes, out.codes)


def test_regenerate_two_stems(model):
    src = model.generate(["x"], seed=1, duration=0.6)
    out = model.regenerate_from_codes(src.codes, ["drums", "bass"], ["y"], seed=4)
    assert torch.equal(out.codes[:, 2:], src.codes[:, 2:])
    assert not torch.equal(out.codes[:, :2], src.codes[:, :2])


def test_regenerate_duration(model):
    codes = _codes(40)
    short = model.regenerate_from_codes(codes, ["other"], ["y"], seed=0, duration=0.3)
    assert short.codes.shape == (1, 6, 15)
    assert torch.equal(short.codes[:, :2], codes[:, :2, :15])
    longer = model.regenerate_from_codes(codes, ["other"], ["y"], seed=0, duration=1.0)
    assert longer.codes.shape == (1, 6, 50)
    assert torch.equal(longer.codes[:, :2, :40], codes[:, :2])
    assert longer["bass"].shape[-1] == SR
    with pytest.raises(GenerationError, match="600"):
        model.regenerate_from_codes(codes, ["bass"], ["y"], seed=0, duration=601.0)


def test_regenerate_batch_and_description_count(model):
    codes = _codes(10)
    out = model.regenerate_from_codes(codes, ["bass"], ["a", "b"], seed=0)
    assert out.codes.shape == (2, 6, 10)
    assert torch.equal(out.codes[:, 1:], codes[:, 1:].expand(2, -1, -1))
    with pytest.raises(GenerationError):
        model.regenerate_from_codes(_codes(10, B=2), ["bass"], ["a", "b", "c"], seed=0)


def test_regenerate_all_stems_is_text_to_stems(model):
    codes = _codes(20)
    a = model.regenerate_from_codes(codes, ["other", "bass", "drums"], ["z"], seed=9)
    b = model.generate(["z"], seed=9, duration=20 / FPS)
    assert torch.equal(a.codes, b.codes)


def test_regenerate_errors(model):
    codes = _codes(10)
    with pytest.raises(MusicGenStemError, match="piano"):
        model.regenerate_from_codes(codes, ["piano"], ["z"], seed=0)
    with pytest.raises(GenerationError, match="at least one"):
        model.regenerate_from_codes(codes, [], ["z"], seed=0)


@pytest.mark.parametrize(
    "codes",
    [
        torch.zeros(1, 5, 10, dtype=torch.long),
        torch.zeros(6, dtype=torch.long),
        torch.full((1, 6, 10), -1),
        torch.full((1, 6, 10), 2048),
        torch.zeros(1, 6, 10),
    ],
    ids=["wrong-K", "1-D", "negative", "too-large", "float"],
)
def test_codes_validation(model, codes):
    with pytest.raises(GenerationError, match="codes"):
        model.regenerate_from_codes(codes, ["bass"], ["z"], seed=0)
    with pytest.raises(GenerationError, match="codes"):
        model.generate_continuation_from_codes(codes, ["z"], seed=0, duration=1.0)


def test_regenerate_from_stems_keeps_encoded_drums(model):
    t = torch.arange(22050) / 44100
    drums = torch.stack([torch.sin(2 * math.pi * 200 * t), 0.5 * torch.sin(2 * math.pi * 300 * t)]) * 0.3
    expected = model.encode_stems({"drums": drums}, 44100)
    assert expected.shape == (1, 6, 25)
    out = model.regenerate_instruments_from_stems({"drums": drums}, 44100, ["bass", "other"], ["y"], seed=1)
    assert out.codes.shape == (1, 6, 25)
    assert torch.equal(out.codes[:, 1], expected[:, 1])
    # as the command line: the result in the input's format, the given stem exactly as passed
    assert (
        out.sample_rate == 44100
        and out["drums"].shape == (1, 2, 22050)
        and out["bass"].shape == (1, 2, 22050)
    )
    assert torch.equal(out["drums"][0], drums)
    assert out.params["output_format"] == "input"
    native = model.regenerate_instruments_from_stems(
        {"drums": drums}, 44100, ["bass", "other"], ["y"], seed=1, output_format="model"
    )
    assert native.sample_rate == model.sample_rate and native["drums"].shape[-2] == model.codec.channels
    assert torch.equal(native.codes, out.codes)
    with pytest.raises(GenerationError, match="output_format"):
        model.regenerate_instruments_from_stems({"drums": drums}, 44100, ["bass"], ["y"], output_format="wav")
    with pytest.raises(GenerationError, match="both"):
        model.regenerate_instruments_from_stems({"drums": drums}, 44100, ["drums"], ["y"], seed=1)
    with pytest.raises(GenerationError, match="piano"):
        model.regenerate_instruments_from_stems({"piano": drums}, 44100, ["bass"], ["y"], seed=1)


def test_regenerate_from_stems_missing_stems_are_silence(model):
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    out = model.regenerate_instruments_from_stems({"bass": wav}, SR, ["drums"], ["y"], seed=1)
    sil = torch.tensor(model.silence_tokens())
    # "other" was neither given nor regenerated: kept as the codes of silence
    enc_other = model.encode_stems({"bass": wav}, SR)[:, 2:]
    assert torch.equal(out.codes[:, 2:], enc_other)
    assert out.codes.shape == (1, 6, 25)
    assert (enc_other == sil[2:, None]).float().mean() > 0.5


def test_silence_tokens(model):
    tokens = model.silence_tokens()
    assert len(tokens) == 6 and all(isinstance(t, int) and 0 <= t < 2048 for t in tokens)
    assert model.silence_tokens() == tokens
    tokens.append(1)  # a copy: mutating it changes nothing
    assert len(model.silence_tokens()) == 6


def test_compose_stages(model):
    stages = model.compose(["a"], order=("drums", "bass", "other"), seed=3, duration=0.4)
    assert len(stages) == 3
    sil = torch.tensor(model.silence_tokens())[None, :, None]
    first, second, third = (s.codes for s in stages)
    for c in (first, second, third):
        assert c.shape == (1, 6, 20)
    # stage 1: only drums composed; bass and other still silence
    assert torch.equal(first[:, [0, 2, 3, 4, 5]], sil[:, [0, 2, 3, 4, 5]].expand(1, 5, 20))
    # each stage keeps what was composed before it
    assert torch.equal(second[:, 1], first[:, 1])
    assert torch.equal(third[:, :2], second[:, :2])
    assert not torch.equal(third[:, 2:], second[:, 2:])
    with pytest.raises(GenerationError):
        model.compose(["a"], order=("drums", "drums", "bass"), seed=0, duration=0.2)
    with pytest.raises(MusicGenStemError):
        model.compose(["a"], order=("drums", "piano"), seed=0, duration=0.2)


def test_continuation_keeps_prompt(model):
    prompt = _codes(15)
    out = model.generate_continuation_from_codes(prompt, ["go on"], seed=1, duration=0.6)
    assert out.codes.shape == (1, 6, 30)
    assert torch.equal(out.codes[..., :15], prompt)
    batch = model.generate_continuation_from_codes(prompt, ["a", "b"], seed=1, duration=0.6)
    assert batch.codes.shape == (2, 6, 30)
    assert torch.equal(batch.codes[..., :15], prompt.expand(2, -1, -1))
    with pytest.raises(GenerationError, match="prompt"):
        model.generate_continuation_from_codes(prompt, ["a"], seed=1, duration=0.3)


def test_continuation_from_audio(model):
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    prompt = model.encode_stems({"drums": wav}, SR)
    out = model.generate_continuation({"drums": wav}, SR, ["x"], seed=0, duration=0.5)
    assert torch.equal(out.codes[..., : prompt.shape[-1]], prompt)


def test_progress_callback(model):
    calls = []
    model.generate(["x"], seed=0, duration=0.2, progress=lambda d, t: calls.append((d, t)))
    assert calls
    total = calls[-1][1]
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(1, total + 1))
    assert all(t == total for _, t in calls)


def test_decode_matches_generate(model):
    out = model.generate(["x"], seed=2, duration=0.2)
    again = model.decode(out.codes[0])
    for s in out:
        torch.testing.assert_close(again[s], out[s])


def test_encode_stems_errors(model):
    with pytest.raises(GenerationError, match="piano"):
        model.encode_stems({"piano": torch.zeros(1, 100)}, SR)
    with pytest.raises(GenerationError):
        model.encode_stems({}, SR)


@pytest.mark.parametrize("call", ["regenerate", "continuation"])
def test_empty_codes_are_a_generation_error(model, call):
    empty = torch.zeros(1, 6, 0, dtype=torch.long)
    with pytest.raises(GenerationError, match="codes"):
        if call == "regenerate":
            model.regenerate_from_codes(empty, ["bass"], ["z"], seed=0)
        else:
            model.generate_continuation_from_codes(empty, ["z"], seed=0, duration=0.2)


def test_set_dtype_and_compile(tiny_model_dir):
    from musicgen_stem.api import MusicGenStem

    m = MusicGenStem.from_pretrained(tiny_model_dir, device="cpu")
    assert m.set_dtype("auto").lm.dtype == torch.float32  # float32 on CPU
    for bad in ("float16", "bfloat16", torch.bfloat16):
        with pytest.raises(GenerationError, match="for GPUs"):
            m.set_dtype(bad)
    with pytest.raises(GenerationError, match="unknown dtype"):
        m.set_dtype("float8")
    ref = m.generate(["x"], seed=3, duration=0.3).codes
    m.lm.compile_decoding(backend="aot_eager")  # what compile() does, without code generation
    assert torch.equal(m.generate(["x"], seed=3, duration=0.3).codes, ref)
    from musicgen_stem.lm.packing import PackedLinear, pack_for_decoding

    pack_for_decoding(m.lm, "onednn")
    m.compile()  # inductor cannot trace oneDNN-packed weights: compile() lays them back out first
    assert m.lm.compiled_step is not None  # (compiled lazily, at the first step)
    assert not any(isinstance(x, PackedLinear) for x in m.lm.modules())


def test_keyword_options_are_checked_like_keyword_arguments(model):
    """Every task takes the same keyword options (`api.Options`), checked as Python checks keyword
    arguments: a misspelt one is a TypeError naming it, not silently ignored."""
    from musicgen_stem.api import Options

    assert set(Options.__annotations__) == {"seed", "duration", "on_audio", "stream_seconds", "chords"}
    with pytest.raises(TypeError, match=r"generate\(\) got an unexpected keyword argument 'sed'"):
        model.generate(["x"], sed=1)
    with pytest.raises(TypeError, match="'on_audio'"):
        model.generate_stream(["x"], on_audio=print)
    with pytest.raises(TypeError, match=r"compose\(\).*'stream_seconds'"):
        model.compose(["x"], stream_seconds=0.5)
    with pytest.raises(GenerationError, match="stream_seconds"):
        model.regenerate_from_codes(_codes(10), ["bass"], stream_seconds=-1)
    a = model.regenerate_from_codes(_codes(10), ["bass"], ["x"], seed=4, duration=0.2)
    b = model.regenerate_range(_codes(10), ["bass"], ["x"], seed=4, duration=0.2)
    assert a.seed == b.seed == 4 and torch.equal(a.codes, b.codes)


def test_sampling_defaults_come_from_the_model_folder(tiny_model, tmp_path):
    """config.json's `sampling` is the model's default: loaded, used by set_generation_params for
    every setting not given, and refused in one line when invalid."""
    import dataclasses
    import json

    from musicgen_stem.api import MusicGenStem
    from musicgen_stem.errors import ModelError
    from musicgen_stem.generation import SamplingParams

    tiny_model.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["sampling"] == tiny_model.config.sampling
    assert dataclasses.asdict(tiny_model.defaults) == dataclasses.asdict(SamplingParams())
    cfg["sampling"] = {"temperature": 0.6, "top_k": 50, "greedy_streams": [1]}
    cfg_path.write_text(json.dumps(cfg))
    m = MusicGenStem.from_pretrained(tmp_path / "m", device="cpu")
    assert (m.params.temperature, m.params.top_k, m.params.cfg_coef) == (0.6, 50, 3.0)
    assert m.params.greedy_streams == (1,)
    m.set_generation_params(temperature=1.2)
    assert (m.params.temperature, m.params.top_k) == (1.2, 50)  # top-k: the model's
    assert m.params.greedy_streams == (1,)  # the model's too
    m.set_generation_params(duration=1.0)
    assert (m.params.temperature, m.params.top_k) == (0.6, 50)  # back to the model's defaults
    cfg["sampling"]["top_k"] = -3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="sampling.*top-k"):
        MusicGenStem.from_pretrained(tmp_path / "m", device="cpu")
    cfg["sampling"] = {"greedy_streams": [99]}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="sampling.*greedy streams"):
        MusicGenStem.from_pretrained(tmp_path / "m", device="cpu")
    cfg["sampling"] = {"temprature": 0.6}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="sampling.*temprature"):
        MusicGenStem.from_pretrained(tmp_path / "m", device="cpu")


def test_save_writes_a_result_as_the_command_line_does(model, tmp_path):
    import soundfile as sf

    from musicgen_stem.errors import OutputExistsError

    out = model.generate(["funk"], seed=4, duration=0.5)
    folder = out.save(tmp_path / "one")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"{s}.wav" for s in model.stems] + ["mix.wav", "codes.npy", "meta.json", "stems.mid"]
    )
    wav, sr = sf.read(folder / "bass.wav", dtype="float32", always_2d=True)
    assert sr == out.sample_rate and wav.shape[0] == out["bass"].shape[-1]
    assert np.abs(wav[:, 0] - out["bass"][0, 0].numpy()).max() < 1 / 16000  # 16-bit rounding
    assert json.loads((folder / "meta.json").read_text())["seed"] == 4
    assert np.array_equal(np.load(folder / "codes.npy"), out.codes[0].numpy())
    with pytest.raises(OutputExistsError):
        out.save(folder)
    batch = model.generate(["a", "b"], seed=4, duration=0.5)
    assert sorted(p.name for p in batch.save(tmp_path / "two", bits="float").iterdir()) == [
        "var_00",
        "var_01",
    ]


def test_regenerate_from_low_rate_stems_keeps_new_stems_at_the_model_rate(model, tmp_path):
    """Stems given at 8 kHz come back as given at 8 kHz; the new ones (and the mix) are at the
    model's rate, and `save` writes each file at its rate."""
    t = torch.arange(8000) / 8000
    bass = (0.3 * torch.sin(2 * math.pi * 55 * t))[None]
    out = model.regenerate_instruments_from_stems({"bass": bass}, 8000, ["drums", "other"], ["y"], seed=1)
    assert out.sample_rate == model.sample_rate and out.rate("bass") == 8000 and out.rate("drums") == SR
    assert torch.equal(out["bass"][0], bass)
    assert out["drums"].shape[-1] == SR and out.mix.shape[-1] == SR and out.duration == 1.0
    meta = json.loads((out.save(tmp_path / "res", bits="float") / "meta.json").read_text())
    assert meta["sample_rates"] == {"bass": 8000, "drums": SR, "other": SR, "mix": SR}
