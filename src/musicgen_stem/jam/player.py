"""Playing a jam: takes generated one cycle ahead on a worker thread, each cycle handed to the
sinks (sound card, a PCM pipe) on the clock, a take that is not ready replaced by the previous one.

Realtime: cycle 0 is the loop alone (the first take is generated while it plays); cycle n is handed
to the sinks `lead` seconds before its border, and its take must be ready `margin` seconds before
that, else it is stopped and the previous take repeats (`late`); the clock never waits. A command
that changes the take (prompt, regenerate, vary) restarts the take being generated if there is
time left for it, so that it is heard at the next border; mute and solo act on the next cycle
handed out. Not realtime (files only): every cycle is generated in turn, none is late.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from ..api.streaming import StreamStopped
from .control import CommandError, apply_command, is_quit
from .session import Jam, JamSettings, Take


class Sink(Protocol):
    def write(self, audio: np.ndarray) -> None:
        """audio [C, n] float32 at the model's rate, in order, without gaps."""

    def close(self) -> None: ...


@dataclass
class CycleRecord:
    """One cycle as played, for `jam.json`."""

    cycle: int
    prompt: str | None
    regenerate: list[str]
    vary: float
    new_bars: int
    seed: int
    generate_s: float
    late: bool
    count_in: bool = False
    heard: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out["generate_s"] = round(self.generate_s, 3)
        return out


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Player:
    """Runs `jam` from `settings`; `command(line)` changes them while it plays (any thread)."""

    def __init__(
        self,
        jam: Jam,
        settings: JamSettings,
        sinks: Sequence[Sink] = (),
        realtime: bool = False,
        lead: float = 0.3,
        margin: float = 0.2,
        say: Callable[[str], None] = _say,
    ) -> None:
        self.jam, self.settings, self.sinks = jam, settings, list(sinks)
        self.realtime, self.lead, self.margin, self.say = realtime, lead, margin, say
        self.records: list[CycleRecord] = []
        self.first_sound_s: float | None = None
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._restart = threading.Event()
        self._quit = threading.Event()

    # --- control ---------------------------------------------------------------------------
    def command(self, line: str) -> None:
        """Queue one command line (applied by the playing thread)."""
        self._commands.put(line)

    def stop(self) -> None:
        """Stop after the cycle playing now (the session so far is kept)."""
        self._quit.set()

    def _apply_commands(self, time_left: float = 0.0) -> None:
        """Apply the queued commands; one that changes the take restarts the take being generated
        if `time_left` (s, to its deadline) holds another take as long as the last one."""
        while True:
            try:
                line = self._commands.get_nowait()
            except queue.Empty:
                return
            if not line.strip():
                continue
            if is_quit(line):
                self._quit.set()
                continue
            try:
                with self._lock:
                    old = self.settings
                    self.settings = apply_command(old, line, self.jam.model.stems, self.jam.free_stems)
                    new = self.settings
            except CommandError as e:
                self.say(str(e))
                continue
            changed = (old.prompt, old.regenerate, old.vary) != (new.prompt, new.regenerate, new.vary)
            last = self.records[-1].generate_s if self.records and self.records[-1].generate_s else 0.0
            if changed and time_left > 1.2 * (last or 0.5 * self.jam.loop.seconds):
                self._restart.set()

    def _current(self) -> JamSettings:
        with self._lock:
            return self.settings

    # --- the cycles ------------------------------------------------------------------------
    def run(self, cycles: int | None = None) -> list[CycleRecord]:
        """Play `cycles` cycles (None: until `stop()`, a quit command or Ctrl-C); the records."""
        try:
            if self.realtime:
                self._run_realtime(cycles)
            else:
                self._run_offline(cycles)
        except KeyboardInterrupt:
            self.say("stopped: the session so far is kept")
        finally:
            self._quit.set()
            for sink in self.sinks:
                sink.close()
        return self.records

    def _run_offline(self, cycles: int | None) -> None:
        began = time.perf_counter()
        n = 0
        while (cycles is None or n < cycles) and not self._quit.is_set():
            self._apply_commands()
            settings = self._current()
            take = self.jam.next_take(settings)
            self._emit(n, settings, take, late=False, began=began)
            n += 1

    def _run_realtime(self, cycles: int | None) -> None:
        jobs: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        done: queue.SimpleQueue[tuple[Take | None, bool, BaseException | None]] = queue.SimpleQueue()
        worker = threading.Thread(target=self._work, args=(jobs, done), name="jam-takes", daemon=True)
        worker.start()
        period = self.jam.loop.seconds
        t0 = time.monotonic()
        try:
            count_in = self.jam.repeat_take()  # cycle 0: the loop alone
            self._emit(0, self._current(), count_in, late=False, began=t0, count_in=True)
            n = 1
            while (cycles is None or n < cycles) and not self._quit.is_set():
                hand_out = t0 + n * period - self.lead
                jobs.put(hand_out - self.margin)
                while True:
                    try:
                        take, late, error = done.get(timeout=0.02)
                        break
                    except queue.Empty:
                        self._apply_commands(time_left=hand_out - self.margin - time.monotonic())
                if error is not None:
                    raise error
                assert take is not None
                time.sleep(max(0.0, hand_out - time.monotonic()))
                self._apply_commands()
                self._emit(n, self._current(), take, late=late, began=t0)
                n += 1
        finally:
            self._quit.set()  # a take being written stops at its next step
            jobs.put(None)
            worker.join()

    def _work(
        self,
        jobs: queue.SimpleQueue[float | None],
        done: queue.SimpleQueue[tuple[Take | None, bool, BaseException | None]],
    ) -> None:
        """The worker: for each deadline, the next take (restarted on a changed setting while time
        is left; the previous take repeated when the deadline passes)."""
        while (deadline := jobs.get()) is not None:
            try:
                while True:
                    self._restart.clear()
                    settings = self._current()

                    def stop(deadline: float = deadline) -> bool:
                        return self._restart.is_set() or self._quit.is_set() or time.monotonic() > deadline

                    try:
                        done.put((self.jam.next_take(settings, stop), False, None))
                        break
                    except StreamStopped:
                        if self._restart.is_set() and not self._quit.is_set() and time.monotonic() < deadline:
                            continue  # a changed setting: start again with it
                        done.put((self.jam.repeat_take(), True, None))
                        break
            except BaseException as e:  # handed to the playing thread, which raises it
                done.put((None, False, e))
                return

    def _emit(
        self, n: int, settings: JamSettings, take: Take, late: bool, began: float, count_in: bool = False
    ) -> None:
        """Hand cycle n to the sinks (the heard stems mixed) and record it."""
        audio = self.jam.cycle_audio(n)
        heard = settings.heard(list(audio))
        first = next(iter(audio.values()))
        mix = sum((audio[s] for s in heard), first.new_zeros(first.shape)).numpy().astype(np.float32)
        for sink in self.sinks:
            sink.write(mix)
        if self.first_sound_s is None:
            self.first_sound_s = (time.monotonic() if self.realtime else time.perf_counter()) - began
        record = CycleRecord(
            n, take.prompt, list(take.regenerate), take.vary, take.new_bars, take.seed, take.generate_s, late
        )
        record.count_in, record.heard = count_in, heard
        self.records.append(record)
        if late:
            self.say(f"cycle {n}: the take was not ready in time, the previous one repeats")
