"""What the API returns: `StemAudio` (whole results) and `AudioChunk` (streamed pieces)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import GenerationError

__all__ = ["AudioCallback", "AudioChunk", "StemAudio", "StreamJob", "in_input_format"]


@dataclass
class StemAudio(Mapping[str, torch.Tensor]):
    """Generated stems: `out[stem]` is [B, C, T] at `sample_rate`, or at `rates[stem]` for a stem
    kept at a lower rate of its own (`rate(stem)`); `.mix` is their plain sum at `sample_rate`.

    `codes` [B, K, F] are the model's frame tokens of this audio, `seed` the seed that made them.
    """

    stems: dict[str, torch.Tensor]
    sample_rate: int
    codes: torch.Tensor
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, int] = field(default_factory=dict)

    def rate(self, stem: str) -> int:
        """The sample rate of `stem`."""
        return int(self.rates.get(stem, self.sample_rate))

    def __getitem__(self, stem: str) -> torch.Tensor:
        return self.stems[stem]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stems)

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def mix(self) -> torch.Tensor:
        """[B, C, T] sum of the stems at `sample_rate` (a stem at another rate resampled, julius)."""
        if all(self.rate(s) == self.sample_rate for s in self.stems):
            return torch.stack(list(self.stems.values())).sum(0)
        from ..audio import convert_audio

        first = next(iter(self.stems.values()))
        length = round(self.duration * self.sample_rate)
        mix = torch.zeros(*first.shape[:-1], length)
        for stem, wav in self.stems.items():
            wav = convert_audio(wav, self.rate(stem), self.sample_rate, wav.shape[-2])[..., :length]
            mix[..., : wav.shape[-1]] += wav
        return mix

    @property
    def duration(self) -> float:
        stem, wav = next(iter(self.stems.items()))
        return wav.shape[-1] / self.rate(stem)

    def save(self, folder: str | os.PathLike[str], force: bool = False, bits: str = "16") -> Path:
        """Write the result as the command line does: a WAV per stem and `mix.wav` (`bits` 16, 24
        or float, at `sample_rate`), `codes.npy`, `meta.json` (seed, the descriptions and
        conditions the model read, model and settings) and `stems.mid`; a batch gets a `var_NN`
        subfolder per item. A stem at a rate of its own (`rates`) is written at it, the mix at
        `sample_rate`. Written whole or not at all; a non-empty folder only with `force`."""
        from ..outputs import StemsItem, write_batch_folders, write_stems_folder

        subtypes = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
        if str(bits) not in subtypes:
            raise GenerationError(f"bits must be 16, 24 or float, got {bits!r}")
        items = []
        for i in range(self.codes.shape[0]):
            per_item = ("step_conditions", "model_descriptions")
            meta: dict[str, Any] = {k: v for k, v in self.params.items() if k not in per_item}
            meta["seed"] = self.seed
            meta |= (self.params.get("step_conditions") or [{}] * (i + 1))[i]
            if self.params.get("model_descriptions"):
                meta["model_prompt"] = self.params["model_descriptions"][i]
            items.append(StemsItem({s: w[i] for s, w in self.stems.items()}, self.codes[i], meta))
        subtype = subtypes[str(bits)]
        rates = {s: self.rate(s) for s in self.stems}
        if len(items) == 1:
            item = items[0]
            return write_stems_folder(
                folder,
                item.stems,
                self.sample_rate,
                item.codes,
                item.meta,
                force=force,
                subtype=subtype,
                rates=rates,
            )
        items = [StemsItem(it.stems, it.codes, it.meta, rates=rates) for it in items]
        write_batch_folders(folder, items, self.sample_rate, force=force, subtype=subtype)
        return Path(folder)


def in_input_format(audio: StemAudio, kept: Mapping[str, torch.Tensor], sample_rate: int) -> StemAudio:
    """`audio` in the format of the user's stems `kept` {stem: [B, C, T]} at `sample_rate`: the kept
    stems are returned as given (cut or padded with silence to the output's length), the others
    converted to the most channels among the kept stems and resampled to `sample_rate`, or kept at
    the model's rate where `sample_rate` is lower (new stems are never below the model's rate;
    the kept stems' rate is then in `rates`)."""
    from ..audio import convert_audio, convert_audio_channels

    channels = max(w.shape[-2] for w in kept.values())
    batch = next(iter(audio.stems.values())).shape[0]
    new_rate = max(int(sample_rate), audio.sample_rate)
    stems = {}
    for stem, wav in audio.stems.items():
        if stem in kept:
            length = round(audio.duration * sample_rate)
            w = convert_audio_channels(kept[stem], channels).expand(batch, -1, -1)[..., :length]
        else:
            length = round(audio.duration * new_rate)
            w = convert_audio(wav, audio.sample_rate, new_rate, channels)[..., :length]
        stems[stem] = torch.nn.functional.pad(w, (0, length - w.shape[-1]))
    params = {**audio.params, "output_format": "input"}
    rates = dict.fromkeys(kept, int(sample_rate)) if new_rate != sample_rate else {}
    return StemAudio(stems, new_rate, audio.codes, audio.seed, params, rates)


@dataclass
class AudioChunk:
    """A piece of streamed audio: `stems[stem]` [B, C, n] float CPU at `sample_rate`, starting at
    sample `start` of the output. Chunks come in order and join without gaps; the one with
    `last` True ends the output and carries `codes` [B, K, F], the frame tokens of all of it."""

    start: int
    stems: dict[str, torch.Tensor]
    sample_rate: int
    last: bool = False
    codes: torch.Tensor | None = None

    @property
    def mix(self) -> torch.Tensor:
        """[B, C, n] sum of the stems."""
        return torch.stack(list(self.stems.values())).sum(0)

    @property
    def num_samples(self) -> int:
        return next(iter(self.stems.values())).shape[-1]


AudioCallback = Callable[[AudioChunk], None]
#: job(on_audio, stop) of an `AudioStream`: generates, handing chunks to on_audio, and stops
#: (raising) once stop() is True.
StreamJob = Callable[[AudioCallback, Callable[[], bool]], None]
