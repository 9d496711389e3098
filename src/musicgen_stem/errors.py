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


def load_failure(exc: BaseException) -> str:
    """One line saying why `torch.load(weights_only=True)` failed: the code a pickle asked for
    (refused, never run), or what is wrong with the file."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    code = next((ln for ln in lines if "GLOBAL" in ln or "tries to build" in ln), None)
    if code is not None:
        return f"the file holds code, refused and not run ({code[:160]})"
    noise = ("Weights only", "Please file", "Check the documentation", "Re-running", "In PyTorch")
    reason = next((ln for ln in lines if not any(n in ln for n in noise)), "")
    return f"{type(exc).__name__}: {reason[:160]}" if reason else type(exc).__name__
