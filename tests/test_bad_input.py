"""Bad and hostile input: every case exits with code 2 and one line on stderr, no traceback, no
partial output, the inputs unchanged, and no code from a file ever runs. Covers corrupt, truncated,
empty, NaN/inf, 8-channel, 1-sample and hour-long audio, odd rates, options out of range, a
10 000-character prompt, tampered model folders (truncated and overlapping safetensors, invalid
JSON, pickles with code), stem names with path separators, and a fuzz test of the safetensors
header reader."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem import modeldir
from musicgen_stem.cli import main
from musicgen_stem.outputs import write_stems_folder


class Payload:
    """Unpickling this creates the file `marker`: proof that a loader ran the file's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tone(
    path: Path, sr: int = 44100, channels: int = 2, seconds: float = 1.0, subtype: str = "PCM_16"
) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * (110 + 40 * c) * t) for c in range(channels)], axis=1)
    sf.write(path, x, sr, subtype=subtype)
    return path


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def small_separator_file(path: Path) -> Path:
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sep = HTDemucs(
            sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=0, nfft=512
        )
    args, kwargs = sep._init_args_kwargs
    torch.save({"klass": type(sep), "args": args, "kwargs": kwargs, "state": get_state(sep, None)}, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> Path:
    """Every input of the cases below, under one folder (hashed before and after each case)."""
    w = tmp_path_factory.mktemp("world")
    tone(w / "good.wav")
    tone(w / "mono48.wav", sr=48000, channels=1)
    tone(w / "silent.wav", seconds=1.0)
    sf.write(w / "silent.wav", np.zeros((44100, 2)), 44100)
    good = (w / "good.wav").read_bytes()
    (w / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    (w / "truncated.wav").write_bytes(good[:60])
    (w / "empty.wav").write_bytes(b"")
    (w / "text.mp3").write_text("this is not audio\n" * 50)
    bad = np.zeros((44100, 2), dtype=np.float32)
    bad[100, 0] = np.nan
    sf.write(w / "nan.wav", bad, 44100, subtype="FLOAT")
    bad[100, 0] = np.inf
    sf.write(w / "inf.wav", bad, 44100, subtype="FLOAT")
    tone(w / "eight.wav", channels=8)
    sf.write(w / "one.wav", np.array([0.5]), 44100)
    tone(w / "rate7.wav", sr=7, seconds=10)
    (w / "dir.wav").mkdir()
    with sf.SoundFile(w / "hour.flac", "w", 8000, 1, subtype="PCM_16", format="FLAC") as f:
        for _ in range(61):  # 61 minutes of silence: 90 kB, but decoding it would take a while
            f.write(np.zeros(8000 * 60, dtype=np.int16))
    # model folders: a good one and tampered copies
    shutil.copytree(tiny_model_dir, w / "model")
    for name in ("m_trunc", "m_overlap", "m_json", "m_list", "m_newer", "m_pickle"):
        shutil.copytree(tiny_model_dir, w / name)
    lm = (w / "m_trunc" / "lm.safetensors").read_bytes()
    (w / "m_trunc" / "lm.safetensors").write_bytes(lm[: len(lm) // 2])
    overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}  # fmt: skip
    (w / "m_overlap" / "lm.safetensors").write_bytes(safetensors_bytes(overlap, bytes(12)))
    (w / "m_json" / "config.json").write_text('{"format": "musicgen-stem", "layout": ')
    (w / "m_list" / "config.json").write_text("[1, 2, 3]")
    cfg = json.loads((w / "model" / "config.json").read_text())
    (w / "m_newer" / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    torch.save({"w": Payload(w / "pwned")}, w / "m_pickle" / "lm.safetensors")
    (w / "ref_evil").mkdir()
    from musicgen_stem import reference

    for name in reference.reference_files():
        torch.save({"best_state": Payload(w / "pwned"), "xp.cfg": "x"}, w / "ref_evil" / name)
    torch.save({"klass": Payload(w / "pwned")}, w / "evil.th")
    small_separator_file(w / "sep.th")
    # output folders: a good one and tampered copies
    stems = {s: 0.1 * torch.randn(1, 16000) for s in ("bass", "drums", "other")}
    write_stems_folder(w / "gen", stems, 32000, np.zeros((6, 25), dtype=np.int64), {"prompt": "x"})
    for name, names in (("gen_dotdot", ["../good"]), ("gen_abs", ["/etc/passwd"]), ("gen_bs", ["a\\b"])):
        shutil.copytree(w / "gen", w / name)
        meta = json.loads((w / name / "meta.json").read_text())
        (w / name / "meta.json").write_text(json.dumps({**meta, "stems": names}))
    shutil.copytree(w / "gen", w / "gen_json")
    (w / "gen_json" / "meta.json").write_text("{not json")
    shutil.copytree(w / "gen", w / "gen_deep")
    (w / "gen_deep" / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(w / "gen", w / "gen_pickle")
    np.save(w / "gen_pickle" / "codes.npy", np.array([Payload(w / "pwned")], dtype=object), allow_pickle=True)
    return w


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


G = ["generate", "funk", "--model", "{w}/model", "-q", "--out", "{out}"]
E = ["edit", "new bass", "--model", "{w}/model", "--regenerate", "bass", "-q", "--out", "{out}"]
FROM = [*E, "--from", "{w}/gen"]
SONG = [*E, "--separator", "{w}/sep.th", "--song"]
EXPORT = ["export", "{w}/gen", "--out", "{out}"]
APP = ["app", "--model", "{w}/model", "--output-dir", "{out}"]

CASES: dict[str, tuple[list[str], str]] = {
    # options out of range
    "duration-0": ([*G, "--duration", "0"], "duration"),
    "duration-negative": ([*G, "--duration", "-1"], "duration"),
    "duration-nan": ([*G, "--duration", "nan"], "duration"),
    "duration-inf": ([*G, "--duration", "inf"], "duration"),
    "duration-huge": ([*G, "--duration", "1e9"], "too long"),
    "duration-text": ([*G, "--duration", "abc"], "invalid float"),
    "batch-0": ([*G, "--batch", "0"], "--batch"),
    "batch-65": ([*G, "--batch", "65"], "--batch"),
    "seed-negative": ([*G, "--seed", "-1"], "--seed"),
    "seed-huge": ([*G, "--seed", str(2**63)], "--seed"),
    "top-k-negative": ([*G, "--top-k", "-1"], "--top-k"),
    "top-k-huge": ([*G, "--top-k", "100000000"], "top-k"),
    "top-p-negative": ([*G, "--top-p", "-0.5"], "--top-p"),
    "top-p-above-1": ([*G, "--top-p", "1.5"], "--top-p"),
    "temperature-negative": ([*G, "--temperature", "-1"], "--temperature"),
    "temperature-nan": ([*G, "--temperature", "nan"], "--temperature"),
    "cfg-negative": ([*G, "--cfg", "-2"], "--cfg"),
    "cfg-inf": ([*G, "--cfg", "inf"], "--cfg"),
    "bits-8": ([*G, "--bits", "8"], "invalid choice"),
    "unknown-option": ([*G, "--frobnicate"], "unrecognized"),
    "empty-prompt": (["generate", "   ", "--model", "{w}/model", "--out", "{out}"], "empty"),
    "prompt-10000-chars": (
        ["generate", "x" * 10_000, "--model", "{w}/model", "--out", "{out}"],
        "10000 characters",
    ),
    # tampered model folders
    "model-truncated-safetensors": (
        ["generate", "x", "--model", "{w}/m_trunc", "--out", "{out}"],
        "truncated",
    ),
    "model-overlapping-ranges": (["generate", "x", "--model", "{w}/m_overlap", "--out", "{out}"], "overlaps"),
    "model-invalid-json": (["generate", "x", "--model", "{w}/m_json", "--out", "{out}"], "config.json"),
    "model-json-not-object": (["generate", "x", "--model", "{w}/m_list", "--out", "{out}"], "JSON object"),
    "model-newer-format": (["generate", "x", "--model", "{w}/m_newer", "--out", "{out}"], "newer"),
    "model-pickle-with-code": (["generate", "x", "--model", "{w}/m_pickle", "--out", "{out}"], "cannot read"),
    "reference-pickle-with-code": (["generate", "x", "--model", "{w}/ref_evil", "--out", "{out}"], "code"),
    "model-is-a-file": (["generate", "x", "--model", "{w}/good.wav", "--out", "{out}"], "is a file"),
    # audio given with --stem
    "stem-corrupt": ([*E, "--stem", "drums={w}/corrupt.wav"], "corrupt.wav"),
    "stem-truncated": ([*E, "--stem", "drums={w}/truncated.wav"], "too short"),
    "stem-empty": ([*E, "--stem", "drums={w}/empty.wav"], "empty.wav"),
    "stem-text-as-mp3": ([*E, "--stem", "drums={w}/text.mp3"], "text.mp3"),
    "stem-nan": ([*E, "--stem", "drums={w}/nan.wav"], "NaN"),
    "stem-inf": ([*E, "--stem", "drums={w}/inf.wav"], "infinite"),
    "stem-missing": ([*E, "--stem", "drums={w}/nope.wav"], "not found"),
    "stem-directory": ([*E, "--stem", "drums={w}/dir.wav"], "directory"),
    "stem-one-sample": ([*E, "--stem", "drums={w}/one.wav"], "too short (0.00 s)"),
    "stem-hour-long": ([*E, "--stem", "drums={w}/hour.flac"], "61.0 min"),
    "stem-rate-7-hz": ([*E, "--stem", "drums={w}/rate7.wav"], "7 Hz"),
    "stems-mixed-rates": ([*E, "--stem", "drums={w}/good.wav", "--stem", "other={w}/mono48.wav"], "differ"),
    "stem-name-with-path": ([*E, "--stem", "../drums={w}/good.wav"], "unknown stem"),
    "stem-spec-without-name": ([*E, "--stem", "{w}/good.wav"], "NAME=FILE"),
    "stem-also-regenerated": ([*E, "--stem", "bass={w}/good.wav"], "both given"),
    # songs
    "song-eight-channels": ([*SONG, "{w}/eight.wav"], "8-channel"),
    "song-silent": ([*SONG, "{w}/silent.wav"], "silent"),
    "song-hour-long": ([*SONG, "{w}/hour.flac"], "longer than"),
    "song-separator-with-code": ([*E, "--separator", "{w}/evil.th", "--song", "{w}/good.wav"], "refusing"),
    "song-separator-missing": ([*E, "--separator", "{w}/nope.th", "--song", "{w}/good.wav"], "not found"),
    # time ranges
    "start-negative": ([*FROM, "--start", "-1"], "range"),
    "end-before-start": ([*FROM, "--start", "0.4", "--end", "0.2"], "range"),
    "start-after-the-end": ([*FROM, "--start", "100"], "after the end"),
    "bars-without-bpm": ([*FROM, "--bars", "1-2"], "--bpm"),
    "bars-reversed": ([*FROM, "--bars", "3-2", "--bpm", "120"], "A <= B"),
    "bars-garbage": ([*FROM, "--bars", "x", "--bpm", "120"], "A-B"),
    "bpm-huge": ([*FROM, "--bars", "1-2", "--bpm", "1000"], "--bpm"),
    "beats-per-bar-0": ([*FROM, "--bars", "1-2", "--bpm", "120", "--beats-per-bar", "0"], "--beats-per-bar"),
    # tampered output folders
    "from-stem-dotdot": ([*E, "--from", "{w}/gen_dotdot"], "plain file name"),
    "from-stem-absolute": ([*E, "--from", "{w}/gen_abs"], "plain file name"),
    "from-stem-backslash": ([*E, "--from", "{w}/gen_bs"], "plain file name"),
    "from-invalid-json": ([*E, "--from", "{w}/gen_json"], "not valid JSON"),
    "from-json-nested-deeply": ([*E, "--from", "{w}/gen_deep"], "not valid JSON"),
    "from-codes-pickle-with-code": ([*E, "--from", "{w}/gen_pickle"], "unreadable"),
    "export-stem-dotdot": (["export", "{w}/gen_dotdot", "--out", "{out}"], "plain file name"),
    "export-rate-0": ([*EXPORT, "--rate", "0"], "invalid output rate"),
    "export-rate-negative": ([*EXPORT, "--rate", "-44100"], "invalid output rate"),
    "export-rate-12345": ([*EXPORT, "--rate", "12345"], "invalid output rate"),
    "out-under-a-file": (["generate", "x", "--model", "{w}/model", "-o", "{w}/good.wav/s"], "not a folder"),
    "device-unknown": ([*G, "--device", "foo"], "unknown device"),
    "device-no-such-gpu": ([*G, "--device", "cuda:99"], "not available"),
    "export-channels-3": ([*EXPORT, "--channels", "3"], "invalid choice"),
    "export-flac-float": ([*EXPORT, "--format", "flac", "--bits", "float"], "not available"),
    "export-mp3-bits": ([*EXPORT, "--format", "mp3", "--bits", "16"], "no bit depth"),
    # the app's launch options
    "app-public-without-login": ([*APP, "--host", "0.0.0.0"], "refusing to listen"),
    "app-auth-without-password": ([*APP, "--host", "0.0.0.0", "--auth", "admin"], "USER:PASS"),
    "app-auth-file-missing": ([*APP, "--auth-file", "{w}/nope.txt"], "--auth-file"),
    "app-port-0": ([*APP, "--port", "0"], "--port"),
    "app-queue-0": ([*APP, "--queue", "0"], "--queue"),
    "app-session-ttl-0": ([*APP, "--session-ttl", "0"], "--session-ttl"),
    # separator conversion
    "convert-separator-with-code": (["convert-separator", "{w}/evil.th", "{out}.safetensors"], "refusing"),
    "convert-separator-missing": (["convert-separator", "{w}/nope.th", "{out}.safetensors"], "not found"),
    "separate-missing-song": (["separate", "{w}/nope.wav", "--out", "{out}"], "not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case: str, world: Path, tmp_path: Path, capsys):
    template, match = CASES[case]
    out = tmp_path / "out"
    argv = [a.replace("{w}", str(world)).replace("{out}", str(out)) for a in template]
    before = fingerprint(world)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse mistakes
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one line
    assert "Traceback" not in err and match in err, err
    assert not out.exists() and not Path(f"{out}.safetensors").exists()  # no partial output
    assert [p.name for p in tmp_path.iterdir()] == [], list(tmp_path.iterdir())  # no temp folder
    assert fingerprint(world) == before  # inputs unchanged
    assert not (world / "pwned").exists()  # no code from a file ran


#: Input cases refused from the files alone: they must fail before any model is loaded.
BEFORE_MODEL = [
    c for c in CASES if c.startswith(("stem-", "stems-", "song-", "from-")) and c != "stem-name-with-path"
]


@pytest.mark.parametrize("case", BEFORE_MODEL)
def test_inputs_are_refused_before_the_model_loads(case: str, world: Path, tmp_path: Path, capsys):
    """The same refusals with a model that does not exist: the input's error comes first."""
    template, match = CASES[case]
    argv = [
        "{w}/no-such-model" if a == "{w}/model" else a.replace("{out}", str(tmp_path / "out"))
        for a in template
    ]
    rc = main([a.replace("{w}", str(world)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "no-such-model" not in err, err


def test_the_suite_is_big_enough():
    assert len(CASES) >= 50


def test_unicode_prompt_works(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    prompt = "🎸 funky bass, ñandú 日本のドラム — «jazz»"
    assert (
        main(
            ["generate", prompt, "--model", str(tiny_model_dir), "--duration", "0.3", "-q", "--out", str(out)]
        )
        == 0
    )
    assert json.loads((out / "meta.json").read_text(encoding="utf-8"))["prompt"] == prompt


# ------------------------------------------------------------------------------ fuzzing


def _random_header(rng: np.random.Generator) -> tuple[dict, int]:
    """A random header (sometimes consistent, sometimes not) and the data size to append."""
    header: dict = {}
    pos = 0
    for i in range(int(rng.integers(0, 5))):
        dtype = str(rng.choice(["F32", "F16", "I64", "U8", "BOOL", "X9", "F32"]))
        shape = [
            int(d) for d in rng.integers(-1 if rng.random() < 0.1 else 0, 5, size=int(rng.integers(0, 3)))
        ]
        size = int(np.prod(shape)) * {"F32": 4, "F16": 2, "I64": 8, "U8": 1, "BOOL": 1}.get(dtype, 4)
        begin = pos + int(rng.choice([0, 0, 0, -2, 3]))
        end = begin + size + int(rng.choice([0, 0, 0, 1, -1]))
        entry: dict = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        if rng.random() < 0.05:
            entry["shape"] = [True, 1.5]
        if rng.random() < 0.05:
            entry["data_offsets"] = [begin]
        header[f"t{i}" if rng.random() < 0.95 else "__metadata__"] = entry
        pos = max(pos, end)
    extra = int(rng.choice([0, 0, 0, 1, -1, 100]))
    return header, max(0, pos + extra)


def test_fuzz_safetensors_header_reader(tmp_path: Path):
    """Random and mutated headers are refused (ValueError and friends) or loaded; a loaded tensor
    always lies inside the file, and nothing else is ever raised."""
    rng = np.random.default_rng(0)
    good = safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
         "b": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]}},
        np.arange(32, dtype=np.uint8).tobytes(),
    )  # fmt: skip
    file = tmp_path / "f.safetensors"
    loaded = refused = 0
    for trial in range(400):
        if trial % 2:
            blob = bytearray(good)
            for _ in range(int(rng.integers(1, 4))):
                blob[int(rng.integers(0, len(blob)))] = int(rng.integers(0, 256))
            blob = bytes(blob[: int(rng.integers(0, len(blob) + 1))] if rng.random() < 0.2 else blob)
        else:
            header, size = _random_header(rng)
            blob = safetensors_bytes(header, rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
            if rng.random() < 0.1:
                blob = struct.pack("<Q", int(rng.integers(0, 2**63))) + blob[8:]
        file.write_bytes(blob)
        try:
            entries, start = modeldir._read_header(io.BytesIO(blob), len(blob))
            state = modeldir.read_weights(file)
        except (ValueError, KeyError, TypeError, OverflowError, OSError):
            refused += 1
            continue
        loaded += 1
        for key, dtype, shape, begin, end in entries:
            assert 0 <= begin <= end and start + end <= len(blob)
            expected = torch.empty(shape, dtype=dtype)
            if end > begin:
                raw = torch.frombuffer(bytearray(blob[start + begin : start + end]), dtype=torch.uint8)
                expected = raw.view(dtype).view(shape)
            got = state[key]
            torch.testing.assert_close(got, expected.to(got.dtype), rtol=0, atol=0, equal_nan=True)
    assert loaded > 20 and refused > 100, (loaded, refused)


@pytest.mark.parametrize(
    ("stem", "match"),
    [
        (torch.full((1, 3200), float("nan")), "NaN"),
        (np.full((1, 3200), np.inf, dtype=np.float32), "NaN or infinite"),
        (torch.zeros(0), "empty"),
        ("drums.wav", "got str"),
        (torch.zeros(1, 2, 3, 4), "got (1, 2, 3, 4)"),
    ],
)
def test_api_refuses_bad_stems(tiny_model, stem, match):
    from musicgen_stem.errors import GenerationError

    with pytest.raises(GenerationError, match=re.escape(match)):
        tiny_model.encode_stems({"drums": stem}, 32000)


def test_api_takes_numpy_stems_and_checks_seeds(tiny_model):
    from musicgen_stem.errors import GenerationError

    audio = np.zeros((1, 3200), dtype=np.float32)
    assert torch.equal(
        tiny_model.encode_stems({"drums": audio}, 32000),
        tiny_model.encode_stems({"drums": torch.zeros(1, 3200)}, 32000),
    )
    for seed in ("abc", 1.5, True):
        with pytest.raises(GenerationError, match="seed must be a whole number"):
            tiny_model.generate(["x"], duration=0.1, seed=seed)
