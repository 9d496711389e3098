"""Load test of the web app: N clients at once (gradio_client, loopback, logged in) each generate
and then edit their result against one app with a tiny random model.

Checks: every request completes or is refused with a clear queue-full message; each client's
files live in one session folder of its own, which nobody else is told about; a client without a
login gets nothing; the server's memory stays bounded. `tests/test_app_load.py` runs it with
small numbers; the full run:

    python benchmarks/app_load.py --clients 20 --queue 8 --duration 1
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOGIN = ("load", "test-password")


@dataclass
class ClientResult:
    """What one client saw: per call "ok", "refused: ..." or "failed: ...", and its folders."""

    outcomes: list[str] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)


@dataclass
class LoadReport:
    clients: list[ClientResult]
    seconds: float
    rss_mb_before: float
    rss_mb_peak: float
    anonymous_refused: bool

    def problems(self, max_growth_mb: float) -> list[str]:
        """Everything that breaks the promises in the module docstring (empty: all good)."""
        out = [o for c in self.clients for o in c.outcomes if o.startswith("failed")]
        owners: dict[str, int] = {}
        for i, c in enumerate(self.clients):
            if len(c.folders) > 1:
                out.append(f"client {i} saw several session folders: {sorted(c.folders)}")
            for f in c.folders:
                if owners.setdefault(f, i) != i:
                    out.append(f"clients {owners[f]} and {i} share the folder {f}")
        if self.rss_mb_peak - self.rss_mb_before > max_growth_mb:
            out.append(f"memory grew by {self.rss_mb_peak - self.rss_mb_before:.0f} MB")
        if not self.anonymous_refused:
            out.append("a client without a login was let in")
        return out

    def summary(self) -> str:
        calls = [o for c in self.clients for o in c.outcomes]
        ok = sum(o == "ok" for o in calls)
        refused = sum(o.startswith("refused") for o in calls)
        return (
            f"{len(self.clients)} clients, {len(calls)} calls: {ok} ok, {refused} refused (queue full), "
            f"{len(calls) - ok - refused} failed; {self.seconds:.1f} s; "
            f"peak RSS {self.rss_mb_peak:.0f} MB (+{self.rss_mb_peak - self.rss_mb_before:.0f} MB)"
        )


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _folders(html: str, root: Path) -> set[str]:
    """The session folders named in a result's mixer HTML."""
    from urllib.parse import unquote

    names = set()
    for path in re.findall(r"file=([^'\"]+)", html):
        p = Path(unquote(path))
        if p.is_relative_to(root):
            names.add(p.relative_to(root).parts[0])
    return names


def _call(client: Any, result: ClientResult, root: Path, *args: Any, api_name: str) -> None:
    try:
        out = client.predict(*args, api_name=api_name)
    except Exception as exc:  # the client raises the app's message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        full = "queue" in msg.lower() and "full" in msg.lower()
        result.outcomes.append(f"{'refused' if full else 'failed'}: {msg[:200]}")
        return
    result.outcomes.append("ok")
    result.folders |= _folders(out[1], root)


def one_client(url: str, root: Path, seed: int, duration: float) -> ClientResult:
    """Generate, then regenerate the bass of the result (the session's last result)."""
    from gradio_client import Client

    result = ClientResult()
    try:
        client = Client(url, auth=LOGIN, verbose=False)
    except Exception as exc:
        result.outcomes.append(f"failed: cannot connect ({exc})")
        return result
    sampling = (250, 0.0, 1.0, 3.0, False)
    _call(client, result, root, "funk", duration, 1, str(seed), "", *sampling, api_name="/on_generate")
    if result.outcomes[-1] == "ok":
        edit = ("Last result", None, None, None, None, None, ["bass"], "new bass", 0, 0, str(seed + 1))
        _call(client, result, root, *edit, *sampling, api_name="/run_edit")
    return result


def run_load(clients: int, queue: int, duration: float, workdir: Path) -> LoadReport:
    """Start the app in this process, run `clients` clients at once, stop it; the report."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch

    from musicgen_stem import app
    from musicgen_stem.api import MusicGenStem

    torch.set_num_threads(1)
    model = MusicGenStem.from_config("tiny", seed=0, device="cpu")
    holder = app.ModelHolder(model=model, name="tiny (random)", separator_spec=None)
    store = app.SessionStore(workdir / "sessions", ttl=600)
    limits = app.Limits(max(2.0, duration), 5.0)
    demo = app.build_app(holder, store, limits)
    port = _free_port()
    app.launch(demo, port=port, limits=limits, queue=queue, sessions=store, auth=[LOGIN], block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        import httpx

        anonymous_refused = httpx.get(f"{url}gradio_api/info", timeout=30).status_code in (401, 403)
        before = _rss_mb()
        start = time.time()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            futures = [pool.submit(one_client, url, store.root, i * 10, duration) for i in range(clients)]
            results = [f.result() for f in futures]
        return LoadReport(results, time.time() - start, before, _rss_mb(), anonymous_refused)
    finally:
        demo.close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--queue", type=int, default=8, help="the app's --queue")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds generated per request")
    parser.add_argument("--max-growth-mb", type=float, default=1500.0, help="memory growth allowed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_load(args.clients, args.queue, args.duration, Path(tmp))
    print(report.summary())
    problems = report.problems(args.max_growth_mb)
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
