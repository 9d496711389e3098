"""Web app: generate and edit stems in the browser (`musicgen-stem app`).

Two tabs: *Generate* (prompt -> bass, drums, other; seed, variations, sampling settings) and *Edit*
(regenerate some stems of an uploaded song, of uploaded stems, or of the last result, optionally in a
time range only). Every result comes with a stem mixer (per-stem players with solo/mute, played in
sync), a mix player and downloads: each stem, the whole pack as a zip and a `.stem.mp4`.

The app binds 127.0.0.1 by default and warns when bound to another address; jobs run one at a time
from a bounded queue, uploads and durations are limited, and errors are shown as one-line messages.
The app logic (`generate_job`, `edit_job`, ...) takes and returns paths and dicts and is independent
of the Gradio layout (`build_app`), so it is tested without a browser. Gradio is an optional
dependency (`pip install musicgen-stem[app]`); its frontend is served locally (no CDN) and its
analytics are turned off.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import torch

from .errors import AudioError, GenerationError, ModelError, MusicGenStemError

if TYPE_CHECKING:
    import gradio as gr

    from .api import AudioChunk, MusicGenStem

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Cancelled",
    "Limits",
    "ModelHolder",
    "add_arguments",
    "build_app",
    "edit_job",
    "generate_job",
    "host_warning",
    "is_loopback",
    "mixer_html",
    "parse_seed",
    "run",
    "sampling_settings",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_DURATION = 30.0
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_QUEUE = 8
MAX_VARIATIONS = 4
#: Job folders kept in the work folder; older ones are deleted when a new job starts.
KEEP_JOBS = 64
#: Stems a user may upload on the Edit tab (vocals are passed through untouched).
UPLOAD_ROLES = ("bass", "drums", "other", "vocals")
TITLE = "MusicGen-Stem"
ASSETS = Path(__file__).resolve().parent / "app_assets"

Progress = Callable[[int, int], None]


class Cancelled(MusicGenStemError):
    """The user cancelled the job."""


# --------------------------------------------------------------------------------------------
# State: the loaded model, limits
# --------------------------------------------------------------------------------------------
@dataclass
class Limits:
    """What one job may ask for: seconds of audio and megabytes per uploaded file."""

    max_duration: float = DEFAULT_MAX_DURATION
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB

    def check_duration(self, seconds: float, what: str = "the duration") -> float:
        """`seconds` as a float, or a `GenerationError` when it is not in (0, max_duration]."""
        try:
            d = float(seconds)
        except (TypeError, ValueError):
            raise GenerationError(f"{what} must be a number of seconds, got {seconds!r}") from None
        if not np.isfinite(d) or d <= 0:
            raise GenerationError(f"{what} must be a positive number of seconds, got {seconds}")
        if d > self.max_duration + 1e-6:
            raise GenerationError(
                f"{what} is {d:.1f} s; this app allows {self.max_duration:g} s at most "
                "(trim the audio or ask for less)"
            )
        return d

    def check_upload(self, path: str | os.PathLike[str], what: str = "the upload") -> Path:
        """An uploaded audio file, checked for existence, size and duration."""
        from .audio import duration_seconds

        p = Path(path)
        if not p.is_file():
            raise AudioError(f"{what} is missing: upload the file again")
        mb = p.stat().st_size / 2**20
        if mb > self.max_upload_mb:
            raise AudioError(f"{what} is {mb:.1f} MB; this app accepts {self.max_upload_mb:g} MB at most")
        self.check_duration(duration_seconds(p), f"{what} ({p.name})")
        return p


@dataclass
class ModelHolder:
    """The loaded model (swapped by `load`), cached separators and per-session cancel flags."""

    model: MusicGenStem | None = None
    name: str = ""
    message: str = ""
    loader: Callable[[str], MusicGenStem] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _separators: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)
    _cancelled: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def start(
        cls, name_or_path: str | None = None, loader: Callable[[str], MusicGenStem] | None = None
    ) -> ModelHolder:
        """A holder with `name_or_path` loaded (None: the shipped default model) by `loader` (name ->
        model; default: plain loading). A model that cannot be loaded leaves the holder empty with
        `message` saying why; the app still starts."""
        holder = cls(loader=loader)
        holder.load(name_or_path or "")
        return holder

    def get(self) -> MusicGenStem:
        if self.model is None:
            raise ModelError(
                f"no model is loaded ({self.message or 'none given'}); load one in the Model box"
            )
        return self.model

    def load(self, name_or_path: str) -> str:
        """Load a model folder or hub id ("" = the default model); returns a one-line status.
        On failure the previous model stays loaded and the status says why."""
        from .api import MusicGenStem

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
            self.message = f"could not load '{name or 'default'}': {_one_line(exc)}"
            return self.status()
        with self._lock:
            self.model, self.name = model, name or "default (mini)"
            self.message = ""
        return self.status()

    def status(self) -> str:
        if self.model is None:
            return f"No model loaded. {self.message}".strip()
        m = self.model
        line = (
            f"Model: {self.name} (stems: {', '.join(m.stems)}; {m.sample_rate} Hz; "
            f"window {m.max_duration:g} s)"
        )
        return f"{line}. {self.message}" if self.message else line

    def separator(self, name: str) -> torch.nn.Module:
        """A cached separator (`separation.load_separator`); a clear error when unavailable."""
        from .separation import load_separator

        name = name.strip() or "htdemucs"
        with self._lock:
            if name not in self._separators:
                try:
                    self._separators[name] = load_separator(os.path.expanduser(name))
                except MusicGenStemError as exc:
                    raise ModelError(
                        f"{exc}. Or upload the stems yourself with 'Upload stems' on the Edit tab"
                    ) from None
            return self._separators[name]

    # cancellation: the cancel button sets a flag that the job's progress callback checks
    def cancel(self, session: str) -> None:
        self._cancelled.add(session)

    def begin(self, session: str) -> Callable[[], bool]:
        """Clear the session's cancel flag; returns a function telling whether it was cancelled."""
        self._cancelled.discard(session)
        return lambda: session in self._cancelled


# --------------------------------------------------------------------------------------------
# App logic: plain functions of paths and dicts
# --------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True when `host` is only reachable from this machine."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def host_warning(host: str) -> str | None:
    """A warning to print when the app is reachable from other machines, else None."""
    if is_loopback(host):
        return None
    where = "every network interface" if host.strip() in ("0.0.0.0", "::", "") else f"'{host}'"
    return (
        f"WARNING: the app listens on {where}: anyone who can reach this machine can use it (and its "
        "CPU/GPU). It has no login; bind 127.0.0.1 (the default) unless this is what you want."
    )


def parse_seed(seed: Any) -> int | None:
    """None for "random"/empty; else a non-negative integer seed (clear error otherwise)."""
    if seed is None:
        return None
    if isinstance(seed, float) and not seed.is_integer():
        raise GenerationError(f"the seed must be a whole number or 'random', got {seed}")
    text = str(int(seed) if isinstance(seed, float) else seed).strip().lower()
    if text in ("", "random", "none", "-1"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise GenerationError(f"the seed must be a whole number or 'random', got '{seed}'") from None
    if not 0 <= value < 2**63:
        raise GenerationError(f"the seed must be between 0 and 2**63 - 1, got {value}")
    return value


def sampling_settings(
    top_k: float = 250, top_p: float = 0.0, temperature: float = 1.0, cfg: float = 3.0, greedy: bool = False
) -> dict[str, Any]:
    """Keyword arguments of `MusicGenStem.set_generation_params` from the form's values."""
    return {
        "use_sampling": not bool(greedy),
        "top_k": int(top_k or 0),
        "top_p": float(top_p or 0.0),
        "temperature": float(temperature),
        "cfg_coef": float(cfg),
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _new_job_dir(workdir: Path) -> Path:
    """A fresh folder for one job; the oldest job folders beyond KEEP_JOBS are deleted."""
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = sorted((p for p in workdir.iterdir() if p.is_dir() and p.name.startswith("job-")), key=str)
    for old in jobs[: max(0, len(jobs) - KEEP_JOBS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    path = workdir / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _stem_mp4_available() -> bool:
    try:
        import av

        av.codec.Codec("aac", "w")
        return True
    except Exception:
        return False


def _progress(progress: Progress | None, cancelled: Callable[[], bool] | None) -> Progress:
    def step(done: int, total: int) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(done, total)

    return step


def preview_pcm(chunk: AudioChunk) -> tuple[int, np.ndarray]:
    """The first item's mix of a streamed chunk as Gradio audio: (rate, int16 [n, C]), clipped (a
    per-chunk normalisation would make the level jump from chunk to chunk)."""
    mix = chunk.mix[0].clamp(-1.0, 1.0)  # [C, n]
    return chunk.sample_rate, (mix.T.numpy() * 32767).astype(np.int16)


def stream_job(job: Callable[[Callable[[AudioChunk], None], Callable[[], bool]], Any]) -> Iterator[Any]:
    """Run `job(on_audio, stop)` on a worker thread; yield its `AudioChunk`s as they come, then
    its return value last. Errors of the job are raised here; closing the iterator stops it."""
    from .api import AudioStream

    result: list[Any] = []
    with AudioStream(lambda on_audio, stop: result.append(job(on_audio, stop))) as stream:
        yield from stream
    yield result[0]


def write_result(
    folder: Path,
    stems: Mapping[str, torch.Tensor],
    sample_rate: int,
    codes: torch.Tensor | np.ndarray,
    meta: Mapping[str, Any],
    name: str,
) -> dict[str, Any]:
    """Export one result (a stem pack with zip and .stem.mp4, plus codes.npy) into `folder`;
    returns the result dict the app works with (paths are strings)."""
    from .export import export_stem_pack

    folder.mkdir(parents=True, exist_ok=True)
    pack = export_stem_pack(
        folder / name,
        {k: v.detach().cpu() for k, v in stems.items()},
        int(sample_rate),
        bit_depth="16",
        zip=True,
        stem_mp4=_stem_mp4_available(),
        meta=dict(meta),
    )
    codes_path = folder / "codes.npy"
    np.save(codes_path, np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64))
    files = {k: str(v) for k, v in pack.files.items()}
    return {
        **dict(meta),
        "folder": str(pack.out_dir),
        "stems": {k: v for k, v in files.items() if k != "mix"},
        "mix": files["mix"],
        "zip": str(pack.zip_path) if pack.zip_path else None,
        "stem_mp4": str(pack.stem_mp4) if pack.stem_mp4 else None,
        "codes": str(codes_path),
        "sample_rate": pack.sample_rate,
        "duration": pack.num_samples / pack.sample_rate,
        "gain": pack.gain,
    }


def generate_job(
    holder: ModelHolder,
    workdir: str | os.PathLike[str],
    prompt: str,
    *,
    duration: float,
    seed: Any = None,
    variations: int = 1,
    sampling: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_audio: Callable[[AudioChunk], None] | None = None,
) -> list[dict[str, Any]]:
    """Text -> stems, `variations` results (one batch, one seed); each result is a dict of paths
    (`stems`, `mix`, `zip`, `stem_mp4`, `codes`), the `seed` and the settings. `on_audio` receives
    the audio while it is generated (see `MusicGenStem.generate`)."""
    limits = limits or Limits()
    model = holder.get()
    d = limits.check_duration(duration)
    n = int(variations)
    if not 1 <= n <= MAX_VARIATIONS:
        raise GenerationError(f"variations must be between 1 and {MAX_VARIATIONS}, got {variations}")
    text = (prompt or "").strip() or None
    with holder._lock:
        model.set_generation_params(**(sampling or {}))
        out = model.generate(
            [text] * n, _progress(progress, cancelled), seed=parse_seed(seed), duration=d, on_audio=on_audio
        )
    assert not isinstance(out, tuple)
    job = _new_job_dir(Path(workdir))
    results = []
    for i in range(n):
        meta = {
            "kind": "generate",
            "prompt": text or "",
            "seed": out.seed,
            "variation": i + 1,
            "variations": n,
            "model": holder.name,
            "params": dict(sampling or {}),
            "regenerated": list(model.stems),
        }
        stems = {s: out[s][i] for s in out}
        name = f"musicgen-stem-{out.seed}" + (f"-v{i + 1}" if n > 1 else "")
        results.append(write_result(job / f"v{i + 1}", stems, out.sample_rate, out.codes[i], meta, name))
    return results


def _load_stems(paths: Mapping[str, str | None], limits: Limits) -> tuple[dict[str, torch.Tensor], int]:
    """Uploaded stems {role: path} -> {role: [C, T]} at one rate and channel count, padded to the
    longest."""
    from .audio import convert_audio, load_audio

    loaded = {}
    for role, path in paths.items():
        if path:
            loaded[role] = load_audio(limits.check_upload(path, f"the {role} stem"))
    if not loaded:
        raise AudioError("upload at least one stem (bass, drums, other or vocals)")
    sr = max(s for _, s in loaded.values())
    channels = max(w.shape[0] for w, _ in loaded.values())
    wavs = {r: convert_audio(w, s, sr, channels) for r, (w, s) in loaded.items()}
    length = max(w.shape[-1] for w in wavs.values())
    limits.check_duration(length / sr, "the stems")
    return {r: torch.nn.functional.pad(w, (0, length - w.shape[-1])) for r, w in wavs.items()}, sr


def _float_or_none(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GenerationError(f"{what} must be a number of seconds, got '{value}'") from None
    if not np.isfinite(v):
        raise GenerationError(f"{what} must be a finite number of seconds, got {value}")
    return v


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
    separator: str = "htdemucs",
    sampling: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Regenerate `regenerate` stems of one source: `song` (a file, separated first), `stems`
    ({role: file}) or `last` (a result dict of this app). The other stems are kept (a generated
    result keeps its tokens bit-exact); `start`/`end` limit the edit to a time range (seconds)."""
    from .audio import load_audio
    from .song import edit_song, edit_stems

    limits = limits or Limits()
    model = holder.get()
    regen = [s for s in regenerate or []]
    if not regen:
        raise GenerationError(f"pick at least one stem to regenerate among {', '.join(model.stems)}")
    a, b = _float_or_none(start, "start"), _float_or_none(end, "end")
    given = [x for x in (song, stems and any(stems.values()), last) if x]
    if len(given) != 1:
        raise AudioError("give one source: a song, uploaded stems, or the last result")
    text = (prompt or "").strip() or None
    step = _progress(progress, cancelled)
    s = parse_seed(seed)
    with holder._lock:
        model.set_generation_params(**(sampling or {}))
        if last is not None and last.get("kind") == "generate" and last.get("codes"):
            codes = torch.from_numpy(np.load(last["codes"]))
            limits.check_duration(codes.shape[-1] / model.frame_rate, "the last result")
            out = model.regenerate_range(codes[None], regen, [text], step, start=a, end=b, seed=s)
            assert not isinstance(out, tuple)
            new, sr = {k: out[k][0] for k in out}, out.sample_rate
            new_codes, used_seed = out.codes[0], out.seed
            source = "last result"
        else:
            if last is not None:
                sources, sr = _load_stems(last.get("stems", {}), limits)
                source = "last result"
            elif stems:
                sources, sr = _load_stems(stems, limits)
                source = "uploaded stems"
            else:
                assert song is not None
                wav, sr = load_audio(limits.check_upload(song, "the song"))
                sep = holder.separator(separator)
                edited = edit_song(model, wav, sr, regen, [text], sep, start=a, end=b, seed=s, progress=step)
                sources = None
                source = f"song {Path(song).name}"
            if sources is not None:
                edited = edit_stems(model, sources, sr, regen, [text], start=a, end=b, seed=s, progress=step)
            new, new_codes, used_seed = edited.stems, edited.codes, edited.seed
    meta = {
        "kind": "edit",
        "prompt": text or "",
        "seed": used_seed,
        "model": holder.name,
        "params": dict(sampling or {}),
        "regenerated": regen,
        "range": [a, b],
        "source": source,
    }
    job = _new_job_dir(Path(workdir))
    return write_result(job / "edit", new, sr, new_codes, meta, f"musicgen-stem-edit-{used_seed}")


# --------------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------------
def file_url(path: str | os.PathLike[str]) -> str:
    """URL under which Gradio serves a file of an allowed folder."""
    return "gradio_api/file=" + quote(str(Path(path).resolve()))


def mixer_html(results: Sequence[Mapping[str, Any]]) -> str:
    """HTML of the stem mixers: per result, a transport (play/pause/stop all in sync), one row per
    stem with solo/mute and its player, and download links. Driven by app_assets/mixer.js."""
    if not results:
        return "<div class='mgs-empty'>Results appear here.</div>"
    blocks = []
    for r in results:
        title = "Edit" if r.get("kind") == "edit" else f"Variation {r.get('variation', 1)}"
        meta = f"seed {r.get('seed')} · {float(r.get('duration', 0)):.1f} s · {r.get('sample_rate')} Hz"
        if r.get("regenerated") and r.get("kind") == "edit":
            meta += f" · regenerated: {', '.join(r['regenerated'])}"
        rows = []
        for name, path in r.get("stems", {}).items():
            n = html.escape(name)
            rows.append(
                f"<div class='mgs-track' data-stem='{n}'><span class='mgs-name'>{n}</span>"
                f"<button type='button' data-mgs-action='solo' aria-pressed='false'>Solo</button>"
                f"<button type='button' data-mgs-action='mute' aria-pressed='false'>Mute</button>"
                f"<audio controls preload='auto' src='{html.escape(file_url(path))}'></audio>"
                f"<a href='{html.escape(file_url(path))}' download='{n}.wav'>wav</a></div>"
            )
        links = [
            f"<a class='mgs-dl' data-kind='{kind}' href='{html.escape(file_url(r[key]))}' "
            f"download='{html.escape(Path(r[key]).name)}'>{label}</a>"
            for key, kind, label in (
                ("zip", "zip", "Download all stems (.zip)"),
                ("stem_mp4", "stem-mp4", "Download .stem.mp4"),
                ("mix", "mix", "Download mix (.wav)"),
            )
            if r.get(key)
        ]
        blocks.append(
            f"<div class='mgs-mixer'><h4>{html.escape(title)}</h4>"
            f"<div class='mgs-meta'>{html.escape(meta)}</div>"
            "<div class='mgs-transport'>"
            "<button type='button' data-mgs-action='play'>▶ Play stems</button>"
            "<button type='button' data-mgs-action='pause'>Pause</button>"
            "<button type='button' data-mgs-action='stop'>Stop</button></div>"
            + "".join(rows)
            + f"<div class='mgs-downloads'>{''.join(links)}</div></div>"
        )
    return "<div class='mgs-mixers'>" + "".join(blocks) + "</div>"


def result_files(result: Mapping[str, Any] | None) -> list[str]:
    """Downloads of a result: zip, .stem.mp4, mix and every stem."""
    if not result:
        return []
    paths = [result.get("zip"), result.get("stem_mp4"), result.get("mix"), *result.get("stems", {}).values()]
    return [str(p) for p in paths if p]


def result_summary(results: Sequence[Mapping[str, Any]]) -> str:
    if not results:
        return ""
    r = results[0]
    what = "Edited" if r.get("kind") == "edit" else f"Generated {len(results)} variation(s)"
    prompt = f" · prompt: “{r['prompt']}”" if r.get("prompt") else ""
    return f"**{what}** · **seed {r.get('seed')}** · {float(r.get('duration', 0)):.1f} s{prompt}"


def _head() -> str:
    js = (ASSETS / "mixer.js").read_text(encoding="utf-8")
    css = (ASSETS / "mixer.css").read_text(encoding="utf-8")
    return f"<script>{js}</script>\n<style>{css}</style>"


# --------------------------------------------------------------------------------------------
# Gradio layout
# --------------------------------------------------------------------------------------------
def _gr_error(exc: BaseException) -> Exception:
    """The message users see: ours as is, anything else as one line (traceback to the log)."""
    import gradio as gr

    if isinstance(exc, Cancelled):
        return gr.Error("Cancelled.")
    if isinstance(exc, MusicGenStemError):
        return gr.Error(str(exc))
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Something went wrong ({_one_line(exc)}); see the server log.")


def _session(request: gr.Request | None) -> str:
    return str(getattr(request, "session_hash", None) or "local")


def build_app(
    holder: ModelHolder,
    workdir: str | os.PathLike[str],
    limits: Limits | None = None,
    separator: str = "htdemucs",
) -> gr.Blocks:
    """The Gradio Blocks of the app (queue and launch settings are applied by `launch`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    limits = limits or Limits()
    workdir = Path(workdir)
    max_d = float(limits.max_duration)
    stems = list(holder.model.stems) if holder.model is not None else ["bass", "drums", "other"]

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {TITLE}\nGenerate music as separate stems (bass, drums, other) from a text prompt, "
            "or regenerate some stems of a song. Jobs run one at a time."
        )
        results_state = gr.State([])
        last_state = gr.State(None)
        model_status = gr.Markdown(holder.status(), elem_id="mgs-model-status")
        with gr.Accordion("Change model", open=holder.model is None):
            with gr.Row():
                model_box = gr.Textbox(
                    label="Model folder or hub id",
                    placeholder="empty = the shipped default model; or /path/to/model, owner/name",
                    scale=4,
                )
                load_btn = gr.Button("Load model", scale=1)

        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                prompt = gr.Textbox(
                    label="Prompt",
                    placeholder="funky bass groove with tight drums, 110 bpm",
                    elem_id="mgs-prompt",
                )
                with gr.Row():
                    duration = gr.Slider(0.5, max_d, value=min(10.0, max_d), step=0.5, label="Duration (s)")
                    variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations")
                with gr.Row():
                    seed = gr.Textbox(value="random", label="Seed ('random' draws one)", scale=3)
                    random_btn = gr.Button("🎲 Random", scale=1)
                    reuse_btn = gr.Button("Reuse last seed", scale=1)
                with gr.Accordion("Sampling settings", open=False):
                    with gr.Row():
                        top_k = gr.Slider(0, 1000, value=250, step=1, label="Top-k (0 = off)")
                        top_p = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Top-p (0 = off)")
                    with gr.Row():
                        temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="Temperature")
                        cfg = gr.Slider(0.0, 10.0, value=3.0, step=0.5, label="CFG coefficient")
                        greedy = gr.Checkbox(value=False, label="Greedy (no sampling)")
                with gr.Row():
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="mgs-generate")
                    gen_cancel = gr.Button("Cancel", variant="stop", elem_id="mgs-generate-cancel")
                # Gradio streams audio through ffmpeg (and probes audio with ffprobe once it is there)
                live = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
                preview = gr.Audio(
                    label="Live preview (the mix, playing while it is generated)",
                    streaming=True,
                    autoplay=True,
                    interactive=False,
                    visible=live,
                    elem_id="mgs-preview",
                )

            with gr.Tab("Edit", id="edit"):
                source = gr.Radio(
                    ["Last result", "Upload a song", "Upload stems"],
                    value="Last result",
                    label="Source",
                    elem_id="mgs-edit-source",
                )
                with gr.Group(visible=False) as song_group:
                    song = gr.Audio(type="filepath", sources=["upload"], label="Song")
                    separator_box = gr.Textbox(
                        value=separator,
                        label="Separator (Demucs name or weights file; needs the weights offline)",
                    )
                with gr.Group(visible=False) as stems_group:
                    with gr.Row():
                        stem_uploads = [
                            gr.Audio(type="filepath", sources=["upload"], label=role) for role in UPLOAD_ROLES
                        ]
                regen = gr.CheckboxGroup(
                    stems, value=stems[:1], label="Stems to regenerate", elem_id="mgs-regen"
                )
                edit_prompt = gr.Textbox(label="Prompt (optional)")
                with gr.Row():
                    start = gr.Number(
                        value=None, label="Start (s, empty or 0 = beginning)", elem_id="mgs-start"
                    )
                    end = gr.Number(value=None, label="End (s, empty or 0 = the end)", elem_id="mgs-end")
                    edit_seed = gr.Textbox(value="random", label="Seed")
                with gr.Row():
                    edit_btn = gr.Button("Regenerate stems", variant="primary", elem_id="mgs-edit")
                    edit_cancel = gr.Button("Cancel", variant="stop", elem_id="mgs-edit-cancel")

        gr.Markdown("## Result")
        summary = gr.Markdown("", elem_id="mgs-summary")
        mixer = gr.HTML(mixer_html([]), elem_id="mgs-mixer")
        with gr.Row():
            pick = gr.Dropdown(
                choices=["1"], value="1", label="Variation to play, download and edit", scale=1
            )
            mix_audio = gr.Audio(label="Mix", type="filepath", interactive=False, scale=3, elem_id="mgs-mix")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="mgs-files")

        # --- callbacks --------------------------------------------------------------------
        def show(results: list[dict[str, Any]], index: int = 0) -> tuple[Any, ...]:
            chosen = results[index] if results else None
            choices = [str(i + 1) for i in range(max(1, len(results)))]
            return (
                results,
                chosen,
                result_summary(results),
                mixer_html(results),
                gr.Dropdown(choices=choices, value=str(index + 1)),
                chosen["mix"] if chosen else None,
                result_files(chosen),
            )

        outputs = [results_state, last_state, summary, mixer, pick, mix_audio, files]

        def on_generate(
            prompt_v: str,
            duration_v: float,
            variations_v: float,
            seed_v: str,
            k: float,
            p: float,
            t: float,
            c: float,
            g: bool,
            request: gr.Request,
            progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
        ) -> Iterator[tuple[Any, ...]]:
            cancelled = holder.begin(_session(request))
            progress(0, desc="generating")

            def job(on_audio: Callable[[AudioChunk], None], stop: Callable[[], bool]) -> list[dict[str, Any]]:
                return generate_job(
                    holder,
                    workdir,
                    prompt_v,
                    duration=duration_v,
                    seed=seed_v,
                    variations=int(variations_v),
                    sampling=sampling_settings(k, p, t, c, g),
                    limits=limits,
                    progress=lambda d, n: progress((d, n), desc="generating"),
                    cancelled=lambda: stop() or cancelled(),
                    on_audio=on_audio,
                )

            try:
                for item in stream_job(job):
                    if isinstance(item, list):  # the job's results come last
                        yield (*show(item), gr.skip())
                    elif live and item.num_samples:
                        yield (*(gr.skip() for _ in outputs), preview_pcm(item))
            except Exception as exc:
                raise _gr_error(exc) from None

        def run_edit(
            source_v: str,
            song_v: str | None,
            sep_v: str,
            bass_v: str | None,
            drums_v: str | None,
            other_v: str | None,
            vocals_v: str | None,
            regen_v: list[str],
            prompt_v: str,
            start_v: float | None,
            end_v: float | None,
            seed_v: str,
            last_v: dict[str, Any] | None,
            k: float,
            p: float,
            t: float,
            c: float,
            g: bool,
            request: gr.Request,
            progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
        ) -> tuple[Any, ...]:
            cancelled = holder.begin(_session(request))
            progress(0, desc="editing")
            kwargs: dict[str, Any] = {}
            try:
                if source_v == "Upload a song":
                    if not song_v:
                        raise AudioError("upload a song first (or pick another source)")
                    kwargs["song"] = song_v
                elif source_v == "Upload stems":
                    uploads = (bass_v, drums_v, other_v, vocals_v)
                    kwargs["stems"] = dict(zip(UPLOAD_ROLES, uploads, strict=True))
                else:
                    if not last_v:
                        raise AudioError("there is no result yet: generate first, or upload a song or stems")
                    kwargs["last"] = last_v
                result = edit_job(
                    holder,
                    workdir,
                    regenerate=regen_v,
                    prompt=prompt_v,
                    start=start_v or None,  # Gradio gives 0 for an empty number box
                    end=end_v or None,
                    seed=seed_v,
                    separator=sep_v,
                    sampling=sampling_settings(k, p, t, c, g),
                    limits=limits,
                    progress=lambda d, n: progress((d, n), desc="editing"),
                    cancelled=cancelled,
                    **kwargs,
                )
            except Exception as exc:
                raise _gr_error(exc) from None
            return show([result])

        def on_pick(results: list[dict[str, Any]], value: str) -> tuple[Any, ...]:
            i = min(max(int(value or 1) - 1, 0), max(len(results) - 1, 0))
            chosen = results[i] if results else None
            return chosen, (chosen["mix"] if chosen else None), result_files(chosen)

        def on_cancel(request: gr.Request) -> None:
            holder.cancel(_session(request))
            gr.Info("Cancelling…")

        def on_load(name: str) -> tuple[str, Any]:
            status = holder.load(name)
            choices = list(holder.model.stems) if holder.model is not None else stems
            return status, gr.CheckboxGroup(choices=choices, value=choices[:1])

        def on_source(value: str) -> tuple[Any, Any]:
            return gr.Group(visible=value == "Upload a song"), gr.Group(visible=value == "Upload stems")

        for fn in (on_generate, run_edit, on_cancel):  # Gradio finds gr.Request by its (evaluated) hint
            fn.__annotations__ = {"request": gr.Request}
        sampling_inputs = [top_k, top_p, temperature, cfg, greedy]
        gen_evt = gen_btn.click(
            on_generate,
            [prompt, duration, variations, seed, *sampling_inputs],
            [*outputs, preview],
            concurrency_id="model",
        )
        edit_evt = edit_btn.click(
            run_edit,
            [source, song, separator_box, *stem_uploads, regen, edit_prompt, start, end, edit_seed]
            + [last_state, *sampling_inputs],
            outputs,
            concurrency_id="model",
        )
        gen_cancel.click(on_cancel, None, None, cancels=[gen_evt], queue=False)
        edit_cancel.click(on_cancel, None, None, cancels=[edit_evt], queue=False)
        pick.change(on_pick, [results_state, pick], [last_state, mix_audio, files], queue=False)
        load_btn.click(on_load, [model_box], [model_status, regen], concurrency_id="model")
        source.change(on_source, [source], [song_group, stems_group], queue=False)
        random_btn.click(lambda: "random", None, [seed], queue=False)
        reuse_btn.click(
            lambda last, cur: str(last["seed"]) if last else cur, [last_state, seed], [seed], queue=False
        )
    return demo


def launch(
    demo: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    limits: Limits | None = None,
    queue: int = DEFAULT_QUEUE,
    workdir: str | os.PathLike[str],
    block: bool = True,
) -> Any:
    """Queue (bounded, one job at a time) and serve `demo`; prints a warning off loopback."""
    limits = limits or Limits()
    warning = host_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    demo.queue(max_size=max(1, int(queue)), default_concurrency_limit=1)
    return demo.launch(
        server_name=host,
        server_port=int(port),
        max_file_size=f"{limits.max_upload_mb:g}mb",
        allowed_paths=[str(Path(workdir).resolve())],
        show_error=True,
        ssr_mode=False,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        head=_head(),
        footer_links=[],
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import add_model_options

    add_model_options(parser)  # --model, --device, --dtype, --quantize, --compile, --text-encoder
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--max-duration",
        type=float,
        default=DEFAULT_MAX_DURATION,
        help=f"longest generation or edited audio, seconds (default {DEFAULT_MAX_DURATION:g})",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest uploaded file, MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--queue", type=int, default=DEFAULT_QUEUE, help=f"jobs that may wait (default {DEFAULT_QUEUE})"
    )
    parser.add_argument("--separator", default="htdemucs", help="separator for song edits (default htdemucs)")
    parser.add_argument(
        "--output-dir", default=None, help="where results are written (default: a temporary folder)"
    )


def run(args: argparse.Namespace) -> int:
    """Start the app; returns when the server stops."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if args.max_duration <= 0 or args.max_upload_mb <= 0 or args.queue < 1:
        raise MusicGenStemError("--max-duration and --max-upload-mb must be > 0 and --queue >= 1")
    if not 0 < args.port < 65536:
        raise MusicGenStemError(f"--port must be in 1..65535, got {args.port}")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MusicGenStemError("the app needs Gradio: pip install 'musicgen-stem[app]'") from None
    from .cli import load_model_from_args

    holder = ModelHolder.start(args.model, loader=lambda name: load_model_from_args(name, args))
    if holder.model is None:
        if args.model:
            raise ModelError(holder.message)
        print(f"warning: {holder.message}; load a model in the page", file=sys.stderr)
    workdir = Path(args.output_dir or tempfile.mkdtemp(prefix="musicgen-stem-app-"))
    limits = Limits(args.max_duration, args.max_upload_mb)
    demo = build_app(holder, workdir, limits, separator=args.separator)
    launch(demo, host=args.host, port=args.port, limits=limits, queue=args.queue, workdir=workdir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musicgen-stem app", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MusicGenStemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
