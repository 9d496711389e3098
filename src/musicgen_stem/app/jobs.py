"""The app's jobs as plain functions of paths and dicts (no Gradio): generate, edit, stream.

`generate_job` and `edit_job` check the form's values against the `Limits`, run the launch-time
model (one job at a time, see `ModelHolder.running`) and write each result into a new folder of
the session's work folder (`results.write_result`); they return result dicts. A job is cancelled
through its `cancelled` callback, checked at every progress step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import AudioError, GenerationError, MusicGenStemError
from ..inputs import check_prompt
from ..samples import Samples
from .forms import MAX_VARIATIONS, Limits, parse_seconds, parse_seed
from .holder import ModelHolder
from .results import new_job_dir, write_result

if TYPE_CHECKING:
    from ..api import AudioChunk, MusicGenStem

__all__ = ["Cancelled", "edit_job", "generate_job", "preview_pcm", "stream_job"]

Progress = Callable[[int, int], None]


class Cancelled(MusicGenStemError):
    """The user cancelled the job."""


def _progress(progress: Progress | None, cancelled: Callable[[], bool] | None) -> Progress:
    """A progress callback that raises `Cancelled` once `cancelled()` says so."""

    def step(done: int, total: int) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(done, total)

    return step


def _prompt(prompt: str | None) -> str | None:
    text = (prompt or "").strip() or None
    check_prompt(text, "the prompt")
    return text


# ---------------------------------------------------------------------------------------- generate
def generate_job(
    holder: ModelHolder,
    workdir: str | os.PathLike[str],
    prompt: str,
    *,
    duration: float,
    seed: Any = None,
    chords: str | None = None,
    variations: int = 1,
    sampling: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_audio: Callable[[AudioChunk], None] | None = None,
) -> list[dict[str, Any]]:
    """Text -> stems, `variations` results (one batch, one seed); each result is a dict of paths
    (`stems`, `mix`, `zip`, `stem_mp4`, `codes`), the `seed` and the settings. `on_audio` receives
    the audio while it is generated (see `MusicGenStem.generate`). `chords`: a progression the
    stems follow (models that read chords; the tempo named in the prompt)."""
    limits = limits or Limits()
    holder.get()  # no model: say so before checking the form
    d = limits.check_duration(duration)
    n = int(variations)
    if not 1 <= n <= MAX_VARIATIONS:
        raise GenerationError(f"variations must be between 1 and {MAX_VARIATIONS}, got {variations}")
    text = _prompt(prompt)
    step = _progress(progress, cancelled)
    with holder.running(sampling) as model:
        progression = (chords or "").strip() or None
        out = model.generate(
            [text] * n, step, seed=parse_seed(seed), duration=d, on_audio=on_audio, chords=progression
        )
        stems_order = list(model.stems)
    assert not isinstance(out, tuple)
    job = new_job_dir(Path(workdir))
    results = []
    read = out.params.get("step_conditions")  # the beat grid and chords the model read
    for i in range(n):
        meta = {
            "kind": "generate",
            "prompt": text or "",
            "seed": out.seed,
            "variation": i + 1,
            "variations": n,
            "model": holder.name,
            "params": dict(sampling or {}),
            "regenerated": stems_order,
            **(read[i] if read else {}),
        }
        stems = {s: out[s][i] for s in out}
        name = f"musicgen-stem-{out.seed}" + (f"-v{i + 1}" if n > 1 else "")
        results.append(write_result(job / f"v{i + 1}", stems, out.sample_rate, out.codes[i], meta, name))
    return results


# ---------------------------------------------------------------------------------------- edit
@dataclass
class EditForm:
    """The checked values of an edit: stems to regenerate, prompt, time range, seed."""

    regenerate: list[str]
    text: str | None
    start: float | None
    end: float | None
    seed: int | None

    def where(self) -> dict[str, Any]:
        """The keyword arguments `start`, `end` and `seed` of the model's edit functions."""
        return {"start": self.start, "end": self.end, "seed": self.seed}


@dataclass
class Edited:
    """What an edit produced: all stems, their rate, the codes, the seed used, the source's name,
    the stems kept as given (written back untouched) and the description as the model read it
    where the edit added the kept stems' tempo."""

    stems: Mapping[str, torch.Tensor]
    sample_rate: int
    codes: torch.Tensor
    seed: int
    source: str
    kept: dict[str, Samples] = field(default_factory=dict)
    model_prompt: str | None = None
    rates: dict[str, int] = field(default_factory=dict)  # stems at another rate than sample_rate


def _owned(path: Any, workdir: Path, what: str) -> Path:
    """A file named by a result of this session: it must lie in the session's folder."""
    p = Path(str(path)).resolve()
    if not p.is_relative_to(workdir.resolve()):
        raise AudioError(f"{what} is not one of this session's results; generate or upload again")
    return p


def _load_stems(paths: Mapping[str, Any], limits: Limits) -> tuple[dict[str, Samples], int]:
    """Uploaded stems {role: path} exactly as stored ({role: Samples}, padded to the longest) and
    their rate; they must share one rate and channel count (they come back untouched)."""
    from ..samples import read_kept

    files = {r: limits.check_upload(p, f"the {r} stem") for r, p in paths.items() if p}
    if not files:
        raise AudioError("upload at least one stem (bass, drums, other or vocals)")
    kept, sr = read_kept(files, "uploaded")
    limits.check_duration(next(iter(kept.values())).frames / sr, "the stems")
    return kept, sr


def _edit_codes(
    model: MusicGenStem, codes_file: Path, form: EditForm, step: Progress, limits: Limits
) -> Edited:
    """Regenerate stems of a generated result from its tokens: the kept stems' tokens bit-exact."""
    codes = torch.from_numpy(np.load(codes_file))
    limits.check_duration(codes.shape[-1] / model.frame_rate, "the last result")
    out = model.regenerate_range(codes[None], form.regenerate, [form.text], step, **form.where())
    assert not isinstance(out, tuple)
    read = out.params.get("model_descriptions", [None])[0]
    stems = {k: out[k][0] for k in out}
    return Edited(stems, out.sample_rate, out.codes[0], out.seed, "last result", model_prompt=read)


def _edit_stems(
    model: MusicGenStem, given: dict[str, Samples], sr: int, form: EditForm, step: Progress, source: str
) -> Edited:
    """Regenerate stems next to given ones ({role: Samples}); those not regenerated are kept."""
    from ..song import edit_stems

    sources = {n: x.to_tensor() for n, x in given.items()}
    edited = edit_stems(model, sources, sr, form.regenerate, [form.text], progress=step, **form.where())
    kept = {n: x for n, x in given.items() if n not in form.regenerate}
    read = edited.info.get("model_prompt")
    return Edited(edited.stems, sr, edited.codes, edited.seed, source, kept, read, edited.rates)


def _edit_song(
    model: MusicGenStem, separator: Callable[[], torch.nn.Module], song: Path, form: EditForm, step: Progress
) -> Edited:
    """Separate a song (with `separator()`, asked for once the song is read), then regenerate some
    of its stems; the separated others are kept."""
    from ..audio import load_audio
    from ..song import edit_song

    wav, sr = load_audio(song)
    texts = [form.text]
    edited = edit_song(model, wav, sr, form.regenerate, texts, separator(), progress=step, **form.where())
    kept = {n: Samples.from_tensor(w, sr) for n, w in edited.stems.items() if n not in form.regenerate}
    read = edited.info.get("model_prompt")
    return Edited(edited.stems, sr, edited.codes, edited.seed, f"song {song.name}", kept, read, edited.rates)


def edit_job(
    holder: ModelHolder,
    workdir: str | os.PathLike[str],
    *,
    regenerate: Sequence[str],
    prompt: str = "",
    song: str | None = None,
    stems: Mapping[str, str | None] | None = None,
    last: Mapping[str, Any] | None = None,
    start: Any = None,
    end: Any = None,
    seed: Any = None,
    sampling: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Regenerate `regenerate` stems of one source: `song` (a file, separated with the launch-time
    separator first), `stems` ({role: file}) or `last` (a result dict of this session, whose files
    must lie in `workdir`). The other stems are kept: uploaded and separated ones sample for
    sample in their own format, a generated result's tokens bit-exact; `start`/`end` limit the
    edit to a time range (seconds)."""
    limits = limits or Limits()
    workdir = Path(workdir)
    model = holder.get()
    regen = list(regenerate or [])
    if not regen:
        raise GenerationError(f"pick at least one stem to regenerate among {', '.join(model.stems)}")
    a, b = parse_seconds(start, "start"), parse_seconds(end, "end")
    if len([x for x in (song, stems and any(stems.values()), last) if x]) != 1:
        raise AudioError("give one source: a song, uploaded stems, or the last result")
    form = EditForm(regen, _prompt(prompt), a, b, parse_seed(seed))
    step = _progress(progress, cancelled)
    with holder.running(sampling) as model:
        if last is not None and last.get("kind") == "generate" and last.get("codes"):
            edited = _edit_codes(model, _owned(last["codes"], workdir, "the last result"), form, step, limits)
        elif last is not None:
            files = {k: _owned(v, workdir, "the last result") for k, v in last.get("stems", {}).items()}
            edited = _edit_stems(model, *_load_stems(files, limits), form, step, "last result")
        elif stems:
            edited = _edit_stems(model, *_load_stems(stems, limits), form, step, "uploaded stems")
        else:
            assert song is not None
            upload = limits.check_upload(song, "the song")
            edited = _edit_song(model, holder.separator, upload, form, step)
    meta = {
        "kind": "edit",
        "prompt": form.text or "",
        "seed": edited.seed,
        "model": holder.name,
        "params": dict(sampling or {}),
        "regenerated": regen,
        "range": [a, b],
        "source": edited.source,
    }
    if edited.model_prompt is not None:  # no tempo named: the kept stems' was read
        meta["model_prompt"] = edited.model_prompt
    folder = new_job_dir(workdir) / "edit"
    name = f"musicgen-stem-edit-{edited.seed}"
    return write_result(
        folder, edited.stems, edited.sample_rate, edited.codes, meta, name, edited.kept, edited.rates
    )


# ---------------------------------------------------------------------------------------- streaming
def preview_pcm(chunk: AudioChunk) -> tuple[int, np.ndarray]:
    """The first item's mix of a streamed chunk as Gradio audio: (rate, int16 [n, C]), clipped (a
    per-chunk normalisation would make the level jump from chunk to chunk)."""
    mix = chunk.mix[0].clamp(-1.0, 1.0)  # [C, n]
    return chunk.sample_rate, (mix.T.numpy() * 32767).astype(np.int16)


def stream_job(job: Callable[[Callable[[AudioChunk], None], Callable[[], bool]], Any]) -> Iterator[Any]:
    """Run `job(on_audio, stop)` on a worker thread; yield its `AudioChunk`s as they come, then
    its return value last. Errors of the job are raised here; closing the iterator stops it."""
    from ..api import AudioStream

    result: list[Any] = []
    with AudioStream(lambda on_audio, stop: result.append(job(on_audio, stop))) as stream:
        yield from stream
    yield result[0]
