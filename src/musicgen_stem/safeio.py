"""Writes that never lose data: build the new version beside the old one, then swap.

Every folder we write (an output folder, a model folder, a stem pack) is filled in a temporary
sibling; `replace_dir` then puts it in place. Over an existing folder (`--force`) the entries the
new version does not have (a user's notes, say) are hard-linked into it first (copied where links
are not possible), the two folders are swapped in one atomic `renameat2(RENAME_EXCHANGE)` where the
system has it (else two renames, undone on failure), and only then is the old version deleted.
Files are flushed with fsync before the swap and the parent folder after it. SIGINT and SIGTERM
arriving during the swap are held back until it is over, so the target is always either the old
folder or the new one, whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "Interrupted",
    "check_writable",
    "fsync_dir",
    "fsync_tree",
    "held_signals",
    "io_reason",
    "make_temp_sibling",
    "replace_dir",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class Interrupted(KeyboardInterrupt):
    """SIGTERM raised as an exception, so that temporary files are cleaned up on the way out."""


def io_reason(exc: BaseException) -> str:
    """One line saying why a read or write failed (`No space left on device`...)."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (what a rename then makes visible)."""
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def make_temp_sibling(target: Path, kind: str = "tmp") -> Path:
    """Create `.<kind>-<name>-<random>` next to `target` (plain mkdir: default permissions)."""
    for _ in range(100):
        tmp = target.parent / f".{kind}-{target.name}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary folder name next to '{target}'")


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back during a critical section (main thread only), deliver them after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in caught[:1]:
            signal.raise_signal(s)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # e.g. a file system without RENAME_EXCHANGE: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (else copy) `src` to `dst`, a file or a whole folder."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
            raise
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Entries of `old` that `new` lacks are linked into `new` (the user's files survive --force)."""
    for entry in sorted(old.iterdir()):
        if not (new / entry.name).exists() and not (new / entry.name).is_symlink():
            _link_tree(entry, new / entry.name)


def replace_dir(tmp: Path, target: Path, check: Callable[[], None] | None = None) -> None:
    """Put the finished folder `tmp` at `target`: a rename when `target` is free, else (after
    `check()`, which may refuse) a swap that keeps `target`'s other entries; the old version is
    deleted only once the new one is in place. `tmp` must be a sibling of `target`."""
    fsync_tree(tmp)
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        target.rmdir()  # an empty folder counts as free
    if not (target.exists() or target.is_symlink()):
        try:
            with held_signals():
                os.rename(tmp, target)
            fsync_dir(target.parent)
            return
        except OSError:
            if not (target.exists() or target.is_symlink()):
                raise
    if check is not None:
        check()  # the target may have appeared meanwhile
    _carry_over(target, tmp)
    fsync_dir(tmp)
    with held_signals():
        if _exchange(tmp, target):
            old = tmp  # the exchange left the old version at the temporary name
        else:
            old = make_temp_sibling(target, "old")
            old.rmdir()
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
    try:
        fsync_dir(target.parent)
    finally:  # the new version is in place: the old one goes
        shutil.rmtree(old, ignore_errors=True)


def check_writable(target: Path, need_bytes: int = 0) -> None:
    """Refuse, before any work, an output folder that cannot be created or written (its nearest
    existing parent is read-only or not a folder) or whose disk has less than `need_bytes` free."""
    parent = Path(os.path.abspath(target))
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OSError(errno.ENOTDIR, f"'{parent}' is not a folder", str(target))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"cannot write into '{parent}'", str(target))
    free = shutil.disk_usage(parent).free
    if need_bytes > free:
        raise OSError(
            errno.ENOSPC, f"{free / 2**20:.0f} MB free, about {need_bytes / 2**20:.0f} MB needed", str(target)
        )
