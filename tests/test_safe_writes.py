"""No write loses data: output folders (--force), model folders, stem packs and training
checkpoints are written new-then-swapped. A full disk (ENOSPC injected at every write call in
turn, and a real tiny tmpfs where the machine allows mounting one), a read-only target and
SIGINT/SIGTERM during the write each give a one-line error and leave the old or the new version
whole, with no temporary folder behind."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from musicgen_stem import modeldir, safeio
from musicgen_stem.cli import main
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.export import export_stem_pack
from musicgen_stem.outputs import write_stems_folder
from musicgen_stem.training.checkpoint import load_checkpoint, save_checkpoint

SR = 16000


def stems(seed: int, n: int = 1600) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: 0.1 * torch.randn(1, n, generator=g) for s in ("bass", "drums", "other")}


def codes() -> np.ndarray:
    return np.zeros((6, 5), dtype=np.int64)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (zip archives by member content: their timestamps vary)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            if p.suffix == ".zip":
                with zipfile.ZipFile(p) as z:
                    out[str(p.relative_to(folder))] = b"".join(z.read(n) for n in sorted(z.namelist()))
            else:
                out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def no_temp(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


class Faults:
    """Counts the calls that write, rename, link or flush; the `fail_at`-th raises OSError(code)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int, code: int = errno.ENOSPC):
        self.calls, self.fail_at, self.code = 0, fail_at, code
        targets = [
            (soundfile, "write"),
            (np, "save"),
            (pathlib.Path, "write_text"),
            (os, "rename"),
            (os, "replace"),
            (os, "link"),
            (os, "fsync"),
            (safeio, "_exchange"),
            (modeldir, "save_file"),
            (torch, "save"),
            (zipfile.ZipFile, "write"),
        ]
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))

    def wrap(self, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise OSError(self.code, os.strerror(self.code))
            return fn(*args, **kwargs)

        return call


def every_fault(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[], object], code: int = errno.ENOSPC
) -> Iterator[int]:
    """Run `write` with a fault at call 1, 2, ... until it succeeds; yields after each failure."""
    n = 0
    while True:
        n += 1
        failed: MusicGenStemError | None = None
        with monkeypatch.context() as m:
            faults = Faults(m, n, code)
            try:
                write()
            except MusicGenStemError as exc:
                failed = exc
        if failed is None:
            assert faults.calls < n  # it succeeded without meeting the fault: every call was tried
            return
        assert "\n" not in str(failed) and os.strerror(code) in str(failed), failed
        yield n


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_output_folder_force_survives_a_full_disk_at_every_call(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(safeio, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    write_stems_folder(out, stems(1), SR, codes(), {"v": 1})
    (out / "notes.txt").write_text("mine")  # a user's file in the folder survives too
    old = snapshot(out)
    ref = tmp_path / "ref"
    write_stems_folder(ref, stems(2), SR, codes(), {"v": 2})
    new = {**snapshot(ref), "notes.txt": b"mine"}
    write = lambda: write_stems_folder(out, stems(2), SR, codes(), {"v": 2}, force=True)  # noqa: E731
    failures = 0
    for _ in every_fault(monkeypatch, write):
        assert snapshot(out) in (old, new) and no_temp(tmp_path)
        failures += 1
    assert failures >= 8
    assert snapshot(out) == new and no_temp(tmp_path)


def test_each_failure_leaves_old_or_new_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_stems_folder(out, stems(1), SR, codes(), {"v": 1})
    old = snapshot(out)
    write_stems_folder(tmp_path / "ref", stems(2), SR, codes(), {"v": 2})
    new = snapshot(tmp_path / "ref")
    write = lambda: write_stems_folder(out, stems(2), SR, codes(), {"v": 2}, force=True)  # noqa: E731
    for _ in every_fault(monkeypatch, write):
        assert snapshot(out) in (old, new) and no_temp(tmp_path)
        write_stems_folder(out, stems(1), SR, codes(), {"v": 1}, force=True)  # back to the old one
        assert snapshot(out) == old


def test_model_save_survives_a_full_disk_at_every_call(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "m"
    tiny_model.save(target)
    old = snapshot(target)
    for _ in every_fault(monkeypatch, lambda: tiny_model.save(target, force=True)):
        assert snapshot(target) == old and no_temp(tmp_path)
    assert snapshot(target) == old  # the same model written again: same bytes


def test_export_pack_survives_a_full_disk_and_a_read_only_target(tmp_path, monkeypatch):
    out = tmp_path / "pack"
    export_stem_pack(out, stems(1), SR, zip=True)
    old = snapshot(out)
    export_stem_pack(tmp_path / "ref", stems(2), SR, zip=True)
    new = snapshot(tmp_path / "ref")
    write = lambda: export_stem_pack(out, stems(2), SR, zip=True, force=True)  # noqa: E731
    for _ in every_fault(monkeypatch, write):
        assert snapshot(out) in (old, new) and no_temp(tmp_path)
        export_stem_pack(out, stems(1), SR, zip=True, force=True)
    assert snapshot(out) == new  # the last try met no fault
    with monkeypatch.context() as m:  # a read-only target refuses the very first write
        Faults(m, 1, errno.EROFS)
        with pytest.raises(MusicGenStemError, match="Read-only file system") as err:
            export_stem_pack(out, stems(1), SR, zip=True, force=True)
    assert "\n" not in str(err.value) and snapshot(out) == new and no_temp(tmp_path)


def test_checkpoint_survives_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    for _ in every_fault(monkeypatch, lambda: save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})):
        assert load_checkpoint(path)["step"] in (1, 2)  # 2 once the rename is done
        assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    assert load_checkpoint(path)["step"] == 2


# ------------------------------------------------------------------------- interruptions


@pytest.fixture()
def src_folder(tmp_path: Path) -> Iterator[Path]:
    """A source output folder; SIGINT raises KeyboardInterrupt meanwhile, as in a terminal (a test run
    earlier in the same process may have left another handler installed)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield write_stems_folder(tmp_path / "src", stems(3), SR, codes(), {"prompt": "x"})
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_the_write_keeps_the_old_pack(src_folder, tmp_path, monkeypatch, capsys, sig, rc):
    out = tmp_path / "pack"
    export_stem_pack(out, stems(1), SR)
    old = snapshot(out)
    real = soundfile.write
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(soundfile, "write", write)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["export", str(src_folder), "--out", str(out), "--force"]) == rc
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "nothing half-written" in err
    assert snapshot(out) == old and no_temp(tmp_path)
    assert signal.getsignal(signal.SIGTERM) == handler  # main puts the handler back


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_the_swap_is_held_until_it_is_done(src_folder, tmp_path, monkeypatch, capsys, sig):
    out = tmp_path / "pack"
    export_stem_pack(out, stems(1), SR)
    real = safeio._exchange

    def exchange(a, b):
        os.kill(os.getpid(), sig)  # arrives in the middle of the swap
        return real(a, b)

    monkeypatch.setattr(safeio, "_exchange", exchange)
    assert main(["export", str(src_folder), "--out", str(out), "--force"]) in (130, 143)
    capsys.readouterr()
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "bass.wav",
        "drums.wav",
        "mix.wav",
        "other.wav",
        "stems.json",
        "stems.mid",
    ]  # the new pack
    assert '"prompt": "x"' in (out / "stems.json").read_text() and no_temp(tmp_path)


# ------------------------------------------------------------------------- a real small disk


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 kB tmpfs (skipped where mounting is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected faults above cover it")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=10)


def test_real_full_disk_and_read_only_disk(tiny_disk: Path, capsys):
    out = tiny_disk / "out"
    write_stems_folder(out, stems(1, n=16000), SR, codes(), {"v": 1}, subtype="PCM_16")  # ~130 kB
    old = snapshot(out)
    big = stems(2, n=16000 * 3)  # ~400 kB more: no room for old and new together
    with pytest.raises(MusicGenStemError, match="No space left on device") as err:
        write_stems_folder(out, big, SR, codes(), {"v": 2}, force=True, subtype="FLOAT")
    assert "\n" not in str(err.value) and snapshot(out) == old and no_temp(tiny_disk)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True, capture_output=True)
    with pytest.raises(MusicGenStemError, match="Read-only file system"):
        write_stems_folder(out, stems(2), SR, codes(), {"v": 2}, force=True)
    assert snapshot(out) == old


def test_check_writable_refuses_files_as_folders_and_full_disks(tmp_path):
    import errno

    from musicgen_stem.safeio import check_writable

    check_writable(tmp_path / "new" / "deeper", need_bytes=1)  # a folder that does not exist yet
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError) as info:
        check_writable(tmp_path / "f" / "out")
    assert info.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as info:
        check_writable(tmp_path / "out", need_bytes=2**62)
    assert info.value.errno == errno.ENOSPC and "MB needed" in str(info.value)
