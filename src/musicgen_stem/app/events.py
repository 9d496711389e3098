"""What every event of the page shares: the calling session, and errors as one-line messages."""

from __future__ import annotations

import sys
import traceback

import gradio as gr

from ..errors import MusicGenStemError
from .holder import one_line
from .jobs import Cancelled

__all__ = ["gr_error", "session_of"]


def gr_error(exc: BaseException) -> Exception:
    """The message users see: ours as is, anything else as one line (traceback to the log)."""
    if isinstance(exc, Cancelled):
        return gr.Error("Cancelled.")
    if isinstance(exc, MusicGenStemError):
        return gr.Error(str(exc))
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Something went wrong ({one_line(exc)}); see the server log.")


def session_of(request: gr.Request | None) -> str:
    return str(getattr(request, "session_hash", None) or "local")
