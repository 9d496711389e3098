"""How `MusicGenStem` runs a task: text memories, window sizes, the beat grid, and the thread a
decoding runs on. Every task ends in `fill`: the free positions of `codes`, generated window by
window (`generation.windows`) by the engine (`generation.engine`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..conditioning.attributes import beat_grid, parse_attributes, with_tempo
from ..dsp import beat_phase, estimate_swing, estimate_tempo, onset_strength
from ..errors import GenerationError
from ..generation import generate_codes
from ..generation.engine import FramesCallback
from ..generation.windows import fill_windows
from .checks import Progress, Texts, draw_seed, progress_callback
from .options import Options
from .streaming import STREAM_SECONDS, audio_of_frames, stoppable

if TYPE_CHECKING:
    from .model import MusicGenStem


def text_memories(text: nn.Module, texts: Texts) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory of the texts and of the null condition, encoded as one batch: 2 x [B, L, D]."""
    B = len(texts)
    with torch.inference_mode():
        mem, _ = text(list(texts) + [None] * B)
    return mem[:B], mem[B:]


def window_sizes(model: MusicGenStem, regenerate: Sequence[str]) -> tuple[int, int]:
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


def kept_rhythm(
    model: MusicGenStem,
    codes: torch.Tensor,
    regenerate: Sequence[str],
    tempos: Sequence[float | None],
    seconds: float = 30.0,
) -> list[tuple[float, float, float]]:
    """Per item of codes [B, K, T]: (tempo, time in s of a beat, swing of the 8ths) of the kept
    stems, from the onsets of their decoded mix (first `seconds`). The tempo is the named one, else
    estimated (`dsp.estimate_tempo`; 0.0 if they have no pulse); the beat is `dsp.beat_phase` at
    that tempo, moved onto the beat by `dsp.estimate_swing` where the 8ths swing."""
    n = min(codes.shape[-1], max(1, round(seconds * model.frame_rate)))
    slices = model.layout.stream_slices()
    with torch.inference_mode():
        audio = [
            model.codec.codec(stem).decode(codes[:, slices[stem], :n].to(model.device))  # [B, C, T]
            for stem in model.stems
            if stem not in regenerate
        ]
    mix = torch.stack(audio).sum(0).float().cpu()  # [B, C, T]
    out = []
    for b, named in enumerate(tempos):
        envelope = onset_strength(mix[b], model.sample_rate)
        tempo = float(named) if named else round(estimate_tempo(envelope))
        if not tempo:
            out.append((0.0, 0.0, 0.0))
            continue
        swing, beat = estimate_swing(envelope, tempo, beat_phase(envelope, tempo))
        out.append((tempo, beat, swing))
    return out


def fill(
    model: MusicGenStem,
    codes: torch.Tensor,
    free: torch.Tensor,
    regenerate: Sequence[str],
    texts: Texts,
    progress: Progress,
    options: Options,
    stop: Callable[[], bool] | None = None,
    downbeat: bool = False,
) -> tuple[torch.Tensor, int, list[str | None]]:
    """Generate the `free` [K, T] positions of `codes` [B, K, T], window by window; returns the
    codes and the seed used (`options`: seed, on_audio and stream_seconds are read here).

    stop: checked after every step, generation raises `StreamStopped` once it returns True.
    downbeat: frame 0 is a downbeat (text -> stems). A model with a beat grid gets the grid of the
    tempo each text names: from frame 0 with `downbeat`, else at the beat found in the kept stems
    (`kept_rhythm`; bars unknown); none for a continuation of every stem. The grid swings as the
    kept stems do, else as the text says ("swing", "shuffle"). In an edit, a text that names no
    tempo is read with the kept stems' tempo appended ("... at 96 bpm"), as the model's captions
    name it. Returns the codes, the seed and the texts the model read.
    """
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
    edit = len(regenerate) < model.layout.num_stems
    silence = model.silence_tokens() if edit else None
    texts = list(texts)
    named = [parse_attributes(t) for t in texts]
    tempos, first = [a.tempo for a in named], None
    swing = [a.swing for a in named] if any(a.swing for a in named) else None  # "swing", "shuffle"
    if model.lm.beat is not None and edit:  # the kept stems give the beat, and a tempo left unnamed
        rhythm = kept_rhythm(model, codes, regenerate, tempos)
        texts = [with_tempo(t, r[0] or None) for t, r in zip(texts, rhythm, strict=True)]
        tempos, first = [r[0] or None for r in rhythm], [r[1] for r in rhythm]
        swing = [r[2] or a.swing for r, a in zip(rhythm, named, strict=True)]  # the song's, else the text's
    if model.lm.beat is None or not any(tempos) or not (downbeat or edit):
        tempos = []  # no grid: none to read, no tempo named, or a continuation (phase unknown)

    mem, null = text_memories(model.text, texts)

    def run(known: torch.Tensor, on_frames: FramesCallback | None = None, start: int = 0) -> torch.Tensor:
        g = beat_grid(tempos, model.frame_rate, start, first, swing) if tempos else None
        return generate_codes(model.lm, known, mem, null, model.params, gen, callback, on_frames, g)

    def on_window(i: int, n: int) -> None:
        if bar is not None and n > 1:
            bar.set_description(f"generating window {i + 1}/{n}")

    layout = model.layout
    try:
        out = model._decoding(
            lambda: fill_windows(
                run, layout, codes, free, regenerate, window, overlap, silence, on_window, on_frames
            ),
            cancel,
        )
    finally:
        if bar is not None:
            bar.close()
    return out, seed, texts
