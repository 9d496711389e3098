"""Generation: one decoding loop (engine), sampling, the tasks, and the windows that run them."""

from .engine import UNKNOWN, generate_codes
from .sampling import SamplingParams, guide, sample_next
from .tasks import PREFIX_STRIDE, Task, continuation_task, edit_task, masked_prefix, text_task

__all__ = [
    "PREFIX_STRIDE",
    "UNKNOWN",
    "SamplingParams",
    "Task",
    "continuation_task",
    "edit_task",
    "generate_codes",
    "guide",
    "masked_prefix",
    "sample_next",
    "text_task",
]
