"""Which pitches sound, frame by frame, in polyphonic audio: Spotify's Basic Pitch network ("NMP",
Bittner et al., ICASSP 2022; Apache-2.0, `nmp.onnx` shipped beside this file, NMP_NOTICE) run by
onnxruntime. The basic-pitch package itself pins TensorFlow < 2.15.1, which this package's NumPy 2
and torch cannot live with; its network is 230 KB and needs none of it.

The network reads mono 22050 Hz audio in windows of 2 s less one hop (43844 samples) and gives,
per 256-sample frame, the posterior of each of the 88 piano keys (MIDI 21-108) sounding (`note`)
and starting (`onset`). Windows overlap by 15 frames at each end, which are dropped; here they
advance by exactly the 142 frames they keep, so that output frame i lies at i * 256 / 22050 s,
the grid of a centred STFT with that hop (basic-pitch's own hop drifts 188 samples a window).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE, HOP = 22050, 256
LOWEST_MIDI = 21  # key 0 of the posteriors
KEYS = 88
WEIGHTS = Path(__file__).with_name("nmp.onnx")
_WINDOW = 2 * SAMPLE_RATE - HOP  # samples a window
_TRIM = 15  # frames dropped at each end of a window
_KEEP = 2 * SAMPLE_RATE // HOP - 2 * _TRIM  # 142 frames kept a window
_INPUT = "serving_default_input_2:0"
_NOTE, _ONSET = "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"  # [B, 172, 88] each


def posteriors(y: np.ndarray, threads: int | None = None, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Mono audio at 22050 Hz [T] -> (note, onset) posteriors [N, 88] in 0-1 for MIDI 21-108,
    frame i at i * HOP / SAMPLE_RATE s, N = 1 + T // HOP. `threads`: onnxruntime's (default: the
    CPUs, at most 4; 10 s of audio took 0.25-0.33 s on one thread, 0.14-0.17 s on two)."""
    import onnxruntime as ort  # imported when first needed: it is not part of every command's start

    threads = threads or min(4, os.cpu_count() or 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(WEIGHTS), options, providers=["CPUExecutionProvider"])
    n = 1 + len(y) // HOP
    x = np.concatenate([np.zeros(_TRIM * HOP, np.float32), np.asarray(y, np.float32)])
    windows = -(-n // _KEEP)
    x = np.pad(x, (0, max(0, (windows - 1) * _KEEP * HOP + _WINDOW - len(x))))
    starts = np.arange(windows) * _KEEP * HOP
    notes, onsets = [], []
    for b in range(0, windows, batch):
        chunk = np.stack([x[s : s + _WINDOW] for s in starts[b : b + batch]])[..., None]  # [B, W, 1]
        note, onset = session.run([_NOTE, _ONSET], {_INPUT: chunk})
        notes.append(note[:, _TRIM:-_TRIM].reshape(-1, KEYS))
        onsets.append(onset[:, _TRIM:-_TRIM].reshape(-1, KEYS))
    return np.concatenate(notes)[:n], np.concatenate(onsets)[:n]
