"""Where a jam's audio goes while it plays: raw PCM to a pipe, or the sound card through
PortAudio (`sounddevice`, the optional `live` extra). The whole session also goes to `--out`
(`jam.output`), from the session itself, not from a sink."""

from __future__ import annotations

import collections
import threading
import time
from typing import BinaryIO

import numpy as np

from ..errors import MusicGenStemError
from .live import Recording, find_latency, probe


class NoSoundDevice(MusicGenStemError):
    """No sound card to play on (the files and the pipe still work)."""


class PcmSink:
    """Interleaved little-endian PCM (`s16` or `f32`) to a binary stream, e.g. stdout."""

    def __init__(self, stream: BinaryIO, fmt: str = "s16") -> None:
        if fmt not in ("s16", "f32"):
            raise ValueError(f"PCM format must be s16 or f32, got {fmt!r}")
        self.stream, self.fmt = stream, fmt

    def write(self, audio: np.ndarray) -> None:
        frames = np.ascontiguousarray(audio.T)  # [n, C]: interleaved
        if self.fmt == "s16":
            data = (np.clip(frames, -1.0, 1.0) * 32767.0).round().astype("<i2")
        else:
            data = frames.astype("<f4")
        try:
            self.stream.write(data.tobytes())
            self.stream.flush()
        except BrokenPipeError:
            pass  # the reader went away: the jam goes on to its files

    def close(self) -> None:
        pass


class DeviceSink:
    """The sound card: a PortAudio stream whose callback plays the cycles handed to it (silence if
    none is there yet, so the clock never stops). With a `Recording` (`jam.live`), a duplex stream
    that also records the input on the same clock, from the first sample of the session played;
    its `latency` (s, output + input) is PortAudio's figure unless one was measured."""

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        record: Recording | None = None,
        device: int | str | None = None,
        latency: float | None = None,
    ) -> None:
        try:
            import sounddevice as sd  # optional: pip install 'musicgen-stem[live]'
        except ImportError as e:
            raise NoSoundDevice(
                f"no sound device ({str(e).splitlines()[0][:80]}): install the live extra"
            ) from None
        except OSError:  # the binding is there, PortAudio itself is not (Linux wheels leave it out)
            raise NoSoundDevice(
                "no sound device (PortAudio is not installed: apt install libportaudio2, or your system's)"
            ) from None
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._record, self._started, self._rate = record, False, sample_rate
        try:
            if record is None:
                self._stream = sd.OutputStream(
                    samplerate=sample_rate,
                    channels=channels,
                    dtype="float32",
                    callback=self._play,
                    device=device,
                )
            else:
                self._stream = sd.Stream(
                    samplerate=sample_rate,
                    channels=(record.channels, channels),
                    dtype="float32",
                    callback=self._duplex,
                    device=device,
                )
            reported = self._stream.latency
            self.latency = float(sum(reported) if isinstance(reported, (tuple, list)) else reported)
            if latency is not None:
                self.latency = latency
            if record is not None:
                record.latency = round(self.latency * sample_rate)
            self._stream.start()
        except Exception as e:  # PortAudioError and friends: no device, busy device
            raise NoSoundDevice(f"no sound device ({str(e).splitlines()[0][:80]})") from None

    def _fill(self, out: np.ndarray, frames: int) -> None:
        """Fill out [frames, C] from the chunks (zeros after them). The first chunk begins a
        buffer (none was there before it): the session's sample 0."""
        filled = 0
        with self._lock:
            self._started = self._started or bool(self._chunks)
            while filled < frames and self._chunks:
                chunk = self._chunks[0]
                n = min(frames - filled, len(chunk))
                out[filled : filled + n] = chunk[:n]
                filled += n
                if n == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[n:]
        out[filled:] = 0.0

    def _play(self, out: np.ndarray, frames: int, time_info: object, status: object) -> None:
        self._fill(out, frames)

    def _duplex(
        self, indata: np.ndarray, out: np.ndarray, frames: int, time_info: object, status: object
    ) -> None:
        self._fill(out, frames)
        if self._record is not None and self._started:
            self._record.push(indata.T)

    def write(self, audio: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(np.ascontiguousarray(audio.T, dtype=np.float32))

    def close(self) -> None:
        """Stop once what was handed over has played (and, recording, come back)."""
        with self._lock:
            queued = sum(len(c) for c in self._chunks) / self._rate
        deadline = time.monotonic() + queued + 1.0
        while self._chunks and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(self.latency + 0.05)
        self._stream.stop()
        self._stream.close()


def measure_latency(sample_rate: int, channels: int, device: int | str | None = None) -> float:
    """The sound card's round trip in s, output to input: a `probe` played and found in what was
    recorded meanwhile (`live.find_latency`; the output must reach the input: a cable or a microphone)."""
    recording = Recording(1)
    sink = DeviceSink(sample_rate, channels, record=recording, device=device, latency=0.0)
    sent = probe(sample_rate)
    try:
        sink.write(np.repeat(sent[None], channels, axis=0))
        time.sleep(len(sent) / sample_rate + 0.3)
    finally:
        sink.close()
    return find_latency(sent, recording.segment(0, recording.length)[0], sample_rate)
