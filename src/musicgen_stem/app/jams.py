"""Jams in the app (no Gradio): an uploaded loop plays over and over, the model writes a new take of
the other stems every cycle (`jam.Player`, on the clock), each cycle's mix is written as a small
WAV for the page to schedule gaplessly (`assets/mixer.js`, Web Audio), commands change what comes
next, and the session becomes a result (stems, mix, zip) when it stops. With the browser's
microphone (`LiveInput`), what the musician plays along is a kept stem, answered once the cycle
played has reached the server whole (`browser_answer_cycles`: 3 cycles on for cycles of 1.5 s or
more).

A jam holds the model while it plays (jobs run one at a time): it stops by itself after
`MAX_JAM_SECONDS`, when its page closes, or when the user stops it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import AudioError, GenerationError
from ..inputs import check_prompt
from ..jam.live import ANSWER_CYCLES, Recording
from .forms import Limits, parse_seed
from .holder import ModelHolder
from .results import new_job_dir, write_result

__all__ = ["MAX_JAM_SECONDS", "Cycle", "JamRegistry", "LiveInput", "jam_job", "parse_chunk"]

MAX_JAM_SECONDS = 600.0
MAX_CHUNK_SECONDS = 1.0  # the longest microphone chunk taken from the page
LIVE_TAIL_SECONDS = 2.0  # the page plays the last cycle after it was handed out: its chunks come later
#: How far the page's microphone chunks arrive behind the server's clock: the page plays a cycle
#: 0.5 s after it is handed out plus the player's lead, then a chunk (0.25 s), the latency and the
#: round trip (20-180 ms measured) pass before it is written.
BROWSER_DELAY_SECONDS = 1.5


def browser_answer_cycles(cycle_seconds: float) -> int:
    """Cycles after which a take reads what was played in the browser: one more per cycle's worth
    of `BROWSER_DELAY_SECONDS` than the sound card's `ANSWER_CYCLES`, so that the cycle it reads
    has arrived whole when its take is written."""
    return ANSWER_CYCLES + math.ceil(BROWSER_DELAY_SECONDS / cycle_seconds)


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


def parse_chunk(text: str, sample_rate: int) -> tuple[int, np.ndarray, float | None]:
    """A microphone chunk from the page, JSON {"start": session sample, "pcm": base64 of
    little-endian int16 at `sample_rate`, "latency": ms the page took off}: (start, [n] float32,
    latency). ValueError when it does not parse or is out of bounds."""
    limit = round(MAX_CHUNK_SECONDS * sample_rate)
    if not isinstance(text, str) or len(text) > 4 * limit + 200:
        raise ValueError("not a chunk, or too long")
    try:
        msg = json.loads(text)
        start, pcm, latency = msg["start"], msg["pcm"], msg.get("latency")
        raw = base64.b64decode(pcm, validate=True)
    except (KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise ValueError(f"not a chunk: {e}") from None
    if type(start) is not int or not 0 <= start <= MAX_JAM_SECONDS * sample_rate:
        raise ValueError(f"start out of the session: {start!r}")
    if len(raw) % 2 or len(raw) > 2 * limit:
        raise ValueError(f"pcm of {len(raw)} bytes")
    if latency is not None and (type(latency) not in (int, float) or not 0 <= latency <= 1000):
        raise ValueError(f"latency out of range: {latency!r}")
    return start, np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, latency


@dataclass
class LiveInput:
    """The browser's microphone in a jam: `stem` is played along live; each chunk the page sends
    (`parse_chunk`) is written into `recording` where it was played on the session's clock (the
    page took the latency off: the recording's is 0). Chunks that do not parse, or lie beyond the
    time the jam has been running, are counted in `ignored`."""

    stem: str
    recording: Recording
    sample_rate: int
    chunks: int = 0
    ignored: int = 0
    latency_ms: float | None = None
    closed: bool = False  # the page went away: its last chunks are not waited for
    answer_cycles: int = ANSWER_CYCLES  # set by the jam (`browser_answer_cycles`)
    began: float = field(default_factory=time.monotonic)

    def add(self, text: str) -> bool:
        """Write one chunk; False (counted) when it is ignored."""
        try:
            start, pcm, latency = parse_chunk(text, self.sample_rate)
            if start + len(pcm) > (time.monotonic() - self.began + 1.0) * self.sample_rate:
                raise ValueError("ahead of the jam's clock")
        except ValueError:
            self.ignored += 1
            return False
        self.recording.write(start, pcm[None])
        self.chunks += 1
        self.latency_ms = latency if latency is not None else self.latency_ms
        return True

    def meta(self) -> dict[str, Any]:
        """What the session's meta says of the live input."""
        return {
            "stem": self.stem,
            "latency_ms": self.latency_ms,
            "chunks": self.chunks,
            "ignored": self.ignored,
            "answer_cycles": self.answer_cycles,
        }


class JamRegistry:
    """The player of each browser session's jam, for the commands typed while it plays, and its
    live input (the microphone's chunks)."""

    def __init__(self) -> None:
        self._players: dict[str, Any] = {}
        self._lives: dict[str, LiveInput] = {}
        self._lock = threading.Lock()

    def set(self, session: str, player: Any) -> None:
        with self._lock:
            self._players[session] = player

    def set_live(self, session: str, live: LiveInput) -> None:
        with self._lock:
            self._lives[session] = live

    def live(self, session: str) -> LiveInput | None:
        with self._lock:
            return self._lives.get(session)

    def drop(self, session: str) -> None:
        """The jam ended: its player and its live input go (later chunks are dropped)."""
        with self._lock:
            self._players.pop(session, None)
            self._lives.pop(session, None)

    def mic(self, session: str, text: str) -> None:
        """A microphone chunk from the session's page (nothing when no live jam plays)."""
        live = self.live(session)
        if live is not None:
            live.add(text)

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
    live: LiveInput | None = None,
) -> Iterator[Cycle | dict[str, Any]]:
    """Yield each `Cycle` as it is handed out on the clock, then the session's result dict.

    loop: {stem: uploaded file} (whole bars; `bpm`/`bars` as in `musicgen-stem jam`, 0 or None:
    found); regenerate: the stems the model writes (default: those not in the loop, nor live).
    live: the browser's microphone (a stem of the model not in the loop), kept as played. The jam
    stops when `stopped()` says so, after `max_cycles` cycles, or at `MAX_JAM_SECONDS`.
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
        if live is not None and live.stem not in free:
            raise AudioError(
                f"play along live on a stem the loop does not hold ({', '.join(free)}), not {live.stem}"
            )
        free = [s for s in free if live is None or s != live.stem]
        regen = tuple(s for s in (regenerate or free) if s in free) or tuple(free)
        stem, recording = (live.stem, live.recording) if live is not None else (None, None)
        if live is not None:
            live.answer_cycles = browser_answer_cycles(loop_.seconds)
        answer = ANSWER_CYCLES if live is None else live.answer_cycles
        jam = Jam(
            model, loop_, draw_seed(parse_seed(seed)), live=stem, recording=recording, answer_cycles=answer
        )
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
        if live is not None:
            _await_live(live, jam.timeline.sample(len(records)), loop_.seconds + LIVE_TAIL_SECONDS)
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
    if live is not None:
        meta["live"] = live.meta()
    name = f"musicgen-stem-jam-{jam.seed}"
    yield write_result(folder / "jam", parts.audio, parts.sample_rate, parts.codes, meta, name, parts.kept)


def _await_live(live: LiveInput, end: int, seconds: float) -> None:
    """Wait (up to `seconds`, not once the page is gone) until the page's chunks reach session
    sample `end`: the page plays the last cycle after it was handed out."""
    deadline = time.monotonic() + seconds
    while live.recording.length < end and not live.closed and time.monotonic() < deadline:
        time.sleep(0.05)


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
