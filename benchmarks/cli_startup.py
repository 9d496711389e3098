"""Time to first answer of the `musicgen-stem` command line (issue: the first five minutes).

    python benchmarks/cli_startup.py [--runs 7]
    python benchmarks/cli_startup.py --first-stem [--runs 3] [--importtime]

Runs each case in a fresh process and prints the median and worst wall time. Default cases (the
installed `musicgen-stem` entry point): `--help`, `--version`, a command's missing argument, a bad
choice, and every command's `--help` (none imports torch: the module commands' options live in
torch-free modules).

`--first-stem`: a 2 s `generate` with the default model, and an `edit` of a 2 s bass file (drums and
other regenerated): the time from process start to the first stem file written and to exit, and
per phase (medians; phases nest, e.g. the text encoder is part of the model load): the imports
of torch, transformers, librosa, numba and scipy (each with all its submodules, whenever they
load, and what they import of the others: no overlap), and the calls of the pipeline (`PHASES`). The
child process times them itself (`--child`: an import hook wraps the functions as their modules
load). `--importtime` adds the largest top-level imports of one run (`python -X importtime`).
Report what else was running on the machine beside the numbers.
"""

from __future__ import annotations

import argparse
import functools
import importlib.abc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES = {
    "--help": ["--help"],
    "--version": ["--version"],
    "generate (missing text)": ["generate"],
    "generate --help": ["generate", "--help"],
    "edit (missing --regenerate)": ["edit", "x", "-o", "/tmp/never"],
    "unknown command": ["frobnicate"],
    **{
        f"{c} --help": [c, "--help"]
        for c in ("edit", "app", "evaluate", "export", "separate", "convert-separator", "prepare")
        + ("train-codec", "train-lm", "synth", "init", "convert", "info")
    },
    "separate (missing --out)": ["separate", "song.wav"],
    "prepare (missing --model)": ["prepare", "-i", "x", "-o", "y"],
}


#: Packages whose imports are timed: each with what it imports of the others (no overlap).
IMPORTS = ("torch", "transformers", "librosa", "numba", "scipy")
#: Phases of a generate / edit: (label, module, function or Class.method).
PHASES = (
    ("model: imports + load", "musicgen_stem.commands.options", "load_model_from_args"),
    ("  model load (default_parts)", "musicgen_stem.api.loading", "default_parts"),
    ("    text encoder (transformers)", "musicgen_stem.conditioning.text", "_load_hf"),
    ("kept stems read", "musicgen_stem.samples", "read_kept"),
    ("kept stems encoded", "musicgen_stem.api.model", "MusicGenStem.encode_stems"),
    ("tempo and chords read (step_conditions)", "musicgen_stem.api.decoding", "step_conditions"),
    ("LM decoding (fill)", "musicgen_stem.api.decoding", "fill"),
    ("codec decoding", "musicgen_stem.api.model", "MusicGenStem.decode"),
    ("stems.mid (transcription)", "musicgen_stem.notes.midi", "midi_of_stems"),
    ("output folder written", "musicgen_stem.outputs", "write_stems_folder"),
)
#: The writers of a stem file: the first call's end is "first stem written".
WRITERS = (("musicgen_stem.audio", "save_audio"), ("musicgen_stem.samples", "write_samples"))


class _Timer(importlib.abc.MetaPathFinder):
    """In the child: times the imports of `IMPORTS` and wraps the functions of `PHASES` and
    `WRITERS` as their modules finish loading; `report()` gives wall-clock (start, end) pairs."""

    def __init__(self) -> None:
        self.events: dict[str, list[list[float]]] = {}
        self.first_stem: float | None = None
        self.depth = 0  # how many modules of `IMPORTS` are running
        self.patches: dict[str, list[tuple[str, str]]] = {}
        for label, module, name in PHASES:
            self.patches.setdefault(module, []).append((label, name))
        for module, name in WRITERS:
            self.patches.setdefault(module, []).append(("", name))

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        top = name.partition(".")[0]
        if top not in IMPORTS and name not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module") or isinstance(loader, type):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:  # timed: modules run while no timed package runs
            timed = top in IMPORTS and self.depth == 0
            self.depth += top in IMPORTS
            t0 = time.time()
            try:
                run(module)
            finally:
                self.depth -= top in IMPORTS
                if timed:
                    self.events.setdefault(f"import {top}", []).append([t0, time.time()])
            for label, attr in self.patches.get(name, []):
                self._wrap(module, label, attr)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def _wrap(self, module: Any, label: str, attr: str) -> None:
        owner_name, _, fn_name = attr.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        fn = getattr(owner, fn_name)

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.time()
            try:
                return fn(*a, **k)
            finally:
                t1 = time.time()
                if label:
                    self.events.setdefault(label, []).append([t0, t1])
                elif self.first_stem is None:
                    self.first_stem = t1

        setattr(owner, fn_name, timed)


def child(report: str, argv: list[str]) -> int:
    """Run the CLI on `argv` in this process with the timer on; write its events to `report`."""
    timer = _Timer()
    sys.meta_path.insert(0, timer)
    from musicgen_stem.cli import main as cli_main

    code = 1
    try:
        code = cli_main(argv) or 0
    finally:
        Path(report).write_text(json.dumps({"events": timer.events, "first_stem": timer.first_stem}))
    return code


def _bass_file(path: Path, seconds: float = 2.0, rate: int = 32000) -> None:
    """A plain bass line (55 / 82.4 Hz, on and off every half second) to keep in the edit case."""
    import numpy as np
    import soundfile as sf

    t = np.arange(round(seconds * rate)) / rate
    f0 = np.where(t % 1.0 < 0.5, 55.0, 82.41)
    wav = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / rate) * (t % 0.5 < 0.35)
    sf.write(path, wav, rate, subtype="PCM_16")


def first_stem(runs: int, importtime: bool) -> int:
    """The `--first-stem` table: per case, time to the first stem, to exit, and per phase."""
    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    bass = work / "bass.wav"
    _bass_file(bass)
    cases = {
        "generate -d 2": ["generate", "funky drums and slap bass at 110 bpm", "-d", "2"],
        "edit --stem bass (2 s)": ["edit", "tight drums at 110 bpm", "--stem", f"bass={bass}"]
        + ["--regenerate", "drums", "other"],
    }
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        for case, argv in cases.items():
            rows: dict[str, list[float]] = {}
            for i in range(runs):
                out, report = work / f"out-{i}", work / f"report-{i}.json"
                cmd = [sys.executable, __file__, "--child", str(report), "--"]
                cmd += argv + ["--seed", "1", "--quiet", "--out", str(out)]
                t0 = time.time()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                total = time.time() - t0
                if proc.returncode != 0:
                    print(proc.stdout, proc.stderr, file=sys.stderr)
                    return proc.returncode
                data = json.loads(report.read_text())
                rows.setdefault("first stem written", []).append(data["first_stem"] - t0)
                rows.setdefault("exit", []).append(total)
                for label, spans in data["events"].items():
                    rows.setdefault(label, []).append(sum(b - a for a, b in spans))
                shutil.rmtree(out)
            print(f"\n{case} (median of {runs} runs)\n\n| phase | median s | worst s |\n|---|---:|---:|")
            order = ["first stem written", "exit", *(f"import {m}" for m in IMPORTS), *(p[0] for p in PHASES)]
            for label in order:
                if label in rows:
                    times = rows[label]
                    print(f"| {label} | {statistics.median(times):.2f} | {max(times):.2f} |")
            if importtime:
                _importtime(argv + ["--seed", "1", "--quiet", "--out", str(work / "out-imp")])
                shutil.rmtree(work / "out-imp", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _importtime(argv: list[str], top: int = 12) -> None:
    """The `top` largest imports of one run by cumulative time, at their first level of nesting."""
    cmd = [sys.executable, "-X", "importtime", "-m", "musicgen_stem.cli", *argv]
    err = subprocess.run(cmd, capture_output=True, text=True).stderr
    found = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)  # not indented: top level
        if m:
            found.append((int(m.group(1)) / 1e6, m.group(2)))
    print("\n| top-level import (-X importtime) | cumulative s |\n|---|---:|")
    for seconds, name in sorted(found, reverse=True)[:top]:
        print(f"| {name} | {seconds:.2f} |")


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--child" and sys.argv[3] == "--":
        return child(sys.argv[2], sys.argv[4:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="runs per case (default 7, --first-stem 3)")
    ap.add_argument("--first-stem", action="store_true", help="time a short generate and edit to a stem")
    ap.add_argument("--importtime", action="store_true", help="with --first-stem: one run's largest imports")
    args = ap.parse_args()
    if args.first_stem:
        return first_stem(args.runs or 3, args.importtime)
    args.runs = args.runs or 7
    exe = shutil.which("musicgen-stem")
    base = [exe] if exe else [sys.executable, "-m", "musicgen_stem.cli"]
    print("| case | median s | worst s | exit |\n|---|---:|---:|---:|")
    for name, argv in CASES.items():
        times, code = [], 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            code = subprocess.run(base + argv, capture_output=True).returncode
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {statistics.median(times):.3f} | {max(times):.3f} | {code} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
