"""musicgen-stem: multi-stem music generation and editing."""

__version__ = "0.1.0"
