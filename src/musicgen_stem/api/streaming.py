"""Streaming: `AudioStream` runs a generation on a worker thread and yields its `AudioChunk`s."""

from __future__ import annotations

import math
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..codec.streaming import MultiStemStreamingDecoder
from ..errors import GenerationError
from .results import AudioCallback, AudioChunk, StreamJob

__all__ = [
    "STREAM_SECONDS",
    "AudioStream",
    "StreamStopped",
    "audio_of_frames",
    "check_stream_seconds",
    "stoppable",
]

#: Default seconds of audio per streamed chunk (`on_audio`, `generate_stream`).
STREAM_SECONDS = 1.0


class StreamStopped(Exception):
    """Raised inside generation when the consumer of `generate_stream` stopped iterating."""


def check_stream_seconds(stream_seconds: float) -> float:
    s = float(stream_seconds)
    if not math.isfinite(s) or s <= 0:
        raise GenerationError(f"stream_seconds must be a positive number of seconds, got {stream_seconds}")
    return s


def stoppable(
    callback: Callable[[int, int], None] | None, stop: Callable[[], bool]
) -> Callable[[int, int], None]:
    """A step callback that raises `StreamStopped` once `stop()` is True, else calls `callback`."""

    def step(done: int, total: int) -> None:
        if stop():
            raise StreamStopped
        if callback is not None:
            callback(done, total)

    return step


def audio_of_frames(
    codec: Any, on_audio: AudioCallback, stream_seconds: float, frames: int
) -> Callable[[torch.Tensor, int], None]:
    """An `on_frames(codes [B, K, T], final)` callback for the decoding engine: decodes the final
    frames of a generation of `frames` frames `stream_seconds` at a time (all the rest at the end,
    final == frames) with `codec` (a `MultiStemCodec`) and hands their audio to `on_audio`."""
    every = max(1, round(check_stream_seconds(stream_seconds) * codec.frame_rate))
    decoder = MultiStemStreamingDecoder(codec)
    pushed = start = 0

    def on_frames(codes: torch.Tensor, final: int) -> None:
        nonlocal pushed, start
        last = final >= frames
        if final - pushed < every and not last:
            return
        stems = decoder.push(codes[..., pushed:final])
        if last:
            rest = decoder.flush()
            stems = {k: torch.cat([w, rest[k]], dim=-1) for k, w in stems.items()}
        pushed = final
        audio = {k: w.float().cpu() for k, w in stems.items()}
        chunk = AudioChunk(start, audio, int(codec.sample_rate), last)
        if last:
            chunk.codes = codes.cpu()
        if chunk.num_samples or last:
            start += chunk.num_samples
            on_audio(chunk)

    return on_frames


_DONE = object()


def _run_job(job: StreamJob, chunks: queue.SimpleQueue[Any], stop: threading.Event) -> None:
    """Worker thread of an `AudioStream`: its chunks, then _DONE or the exception, into `chunks`."""
    try:
        job(chunks.put, stop.is_set)
    except BaseException as e:  # handed to the consumer
        chunks.put(e)
    else:
        chunks.put(_DONE)


def _end_job(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    if thread is not threading.current_thread():
        thread.join()


class AudioStream(Iterator[AudioChunk]):
    """The `AudioChunk`s of a generation running on a worker thread, in order.

    An exception of the generation is raised by `next`. `close()` (also at the end of a `with`
    block, or when the iterator is dropped, as after leaving a `for` loop over
    `model.generate_stream(...)`) stops the generation at its next step and joins the thread.
    """

    def __init__(self, job: StreamJob) -> None:
        self._chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        stop = threading.Event()
        thread = threading.Thread(
            target=_run_job, args=(job, self._chunks, stop), name="musicgen-stem-stream", daemon=True
        )
        # the finalizer holds no reference to self: dropping the stream (or exiting) ends the job
        self._end = weakref.finalize(self, _end_job, stop, thread)
        self._closed = False
        thread.start()

    def __iter__(self) -> AudioStream:
        return self

    def __next__(self) -> AudioChunk:
        if self._closed:
            raise StopIteration
        item = self._chunks.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the generation (if still running) and wait for its thread."""
        self._closed = True
        self._end()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
