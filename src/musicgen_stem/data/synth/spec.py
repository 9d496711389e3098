"""The song specification: every parameter, the sound choices, the mix settings and the full score."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .mixing import MixSettings
from .score import ChordSpan, Humanize, Note
from .tables import SAMPLE_RATE, STEM_ROLES, STEMS


@dataclass
class PartSpec:
    """One instrument of a stem and the sound that plays it."""

    role: str  # "bass", "drums", "harmony" or "lead"
    program: int  # GM program (drums: GM kit number, 0 for a sampled kit)
    style: str
    channel: int
    name: str  # GM program name, GM kit name + " Kit", or the sampled kit's name
    words: str
    soundfont: str = ""  # path of the soundfont ("" when none is installed)
    bank: int = 0  # MIDI bank: 128 for GM drum kits
    kit: str = ""  # drums: GM kit name ("Standard", "TR-808"...) or "sampled"

    def meta(self) -> dict[str, Any]:
        """JSON-ready description."""
        d = {"program": self.program, "name": self.name, "style": self.style, "role": self.role}
        d |= {"words": self.words, "soundfont": Path(self.soundfont).name, "bank": self.bank}
        return d | ({"kit": self.kit} if self.role == "drums" else {})


@dataclass
class SongSpec:
    """All parameters and the full score of one synthetic song (deterministic from seed and duration)."""

    seed: int
    duration: float
    genre: str
    tempo: float
    key: str
    tonic_pc: int
    mode: str
    progression: list[str]
    chords_per_bar: int
    n_bars: int
    swing8: float
    swing16: float
    drum_groove: int
    parts: list[PartSpec]
    chords: list[ChordSpan]
    beats: list[float]
    downbeats: list[float]
    captions: list[str]
    stem_levels_db: dict[str, float]
    reverb: dict[str, int]  # reverb send per stem, 0-127 (details in ``mix``)
    notes: dict[str, list[Note]]
    humanize: Humanize
    mix: MixSettings
    mood: str
    energy: float  # 0 (calm) to 1 (intense)
    time_signature: tuple[int, int] = (4, 4)
    sample_rate: int = SAMPLE_RATE

    @property
    def caption(self) -> str:
        """The main caption."""
        return self.captions[0]

    @property
    def energy_level(self) -> str:
        """``"low"``, ``"medium"`` or ``"high"``."""
        return "low" if self.energy < 0.4 else "medium" if self.energy < 0.62 else "high"

    def part(self, role: str) -> list[PartSpec]:
        """The parts with the given role."""
        return [p for p in self.parts if p.role == role]

    def stem_parts(self, stem: str) -> list[PartSpec]:
        """The parts that make up ``stem``."""
        return [p for p in self.parts if p.role in STEM_ROLES[stem]]

    def meta(self) -> dict[str, Any]:
        """JSON-ready ground truth (everything but the notes, which live in song.mid)."""
        d = {k: v for k, v in asdict(self).items() if k != "notes"}
        d["time_signature"] = list(self.time_signature)
        d["caption"] = self.caption
        d["key_name"] = f"{self.key} {self.mode}"
        d["energy_level"] = self.energy_level
        d["instruments"] = {s: [p.meta() for p in self.stem_parts(s)] for s in STEMS}
        d["soundfonts"] = {s: [Path(p.soundfont).name for p in self.stem_parts(s)] for s in STEMS}
        d["drum_kit"] = next((p.name for p in self.part("drums")), "")
        return d
