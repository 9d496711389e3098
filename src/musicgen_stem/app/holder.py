"""The model and the separator the operator chose at launch, one job at a time, cancel flags."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelError, MusicGenStemError

if TYPE_CHECKING:
    from ..api import MusicGenStem

__all__ = ["ModelHolder", "one_line"]


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 200 characters of it), never a traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@dataclass
class ModelHolder:
    """The model and the separator the operator chose at launch, and per-session cancel flags.

    `separator_spec`: a Demucs name or weights file, an already built model, or None (no song
    edits); loaded on first use, once. Jobs use the model through `running`, one at a time."""

    model: MusicGenStem | None = None
    name: str = ""
    message: str = ""
    loader: Callable[[str], MusicGenStem] | None = None
    separator_spec: str | torch.nn.Module | None = "htdemucs"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _separator: torch.nn.Module | None = field(default=None, repr=False)
    _cancelled: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def start(
        cls,
        name_or_path: str | None = None,
        loader: Callable[[str], MusicGenStem] | None = None,
        separator: str | torch.nn.Module | None = "htdemucs",
    ) -> ModelHolder:
        """A holder with `name_or_path` loaded (None: the shipped default model) by `loader` (name ->
        model; default: plain loading). A model that cannot be loaded leaves the holder empty with
        `message` saying why."""
        holder = cls(loader=loader, separator_spec=separator)
        holder.load(name_or_path or "")
        return holder

    def get(self) -> MusicGenStem:
        """The loaded model, or a `ModelError` saying why there is none."""
        if self.model is None:
            raise ModelError(
                f"no model is loaded ({self.message or 'none given'}); restart the app with --model"
            )
        return self.model

    @contextmanager
    def running(self, sampling: Mapping[str, Any] | None = None) -> Iterator[MusicGenStem]:
        """The model for one job: held under the lock, with the form's sampling settings applied."""
        model = self.get()
        with self.lock:
            model.set_generation_params(**(sampling or {}))
            yield model

    def load(self, name_or_path: str) -> str:
        """Load a model folder or hub id ("" = the default model); returns a one-line status.
        On failure the previous model stays loaded and the status says why. Called at launch
        only: no client input reaches it."""
        from ..api import MusicGenStem

        name = str(name_or_path or "").strip()
        path = "" if name in ("", "default", "mini") else os.path.expanduser(name)
        try:
            if self.loader is not None:
                model = self.loader(path)
            elif not path:
                model = MusicGenStem.default()
            else:
                model = MusicGenStem.from_pretrained(path)
        except MusicGenStemError as exc:
            self.message = f"could not load '{name or 'default'}': {exc}"
            return self.status()
        except Exception as exc:  # a broken file or checkpoint: one line, never a traceback
            self.message = f"could not load '{name or 'default'}': {one_line(exc)}"
            return self.status()
        with self.lock:
            self.model, self.name = model, name or "default (mini)"
            self.message = ""
        return self.status()

    def status(self) -> str:
        """One line: the model's name, stems, rate and window, or why none is loaded."""
        if self.model is None:
            return f"No model loaded. {self.message}".strip()
        m = self.model
        line = (
            f"Model: {self.name} (stems: {', '.join(m.stems)}; {m.sample_rate} Hz; "
            f"window {m.max_duration:g} s)"
        )
        return f"{line}. {self.message}" if self.message else line

    @property
    def separator_label(self) -> str:
        spec = self.separator_spec
        if spec is None:
            return "none (song edits are off; upload stems instead)"
        return spec if isinstance(spec, str) else type(spec).__name__

    def separator(self) -> torch.nn.Module:
        """The launch-time separator (`separation.load_separator`, loaded once); a clear error
        when there is none or it cannot be loaded."""
        from ..separation import load_separator

        if self.separator_spec is None:
            raise ModelError("this app edits no songs (started with --separator none); upload the stems")
        with self.lock:
            if self._separator is None:
                spec = self.separator_spec
                try:
                    self._separator = load_separator(
                        os.path.expanduser(spec) if isinstance(spec, str) else spec
                    )
                except MusicGenStemError as exc:
                    raise ModelError(
                        f"{exc}. Or upload the stems yourself with 'Upload stems' on the Edit tab"
                    ) from None
            return self._separator

    # cancellation: the cancel button sets a flag that the job's progress callback checks
    def cancel(self, session: str) -> None:
        self._cancelled.add(session)

    def begin(self, session: str) -> Callable[[], bool]:
        """Clear the session's cancel flag; returns a function telling whether it was cancelled."""
        self._cancelled.discard(session)
        return lambda: session in self._cancelled
