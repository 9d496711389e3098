"""Token datasets and the two kinds of LM training batches (method.md §2-3).

A token dataset is a folder written by `musicgen-stem prepare`:
```
DATA_DIR/
  prepare.json   {"layout": StemLayout.to_dict(), "frame_rate": 50.0, ...}
  index.jsonl    one track per line: {"id", "tokens": "tokens/<id>.npy", "frames", "captions", ...}
  tokens/<id>.npy  int16/int32 [K, T]: all streams of the track, layout order
```

Batches (all draws from one `torch.Generator`, so a batch is a pure function of the generator):

- text -> stems: random crops of `crop_frames` frames, loss on every position;
- edit: a random window of `window_frames` frames; per item 1 to N-1 stems are masked (uniform
  count, then uniform subset); the sequence is `[masked_prefix (window/5 + 1 steps) | window]`,
  built with the same `masked_prefix` that inference uses; loss on the window only.

Short tracks: items are drawn only among tracks at least as long as the crop/window. Only when no
track is long enough are shorter ones used: their missing frames are the special token and are
excluded from the loss (an edit prefix of a short window is padded with silence tokens, as at
inference).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..conditioning.attributes import ATTRIBUTE_DROPOUT, parse_attributes
from ..conditioning.chords import ChordChart, ChordError
from ..conditioning.steps import BeatGrid, StepConds
from ..errors import MusicGenStemError
from ..generation.tasks import PREFIX_STRIDE, masked_prefix
from ..layout import StemLayout

PREPARE_FILE = "prepare.json"
INDEX_FILE = "index.jsonl"
SPLITS = ("all", "train", "valid")
TEXT, EDIT = "text", "edit"


class DataError(MusicGenStemError):
    """A token dataset that cannot be used for training."""


@dataclass(frozen=True)
class Track:
    """One track of a token dataset."""

    id: str
    path: Path
    frames: int
    captions: tuple[str, ...]
    chords: ChordChart | None = None  # the song's chords (synthetic songs: their meta.json)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"'{path.parent}' is not a token dataset: {path.name} is missing (run `musicgen-stem prepare`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read '{path}': {e}") from None


def _read_index(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / INDEX_FILE
    if not path.is_file():
        raise DataError(f"'{data_dir}' is not a token dataset: {INDEX_FILE} is missing")
    entries = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(entry, dict) or "id" not in entry or "tokens" not in entry:
                raise DataError(f"{path}:{n}: a track needs at least 'id' and 'tokens'")
            entries.append(entry)
    return entries


def _source_chords(source: Any) -> ChordChart | None:
    """The chords annotated beside a track's source (a synthetic song's meta.json), if any."""
    if not source:
        return None
    meta = Path(str(source)) / "meta.json"
    try:
        spans = json.loads(meta.read_text(encoding="utf-8")).get("chords")
        return ChordChart.from_json(spans) if spans else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ChordError):
        return None


class TokenDataset:
    """The tracks of one or more token datasets, checked against the model's layout.

    Args:
        data_dirs: folders written by `musicgen-stem prepare`.
        layout: the model's layout; every dataset's prepare.json must hold the same one.
        frame_rate: the model's codec frame rate (checked against prepare.json when given).
        split: "all", "train" (all but the validation tracks) or "valid" (the last
            `valid_fraction` of the tracks sorted by id, at least one when the fraction is > 0).
    """

    def __init__(
        self,
        data_dirs: Sequence[str | os.PathLike[str]],
        layout: StemLayout,
        frame_rate: float | None = None,
        split: str = "all",
        valid_fraction: float = 0.0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 <= valid_fraction < 1.0:
            raise DataError(f"the validation fraction must be in [0, 1), got {valid_fraction}")
        if not data_dirs:
            raise DataError("give at least one token dataset folder")
        self.layout = layout
        tracks: list[tuple[str, int, Track]] = []
        for i, d in enumerate(data_dirs):
            tracks += [(t.id, i, t) for t in self._read_dir(Path(d), layout, frame_rate)]
        if not tracks:
            raise DataError(f"no tracks in {', '.join(str(d) for d in data_dirs)}")
        tracks.sort(key=lambda x: (x[0], x[1]))
        n_valid = math.ceil(valid_fraction * len(tracks)) if valid_fraction > 0 else 0
        if split == "train" and n_valid >= len(tracks):
            raise DataError(
                f"{len(tracks)} track(s) leave none for training after the validation split "
                f"({valid_fraction:g}); add tracks or lower the validation fraction"
            )
        chosen = {
            "all": tracks,
            "train": tracks[: len(tracks) - n_valid],
            "valid": tracks[len(tracks) - n_valid :],
        }[split]
        self.tracks: list[Track] = [t for _, _, t in chosen]
        self._arrays: dict[int, np.ndarray] = {}
        self._pools: dict[int, list[int]] = {}

    @staticmethod
    def _read_dir(data_dir: Path, layout: StemLayout, frame_rate: float | None) -> list[Track]:
        if not data_dir.is_dir():
            raise DataError(f"token dataset folder '{data_dir}' does not exist")
        meta = _read_json(data_dir / PREPARE_FILE)
        if not isinstance(meta, dict) or "layout" not in meta:
            raise DataError(f"'{data_dir / PREPARE_FILE}' has no 'layout'")
        try:
            data_layout = StemLayout.from_dict(meta["layout"])
        except (MusicGenStemError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"'{data_dir / PREPARE_FILE}' holds an invalid layout: {e}") from None
        if data_layout != layout:
            raise DataError(
                f"the tokens in '{data_dir}' use the layout {data_layout.to_dict()} but the model uses "
                f"{layout.to_dict()}: prepare the data with this model's codecs"
            )
        if frame_rate is not None and "frame_rate" in meta and float(meta["frame_rate"]) != float(frame_rate):
            raise DataError(
                f"the tokens in '{data_dir}' are at {meta['frame_rate']} frames/s but the model's codecs run "
                f"at {frame_rate} frames/s: prepare the data with this model's codecs"
            )
        tracks = []
        for e in _read_index(data_dir):
            path = data_dir / str(e["tokens"])
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DataError(f"cannot read tokens of track '{e['id']}' ({path}): {err}") from None
            if (
                arr.ndim != 2
                or arr.shape[0] != layout.num_streams
                or not np.issubdtype(arr.dtype, np.integer)
            ):
                raise DataError(
                    f"tokens of track '{e['id']}' ({path}) are {arr.dtype} {list(arr.shape)}, expected an "
                    f"integer array [{layout.num_streams}, frames]"
                )
            frames = int(arr.shape[1])
            if frames < 1:
                continue
            captions = e.get("captions") or []
            if isinstance(captions, str):
                captions = [captions]
            captions = tuple(str(c) for c in captions if str(c).strip())
            tracks.append(Track(str(e["id"]), path, frames, captions, _source_chords(e.get("source"))))
        return tracks

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def total_frames(self) -> int:
        return sum(t.frames for t in self.tracks)

    def codes(self, index: int, start: int, length: int) -> torch.Tensor:
        """Frames [start, start + length) of track `index` as a long tensor [K, length]."""
        arr = self._arrays.get(index)
        if arr is None:
            arr = self._arrays[index] = np.load(self.tracks[index].path, mmap_mode="r")
        out = torch.from_numpy(np.asarray(arr[:, start : start + length], dtype=np.int64))
        if out.numel() and (int(out.min()) < 0 or int(out.max()) >= self.layout.card):
            raise DataError(
                f"track '{self.tracks[index].id}' holds tokens outside [0, {self.layout.card}): "
                "prepare it with this model's codecs"
            )
        return out

    def pool(self, frames: int) -> list[int]:
        """Indices of the tracks with at least `frames` frames; all tracks if none is that long."""
        if frames not in self._pools:
            long = [i for i, t in enumerate(self.tracks) if t.frames >= frames]
            self._pools[frames] = long or list(range(len(self.tracks)))
        return self._pools[frames]


@dataclass
class LMBatch:
    """One training batch."""

    codes: torch.Tensor  # [B, K, T] long (special token where there is no frame)
    loss_mask: torch.Tensor  # [B, K, T] bool: positions that count in the loss
    texts: list[str | None]
    kind: str  # "text" or "edit"
    prefix_len: int = 0  # edit: steps of the masked prefix (window / 5 + 1)
    masked: torch.Tensor | None = None  # edit: [B, K] bool, the masked streams
    conds: StepConds | None = None  # per-step conditions (models that read them)
    starts: list[int] | None = None  # the song frame at each item's column 0 (with `conds`)


def cat_batches(batches: Sequence[LMBatch]) -> LMBatch:
    """One batch from batches of the same kind and shape (e.g. items drawn one by one)."""
    first = batches[0]
    masked = None if first.masked is None else torch.cat([b.masked for b in batches])  # type: ignore[misc]
    conds = None
    if first.conds is not None:
        conds = StepConds()
        for b in batches:
            conds = conds + b.conds  # type: ignore[operator]
    starts = None if first.starts is None else [s for b in batches for s in b.starts]  # type: ignore[union-attr]
    return LMBatch(
        torch.cat([b.codes for b in batches]),
        torch.cat([b.loss_mask for b in batches]),
        [t for b in batches for t in b.texts],
        first.kind,
        first.prefix_len,
        masked,
        conds,
        starts,
    )


def _randint(high: int, gen: torch.Generator) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (1,), generator=gen))


class BatchBuilder:
    """Builds text and edit batches from a `TokenDataset`, deterministically from a generator.

    Args:
        crop_frames: frames of a text -> stems crop.
        window_frames: the model's edit window (a multiple of PREFIX_STRIDE).
        silence_tokens: [K] codes of silence that pad the prefix of a short window.
        edit_prob: probability that a batch is an edit batch (0 with a one-stem layout).
        cond_dropout: probability that the whole batch is unconditioned (all texts None).
        frame_rate: the codec frame rate, for the per-step conditions.
        beat: give batches the beat grid of the tempo their captions name (tracks start on a
            downbeat): text batches with their bars, edit batches without (as an edit finds the
            beat, not the bar, in the kept stems).
        chords: give batches their tracks' chords (`Track.chords`).
        step_dropout: each item's beat grid and chords are dropped with this probability.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        crop_frames: int,
        window_frames: int,
        silence_tokens: Sequence[int],
        edit_prob: float = 0.5,
        cond_dropout: float = 0.3,
        frame_rate: float = 50.0,
        beat: bool = False,
        chords: bool = False,
        step_dropout: float = ATTRIBUTE_DROPOUT,
    ) -> None:
        layout = dataset.layout
        if crop_frames < 1:
            raise DataError(f"the training crop must hold at least one frame, got {crop_frames}")
        if window_frames < PREFIX_STRIDE or window_frames % PREFIX_STRIDE:
            raise DataError(
                f"the edit window ({window_frames} frames) must be a positive multiple of {PREFIX_STRIDE}"
            )
        if len(silence_tokens) != layout.num_streams:
            raise DataError(f"{len(silence_tokens)} silence tokens for {layout.num_streams} streams")
        for name, p in (("edit probability", edit_prob), ("condition dropout", cond_dropout)):
            if not 0.0 <= p <= 1.0:
                raise DataError(f"the {name} must be in [0, 1], got {p}")
        self.dataset = dataset
        self.layout = layout
        self.crop_frames = int(crop_frames)
        self.window_frames = int(window_frames)
        self.silence_tokens = [int(s) for s in silence_tokens]
        self.edit_prob = float(edit_prob) if layout.num_stems > 1 else 0.0
        self.cond_dropout = float(cond_dropout)
        self.frame_rate = float(frame_rate)
        self.beat, self.chords = bool(beat), bool(chords)
        self.step_dropout = float(step_dropout)

    @property
    def prefix_len(self) -> int:
        return self.window_frames // PREFIX_STRIDE + 1

    def decide(self, gen: torch.Generator) -> tuple[str, bool]:
        """The per-batch draws: (kind, drop the condition of the whole batch)."""
        u = torch.rand(2, generator=gen).tolist()
        return (EDIT if u[0] < self.edit_prob else TEXT), u[1] < self.cond_dropout

    def _item(self, frames: int, gen: torch.Generator) -> tuple[torch.Tensor, str | None, int, Track]:
        """A random crop [K, <= frames] of a random track, one of its captions, the crop's start,
        the track."""
        pool = self.dataset.pool(frames)
        index = pool[_randint(len(pool), gen)]
        track = self.dataset.tracks[index]
        start = _randint(max(track.frames - frames, 0) + 1, gen)
        codes = self.dataset.codes(index, start, min(frames, track.frames - start))
        caption = track.captions[_randint(len(track.captions), gen)] if track.captions else None
        return codes, caption, start, track

    def build(
        self, batch_size: int, gen: torch.Generator, kind: str | None = None, drop_cond: bool | None = None
    ) -> LMBatch:
        """One batch; `kind` / `drop_cond` given by the caller (e.g. shared by all ranks) or drawn."""
        drawn_kind, drawn_drop = self.decide(gen)
        kind = drawn_kind if kind is None else kind
        drop_cond = drawn_drop if drop_cond is None else drop_cond
        if kind not in (TEXT, EDIT):
            raise ValueError(f"unknown batch kind {kind!r}")
        batch = self._edit(batch_size, gen) if kind == EDIT else self._text(batch_size, gen)
        if drop_cond:
            batch.texts = [None] * batch_size
            batch.conds = None if batch.conds is None else batch.conds.null()
        return batch

    def _text(self, batch_size: int, gen: torch.Generator) -> LMBatch:
        K, T, special = self.layout.num_streams, self.crop_frames, self.layout.special_token
        codes = torch.full((batch_size, K, T), special, dtype=torch.long)
        mask = torch.zeros(batch_size, K, T, dtype=torch.bool)
        texts: list[str | None] = []
        tempos: list[float | None] = []
        charts: list[ChordChart | None] = []
        starts: list[int] = []
        for b in range(batch_size):
            item, caption, start, track = self._item(T, gen)  # [K, n]
            codes[b, :, : item.shape[1]] = item
            mask[b, :, : item.shape[1]] = True
            texts.append(caption)
            tempos.append(parse_attributes(caption).tempo)
            charts.append(track.chords)
            starts.append(start)
        conds = self._conds(tempos, charts, gen)
        return LMBatch(codes, mask, texts, TEXT, conds=conds, starts=starts)

    def _conds(
        self,
        tempos: list[float | None],
        charts: list[ChordChart | None],
        gen: torch.Generator,
        bars: bool = True,
    ) -> StepConds | None:
        """The per-step conditions of a batch (None: the model reads none): beat grids from the
        tempos (from a downbeat with `bars`, else a beat) and the chord charts, each dropped with
        probability `step_dropout`."""
        if not (self.beat or self.chords):
            return None
        beats: tuple[BeatGrid | None, ...] = ()
        chords: tuple[ChordChart | None, ...] = ()
        if self.beat:
            drop = (torch.rand(len(tempos), generator=gen) < self.step_dropout).tolist()
            first = None if bars else 0.0  # a beat, not a downbeat, known
            beats = tuple(
                None if d or t is None else BeatGrid(t, first) for t, d in zip(tempos, drop, strict=True)
            )
        if self.chords:
            drop = (torch.rand(len(charts), generator=gen) < self.step_dropout).tolist()
            chords = tuple(None if d else c for c, d in zip(charts, drop, strict=True))
        return StepConds(beats, chords)

    def _edit(self, batch_size: int, gen: torch.Generator) -> LMBatch:
        layout, W, P = self.layout, self.window_frames, self.prefix_len
        K, N, special = layout.num_streams, layout.num_stems, layout.special_token
        codes = torch.full((batch_size, K, P + W), special, dtype=torch.long)
        mask = torch.zeros(batch_size, K, P + W, dtype=torch.bool)
        masked = torch.zeros(batch_size, K, dtype=torch.bool)
        texts: list[str | None] = []
        tempos: list[float | None] = []
        charts: list[ChordChart | None] = []
        starts: list[int] = []
        for b in range(batch_size):
            item, caption, start, track = self._item(W, gen)  # [K, n]
            tempos.append(parse_attributes(caption).tempo)
            charts.append(track.chords)
            starts.append(start - P)  # column 0 is the prefix's first
            count = 1 + _randint(N - 1, gen)  # 1 .. N-1 stems
            stems = [layout.stems[i] for i in torch.randperm(N, generator=gen)[:count].tolist()]
            masked[b, layout.streams_of_stems(stems)] = True
            prefix = masked_prefix(
                item[None], masked[b : b + 1], special, W, self.silence_tokens
            )  # [1, K, P]
            codes[b, :, :P] = prefix[0]
            codes[b, :, P : P + item.shape[1]] = item
            mask[b, :, P : P + item.shape[1]] = True
            texts.append(caption)
        conds = self._conds(tempos, charts, gen, bars=False)
        return LMBatch(codes, mask, texts, EDIT, prefix_len=P, masked=masked, conds=conds, starts=starts)
