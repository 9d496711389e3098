"""What the web app lets a client reach: one private folder per session, logins, exposure rules.

Every browser session gets a folder with an unguessable name (128 random bits) under the app's
sessions root; its results are written there and only that session is told the paths (Gradio
serves them to a logged-in client that names them, and nobody else can guess them). Folders of
sessions idle for `ttl` seconds are deleted by `sweep` (run on a schedule and before each job),
a session's folder when its page is closed (`drop`), and all of them when the app stops
(`close`). Job inputs that name files (the last result) are checked to lie in the session's own
folder (`check_owned`).

Logins use Gradio's own auth: `--auth USER:PASS` (repeatable), `--auth-file FILE` (one USER:PASS a
line) or the `MUSICGEN_STEM_AUTH` variable (USER:PASS[,USER:PASS...]). `check_exposure` refuses to
listen beyond loopback without a login unless the operator passes `--insecure`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MusicGenStemError
from .options import DEFAULT_TTL

__all__ = [
    "AUTH_ENV",
    "SessionStore",
    "check_exposure",
    "is_loopback",
    "parse_auth",
]

AUTH_ENV = "MUSICGEN_STEM_AUTH"


def is_loopback(host: str) -> bool:
    """True when `host` is only reachable from this machine."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for item in (t.strip() for t in text.replace("\n", ",").split(",")):
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise MusicGenStemError(f"{where}: expected USER:PASS, got '{user.strip()[:40]}:…'")
        pairs.append((user.strip(), password))
    return pairs


def parse_auth(
    auth: Sequence[str] | None = None, auth_file: str | None = None, env: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Logins from --auth values, an --auth-file and the MUSICGEN_STEM_AUTH variable (all combined)."""
    pairs = [p for value in auth or [] for p in _pairs(value, "--auth")]
    if auth_file:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MusicGenStemError(f"cannot read --auth-file '{auth_file}': {exc}") from None
        pairs += _pairs(text, f"--auth-file '{auth_file}'")
        if not pairs:
            raise MusicGenStemError(f"--auth-file '{auth_file}' holds no USER:PASS line")
    value = (os.environ if env is None else env).get(AUTH_ENV, "")
    if value.strip():
        pairs += _pairs(value, AUTH_ENV)
    return pairs


def check_exposure(host: str, logins: Sequence[tuple[str, str]], insecure: bool) -> str | None:
    """Refuse a non-loopback address without logins (unless `insecure`); a warning line, or None."""
    if is_loopback(host):
        return None
    where = "every network interface" if host.strip() in ("0.0.0.0", "::", "") else f"'{host}'"
    if logins:
        return (
            f"note: the app listens on {where}; users log in ({len(logins)} login(s)). Serve it "
            "behind HTTPS (a reverse proxy) so that passwords do not cross the network in clear."
        )
    if not insecure:
        raise MusicGenStemError(
            f"refusing to listen on {where} without a login: pass --auth USER:PASS (or --auth-file FILE, "
            f"or set {AUTH_ENV}), or --insecure to let anyone who can reach this machine use it"
        )
    return (
        f"WARNING: the app listens on {where} with no login (--insecure): anyone who can reach this "
        "machine can use it (and its CPU/GPU)."
    )


@dataclass
class SessionStore:
    """Per-session folders with unguessable names under `root` (see module docstring)."""

    root: Path
    ttl: float = DEFAULT_TTL
    _folders: dict[str, Path] = field(default_factory=dict, repr=False)
    _used: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, session: str) -> Path:
        """The session's folder (created on first use); marks the session as active."""
        with self._lock:
            path = self._folders.get(session)
            if path is None or not path.is_dir():
                path = self.root / secrets.token_urlsafe(16)
                path.mkdir(mode=0o700)
                self._folders[session] = path
            self._used[session] = time.monotonic()
            return path

    def check_owned(self, session: str, path: str | os.PathLike[str], what: str = "the file") -> Path:
        """`path` resolved, if it lies in the session's folder; else a `MusicGenStemError`."""
        with self._lock:
            own = self._folders.get(session)
        p = Path(path).resolve()
        if own is None or not p.is_relative_to(own):
            raise MusicGenStemError(f"{what} is not one of this session's results; generate or upload again")
        return p

    def sweep(self, now: float | None = None) -> int:
        """Delete the folders of sessions idle for `ttl` seconds (and strays of earlier runs);
        returns how many were deleted."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [s for s, t in self._used.items() if now - t > self.ttl]
            doomed = [self._folders.pop(s) for s in idle]
            for s in idle:
                del self._used[s]
            known = set(self._folders.values())
        wall = time.time()
        for entry in self.root.iterdir():
            if entry.is_dir() and entry not in known and wall - entry.stat().st_mtime > self.ttl:
                doomed.append(entry)
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        return len(doomed)

    def drop(self, session: str) -> None:
        """Delete a session's folder now (its page was closed)."""
        with self._lock:
            path = self._folders.pop(session, None)
            self._used.pop(session, None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Delete every session's folder (the app stops)."""
        with self._lock:
            paths = list(self._folders.values())
            self._folders.clear()
            self._used.clear()
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)

    def start_sweeper(self, interval: float | None = None) -> threading.Event:
        """Run `sweep` every `interval` seconds (default ttl/4) on a daemon thread; set the
        returned event to stop it."""
        stop = threading.Event()
        period = max(1.0, interval if interval is not None else self.ttl / 4)

        def loop() -> None:
            while not stop.wait(period):
                self.sweep()

        threading.Thread(target=loop, name="musicgen-stem-sweeper", daemon=True).start()
        return stop
