"""Jams in the app (no Gradio): an uploaded loop plays over and over, the model writes a new take of
the other stems every cycle (`jam.Player`, on the clock), each cycle's mix is written as a small
WAV for the page to schedule gaplessly (`assets/mixer.js`, Web Audio), commands change what comes
next, and the session becomes a result (stems, mix, zip) when it stops.

A jam holds the model while it plays (jobs run one at a time): it stops by itself after
`MAX_JAM_SECONDS`, when its page closes, or when the user stops it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import AudioError, GenerationError
from ..inputs import check_prompt
from .forms import Limits, parse_seed
from .holder import ModelHolder
from .results import new_job_dir, write_result

__all__ = ["MAX_JAM_SECONDS", "Cycle", "JamRegistry", "jam_job"]

MAX_JAM_SECONDS = 600.0


@dataclass(frozen=True)
class Cycle:
    """One cycle as handed to the page: its number, the WAV of its mix and its length in s."""

    index: int
    path: str
    seconds: float


class FileSink:
    """A `jam.Player` sink writing each cycle's mix as `cycle_NNNNN.wav` (16-bit) in `folder` and
    queueing it for the page; None in the queue when the player stops."""

    def __init__(self, folder: Path, sample_rate: int) -> None:
        self.folder, self.rate, self.count = folder, sample_rate, 0
        self.queue: queue.SimpleQueue[Cycle | None] = queue.SimpleQueue()

    def write(self, audio: np.ndarray) -> None:  # [C, n] float32
        path = self.folder / f"cycle_{self.count:05d}.wav"
        sf.write(path, np.clip(audio.T, -1.0, 1.0), self.rate, subtype="PCM_16")
        self.queue.put(Cycle(self.count, str(path), audio.shape[-1] / self.rate))
        self.count += 1

    def close(self) -> None:
        self.queue.put(None)


class JamRegistry:
    """The player of each browser session's jam, for the commands typed while it plays."""

    def __init__(self) -> None:
        self._players: dict[str, Any] = {}
        self._lock = threading.Lock()

    def set(self, session: str, player: Any) -> None:
        with self._lock:
            self._players[session] = player

    def drop(self, session: str) -> None:
        with self._lock:
            self._players.pop(session, None)

    def command(self, session: str, line: str) -> str:
        """Queue `line` for the session's jam; what the page shows."""
        with self._lock:
            player = self._players.get(session)
        if player is None:
            return "no jam is playing: start one first"
        if not (line or "").strip():
            return "type a command: prompt TEXT, vary 0..1, mute STEM, solo STEM, unmute, regenerate STEM"
        player.command(line)
        return f"heard from the next cycle: {line.strip()}"


def jam_job(
    holder: ModelHolder,
    workdir: str | os.PathLike[str],
    *,
    loop: Mapping[str, str | None],
    prompt: str = "",
    bpm: Any = None,
    bars: Any = None,
    regenerate: Sequence[str] = (),
    vary: float = 1.0,
    seed: Any = None,
    sampling: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    on_player: Callable[[Any], None] | None = None,
    stopped: Callable[[], bool] | None = None,
    max_cycles: int | None = None,
) -> Iterator[Cycle | dict[str, Any]]:
    """Yield each `Cycle` as it is handed out on the clock, then the session's result dict.

    loop: {stem: uploaded file} (whole bars; `bpm`/`bars` as in `musicgen-stem jam`, 0 or None:
    found); regenerate: the stems the model writes (default: those not in the loop). The jam stops
    when `stopped()` says so, after `max_cycles` cycles, or at `MAX_JAM_SECONDS`.
    """
    from ..api.checks import draw_seed
    from ..jam.loop import read_loop
    from ..jam.output import session_parts
    from ..jam.player import Player
    from ..jam.session import Jam, JamSettings

    limits = limits or Limits()
    files = {r: limits.check_upload(p, f"the {r} loop") for r, p in loop.items() if p}
    if not files:
        raise AudioError("upload at least one stem of the loop (drums, other or bass)")
    text = (prompt or "").strip() or None
    check_prompt(text, "the prompt")
    if not 0.0 <= float(vary) <= 1.0:
        raise GenerationError(f"vary goes from 0 to 1, got {vary}")
    loop_ = read_loop(files, float(bpm) if bpm else None, int(bars) if bars else None)
    workdir = Path(workdir)
    folder = new_job_dir(workdir)
    (folder / "cycles").mkdir()
    with holder.running(sampling) as model:
        unknown = [s for s in loop_.stems if s not in model.stems]
        if unknown:
            raise AudioError(f"the loop's {', '.join(unknown)} is not a stem of this model")
        free = [s for s in model.stems if s not in loop_.stems]
        regen = tuple(s for s in (regenerate or free) if s in free) or tuple(free)
        jam = Jam(model, loop_, seed=draw_seed(parse_seed(seed)))
        sink = FileSink(folder / "cycles", model.sample_rate)
        player = Player(jam, JamSettings(text, regen, float(vary)), [sink], realtime=True)
        if on_player is not None:
            on_player(player)
        cap = max(1, int(MAX_JAM_SECONDS // loop_.seconds))
        cycles = min(cap, max_cycles or cap)
        records: list[Any] = []
        errors: list[BaseException] = []

        def play() -> None:
            try:
                records.extend(player.run(cycles))
            except BaseException as e:  # raised in the page's thread below
                errors.append(e)
                sink.close()

        thread = threading.Thread(target=play, name="app-jam", daemon=True)
        thread.start()
        try:
            while (item := _next(sink, stopped, player)) is not None:
                yield item
        finally:
            player.stop()
            thread.join()
        if errors:
            raise errors[0]
        parts = session_parts(jam, records)
    meta = {
        "kind": "jam",
        "prompt": text or "",
        "seed": jam.seed,
        "model": holder.name,
        "params": dict(sampling or {}),
        "regenerated": list(regen),
        "bpm": round(loop_.bpm, 3),
        "bars": loop_.bars,
        "cycles": parts.jam_json["cycles"],
    }
    name = f"musicgen-stem-jam-{jam.seed}"
    yield write_result(folder / "jam", parts.audio, parts.sample_rate, parts.codes, meta, name, parts.kept)


def _next(sink: FileSink, stopped: Callable[[], bool] | None, player: Any) -> Cycle | None:
    """The next cycle handed out (None: the player stopped); asks the player to stop once
    `stopped()` says so."""
    while True:
        if stopped is not None and stopped():
            player.stop()
        try:
            return sink.queue.get(timeout=0.1)
        except queue.Empty:
            continue
