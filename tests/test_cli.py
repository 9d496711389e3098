"""The command line (cli.py): end to end on the tiny model folder, and every user mistake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_stem.cli import main

TEXT = "funky drums and slap bass"
STEMS = ["bass", "drums", "other"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def generate(capsys, model_dir, out, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys, "generate", TEXT, "--model", model_dir, "--duration", "0.5", "-q", "--out", out, *extra
    )


def assert_usage_error(rc: int, err: str, *, match: str | None = None) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("musicgen-stem: error: "), err
    assert "Traceback" not in err
    if match is not None:
        assert match in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".tmp-{out.name}*"))


def write_wav(path: Path, seconds: float = 0.5, sr: int = 44100, channels: int = 2, fmt=None) -> Path:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    data = np.stack([0.3 * np.sin(2 * np.pi * (110 + 50 * c) * t) for c in range(channels)], axis=1)
    sf.write(str(path), data.astype(np.float32), sr, format=fmt)
    return path


@pytest.fixture(scope="module")
def gen_out(tmp_path_factory, tiny_model_dir):
    """One generation shared by the read-only tests below."""
    out = tmp_path_factory.mktemp("cli") / "out"
    rc = main(
        [
            "generate",
            TEXT,
            "--model",
            str(tiny_model_dir),
            "--duration",
            "0.5",
            "--seed",
            "1",
            "-q",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


# ------------------------------------------------------------------------------ help (one subprocess)


def test_help_in_a_subprocess():
    exe = shutil.which("musicgen-stem") or str(Path(sys.executable).parent / "musicgen-stem")
    sep = "=====SEP====="
    res = subprocess.run(
        ["sh", "-c", f'"$0" --help && echo {sep} && "$0" generate --help', exe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    top, gen = res.stdout.split(sep)
    top, gen = " ".join(top.split()), " ".join(gen.split())
    for cmd in ["generate", "edit", "init", "info"]:
        assert cmd in top
    for opt in [
        "--model",
        "--device",
        "--duration",
        "--batch",
        "--seed",
        "--top-k",
        "--top-p",
        "--temperature",
        "--cfg",
        "--greedy",
        "--out",
        "--force",
        "--bits",
        "--quiet",
    ]:
        assert opt in gen, opt
    for default in [
        "(default: 10.0)",
        "(default: 1)",
        "(default: auto)",
    ]:
        assert default in gen, default
    for opt in ["--top-k", "--top-p", "--temperature", "--cfg"]:  # the model's own defaults
        assert gen.split(f" {opt} ")[-1].split(" --")[0].endswith("default: the model's)"), opt


def test_no_command_prints_help(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "generate" in out


# ------------------------------------------------------------------------------ generate


def test_generate_writes_a_stems_folder(gen_out, tiny_model_dir):
    names = sorted(p.name for p in gen_out.iterdir())
    assert names == sorted(
        ["bass.wav", "drums.wav", "other.wav", "mix.wav", "codes.npy", "meta.json", "stems.mid"]
    )
    codes = np.load(gen_out / "codes.npy")
    assert codes.shape == (6, 25) and codes.dtype == np.int64
    assert ((codes >= 0) & (codes < 2048)).all()
    meta = json.loads((gen_out / "meta.json").read_text())
    assert meta["prompt"] == TEXT
    assert meta["seed"] == 1
    assert meta["model"] == str(tiny_model_dir)
    assert meta["duration"] == 0.5 and meta["sample_rate"] == 32000
    assert meta["params"]["top_k"] == 250 and meta["params"]["use_sampling"] is True
    from musicgen_stem import __version__

    assert meta["version"] == __version__
    assert meta["stems"] == STEMS


def test_generate_audio_lengths_and_mix(gen_out):
    wavs = {}
    for name in STEMS + ["mix"]:
        data, sr = sf.read(str(gen_out / f"{name}.wav"), dtype="float64", always_2d=True)
        assert sr == 32000
        wavs[name] = data
    assert {w.shape for w in wavs.values()} == {(16000, 1)}
    assert np.abs(wavs["mix"] - sum(wavs[s] for s in STEMS)).max() <= 2 / 32768
    assert np.abs(wavs["mix"]).max() > 0


def test_same_seed_same_codes(capsys, gen_out, tiny_model_dir, tmp_path):
    rc, out, _ = generate(capsys, tiny_model_dir, tmp_path / "again", "--seed", "1")
    assert rc == 0 and "wrote" in out
    assert np.array_equal(np.load(tmp_path / "again" / "codes.npy"), np.load(gen_out / "codes.npy"))
    rc, _, _ = generate(capsys, tiny_model_dir, tmp_path / "other", "--seed", "2")
    assert rc == 0
    assert not np.array_equal(np.load(tmp_path / "other" / "codes.npy"), np.load(gen_out / "codes.npy"))


def test_generate_batch(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "batch"
    rc, _, err = generate(capsys, tiny_model_dir, out, "--batch", "2", "--seed", "3", "--duration", "0.2")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["var_00", "var_01"]
    codes = [np.load(out / v / "codes.npy") for v in ("var_00", "var_01")]
    assert all(c.shape == (6, 10) for c in codes)
    assert not np.array_equal(*codes)
    for i, v in enumerate(("var_00", "var_01")):
        meta = json.loads((out / v / "meta.json").read_text())
        assert meta["variation"] == i and meta["seed"] == 3 and meta["prompt"] == TEXT
        assert (out / v / "mix.wav").is_file()


@pytest.mark.parametrize(
    "opts, expected",
    [
        (["--greedy", "--cfg", "2.0"], {"use_sampling": False, "cfg_coef": 2.0}),
        (["--top-k", "7", "--temperature", "0.7"], {"use_sampling": True, "top_k": 7, "temperature": 0.7}),
        (["--top-p", "0.9", "--cfg", "1"], {"top_p": 0.9, "cfg_coef": 1.0}),
    ],
)
def test_sampling_options_recorded(capsys, tiny_model_dir, tmp_path, opts, expected):
    out = tmp_path / "o"
    rc, _, err = generate(capsys, tiny_model_dir, out, "--duration", "0.2", "--seed", "0", *opts)
    assert rc == 0, err
    params = json.loads((out / "meta.json").read_text())["params"]
    for k, v in expected.items():
        assert params[k] == v, k


def test_greedy_ignores_seed(capsys, tiny_model_dir, tmp_path):
    for seed in ("1", "2"):
        rc, _, err = generate(
            capsys, tiny_model_dir, tmp_path / seed, "--greedy", "--seed", seed, "--duration", "0.2"
        )
        assert rc == 0, err
    assert np.array_equal(np.load(tmp_path / "1" / "codes.npy"), np.load(tmp_path / "2" / "codes.npy"))


# ------------------------------------------------------------------------------ edit


def test_edit_from_folder_keeps_other_streams(capsys, gen_out, tiny_model_dir, tmp_path):
    out = tmp_path / "edit"
    rc, _, err = run(
        capsys,
        "edit",
        "a new walking bass",
        "--model",
        tiny_model_dir,
        "--from",
        gen_out,
        "--regenerate",
        "bass",
        "--seed",
        "2",
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    old, new = np.load(gen_out / "codes.npy"), np.load(out / "codes.npy")
    assert new.shape == old.shape
    assert np.array_equal(new[1:], old[1:])
    assert not np.array_equal(new[0], old[0])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "edit" and meta["regenerate"] == ["bass"] and meta["seed"] == 2
    assert meta["prompt"] == "a new walking bass"
    assert meta["kept_from"] == str(gen_out)


def test_edit_with_text_option_and_duration(capsys, gen_out, tiny_model_dir, tmp_path):
    out = tmp_path / "edit"
    rc, _, err = run(
        capsys,
        "edit",
        "--text",
        "new drums",
        "--model",
        tiny_model_dir,
        "--from",
        gen_out,
        "--regenerate",
        "drums",
        "other",
        "--duration",
        "0.3",
        "--seed",
        "2",
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    old, new = np.load(gen_out / "codes.npy"), np.load(out / "codes.npy")
    assert new.shape == (6, 15)
    assert np.array_equal(new[0], old[0, :15])


def test_edit_with_stem_file(capsys, tiny_model, tiny_model_dir, tmp_path):
    from musicgen_stem.audio import load_audio

    loop = write_wav(tmp_path / "loop.flac", seconds=0.5, sr=44100, channels=2, fmt="FLAC")
    out = tmp_path / "edit"
    rc, _, err = run(
        capsys,
        "edit",
        "new bass",
        "--model",
        tiny_model_dir,
        "--stem",
        f"drums={loop}",
        "--regenerate",
        "bass",
        "--seed",
        "4",
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    codes = np.load(out / "codes.npy")
    assert codes.shape == (6, 25)
    wav, sr = load_audio(loop)
    assert sr == 44100 and wav.shape[0] == 2
    expected = tiny_model.encode_stems({"drums": wav}, sr)[0].numpy()
    assert np.array_equal(codes[1], expected[1])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kept_from"] == {"drums": str(loop)}
    # every stem at the input's rate and channels; the kept drums untouched (up to 16-bit rounding)
    data, sr_out = sf.read(str(out / "drums.wav"), always_2d=True)
    assert sr_out == 44100 and data.shape == (wav.shape[1], 2)
    assert np.abs(data.T - wav.numpy()).max() <= 1.0 / 32767 * meta["gain"] + 1e-4
    bass, _ = sf.read(str(out / "bass.wav"), always_2d=True)
    assert bass.shape == data.shape


# ------------------------------------------------------------------------------ user mistakes


@pytest.fixture()
def bad_files(tmp_path):
    corrupt = tmp_path / "notes.wav"
    corrupt.write_text("this is not audio\n" * 20)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), dtype=np.float32), 32000)
    good = write_wav(tmp_path / "good.wav", seconds=0.6, sr=32000, channels=1)
    not_model = tmp_path / "not_a_model"
    not_model.mkdir()
    (not_model / "readme.txt").write_text("hello")
    no_codes = tmp_path / "no_codes"
    no_codes.mkdir()
    (no_codes / "meta.json").write_text("{}")
    plain = tmp_path / "plain"
    plain.mkdir()
    write_wav(plain / "drums.wav", seconds=0.6, sr=32000, channels=1)
    return {
        "plain": plain,
        "corrupt": corrupt,
        "empty": empty,
        "good": good,
        "not_model": not_model,
        "no_codes": no_codes,
        "missing": tmp_path / "missing.wav",
    }


def _edit_stem(model, files, stem_spec, *extra):
    return ["edit", "x", "--model", model, "--stem", stem_spec, "--regenerate", "bass", *extra]


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing-audio", "file not found"),
        ("corrupt-audio", "not a readable audio file"),
        ("empty-audio", "no audio samples"),
        ("unknown-regenerate", "unknown stem 'piano'"),
        ("unknown-stem-file", "unknown stem 'piano'"),
        ("stem-both-kept-and-regenerated", "both"),
        ("bad-stem-spec", "NAME=FILE"),
        ("text-after-regenerate", "put the description before --regenerate"),
        ("duration-0", "duration"),
        ("duration-negative", "duration"),
        ("duration-huge", "duration"),
        ("edit-duration-too-long", "duration"),
        ("not-a-model", "not a"),
        ("model-nonexistent", "not_here"),
        ("from-without-codes", "codes.npy"),
        ("from-plain-stems", "--stem drums="),
        ("from-nonexistent", "not found"),
        ("from-and-stem", "one way only"),
        ("neither-from-nor-stem", "--from"),
        ("batch-0", "--batch"),
        ("empty-text", "description"),
        ("text-twice", "once"),
    ],
)
def test_user_mistakes(capsys, tiny_model_dir, gen_out, bad_files, tmp_path, case, match):
    m, f = tiny_model_dir, bad_files
    gen = ["generate", TEXT, "--model", m, "-q"]
    argv = {
        "missing-audio": _edit_stem(m, f, f"drums={f['missing']}"),
        "corrupt-audio": _edit_stem(m, f, f"drums={f['corrupt']}"),
        "empty-audio": _edit_stem(m, f, f"drums={f['empty']}"),
        "unknown-regenerate": ["edit", "x", "--model", m, "--from", gen_out, "--regenerate", "piano"],
        "unknown-stem-file": _edit_stem(m, f, f"piano={f['good']}"),
        "stem-both-kept-and-regenerated": [
            "edit",
            "x",
            "--model",
            m,
            "--stem",
            f"bass={f['good']}",
            "--regenerate",
            "bass",
        ],
        "bad-stem-spec": _edit_stem(m, f, str(f["good"])),
        "text-after-regenerate": [
            "edit",
            "--model",
            m,
            "--from",
            gen_out,
            "--regenerate",
            "bass",
            "a new funky bass",
        ],
        "duration-0": gen + ["--duration", "0"],
        "duration-negative": gen + ["--duration", "-1"],
        "duration-huge": gen + ["--duration", "1e9"],
        "edit-duration-too-long": [
            "edit",
            "x",
            "--model",
            m,
            "--from",
            gen_out,
            "--regenerate",
            "bass",
            "--duration",
            "601",
        ],
        "not-a-model": ["generate", TEXT, "--model", f["not_model"], "--duration", "0.2"],
        "model-nonexistent": ["generate", TEXT, "--model", tmp_path / "not_here", "--duration", "0.2"],
        "from-without-codes": ["edit", "x", "--model", m, "--from", f["no_codes"], "--regenerate", "bass"],
        "from-plain-stems": ["edit", "x", "--model", m, "--from", f["plain"], "--regenerate", "bass"],
        "from-nonexistent": ["edit", "x", "--model", m, "--from", tmp_path / "nope", "--regenerate", "bass"],
        "from-and-stem": [
            "edit",
            "x",
            "--model",
            m,
            "--from",
            gen_out,
            "--stem",
            f"drums={f['good']}",
            "--regenerate",
            "bass",
        ],
        "neither-from-nor-stem": ["edit", "x", "--model", m, "--regenerate", "bass"],
        "batch-0": gen + ["--batch", "0"],
        "empty-text": ["generate", "   ", "--model", m],
        "text-twice": ["edit", "x", "--text", "y", "--model", m, "--from", gen_out, "--regenerate", "bass"],
    }[case]
    out = tmp_path / "result"
    rc, _, err = run(capsys, *argv, "--out", out)
    assert_usage_error(rc, err, match=match)
    assert_nothing_written(out)


def test_existing_output_needs_force(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    rc, _, err = generate(capsys, tiny_model_dir, out, "--seed", "0")
    assert_usage_error(rc, err, match="--force")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "keep me"
    rc, _, err = generate(capsys, tiny_model_dir, out, "--seed", "0", "--force")
    assert rc == 0, err
    assert (out / "codes.npy").is_file() and (out / "mix.wav").is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_out_is_a_file(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "file.txt"
    out.write_text("x")
    rc, _, err = generate(capsys, tiny_model_dir, out)
    assert_usage_error(rc, err)
    assert out.read_text() == "x"


def test_batch_folder_given_to_from_gets_a_hint(capsys, tiny_model_dir, tmp_path):
    batch = tmp_path / "batch"
    rc, _, _ = generate(capsys, tiny_model_dir, batch, "--batch", "2", "--duration", "0.2", "--seed", "0")
    assert rc == 0
    out = tmp_path / "edit"
    rc, _, err = run(
        capsys, "edit", "x", "--model", tiny_model_dir, "--from", batch, "--regenerate", "bass", "--out", out
    )
    assert_usage_error(rc, err, match="var_")
    assert_nothing_written(out)


def test_argparse_errors_exit_2(capsys, tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "generate",
                TEXT,
                "--model",
                str(tiny_model_dir),
                "--duration",
                "abc",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert exc.value.code == 2
    assert "--duration" in capsys.readouterr().err


def test_edit_from_folder_with_empty_codes(capsys, tiny_model_dir, gen_out, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(gen_out, src)
    np.save(src / "codes.npy", np.zeros((6, 0), dtype=np.int64))
    out = tmp_path / "edit"
    try:
        rc, _, err = run(
            capsys,
            "edit",
            "x",
            "--model",
            tiny_model_dir,
            "--from",
            src,
            "--regenerate",
            "bass",
            "--out",
            out,
        )
    except RuntimeError:
        rc, err = 1, "Traceback (RuntimeError)"
    assert_usage_error(rc, err, match="codes")
    assert_nothing_written(out)


def test_info_and_init(capsys, tiny_model_dir, tmp_path):
    rc, out, _ = run(capsys, "info", "--model", tiny_model_dir)
    assert rc == 0
    assert "bass (1 codebooks)" in out and "other (4 codebooks)" in out and "32000 Hz" in out
    rc, out, _ = run(capsys, "init", tmp_path / "m", "--preset", "tiny", "--seed", "0")
    assert rc == 0 and (tmp_path / "m" / "config.json").is_file()
    rc, _, err = run(capsys, "init", tmp_path / "m", "--preset", "tiny")
    assert_usage_error(rc, err, match="--force")
    rc, _, err = run(capsys, "init", tmp_path / "m2", "--preset", "huge")
    assert_usage_error(rc, err, match="tiny")


def test_out_of_range_seed_is_a_usage_error(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    try:
        rc, _, err = generate(capsys, tiny_model_dir, out, "--seed", str(2**64 + 1), "--duration", "0.2")
    except ValueError:
        rc, err = 1, "Traceback (ValueError)"
    assert_usage_error(rc, err, match="seed")
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "opts, match",
    [(["--dtype", "bfloat16"], "for GPUs"), (["--quantize", "int8", "--compile"], "on its own")],
)
def test_precision_options_on_cpu_are_usage_errors(capsys, tiny_model_dir, tmp_path, opts, match):
    out = tmp_path / "o"
    rc, _, err = generate(capsys, tiny_model_dir, out, "--duration", "0.2", "--device", "cpu", *opts)
    assert_usage_error(rc, err, match=match)
    assert_nothing_written(out)


def test_help_version_and_argument_errors_do_not_import_torch() -> None:
    """The first answers of the command line come before torch loads (benchmarks/cli_startup.py)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from musicgen_stem.cli import main\n"
        "helps = [[c, '--help'] for c in ('train-lm', 'train-codec', 'evaluate', 'export', 'app',\n"
        "                                  'separate', 'convert-separator', 'prepare', 'synth')]\n"
        "for argv in (['--version'], ['--help'], ['generate'], ['edit', 'x'], ['nope'], ['train-lm'],\n"
        "             ['separate', 'x.wav'], ['prepare', '-i', 'x'], *helps):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import musicgen_stem\n"
        "assert musicgen_stem.StemLayout.__name__ == 'StemLayout'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_help_pages_show_each_default_once():
    import re

    from musicgen_stem.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, sub in commands.items():
        text = sub.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for block in re.split(r"\n  (?=-)", text):  # one option's help
            assert block.lower().count("default") <= 1, (name, block)


def test_edit_bpm_reaches_the_model_when_the_text_names_no_tempo(capsys, gen_out, tiny_model_dir, tmp_path):
    """--bpm is the song's tempo: with --bars it places the range, and a description without a
    tempo gets it appended for the model (tempo token, beat grid); meta keeps both prompts."""
    from musicgen_stem.conditioning.attributes import with_tempo

    assert with_tempo("new drums", 120.0) == "new drums at 120 bpm"
    assert with_tempo("funk at 96 BPM", 120.0) == "funk at 96 BPM"  # the text's own tempo wins
    assert with_tempo(None, 92.5) == "92.5 bpm" and with_tempo("x", None) == "x"
    out = tmp_path / "edit"
    args = ["edit", "new drums", "--model", tiny_model_dir, "--from", gen_out, "--regenerate", "drums"]
    rc, _, err = run(capsys, *args, "--bars", "1-1", "--bpm", "240", "--seed", "2", "-q", "--out", out)
    assert rc == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["prompt"] == "new drums" and meta["model_prompt"] == "new drums at 240 bpm"
