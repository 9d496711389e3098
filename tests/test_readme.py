"""Every block of README.md runs as written, in order, in a fresh folder (blocks marked
`<!-- readme-test: skip (reason) -->` need the network, released weights, a server or hours)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_stem.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = r"(<!-- readme-test: skip \((?P<why>[^)]*)\) -->\n)?"
BLOCK = re.compile(SKIP + r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str | None]]:
    """(language, body, skip reason or None) of every fenced block, in order."""
    return [(m["lang"], m["body"], m["why"]) for m in BLOCK.finditer(README.read_text())]


def commands(body: str) -> list[list[str]]:
    """The `musicgen-stem` command lines of a shell block (comments dropped, `\\` joined)."""
    text = re.sub(r"\\\n", " ", body)
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("musicgen-stem ")]


def test_every_block_runs_or_says_why_not():
    found = blocks()
    assert len(found) >= 10
    for lang, body, why in found:
        assert lang in ("bash", "python"), lang
        assert why or lang == "python" or commands(body), f"a block neither run nor marked: {body[:80]}"


def test_readme_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.chdir(tmp_path)
    t = np.arange(32000 * 4) / 32000
    sf.write("keys.wav", 0.2 * np.sin(2 * np.pi * 220 * t), 32000)  # the "your own loop" of the edit block
    ran = 0
    for lang, body, why in blocks():
        if why:
            continue
        if lang == "python":
            exec(compile(body, "README.md", "exec"), {})
        else:
            for argv in commands(body):
                assert main(argv) == 0, (argv, capsys.readouterr().err)
        ran += 1
    assert ran >= 4
    assert Path("out/funk/mix.wav").is_file() and Path("packs/funk-bass").is_dir()
