"""Commands a player types while a jam plays (one a line, on stdin or from the app), applied to
the `JamSettings` read at the next cycle border."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .session import JamSettings

HELP = (
    "commands: prompt TEXT | regenerate STEM... | vary 0..1 | mute STEM... | unmute [STEM...] | "
    "solo [STEM...] | quit"
)


class CommandError(ValueError):
    """A command the jam does not know or cannot apply (one line; the jam goes on)."""


def apply_command(settings: JamSettings, line: str, stems: Sequence[str], free: Sequence[str]) -> JamSettings:
    """`settings` changed by one command `line` (stems: the model's; free: the stems the model may
    write, those not in the loop). Raises `CommandError` with the fix."""
    word, _, rest = line.strip().partition(" ")
    word, rest = word.lower(), rest.strip()
    names = rest.split()
    if word == "prompt":
        return replace(settings, prompt=rest or None)
    if word == "vary":
        try:
            vary = float(rest)
        except ValueError:
            raise CommandError(f"vary takes a number from 0 to 1, got '{rest}'") from None
        if not 0.0 <= vary <= 1.0:
            raise CommandError(f"vary takes a number from 0 to 1, got {vary:g}")
        return replace(settings, vary=vary)
    for name in names:
        if name not in stems:
            raise CommandError(f"unknown stem '{name}': the stems are {', '.join(stems)}")
    if word == "regenerate":
        bad = [n for n in names if n not in free]
        if not names or bad:
            raise CommandError(f"regenerate takes stems not in the loop: {', '.join(free)}")
        return replace(settings, regenerate=tuple(dict.fromkeys(names)))
    if word == "mute":
        if not names:
            raise CommandError("mute takes the stems to mute, e.g. 'mute drums'")
        return replace(settings, mute=settings.mute | set(names))
    if word == "unmute":
        return replace(settings, mute=settings.mute - set(names) if names else frozenset())
    if word == "solo":
        return replace(settings, solo=frozenset(names))
    shown = line.strip()[:40]
    raise CommandError(f"unknown command '{shown}'; {HELP}")


def is_quit(line: str) -> bool:
    return line.strip().lower() in ("quit", "exit", "stop", "q")
