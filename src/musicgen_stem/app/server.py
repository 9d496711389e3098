"""Serving the app: `musicgen-stem app` options, loading the launch-time model, queue and launch.

Gradio is imported only here (when the app starts) and in `ui`, so that the command line and the
job functions work without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, MusicGenStemError
from .forms import Limits
from .holder import ModelHolder
from .options import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_QUEUE, add_arguments
from .page import head_html
from .sessions import SessionStore, check_exposure, parse_auth

if TYPE_CHECKING:
    import gradio as gr

__all__ = [
    "build_app",
    "host_warning",
    "launch",
    "main",
    "run",
]


def host_warning(host: str) -> str | None:
    """The line to print when the app is reachable from other machines without a login, else None."""
    return check_exposure(host, [], insecure=True)


def build_app(
    holder: ModelHolder, sessions: SessionStore | str | os.PathLike[str], limits: Limits | None = None
) -> gr.Blocks:
    """The Gradio Blocks of the app (`ui.build_app`; Gradio is imported here, analytics off)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from .ui import build_app as build

    return build(holder, sessions, limits)


def launch(
    demo: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    limits: Limits | None = None,
    queue: int = DEFAULT_QUEUE,
    sessions: SessionStore,
    auth: Sequence[tuple[str, str]] = (),
    insecure: bool = False,
    block: bool = True,
) -> Any:
    """Queue (bounded, one job at a time) and serve `demo`: only the sessions' folders are served,
    logins through Gradio's auth; refuses a non-loopback `host` without `auth` unless `insecure`.
    Sessions are swept on a schedule; with `block`, every session folder is deleted on exit."""
    limits = limits or Limits()
    note = check_exposure(host, auth, insecure)
    if note:
        print(note, file=sys.stderr)
    demo.queue(max_size=max(1, int(queue)), default_concurrency_limit=1)
    stop = sessions.start_sweeper()
    try:
        return demo.launch(
            server_name=host,
            server_port=int(port),
            max_file_size=f"{limits.max_upload_mb:g}mb",
            allowed_paths=[str(sessions.root)],
            auth=list(auth) or None,
            show_error=True,
            ssr_mode=False,
            share=False,
            inbrowser=False,
            prevent_thread_lock=not block,
            head=head_html(),
            footer_links=[],
        )
    finally:
        if block:
            stop.set()
            sessions.close()


def _check_options(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Refuse bad options before anything slow is loaded; returns the logins."""
    if args.max_duration <= 0 or args.max_upload_mb <= 0 or args.queue < 1:
        raise MusicGenStemError("--max-duration and --max-upload-mb must be > 0 and --queue >= 1")
    if not 0 < args.port < 65536:
        raise MusicGenStemError(f"--port must be in 1..65535, got {args.port}")
    if not args.session_ttl > 0:
        raise MusicGenStemError(f"--session-ttl must be > 0 seconds, got {args.session_ttl}")
    logins = parse_auth(args.auth, args.auth_file)
    check_exposure(args.host, logins, args.insecure)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MusicGenStemError("the app needs Gradio: pip install 'musicgen-stem[app]'") from None
    return logins


def run(args: argparse.Namespace) -> int:
    """Start the app; returns when the server stops."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logins = _check_options(args)
    from ..commands.options import load_model_from_args

    separator = None if str(args.separator).strip().lower() in ("", "none") else args.separator
    holder = ModelHolder.start(
        args.model, loader=lambda name: load_model_from_args(name, args), separator=separator
    )
    if holder.model is None:
        if args.model:
            raise ModelError(holder.message)
        raise ModelError(f"{holder.message}; pass a model folder with --model")
    temp = None if args.output_dir else tempfile.mkdtemp(prefix="musicgen-stem-app-")
    try:
        sessions = SessionStore(Path(args.output_dir or temp) / "sessions", ttl=args.session_ttl)
        limits = Limits(args.max_duration, args.max_upload_mb)
        demo = build_app(holder, sessions, limits)
        launch(
            demo,
            host=args.host,
            port=args.port,
            limits=limits,
            queue=args.queue,
            sessions=sessions,
            auth=logins,
            insecure=args.insecure,
        )
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m musicgen_stem.app`: the same options as `musicgen-stem app`."""
    from . import __doc__ as doc

    parser = argparse.ArgumentParser(prog="musicgen-stem app", description=(doc or "").split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MusicGenStemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
