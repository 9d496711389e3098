"""Generation: one decoding loop (engine), sampling, and the tasks expressed for it."""

from .engine import UNKNOWN, generate_codes
from .sampling import SamplingParams, guide, sample_next
from .tasks import (
    EDIT_WINDOW_FRAMES,
    PREFIX_STRIDE,
    EditTask,
    continuation_task,
    edit_task,
    masked_prefix,
    text_task,
)

__all__ = [
    "EDIT_WINDOW_FRAMES",
    "PREFIX_STRIDE",
    "UNKNOWN",
    "EditTask",
    "SamplingParams",
    "continuation_task",
    "edit_task",
    "generate_codes",
    "guide",
    "masked_prefix",
    "sample_next",
    "text_task",
]
