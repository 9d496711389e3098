"""Several clients at once against one app (benchmarks/app_load.py with small numbers): every
request completes or is refused as queue-full, nobody sees another's files, no login no entry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "gradio_client", reason="the load test needs gradio_client (pip install 'musicgen-stem[app]')"
)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "app_load.py"


def test_concurrent_clients(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("app_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = load  # its dataclasses look their module up
    spec.loader.exec_module(load)
    report = load.run_load(clients=3, queue=1, duration=0.5, workdir=tmp_path)
    assert report.problems(max_growth_mb=1000) == [], report.summary()
    calls = [o for c in report.clients for o in c.outcomes]
    assert "ok" in calls and len(calls) >= 3
    assert all(o == "ok" or o.startswith("refused") for o in calls), calls
    assert not list((tmp_path / "sessions").iterdir())  # every session folder is gone with the app
