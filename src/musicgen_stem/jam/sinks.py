"""Where a jam's audio goes while it plays: raw PCM to a pipe, or the sound card through
PortAudio (`sounddevice`, the optional `live` extra). The whole session also goes to `--out`
(`jam.output`), from the session itself, not from a sink."""

from __future__ import annotations

import collections
import threading
from typing import BinaryIO

import numpy as np

from ..errors import MusicGenStemError


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
    """The default sound card: a PortAudio stream whose callback plays the cycles handed to it
    (silence if none is there yet, so the clock never stops)."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        try:
            import sounddevice as sd  # optional: pip install 'musicgen-stem[live]'
        except (ImportError, OSError) as e:
            raise NoSoundDevice(
                f"no sound device ({str(e).splitlines()[0][:80]}): install the live extra"
            ) from None
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        try:
            self._stream = sd.OutputStream(
                samplerate=sample_rate, channels=channels, dtype="float32", callback=self._callback
            )
            self._stream.start()
        except Exception as e:  # PortAudioError and friends: no device, busy device
            raise NoSoundDevice(f"no sound device ({str(e).splitlines()[0][:80]})") from None

    def _callback(self, out: np.ndarray, frames: int, time_info: object, status: object) -> None:
        filled = 0
        with self._lock:
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

    def write(self, audio: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(np.ascontiguousarray(audio.T, dtype=np.float32))

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
