"""The keyword options every generation method of `MusicGenStem` takes, defined once.

model.generate(["funk at 100 bpm"], seed=3, duration=8.0, on_audio=play)
model.regenerate_from_codes(codes, ["bass"], ["walking bass"], seed=3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from ..conditioning.chords import ChordChart
from .results import AudioCallback
from .streaming import STREAM_SECONDS, check_stream_seconds

__all__ = ["ALL", "NO_STREAMING", "Options", "options_of"]


class Options(TypedDict, total=False):
    """Keyword options of the generation methods.

    - seed: the random seed (default: drawn; the result's `seed` says which was used);
    - duration: seconds of output (text -> stems: the model's `duration`; edits: as long as
      the kept material; continuations: the prompt plus the rest);
    - on_audio: called with an `AudioChunk` each time about `stream_seconds` more audio is
      final, and at the end (`last`); the chunks join into the returned audio (to float rounding);
    - stream_seconds: the audio per `on_audio` chunk (default 1 s);
    - chords: a chord progression the regenerated stems follow, "Am F C G" (a chord a bar, looped
      over the output) or "Am:2 F:2" (beats), at the tempo the description names (in an edit, else
      the kept stems'), or a `ChordChart`; models with chord conditioning only (mini). An edit
      without it reads the kept stems' chords.
    """

    seed: int | None
    duration: float | None
    on_audio: AudioCallback | None
    stream_seconds: float
    chords: str | ChordChart | None


ALL = frozenset(Options.__annotations__)
NO_STREAMING = frozenset({"seed", "duration", "chords"})


def options_of(method: str, options: Mapping[str, Any], allowed: frozenset[str] = ALL) -> Options:
    """`options` checked as Python checks keyword arguments (TypeError naming the unknown one),
    with `stream_seconds` checked and defaulted."""
    for name in options:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r} (options: {known})")
    out = Options(**options)  # type: ignore[typeddict-item]
    out["stream_seconds"] = check_stream_seconds(options.get("stream_seconds", STREAM_SECONDS))
    return out
