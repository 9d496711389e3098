"""Audio -> notes, one method per kind of stem, on librosa's signal processing.

- `bass_notes`: monophonic: YIN pitch at 8 kHz every 10 ms, voiced where the level is within 30 dB
  of the stem's loudest, a note wherever the (median-smoothed) pitch changes or an onset strikes;
- `drum_hits`: onsets of the energy of each class's band (GM notes 36, 38, 42): kick 30-150 Hz,
  snare head 150-400 Hz struck together with its wires' noise 1-5 kHz, hi-hat 7-11 kHz (less the
  onsets the snare's noise explains);
- `pitched_notes`: polyphonic: Spotify's Basic Pitch network (`polyphonic`) says which pitches
  sound, the constant-Q level drops the tails it still hears after a release, held pitches are
  joined into notes (chords, pads, leads).

All three run offline, in about a second for a minute of audio (pitched: 1.2 s on one core).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import scipy.ndimage

from ..dsp import mono_at
from .polyphonic import LOWEST_MIDI, posteriors

KICK, SNARE, HIHAT = 36, 38, 42  # General MIDI drum notes
NOISE = 0  # key of the snare's noise band in the per-band dicts (not a drum note)
# dB under its band's loudest that a hit may sound, and dB its band rises at a hit: a kick is loud
# (toms ring in its band, quieter) but may rise little (a double bass drum's next hit starts on the
# last one's tail)
BELOW = {KICK: 3.0, SNARE: 4.5, HIHAT: 18.0, NOISE: 9.0}
RISE = {KICK: 2.0, SNARE: 3.0, HIHAT: 1.0, NOISE: 2.0}
SNARE_NOISE = 3.0  # dB: a hi-hat onset with a snare's that rises by as much, less this, is the snare's
DRUM_BANDS = {KICK: (30, 150), SNARE: (150, 400), HIHAT: (7000, 11000)}  # Hz: kick, snare head, hi-hat
SNARE_NOISE_BAND = (1000, 5000)  # Hz: a snare's wires
DRUM_WAIT = 2  # frames: the least gap between two hits of one class
_BASS_SR, _BASS_HOP = 8000, 80  # 10 ms
# pitched: a pitch sounds where the network's note posterior reaches SOUNDING and its constant-Q
# level is within RELEASE_DB of its own loudest over the last RELEASE_S s (a stab's release and
# reverb ring on, heard by the network as the note held). Chosen on held-out songs 0-14
SOUNDING, RELEASE_S, RELEASE_DB = 0.35, 0.5, 10.0
_SR, _HOP = 22050, 256  # 11.6 ms, the frames of `polyphonic`


@dataclass(frozen=True)
class Note:
    """A note: start and end in s, MIDI pitch, velocity 1-127."""

    start: float
    end: float
    pitch: int
    velocity: int = 96


def _velocity(level_db: float) -> int:
    """Level in dB below the stem's loudest -> MIDI velocity (0 dB: 120, -30 dB: 40)."""
    return int(np.clip(120 + level_db * 80 / 30, 20, 127))


def bass_notes(audio: np.ndarray, sample_rate: int, min_seconds: float = 0.06) -> list[Note]:
    """Notes of a monophonic bass line ([C, T] or [T] at `sample_rate`)."""
    y = mono_at(audio, sample_rate, _BASS_SR)
    if len(y) < 1024 or not np.any(y):
        return []
    f0 = librosa.yin(y, fmin=30.0, fmax=500.0, sr=_BASS_SR, frame_length=1024, hop_length=_BASS_HOP)
    rms = librosa.feature.rms(y=y, frame_length=256, hop_length=_BASS_HOP)[0][: len(f0)]
    db = librosa.amplitude_to_db(rms, ref=float(rms.max()) + 1e-12)
    voiced = db > -30.0
    pitch = np.round(librosa.hz_to_midi(f0)).astype(int)
    pitch = scipy.ndimage.median_filter(pitch, size=5, mode="nearest")
    env = librosa.onset.onset_strength(y=y, sr=_BASS_SR, hop_length=_BASS_HOP, n_fft=512)
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=_BASS_SR, hop_length=_BASS_HOP)
    hop = _BASS_HOP / _BASS_SR
    bounds = [0, *[int(o) for o in onsets if 0 < o < len(pitch)], len(pitch)]
    notes = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):  # between two onsets
        runs = _runs(pitch[a:b], voiced[a:b], db[a:b], hop, min_seconds)
        if len(runs) > 1 and runs[0].end <= ATTACK and runs[1].start <= ATTACK + hop:
            runs = runs[1:]  # a scoop into the note
        for i, n in enumerate(runs):
            start = a * hop + (0.0 if i == 0 and n.start <= ATTACK else n.start)  # the attack's scoop
            notes.append(Note(round(start, 4), round(a * hop + n.end, 4), n.pitch, n.velocity))
    return notes


ATTACK = 0.15  # s after an onset in which a bass's pitch may still be settling


def _runs(
    pitch: np.ndarray, voiced: np.ndarray, db: np.ndarray, hop: float, min_seconds: float
) -> list[Note]:
    """Notes from per-frame pitch [N]: runs of voiced frames of one pitch (level `db` [N])."""
    notes: list[Note] = []
    start = None
    for i in range(len(pitch) + 1):
        ends = i == len(pitch) or not voiced[i] or (start is not None and pitch[i] != pitch[start])
        if start is not None and ends:
            if (i - start) * hop >= min_seconds:
                level = float(db[start : start + 5].max())
                notes.append(
                    Note(round(start * hop, 4), round(i * hop, 4), int(pitch[start]), _velocity(level))
                )
            start = None
        if i < len(pitch) and voiced[i] and start is None:
            start = i
    return notes


def drum_hits(audio: np.ndarray, sample_rate: int) -> list[Note]:
    """Kick, snare and hi-hat hits of a drum stem (GM notes KICK, SNARE, HIHAT; 50 ms long): onsets
    of each class's band energy; a snare's head (its band) must strike with its noise (SNARE_NOISE_BAND),
    and a hi-hat onset whose rise the snare's noise explains is the snare's."""
    y = mono_at(audio, sample_rate, _SR)
    if len(y) < 2048 or not np.any(y):
        return []
    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=_HOP)) ** 2  # [F, N]
    freqs = librosa.fft_frequencies(sr=_SR, n_fft=1024)
    bands = {**DRUM_BANDS, NOISE: SNARE_NOISE_BAND}
    level = {  # [N] dB per band
        k: librosa.power_to_db(S[(freqs >= a) & (freqs < b)].sum(0) + 1e-10) for k, (a, b) in bands.items()
    }
    rise = {
        k: np.maximum(0.0, e - np.concatenate([e[:2], e[:-2]])) for k, e in level.items()
    }  # dB over 2 frames
    loud = {k: float(np.percentile(e, 99)) for k, e in level.items()}
    found = {}
    for k in DRUM_BANDS:
        frames = librosa.onset.onset_detect(
            onset_envelope=rise[k], sr=_SR, hop_length=_HOP, backtrack=False, wait=DRUM_WAIT
        )
        found[k] = [
            f for f in frames if rise[k][f] > RISE[k] and level[k][f : f + 3].max() > loud[k] - BELOW[k]
        ]
    noise = rise[NOISE]
    wires = [  # a snare's head strikes with its wires' noise: rising, and loud for the noise band
        f
        for f in found[SNARE]
        if noise[max(0, f - 1) : f + 2].max() > RISE[NOISE]
        and level[NOISE][f : f + 3].max() > loud[NOISE] - BELOW[NOISE]
    ]
    found[SNARE] = wires
    snares = np.array(found[SNARE])
    hits = []
    for k, frames in found.items():
        for f in frames:
            if k == HIHAT and len(snares) and np.abs(snares - f).min() <= 2:
                g = int(snares[np.abs(snares - f).argmin()])
                if noise[g] >= rise[HIHAT][f] - SNARE_NOISE:
                    continue  # the snare's noise
            t = round(float(f * _HOP / _SR), 4)
            hits.append(Note(t, round(t + 0.05, 4), k, _velocity(float(level[k][f : f + 3].max()) - loud[k])))
    return sorted(hits, key=lambda n: (n.start, n.pitch))


def pitched_notes(audio: np.ndarray, sample_rate: int, min_seconds: float = 0.06) -> list[Note]:
    """Notes of polyphonic pitched audio (chords, pads, leads), MIDI 36-96."""
    active, db = pitch_activity(audio, sample_rate)
    hop = _HOP / _SR
    notes = []
    for k in range(active.shape[0]):
        notes += _runs(np.full(active.shape[1], 36 + k), active[k], db[k], hop, min_seconds)
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def pitch_activity(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of MIDI 36-96 sound at each frame: active [61, N] bool and their level [61, N] dB
    (frames of _HOP / _SR s): Basic Pitch's note posterior (`polyphonic`), less the release tails
    the constant-Q level shows fading."""
    y = mono_at(audio, sample_rate, _SR)
    if len(y) < 2048:
        return np.zeros((61, 0), bool), np.zeros((61, 0))
    note, _ = posteriors(y)  # [N, 88] from MIDI 21
    C = np.abs(librosa.cqt(y, sr=_SR, hop_length=_HOP, fmin=librosa.midi_to_hz(36), n_bins=61))
    db = librosa.amplitude_to_db(C, ref=float(C.max()) + 1e-12)  # [61, N]
    span = round(RELEASE_S * _SR / _HOP)
    recent = scipy.ndimage.maximum_filter1d(db, size=span, axis=1, origin=(span - 1) // 2)  # last span
    lo = 36 - LOWEST_MIDI
    active = (note[:, lo : lo + 61].T >= SOUNDING) & (db >= recent - RELEASE_DB)
    return active, db
