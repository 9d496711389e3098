"""A jam: the loop's stems kept, the other stems written anew for every cycle.

Each take is an edit with the loop as the kept stems, continuing from the session so far: its
window holds up to one cycle of what was played before (the model sees the line it continues),
the new cycle, and `tail` frames into the next one, so that the next take starts from where this
one's notes ring on and the decoder never waits for frames that do not exist yet. `vary` keeps the
first (1 - vary) of the bars of the previous take and writes the rest (0: the take repeats).

Only the generated streams are decided here; the loop's audio is never re-encoded into the output
(it is written as read), its codes are read only by the model. A live input (`jam.live`) is a kept
stem too: the take of cycle n reads what was played over cycle n - `ANSWER_CYCLES`, and the chords
of each take are read from it afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..api import MusicGenStem
from ..api.decoding import Conditions, fill
from ..api.options import Options
from ..codec.streaming import StreamingDecoder
from ..conditioning.attributes import with_tempo
from ..conditioning.chord_estimate import estimate_chords
from ..conditioning.chords import ChordChart
from ..conditioning.steps import BeatGrid, StepConds
from ..dsp import estimate_swing, onset_strength
from ..generation.tasks import Task
from ..layout import PERCUSSIVE_STEMS
from .live import ANSWER_CYCLES, Recording
from .loop import Loop, LoopError, Timeline

TAIL_SECONDS = 0.25  # each take runs this far into the next cycle


@dataclass(frozen=True)
class JamSettings:
    """What the player can change while it plays; read at each cycle border."""

    prompt: str | None
    regenerate: tuple[str, ...]
    vary: float = 1.0
    mute: frozenset[str] = frozenset()
    solo: frozenset[str] = frozenset()

    def heard(self, stems: Sequence[str]) -> list[str]:
        """The stems in the mix."""
        return [s for s in stems if (s in self.solo if self.solo else s not in self.mute)]


@dataclass
class Take:
    """A cycle's generated frames: `codes` [K, n] from frame `start`; `new` bars written anew."""

    cycle: int
    start: int
    codes: torch.Tensor
    prompt: str | None
    seed: int
    new_bars: int
    regenerate: tuple[str, ...] = ()
    vary: float = 1.0
    generate_s: float = 0.0


class Jam:
    """The generation side of a jam over `loop` (see the module docstring)."""

    def __init__(
        self,
        model: MusicGenStem,
        loop: Loop,
        seed: int = 0,
        chords: ChordChart | None = None,
        live: str | None = None,
        recording: Recording | None = None,
        answer_cycles: int = ANSWER_CYCLES,
    ) -> None:
        unknown = [s for s in [*loop.stems, *([live] if live else [])] if s not in model.stems]
        if unknown:
            raise LoopError(f"unknown stem(s) {unknown}: this model's stems are {', '.join(model.stems)}")
        if live is not None and (live in loop.stems or recording is None):
            raise LoopError(f"the live stem '{live}' must not be in the loop, and needs a recording")
        self.model, self.loop, self.seed = model, loop, seed
        if answer_cycles < ANSWER_CYCLES:
            raise LoopError(f"the live input is answered {ANSWER_CYCLES} cycles on at the soonest")
        self.live, self.recording, self.answer_cycles = live, recording, answer_cycles
        hop = round(model.sample_rate / model.frame_rate)
        self.timeline = Timeline(loop, model.sample_rate, hop, model.codec.channels)
        self.kept_stems = [*loop.stems, *([live] if live else [])]
        self.free_stems = [s for s in model.stems if s not in self.kept_stems]
        if not self.free_stems:
            raise LoopError("the loop holds every stem: leave out at least one for the model to play")
        self.decoders = {s: StreamingDecoder(model.codec.codec(s)) for s in self.free_stems}
        lag = max(d.lag for d in self.decoders.values())
        self.tail = max(lag + 2, round(TAIL_SECONDS * model.frame_rate))
        silence = torch.tensor(model.silence_tokens())[:, None]  # [K, 1]
        self.codes = silence[:, :0].clone()  # [K, H]: the session's frames so far
        self._silence = silence
        mix = loop.mix()
        twice = np.concatenate([mix, mix], axis=-1)  # a loop's pulse reads better over two cycles
        env = onset_strength(twice, loop.sample_rate)
        self.swing, _ = estimate_swing(env, loop.bpm, 0.0)
        self.given_chords = chords
        self.chords = chords if chords is not None else self._estimate_chords()
        self.audio: dict[str, list[torch.Tensor]] = {s: [] for s in self.free_stems}  # [C, n] pieces
        self.takes: list[Take] = []
        self.written: set[str] = set()  # the stems the model has written so far

    def _estimate_chords(self, cycle: int | None = None) -> ChordChart | None:
        """The chords of the loop's pitched stems (and of the live input's answered `cycle`),
        relative to the start of a cycle."""
        steps = self.model.steps
        heard = self.kept_stems if cycle is not None else list(self.loop.stems)  # none played yet
        pitched = [s for s in heard if s not in PERCUSSIVE_STEMS]
        if steps is None or steps.chord is None or not pitched:
            return None
        if cycle is None:
            harmony = sum(self.loop.stems[s].to_float64() for s in pitched)
            return estimate_chords(np.asarray(harmony), self.loop.sample_rate, self.loop.bpm, 0.0)
        a, b = self.timeline.sample(cycle), self.timeline.sample(cycle + 1)
        mix = sum(self.kept_audio(s, a, b) for s in pitched).numpy()  # type: ignore[union-attr]
        return estimate_chords(mix, self.timeline.sample_rate, self.loop.bpm, 0.0)

    def kept_audio(self, stem: str, a: int, b: int) -> torch.Tensor:
        """[C, b - a]: model samples [a, b) of a kept stem as the model hears it: the loop
        repeated, or the live input's cycle n - `answer_cycles` in cycle n (silence before)."""
        tl = self.timeline
        if stem != self.live:
            return tl.audio(stem, a, b)
        assert self.recording is not None
        out = torch.zeros(tl.channels, b - a)
        cycle = max(0, self.cycle_of(a))
        while tl.sample(cycle) < b:
            lo, hi = max(a, tl.sample(cycle)), min(b, tl.sample(cycle + 1))
            if cycle >= self.answer_cycles and hi > lo:
                shift = tl.sample(cycle) - tl.sample(cycle - self.answer_cycles)
                played = self.recording.segment(lo - shift, hi - shift)  # [C', n]
                out[:, lo - a : hi - a] = torch.from_numpy(played)  # [C, n]: recorded at C
            cycle += 1
        return out

    def cycle_of(self, sample: int) -> int:
        """The cycle that model sample `sample` is in."""
        tl = self.timeline
        n = int(sample // max(1, tl.sample(1)))
        while tl.sample(n + 1) <= sample:
            n += 1
        while n > 0 and tl.sample(n) > sample:
            n -= 1
        return n

    # --- one take --------------------------------------------------------------------------
    def next_take(self, settings: JamSettings, stop: Callable[[], bool] | None = None) -> Take:
        """Generate the frames of the next cycle (and `tail` into the one after): the take that
        continues the session. `stop` is checked at every step (raises `StreamStopped`)."""
        began = time.perf_counter()
        tl, model = self.timeline, self.model
        cycle = len(self.takes)
        start, end = self.codes.shape[-1], tl.frame(cycle + 1) + self.tail
        regen = [s for s in settings.regenerate if s in self.free_stems]
        known = self._repeat(cycle, start, end)  # [K, end - start]: the previous cycle again
        free = torch.zeros_like(known, dtype=torch.bool)
        new_bars = round(min(1.0, max(0.0, settings.vary)) * self.loop.bars)
        first_new = tl.frame(cycle) + round(
            (self.loop.bars - new_bars) * self.loop.bar_seconds * tl.frame_rate
        )
        for stem in regen:  # a stem not written yet is written whole, whatever `vary` says
            lo = 0 if stem not in self.written else max(0, first_new - start)
            if stem not in self.written or new_bars > 0:
                free[model.layout.streams_of_stems([stem]), lo:] = True
        seed = self.seed + cycle
        prompt = with_tempo(settings.prompt, round(self.loop.bpm, 2))
        if bool(free.any()):
            known = self._generate(cycle, start, end, known, free, regen, prompt, seed, stop)
        new = self.loop.bars if not self.written.issuperset(regen) else new_bars if regen else 0
        take = Take(cycle, start, known, prompt, seed, new, tuple(regen), settings.vary)
        self.written |= set(regen)
        self._commit(take)
        take.generate_s = time.perf_counter() - began
        return take

    def repeat_take(self) -> Take:
        """The next cycle as a copy of the previous one (a take that was not ready in time)."""
        cycle, start = len(self.takes), self.codes.shape[-1]
        end = self.timeline.frame(cycle + 1) + self.tail
        prev = self.takes[-1] if self.takes else None
        take = Take(cycle, start, self._repeat(cycle, start, end), prev.prompt if prev else None, -1, 0)
        self._commit(take)
        return take

    def _repeat(self, cycle: int, start: int, end: int) -> torch.Tensor:
        """[K, end - start]: frames [start, end) as the previous cycle played them (silence at first)."""
        K = self.codes.shape[0]
        if cycle == 0 or start == 0:
            return self._silence.expand(K, end - start).clone()
        period = self.timeline.frame(cycle) - self.timeline.frame(cycle - 1)
        src = torch.arange(start, end) - period
        src = src.clamp(min=0, max=self.codes.shape[-1] - 1)
        return self.codes[:, src].clone()

    def _generate(
        self,
        cycle: int,
        start: int,
        end: int,
        known: torch.Tensor,
        free: torch.Tensor,
        regen: list[str],
        prompt: str | None,
        seed: int,
        stop: Callable[[], bool] | None,
    ) -> torch.Tensor:
        """Fill `free` of frames [start, end), with up to one cycle of the session before as context."""
        tl, model = self.timeline, self.model
        cycle_frames = tl.frame(cycle + 1) - tl.frame(cycle)
        ctx = min(start, cycle_frames, max(0, model.edit_window_frames - (end - start)))
        a = start - ctx
        kept = {s: self.kept_audio(s, a * tl.hop, end * tl.hop) for s in self.kept_stems}
        loop_codes = model.encode_stems(kept, tl.sample_rate, num_samples=(end - a) * tl.hop)[0]  # [K, F]
        codes = torch.cat([self.codes[:, a:start], known], dim=-1)
        loop_rows = model.layout.streams_of_stems(self.kept_stems)
        codes[loop_rows] = loop_codes[loop_rows, : end - a]
        mask = torch.cat([torch.zeros(codes.shape[0], ctx, dtype=torch.bool), free], dim=-1)
        offset = cycle * self.loop.seconds - a / tl.frame_rate  # where the cycle starts, s
        steps = None
        if model.steps is not None:
            beat = (BeatGrid(self.loop.bpm, offset, self.swing),) if model.steps.beat is not None else ()
            if self.live is not None and self.live not in PERCUSSIVE_STEMS and self.given_chords is None:
                self.chords = self._estimate_chords(cycle)  # what the player played decides
            chart = self.chords.looped((end - a) / tl.frame_rate, -offset) if self.chords else None
            steps = StepConds(beat, (chart,) if model.steps.chord is not None else ())
        conditions = Conditions([prompt], steps)
        task = Task(codes[None], mask, tuple(regen))
        done = fill(model, task, [prompt], False, Options(seed=seed), stop, False, conditions)
        return done.codes[0, :, ctx:].cpu()

    def _commit(self, take: Take) -> None:
        """Append the take's frames to the session and decode its generated stems."""
        self.takes.append(take)
        self.codes = torch.cat([self.codes, take.codes], dim=-1)
        for s, sl in self.model.layout.stream_slices().items():
            if s in self.decoders:
                wav = self.decoders[s].push(take.codes[None, sl].to(self.model.device))[0].cpu().float()
                self.audio[s].append(wav)  # kept in pieces: no copy of the whole session per cycle

    # --- audio -----------------------------------------------------------------------------
    def _segment(self, stem: str, a: int, b: int) -> torch.Tensor:
        """[C, b - a]: model samples [a, b) of a generated stem (zeros where not decoded yet),
        read from its last pieces."""
        pieces, end = [], sum(w.shape[-1] for w in self.audio[stem])
        for w in reversed(self.audio[stem]):
            start = end - w.shape[-1]
            if start < b and end > a:
                pieces.append(w[:, max(a, start) - start : min(b, end) - start])
            if start <= a:
                break
            end = start
        seg = torch.cat(pieces[::-1], -1) if pieces else torch.zeros(self.timeline.channels, 0)
        return torch.nn.functional.pad(seg, (0, b - a - seg.shape[-1]))

    def cycle_audio(self, cycle: int) -> dict[str, torch.Tensor]:
        """{stem: [C, n]} at the model's rate: cycle `cycle` of every stem (the loop's resampled)."""
        tl = self.timeline
        a, b = tl.sample(cycle), tl.sample(cycle + 1)
        out = {s: tl.audio(s, a, b) for s in self.loop.stems}
        out |= {s: self._segment(s, a, b) for s in self.audio}
        return {s: out[s] for s in self.model.stems if s in out}

    def finish(self) -> dict[str, torch.Tensor]:
        """Flush the decoders: {stem: [C, T]} every generated stem's whole audio (model rate)."""
        for s, d in self.decoders.items():
            rest = d.flush()
            if rest.shape[0]:
                self.audio[s].append(rest[0].cpu().float())
            self.decoders[s] = StreamingDecoder(self.model.codec.codec(s))
        channels = self.timeline.channels
        return {s: torch.cat([torch.zeros(channels, 0), *w], -1) for s, w in self.audio.items()}
