"""User-facing errors. The CLI prints their message on one line and exits with code 2."""


class MusicGenStemError(Exception):
    """A mistake in what the user gave us; the message names the problem and the fix."""


class AudioError(MusicGenStemError):
    """Audio that is missing, unreadable, empty or otherwise unusable."""


class ModelError(MusicGenStemError):
    """A model folder, hub id or checkpoint that cannot be used."""


class OutputExistsError(MusicGenStemError):
    """An output would overwrite existing files and `force` was not given."""


class GenerationError(MusicGenStemError):
    """Generation parameters that cannot work (duration, stems, sampling settings...)."""
