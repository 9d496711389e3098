"""Live input: what a musician plays into the sound card becomes a kept stem of the jam, one cycle
after it was played.

The sound card runs one duplex stream (`sinks.DeviceSink` with a `Recording`): its callback plays
the cycles handed to it and records the input on the same sample clock, from the first sample of
the session it plays. What the player plays over cycle n reaches the recording `latency` samples
late (the output's latency, then the input's), so the recording is read that many samples on.
Cycle n is whole at the border of cycle n + 1, while the take of cycle n + 2 is being written: that
take reads it as its kept stem (`ANSWER_CYCLES`), so the model answers what was played one cycle
after it ends. `find_latency` measures the round trip from a `probe` played and recorded
(a cable or a microphone from the output to the input).
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import MusicGenStemError

ANSWER_CYCLES = 2  # the take of cycle n reads what was played over cycle n - 2
PROBE_SECONDS = 0.5  # s of noise played to measure the round trip
MAX_LATENCY = 0.5  # s: a longer round trip is not searched for


class LatencyError(MusicGenStemError):
    """The round trip could not be measured (one line: why and what to do)."""


class Recording:
    """Input audio at the model's rate on the session's clock: session sample t is recorded sample
    t + `latency`. `push` is called from the sound card's thread, `write` from the app's (the
    browser's microphone), `segment` from any other."""

    def __init__(self, channels: int, latency: int = 0) -> None:
        self.channels, self.latency = channels, latency
        self._buf = np.zeros((channels, 1 << 16), np.float32)  # [C, capacity]
        self._count = 0
        self._lock = threading.Lock()

    def push(self, audio: np.ndarray) -> None:
        """Append audio [C', n] (channels mixed down or repeated to `channels`)."""
        audio = self._fit(audio)
        with self._lock:
            self._put(self._count, audio)

    def write(self, start: int, audio: np.ndarray) -> None:
        """Write audio [C', n] at session sample `start` over what was there (silence stays in a
        gap before it): input that comes in stamped pieces, in any order (the browser's)."""
        audio = self._fit(audio)[:, max(0, -(start + self.latency)) :]
        if not audio.shape[1]:
            return
        with self._lock:
            self._put(max(0, start + self.latency), audio)

    def _fit(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        if audio.shape[0] != self.channels:
            audio = np.repeat(audio.mean(0, keepdims=True), self.channels, axis=0)
        return audio

    def _put(self, at: int, audio: np.ndarray) -> None:
        """Recorded samples [at, at + n) = audio [C, n] (the lock held; the buffer grows)."""
        end = at + audio.shape[1]
        if end > self._buf.shape[1]:
            grown = np.zeros((self.channels, max(2 * self._buf.shape[1], end)), np.float32)
            grown[:, : self._count] = self._buf[:, : self._count]
            self._buf = grown
        self._buf[:, at:end] = audio
        self._count = max(self._count, end)

    @property
    def length(self) -> int:
        """Session samples recorded so far."""
        return max(0, self._count - self.latency)

    def segment(self, start: int, end: int) -> np.ndarray:
        """[C, end - start] float32: session samples [start, end) (zeros where nothing was recorded)."""
        out = np.zeros((self.channels, max(0, end - start)), np.float32)
        with self._lock:
            a, b = max(start + self.latency, 0), min(end + self.latency, self._count)
            if b > a:
                out[:, a - start - self.latency : b - start - self.latency] = self._buf[:, a:b]
        return out


def probe(sample_rate: int) -> np.ndarray:
    """[n] float32: what a latency measurement plays, a burst of seeded noise (its correlation with
    itself has one sharp peak) then `MAX_LATENCY` s of silence for it to come back in."""
    burst = np.random.default_rng(0).uniform(-0.25, 0.25, round(PROBE_SECONDS * sample_rate))
    return np.concatenate([burst, np.zeros(round((MAX_LATENCY + 0.1) * sample_rate))]).astype(np.float32)


def find_latency(sent: np.ndarray, received: np.ndarray, sample_rate: int) -> float:
    """The round trip in s: the lag (0 to `MAX_LATENCY`) at which `received` [n] best matches
    `sent` [m] (`probe`); a `LatencyError` when the probe did not come back clearly."""
    import scipy.signal

    sent, received = np.asarray(sent, np.float64), np.asarray(received, np.float64)
    if not np.any(received):
        raise LatencyError("nothing came back: connect the output to the input (a cable, or a microphone)")
    corr = scipy.signal.correlate(received, sent, mode="full", method="fft")[len(sent) - 1 :]  # lag >= 0
    corr = np.abs(corr[: round(MAX_LATENCY * sample_rate) + 1])
    best = int(np.argmax(corr))
    if corr[best] < 10 * (np.median(corr) + 1e-12):
        raise LatencyError("the probe did not come back clearly: raise the input level and measure again")
    return best / sample_rate
