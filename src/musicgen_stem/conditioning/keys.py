"""Keys: a tonic and a mode, and the Krumhansl-Schmuckler estimate of the key a pitch-class
profile (a chroma, or the tones of a chord progression) sounds in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .chords import NOTE_NAMES

# Krumhansl-Kessler key profiles (tonic first): how well each pitch class fits a key, as heard.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C) and mode ("major" / "minor"); `score` is the profile correlation."""

    tonic: int
    mode: str
    score: float = float("nan")

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic % 12]} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        return {"tonic": self.tonic, "mode": self.mode, "name": self.name, "score": self.score}


def estimate_key(chromagram: np.ndarray) -> Key:
    """Krumhansl-Schmuckler: correlate the mean chroma [12] (of [12, N], or a profile [12]) with
    the 24 rotated key profiles."""
    profile = chromagram.mean(axis=1) if chromagram.ndim == 2 else np.asarray(chromagram, float)
    if not np.any(profile) or np.allclose(profile, profile[0]):
        return Key(0, "major", float("nan"))
    best = Key(0, "major", -np.inf)
    for mode, ref in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(ref, tonic))[0, 1])
            if r > best.score:
                best = Key(tonic, mode, r)
    return best
