"""How `MusicGenStem` runs a task: text memories, window sizes, the beat grid, and the thread a
decoding runs on. Every task ends in `fill`: the free positions of `codes`, generated window by
window (`generation.windows`) by the engine (`generation.engine`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..codec.model import MultiStemCodec
from ..conditioning.attributes import parse_attributes, with_tempo
from ..conditioning.chord_estimate import estimate_chords
from ..conditioning.chords import ChordChart, parse_progression
from ..conditioning.progressions import choose_progression
from ..conditioning.steps import BeatGrid, StepConditioner, StepConds
from ..dsp import beat_phase, estimate_swing, estimate_tempo, onset_strength
from ..errors import GenerationError
from ..generation import generate_codes
from ..generation.engine import FramesCallback
from ..generation.harmony import chord_bias
from ..generation.sampling import SamplingParams
from ..generation.tasks import Task
from ..generation.windows import fill_windows
from ..layout import PERCUSSIVE_STEMS, StemLayout
from ..lm.model import StemLM
from .checks import Progress, Texts, draw_seed, progress_callback
from .options import Options
from .streaming import STREAM_SECONDS, audio_of_frames, stoppable


class TaskModel(Protocol):
    """What running a task reads of a `MusicGenStem` (`api.model`, which imports this module)."""

    name: str
    device: torch.device
    lm: StemLM
    text: nn.Module
    codec: MultiStemCodec
    steps: StepConditioner | None
    params: SamplingParams
    extend_stride: float

    @property
    def layout(self) -> StemLayout: ...
    @property
    def stems(self) -> tuple[str, ...]: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def frame_rate(self) -> float: ...
    @property
    def max_duration(self) -> float: ...
    @property
    def edit_window_frames(self) -> int: ...
    def silence_tokens(self) -> list[int]: ...
    def _decoding(self, job: Callable[[], torch.Tensor], cancel: threading.Event) -> torch.Tensor: ...


KEPT_SECONDS = 30.0  # the kept stems' rhythm and chords are read from their first 30 s


def text_memories(text: nn.Module, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory of the texts and of the null condition, encoded as one batch: 2 x [B, L, D]."""
    B = len(texts)
    with torch.inference_mode():
        mem, _ = text(list(texts) + [None] * B)
    return mem[:B], mem[B:]


def window_sizes(model: TaskModel, regenerate: Sequence[str]) -> tuple[int, int]:
    """Window and overlap (frames): the edit window when some stems are kept, else the
    generation window; consecutive windows share 40 % (or window - extend_stride)."""
    if len(regenerate) < model.layout.num_stems:
        window = model.edit_window_frames
        stride = round(0.6 * window)
    else:
        window = round(model.max_duration * model.frame_rate)
        stride = min(window - 1, round(model.extend_stride * model.frame_rate))
    return window, window - max(1, stride)


class DecodingThread:
    """The thread a model compiled on CUDA decodes on for its whole life (CUDA graph trees are per
    thread: streams and the app call from fresh threads, which would record the graphs again)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def run(self, job: Callable[[], torch.Tensor], cancel: threading.Event, own: bool) -> torch.Tensor:
        """`job()` on this thread if `own`, else in the calling thread. The caller waits; if it
        stops waiting (Ctrl-C), `cancel` is set so that the job stops at its next step."""
        if not own:
            return job()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="musicgen-stem-decode")
        future = self._pool.submit(job)
        try:
            return future.result()
        except BaseException:
            cancel.set()
            with contextlib.suppress(BaseException):
                future.result()
            raise


@dataclass(frozen=True)
class Rhythm:
    """The rhythm of kept stems: `tempo` (bpm; 0 if they have no pulse), the time in s of a
    `beat`, and the `swing` of the 8ths."""

    tempo: float = 0.0
    beat: float = 0.0
    swing: float = 0.0


def kept_audio(
    model: TaskModel, codes: torch.Tensor, stems: Sequence[str], seconds: float
) -> dict[str, torch.Tensor]:
    """The `stems` of codes [B, K, T] decoded (first `seconds`): {stem: [B, C, T]}."""
    n = min(codes.shape[-1], max(1, round(seconds * model.frame_rate)))
    slices = model.layout.stream_slices()
    with torch.inference_mode():
        return {
            stem: model.codec.codec(stem).decode(codes[:, slices[stem], :n].to(model.device)).float().cpu()
            for stem in stems
        }


def mix_of(
    audio: Mapping[str, torch.Tensor], stems: Sequence[str], batch: int, samples: int | None = None
) -> torch.Tensor | None:
    """The sum [B, C, T] of the `stems` of `audio` {stem: [B or 1, C, T]} (first `samples`), None
    if none of them is there."""
    wavs = [audio[s][..., :samples].float() for s in stems if s in audio]
    if not wavs:
        return None
    n = min(w.shape[-1] for w in wavs)
    return sum(w[..., :n] for w in wavs).expand(batch, -1, -1)


def kept_rhythm(
    mix: torch.Tensor, sample_rate: int, tempos: Sequence[float | None], pulse: torch.Tensor | None = None
) -> list[Rhythm]:
    """Per item of the kept stems' mix [B, C, T]: the tempo named, else estimated
    (`dsp.estimate_tempo`), the beat (`dsp.beat_phase` at that tempo, moved onto the beat by
    `dsp.estimate_swing` where the 8ths swing) and the swing. The beat and swing are read from
    `pulse` [B, C, T] where given (the kept drums: in a mix, off-beat bass, skanks and stabs of
    house, funk and reggae outweigh the beat; docs/experiments.md)."""
    out = []
    for b, named in enumerate(tempos):
        envelope = onset_strength(mix[b], sample_rate)
        tempo = float(named) if named else round(estimate_tempo(envelope))
        if not tempo:
            out.append(Rhythm())
            continue
        beats = envelope if pulse is None else onset_strength(pulse[b], sample_rate)
        swing, beat = estimate_swing(beats, tempo, beat_phase(beats, tempo))
        out.append(Rhythm(tempo, beat, swing))
    return out


@dataclass(frozen=True)
class Conditions:
    """What the model reads in a task: the `texts` (an edit's with the kept stems' tempo added) and
    the per-step conditions `steps` (None: none)."""

    texts: list[str | None]
    steps: StepConds | None = None


def step_conditions(
    model: TaskModel,
    codes: torch.Tensor,
    regenerate: Sequence[str],
    texts: list[str | None],
    downbeat: bool,
    chords: str | ChordChart | None = None,
    seed: int = 0,
    heard: Mapping[str, torch.Tensor] | None = None,
) -> Conditions:
    """The texts the model reads and the per-step conditions of a task.

    Beat grid (models with one): the tempo each text names, from frame 0 with `downbeat` (text ->
    stems), else at the beat found in the kept stems (an edit; bars unknown); none for a
    continuation of every stem (its phase is unknown). It swings as the kept stems do, else as the
    text says ("swing", "shuffle"). In an edit, a text that names no tempo is read with the kept
    stems' tempo appended ("... at 96 bpm"), as the model's captions name it.
    Chords (models that read them): `chords` given, looped over the output at that tempo; else in
    an edit, the chords of the kept stems (`estimate_chords`) if one of them is pitched; else in
    text -> stems, a progression of the style for the key the text names (`choose_progression`,
    drawn from `seed`). An edit's kept stems are read from `heard` {stem: [B or 1, C, T]}, their
    audio as given at the model's rate, where it is given (only the stems in it: the others are
    silence), else from their codes decoded (the first `KEPT_SECONDS`); the beat from the kept
    drums where they are kept.
    """
    beat = model.steps is not None and model.steps.beat is not None
    reads_chords = model.steps is not None and model.steps.chord is not None
    if chords is not None and not reads_chords:
        raise GenerationError(
            f"the model '{model.name}' cannot read chords (no chord conditioning): render them as a kept "
            "stem (--render-chords) or use the default model"
        )
    edit = len(regenerate) < model.layout.num_stems
    if not (beat or reads_chords) or not (downbeat or edit):
        return Conditions(texts)
    named = [parse_attributes(t) for t in texts]
    rhythm = [Rhythm(a.tempo or 0.0, 0.0, a.swing) for a in named]
    B, kept = codes.shape[0], [s for s in model.stems if s not in regenerate]
    pitched = [s for s in kept if s not in PERCUSSIVE_STEMS]
    audio: Mapping[str, torch.Tensor] = {}  # the kept stems' audio, read in an edit
    if edit:
        audio = heard or kept_audio(model, codes, kept, KEPT_SECONDS)
        first = round(KEPT_SECONDS * model.sample_rate)
        mix = mix_of(audio, kept, B, first)
        pulse = mix_of(audio, [s for s in kept if s in PERCUSSIVE_STEMS], B, first)
        if mix is not None:
            rhythm = kept_rhythm(mix, model.sample_rate, [a.tempo for a in named], pulse)
        texts = [with_tempo(t, r.tempo or None) for t, r in zip(texts, rhythm, strict=True)]
    grids: tuple[BeatGrid | None, ...] = ()
    if beat:
        grids = tuple(
            BeatGrid(r.tempo, r.beat if edit else None, r.swing or a.swing) if r.tempo else None
            for r, a in zip(rhythm, named, strict=True)
        )
    charts: tuple[ChordChart | None, ...] = ()
    if reads_chords:
        seconds = codes.shape[-1] / model.frame_rate
        charts = tuple(_chart(chords, r.tempo, seconds) for r in rhythm)
        if chords is None and downbeat:
            rng = np.random.default_rng(seed)
            chosen = [choose_progression(t, rng) for t in texts]
            charts = tuple(
                _chart(c, r.tempo, seconds) if c and r.tempo else None
                for c, r in zip(chosen, rhythm, strict=True)
            )
        if chords is None and edit and pitched:  # the kept pitched stems alone
            harmony = mix_of(audio, pitched, B)
            charts = (
                tuple(
                    estimate_chords(harmony[b].numpy(), model.sample_rate, r.tempo, r.beat)
                    for b, r in enumerate(rhythm)
                )
                if harmony is not None
                else charts
            )
    if all(g is None for g in grids) and all(c is None for c in charts):
        return Conditions(texts)
    return Conditions(texts, StepConds(grids, charts))


def _chart(chords: str | ChordChart | None, tempo: float, seconds: float) -> ChordChart | None:
    """A progression given as text or chart, looped over `seconds`."""
    if chords is None or isinstance(chords, ChordChart):
        return None if chords is None else chords.looped(seconds)
    if not tempo:
        raise GenerationError("chords need a tempo: name it in the description ('at 100 bpm') or pass --bpm")
    return parse_progression(chords, tempo).looped(seconds)


@dataclass
class Filled:
    """What `fill` made: the codes [B, K, T], the seed used, the texts the model read and the
    per-step conditions it read (None: none)."""

    codes: torch.Tensor
    seed: int
    texts: list[str | None]
    conds: StepConds | None


def fill(
    model: TaskModel,
    task: Task,
    texts: Texts,
    progress: Progress,
    options: Options,
    stop: Callable[[], bool] | None = None,
    downbeat: bool = False,
    conditions: Conditions | None = None,
    heard: Mapping[str, torch.Tensor] | None = None,
) -> Filled:
    """Generate the free positions of `task`, window by window (`options`: seed, on_audio,
    stream_seconds and chords are read here).

    stop: checked after every step, generation raises `StreamStopped` once it returns True.
    downbeat: frame 0 is a downbeat (text -> stems). conditions: what the model reads, made by
    `step_conditions` when not given (then `texts` are ignored), from `heard` where given (the
    kept stems' audio).
    """
    codes, regenerate = task.codes, task.regenerate
    if len(texts) != codes.shape[0]:
        raise GenerationError(f"{len(texts)} descriptions for a batch of {codes.shape[0]}")
    seed = draw_seed(options.get("seed"))
    frames, on_audio = codes.shape[-1], options.get("on_audio")
    stream_seconds = options.get("stream_seconds", STREAM_SECONDS)
    on_frames = None if on_audio is None else audio_of_frames(model.codec, on_audio, stream_seconds, frames)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    callback, bar = progress_callback(progress)
    cancel = threading.Event()  # set when the caller stops waiting for a decoding thread
    callback = stoppable(callback, lambda: cancel.is_set() or (stop is not None and stop()))
    window, overlap = window_sizes(model, regenerate)
    silence = model.silence_tokens() if task.is_edit(model.layout) else None
    if conditions is None:
        chords = options.get("chords")
        conditions = step_conditions(model, codes, regenerate, list(texts), downbeat, chords, seed, heard)
    texts, conds = conditions.texts, conditions.steps
    mem, null = text_memories(model.text, texts)
    guided = model.codec.code_chroma(regenerate) if conds is not None and model.params.chord_guide else {}

    def run(
        known: torch.Tensor, on_frames: FramesCallback | None = None, start: int = 0, prefix: int = 0
    ) -> torch.Tensor:
        cond, bias = None, None
        if conds is not None and model.steps is not None:
            n = known.shape[-1] + max(model.layout.delays) + 1  # the window's decoding steps
            with torch.inference_mode():
                cond = model.steps(conds, start, n, model.frame_rate, prefix)
        if guided:
            assert conds is not None
            frames, strength = known.shape[-1], model.params.chord_guide
            K = model.layout.num_streams
            bias = chord_bias(conds.chords, guided, K, start, frames, model.frame_rate, strength, prefix)
        return generate_codes(model.lm, known, mem, null, model.params, gen, callback, on_frames, cond, bias)

    def on_window(i: int, n: int) -> None:
        if bar is not None and n > 1:
            bar.set_description(f"generating window {i + 1}/{n}")

    layout = model.layout
    try:
        out = model._decoding(
            lambda: fill_windows(run, layout, task, window, overlap, silence, on_window, on_frames),
            cancel,
        )
    finally:
        if bar is not None:
            bar.close()
    return Filled(out, seed, texts, conds)
