"""Editing a real song: separate it, regenerate some stems, give every stem back.

The regenerated stems come from the model (at the song's rate, or at the model's where the song's
is lower: new stems are never below the model's rate; dual-mono if the song is stereo); the kept
stems are the separated audio, untouched (not a codec round trip); the vocals, which the model does
not handle, come back as separated. All stems have the song's channel count and length, each at
its rate (`SongEdit.rates`), and the mix is their sum. An edit limited to a time range keeps every
stem sample for sample outside the range (a regenerated stem with audio there stays at its rate)
and crossfades the new part in at its borders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .audio import convert_audio
from .conditioning.chords import ChordChart
from .errors import AudioError, GenerationError

if TYPE_CHECKING:
    from .api import MusicGenStem

#: Length of the raised-cosine crossfades at the borders of a time-range edit, seconds.
CROSSFADE = 0.02
#: Quietest song we edit (peak): below it the input is taken as silence.
SILENCE_PEAK = 1e-4
#: Shortest song (or stems) we edit, seconds.
MIN_SECONDS = 0.5
#: Sample rates we edit at, Hz.
RATES = (4000, 384000)


def check_audio(sample_rate: int, length: int, what: str = "the song") -> None:
    """Refuse audio at an unusable rate or shorter than MIN_SECONDS, with a clear message."""
    if not RATES[0] <= int(sample_rate) <= RATES[1]:
        raise AudioError(f"{what} is at {sample_rate} Hz; give audio at {RATES[0]} to {RATES[1]} Hz")
    if length < MIN_SECONDS * sample_rate:
        raise AudioError(f"{what} is too short ({length / sample_rate:.2f} s); give at least {MIN_SECONDS} s")


def check_song(wav: torch.Tensor, sample_rate: int) -> None:
    """Refuse a song that is not mono or stereo [C, T] audio, is silent, too short or at an
    unusable rate."""
    if wav.dim() != 2 or wav.shape[-1] == 0:
        raise AudioError(f"a song must be audio shaped [C, T] with T > 0, got {tuple(wav.shape)}")
    if wav.shape[0] > 2:  # Demucs separates mono or stereo
        raise AudioError(f"cannot separate {wav.shape[0]}-channel audio; downmix it to stereo or mono first")
    check_audio(sample_rate, wav.shape[-1])
    if float(wav.abs().max()) < SILENCE_PEAK:
        raise AudioError("the song is silent: nothing to edit")


@dataclass
class SongEdit:
    """Every stem of the edited song: {stem: [C, T]} at its rate (`rates`; a stem not named there:
    `sample_rate`, the song's); `.mix` is their sum at the highest."""

    stems: dict[str, torch.Tensor]
    sample_rate: int
    codes: torch.Tensor  # [K, F] model tokens after the edit
    seed: int | None
    regenerated: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, int] = field(default_factory=dict)

    def rate(self, stem: str) -> int:
        """The sample rate of `stem`."""
        return int(self.rates.get(stem, self.sample_rate))

    @property
    def mix(self) -> torch.Tensor:
        """[C, T] the sum of the stems at the highest of their rates (others resampled, julius)."""
        if len({self.rate(s) for s in self.stems}) == 1:
            return torch.stack(list(self.stems.values())).sum(0)
        rate = max(self.rate(s) for s in self.stems)
        length = max(round(w.shape[-1] * rate / self.rate(s)) for s, w in self.stems.items())
        mix = torch.zeros(next(iter(self.stems.values())).shape[0], length)
        for stem, w in self.stems.items():
            w = convert_audio(w, self.rate(stem), rate, w.shape[0])[..., :length]
            mix[..., : w.shape[-1]] += w
        return mix


def crossfade_into(original: torch.Tensor, new: torch.Tensor, a: int, b: int, fade: int) -> torch.Tensor:
    """`original` [C, T] with [a, b) replaced by `new` [C, T]; raised-cosine fades of `fade`
    samples inside the range at both borders. Samples outside [a, b) are untouched."""
    out = original.clone()
    gain = torch.ones(b - a)
    n = min(fade, (b - a) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, torch.pi, n + 2)[1:-1])
        if a > 0:
            gain[:n] = ramp
        if b < original.shape[-1]:
            gain[-n:] = ramp.flip(0)
    out[..., a:b] = new[..., a:b] * gain + original[..., a:b] * (1 - gain)
    return out


def edit_stems(
    model: MusicGenStem,
    sources: Mapping[str, torch.Tensor],
    sample_rate: int,
    regenerate: Sequence[str],
    descriptions: Sequence[str | None],
    *,
    start: float | None = None,
    end: float | None = None,
    seed: int | None = None,
    progress: bool = False,
    chords: str | ChordChart | None = None,
) -> SongEdit:
    """Regenerate `regenerate` under the other sources {name: [C, T]} (same rate and length),
    following `chords` if given (else the kept stems' chords, models that read chords).

    Model stems neither given nor regenerated are silence; names outside the model's stems
    (e.g. vocals) are passed through untouched.
    """
    if len(descriptions) != 1:
        raise GenerationError("a song edit takes one description")
    if not sources:
        raise GenerationError("give the audio of at least one stem")
    regen = model.layout.check_stems(list(regenerate))
    shapes = {tuple(w.shape) for w in sources.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise AudioError(f"all stems must share one shape [C, T], got {sorted(shapes)}")
    channels, length = next(iter(shapes))
    check_audio(sample_rate, length, "the stem audio")
    kept_audio = {s: sources[s] for s in model.stems if s in sources and s not in regen}
    heard = model.at_model_rate(kept_audio or {regen[0]: torch.zeros(channels, length)}, sample_rate)
    codes = model.encode_stems(heard, model.sample_rate)  # [1, K, F]
    out = model.regenerate_range(
        codes,
        regen,
        list(descriptions),
        progress,
        start=start,
        end=end,
        seed=seed,
        chords=chords,
        heard={s: heard[s] for s in kept_audio},  # tempo, beat and chords read from the audio given
    )
    assert not isinstance(out, tuple)
    whole = start is None and end is None
    new_rate = max(model.sample_rate, int(sample_rate))  # new stems: never below the model's rate
    stems: dict[str, torch.Tensor] = {}
    rates: dict[str, int] = {}
    for name in list(model.stems) + [n for n in sources if n not in model.stems]:
        if name not in regen and name in sources:
            stems[name], rates[name] = sources[name], int(sample_rate)
            continue
        # a stem regenerated over a range keeps its audio outside it, so stays at its rate
        rate = int(sample_rate) if name in sources and not whole else new_rate
        n = round(length * rate / sample_rate)
        if name not in regen:  # neither given nor regenerated: silence
            stems[name], rates[name] = torch.zeros(channels, n), rate
            continue
        new = convert_audio(out[name][0], model.sample_rate, rate, channels)  # [C, ~n]
        new = torch.nn.functional.pad(new, (0, max(0, n - new.shape[-1])))[..., :n]
        a = 0 if start is None else round(float(start) * rate)
        b = n if end is None else min(n, round(float(end) * rate))
        old = sources.get(name, torch.zeros(channels, n))
        fade = round(CROSSFADE * rate)
        stems[name] = new if (a == 0 and b == n) else crossfade_into(old, new, a, b, fade)
        rates[name] = rate
    info: dict[str, Any] = {"range": [start, end]}
    if "model_descriptions" in out.params:  # the description as the model read it (an added tempo)
        info["model_prompt"] = out.params["model_descriptions"][0]
    if "step_conditions" in out.params:  # the chords and beat grid the model read
        info["step_conditions"] = out.params["step_conditions"][0]
    return SongEdit(stems, sample_rate, out.codes[0], out.seed, regen, info, rates)


def edit_song(
    model: MusicGenStem,
    wav: torch.Tensor,
    sample_rate: int,
    regenerate: Sequence[str],
    descriptions: Sequence[str | None],
    separator: torch.nn.Module,
    *,
    start: float | None = None,
    end: float | None = None,
    seed: int | None = None,
    progress: bool = False,
    chords: str | ChordChart | None = None,
) -> SongEdit:
    """Separate a song [C, T] with `separator` (see `separation.load_separator`), then `edit_stems`."""
    from .separation import separate

    check_song(wav, sample_rate)
    sources = separate(separator, wav, sample_rate, progress=progress)
    return edit_stems(
        model,
        sources,
        sample_rate,
        regenerate,
        descriptions,
        start=start,
        end=end,
        seed=seed,
        progress=progress,
        chords=chords,
    )
