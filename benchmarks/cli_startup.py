"""Time to first answer of the `musicgen-stem` command line (issue: the first five minutes).

    python benchmarks/cli_startup.py [--runs 7]

Runs each case in a fresh process (the installed `musicgen-stem` entry point) and prints the
median and worst wall time. Cases: `--help`, `--version`, a command's missing argument, a bad
choice, and every command's `--help` (none imports torch: the module commands' options live in
torch-free modules). Report what else was running on the machine beside the numbers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="runs per case (median reported)")
    args = ap.parse_args()
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
