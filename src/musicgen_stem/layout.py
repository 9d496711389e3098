"""The stem layout: which stems, how many codebooks each, token cardinality and delays.

Defined once here and passed to every component (codec, LM, generation, I/O).
Streams of all stems are concatenated in stem order: with the released 6cb layout
bass=[0], drums=[1], other=[2, 3, 4, 5].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import MusicGenStemError


class LayoutError(MusicGenStemError, ValueError):
    """A stem layout (or a stem name given against it) is invalid."""


@dataclass(frozen=True)
class StemLayout:
    """Ordered stems, codebooks per stem, cardinality and per-stream delays.

    `delays[k]` is the delay (in steps) of stream k in the LM's delay pattern; it need not
    be sorted (the released 7cb layout is `[0, 1, 0, 0, 1, 2, 3]`).
    """

    stems: tuple[str, ...] = ("bass", "drums", "other")
    codebooks: tuple[int, ...] = (1, 1, 4)
    delays: tuple[int, ...] = (0, 0, 0, 1, 2, 3)
    card: int = 2048
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stems", tuple(str(s) for s in self.stems))
        object.__setattr__(self, "codebooks", tuple(int(c) for c in self.codebooks))
        object.__setattr__(self, "delays", tuple(int(d) for d in self.delays))
        if not self.stems:
            raise LayoutError("a layout needs at least one stem")
        if len(set(self.stems)) != len(self.stems):
            raise LayoutError(f"stem names must be unique, got {list(self.stems)}")
        if len(self.codebooks) != len(self.stems):
            raise LayoutError(
                f"{len(self.stems)} stems but {len(self.codebooks)} codebook counts: give one count per stem"
            )
        if any(c < 1 for c in self.codebooks):
            raise LayoutError(f"every stem needs at least one codebook, got {list(self.codebooks)}")
        if len(self.delays) != sum(self.codebooks):
            raise LayoutError(
                f"{sum(self.codebooks)} streams but {len(self.delays)} delays: give one delay per stream"
            )
        if any(d < 0 for d in self.delays):
            raise LayoutError(f"delays must be >= 0, got {list(self.delays)}")
        if self.card < 2:
            raise LayoutError(f"cardinality must be >= 2, got {self.card}")
        offsets, start = [], 0
        for c in self.codebooks:
            offsets.append(start)
            start += c
        object.__setattr__(self, "_offsets", tuple(offsets))

    # --- derived facts -------------------------------------------------------------------
    @property
    def num_streams(self) -> int:
        """K: total number of parallel token streams."""
        return sum(self.codebooks)

    @property
    def num_stems(self) -> int:
        return len(self.stems)

    @property
    def special_token(self) -> int:
        """The one special token id (= card), used for padding, masking and the prefix."""
        return self.card

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    def stem_index(self, stem: str) -> int:
        """Position of `stem` in the stem order; clear error for unknown names."""
        try:
            return self.stems.index(stem)
        except ValueError:
            raise LayoutError(
                f"unknown stem '{stem}': this model's stems are {', '.join(self.stems)}"
            ) from None

    def streams_of(self, stem: str) -> list[int]:
        """Stream indices (into the K streams) that belong to `stem`."""
        i = self.stem_index(stem)
        return list(range(self._offsets[i], self._offsets[i] + self.codebooks[i]))

    def streams_of_stems(self, stems: list[str] | tuple[str, ...]) -> list[int]:
        """Sorted stream indices of several stems."""
        return sorted(k for s in stems for k in self.streams_of(s))

    def stream_slices(self) -> dict[str, slice]:
        """stem -> slice into the stream axis."""
        return {s: slice(o, o + c) for s, o, c in zip(self.stems, self._offsets, self.codebooks, strict=True)}

    def check_stems(self, stems: list[str] | tuple[str, ...]) -> list[str]:
        """Validate a list of stem names; return them de-duplicated in layout order."""
        for s in stems:
            self.stem_index(s)
        return [s for s in self.stems if s in set(stems)]

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "stems": list(self.stems),
            "codebooks": list(self.codebooks),
            "delays": list(self.delays),
            "card": self.card,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StemLayout:
        known = {"stems", "codebooks", "delays", "card"}
        unknown = set(d) - known
        if unknown:
            raise LayoutError(f"unknown layout fields {sorted(unknown)}; expected {sorted(known)}")
        return cls(
            stems=tuple(d["stems"]),
            codebooks=tuple(d["codebooks"]),
            delays=tuple(d["delays"]),
            card=int(d.get("card", 2048)),
        )


#: Stems that hold no pitch (no chords are read from them; their notes are drum hits).
PERCUSSIVE_STEMS = frozenset({"drums"})
#: Stems that play one note at a time (transcribed as a line).
MONOPHONIC_STEMS = frozenset({"bass"})


def compose_order(stems: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The order to compose `stems` one by one: the percussive ones, then the lines, then the rest
    (drums, bass, other)."""
    rank = lambda s: 0 if s in PERCUSSIVE_STEMS else 1 if s in MONOPHONIC_STEMS else 2  # noqa: E731
    return tuple(sorted(stems, key=rank))


def harmony_stem(stems: tuple[str, ...] | list[str]) -> str:
    """The stem that plays the chords: the first neither percussive nor monophonic (other)."""
    return next((s for s in stems if s not in PERCUSSIVE_STEMS | MONOPHONIC_STEMS), stems[-1])


#: The released `facebook/musicgen-stem-6cb` layout.
LAYOUT_6CB = StemLayout(("bass", "drums", "other"), (1, 1, 4), (0, 0, 0, 1, 2, 3), 2048)
#: The released `facebook/musicgen-stem-7cb` layout (delays not sorted).
LAYOUT_7CB = StemLayout(("bass", "drums", "other"), (2, 1, 4), (0, 1, 0, 0, 1, 2, 3), 2048)
