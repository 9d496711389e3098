"""The Gradio page: the Generate, Edit and Jam tabs, the result area, and what their buttons do.

The widgets of each part are built by one function into a dataclass (`GenerateTab`, `EditTab`,
`ResultArea`); `Handlers` runs the jobs (`jobs`) for the calling session and turns results into
widget values; `build_app` builds the parts and wires them. Element ids (`mgs-*`) and the API
names of the events (`on_generate`, `run_edit`) are stable: tests and clients use them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio import utils as gr_utils

from ..errors import AudioError
from ..generation import SamplingParams
from ..presets import LAYOUT_MINI
from .events import gr_error, session_of
from .forms import MAX_VARIATIONS, UPLOAD_ROLES, Limits, sampling_settings
from .holder import ModelHolder
from .jam_tab import JamHandlers, jam_tab, wire_jam
from .jobs import edit_job, generate_job, preview_pcm, stream_job
from .page import TITLE, mixer_html, result_files, result_summary
from .sessions import SessionStore

if TYPE_CHECKING:
    from ..api import AudioChunk

__all__ = ["EditTab", "GenerateTab", "Handlers", "ResultArea", "build_app"]

SOURCES = ("Last result", "Upload a song", "Upload stems")


# ------------------------------------------------------------------------------------------ widgets
@dataclass
class GenerateTab:
    prompt: gr.Textbox
    duration: gr.Slider
    variations: gr.Slider
    seed: gr.Textbox
    random_btn: gr.Button
    reuse_btn: gr.Button
    chords: gr.Textbox
    sampling: list[Any]  # top-k, top-p, temperature, CFG, greedy, chord guidance: shared with Edit
    button: gr.Button
    cancel: gr.Button
    preview: gr.Audio
    live: bool  # the preview streams (Gradio needs ffmpeg and ffprobe for it)


def generate_tab(max_duration: float, defaults: SamplingParams) -> GenerateTab:
    prompt = gr.Textbox(
        label="Prompt", placeholder="funky bass groove with tight drums, 110 bpm", elem_id="mgs-prompt"
    )
    with gr.Row():
        d = max_duration
        duration = gr.Slider(0.5, d, value=min(10.0, d), step=0.5, label="Duration (s)")
        variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations")
    with gr.Row():
        seed = gr.Textbox(value="random", label="Seed ('random' draws one)", scale=3)
        random_btn = gr.Button("🎲 Random", scale=1)
        reuse_btn = gr.Button("Reuse last seed", scale=1)
    chords = gr.Textbox(
        label="Chords (optional: 'Am F C G', a chord a bar, or 'Am:2 F:2' in beats; "
        "name the tempo in the prompt)",
        elem_id="mgs-chords",
    )
    with gr.Accordion("Sampling settings", open=False):
        with gr.Row():
            top_k = gr.Slider(0, 1000, value=defaults.top_k, step=1, label="Top-k (0 = off)")
            top_p = gr.Slider(0.0, 1.0, value=defaults.top_p, step=0.01, label="Top-p (0 = off)")
        with gr.Row():
            t = max(0.05, defaults.temperature)
            temperature = gr.Slider(0.05, 2.0, value=t, step=0.05, label="Temperature")
            cfg = gr.Slider(0.0, 10.0, value=defaults.cfg_coef, step=0.5, label="CFG coefficient")
            greedy = gr.Checkbox(value=not defaults.use_sampling, label="Greedy (no sampling)")
        guide = gr.Slider(
            0.0,
            10.0,
            value=defaults.chord_guide,
            step=0.5,
            label="Chord guidance (how firmly new bass and chord parts keep to the chords; 0 = off)",
        )
    with gr.Row():
        button = gr.Button("Generate", variant="primary", elem_id="mgs-generate")
        cancel = gr.Button("Cancel", variant="stop", elem_id="mgs-generate-cancel")
    live = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
    preview = gr.Audio(
        label="Live preview (the mix, playing while it is generated)",
        streaming=True,
        autoplay=True,
        interactive=False,
        visible=live,
        elem_id="mgs-preview",
    )
    sampling = [top_k, top_p, temperature, cfg, greedy, guide]
    return GenerateTab(
        prompt,
        duration,
        variations,
        seed,
        random_btn,
        reuse_btn,
        chords,
        sampling,
        button,
        cancel,
        preview,
        live,
    )


@dataclass
class EditTab:
    source: gr.Radio
    song_group: gr.Group
    song: gr.Audio
    stems_group: gr.Group
    stem_uploads: list[gr.Audio]  # in UPLOAD_ROLES order
    regenerate: gr.CheckboxGroup
    prompt: gr.Textbox
    start: gr.Number
    end: gr.Number
    seed: gr.Textbox
    button: gr.Button
    cancel: gr.Button


def edit_tab(stems: list[str], separator_label: str) -> EditTab:
    source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Source", elem_id="mgs-edit-source")
    with gr.Group(visible=False) as song_group:
        song = gr.Audio(type="filepath", sources=["upload"], label="Song", format=None)
        gr.Markdown(f"Separator: {separator_label}", elem_id="mgs-separator")
    with gr.Group(visible=False) as stems_group:
        with gr.Row():
            stem_uploads = [  # format=None: uploads are used as uploaded, never converted
                gr.Audio(type="filepath", sources=["upload"], label=role, format=None)
                for role in UPLOAD_ROLES
            ]
    regenerate = gr.CheckboxGroup(stems, value=stems[:1], label="Stems to regenerate", elem_id="mgs-regen")
    prompt = gr.Textbox(label="Prompt (optional)")
    with gr.Row():
        start = gr.Number(value=None, label="Start (s, empty or 0 = beginning)", elem_id="mgs-start")
        end = gr.Number(value=None, label="End (s, empty or 0 = the end)", elem_id="mgs-end")
        seed = gr.Textbox(value="random", label="Seed")
    with gr.Row():
        button = gr.Button("Regenerate stems", variant="primary", elem_id="mgs-edit")
        cancel = gr.Button("Cancel", variant="stop", elem_id="mgs-edit-cancel")
    return EditTab(
        source,
        song_group,
        song,
        stems_group,
        stem_uploads,
        regenerate,
        prompt,
        start,
        end,
        seed,
        button,
        cancel,
    )


@dataclass
class ResultArea:
    results: gr.State  # every result dict of the last job
    last: gr.State  # the chosen one: what Download and Edit use
    summary: gr.Markdown
    mixer: gr.HTML
    pick: gr.Dropdown
    mix: gr.Audio
    files: gr.File

    def outputs(self) -> list[Any]:
        """Every widget of the area, in the order of `Handlers.show`'s values."""
        return [getattr(self, f.name) for f in fields(self)]


def result_area(results: gr.State, last: gr.State) -> ResultArea:
    gr.Markdown("## Result")
    summary = gr.Markdown("", elem_id="mgs-summary")
    mixer = gr.HTML(mixer_html([]), elem_id="mgs-mixer")
    with gr.Row():
        pick = gr.Dropdown(choices=["1"], value="1", label="Variation to play, download and edit", scale=1)
        mix = gr.Audio(label="Mix", type="filepath", interactive=False, scale=3, elem_id="mgs-mix")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="mgs-files")
    return ResultArea(results, last, summary, mixer, pick, mix, files)


# ------------------------------------------------------------------------------------------ handlers
@dataclass
class Handlers:
    """What the buttons do, for the session of each request. Gradio finds `request` by its
    `gr.Request` hint and `progress` by its default."""

    holder: ModelHolder
    store: SessionStore
    limits: Limits
    upload_root: Path  # Gradio's upload folder: the only files a client may name
    live: bool
    on_page_close: Callable[[str], None] | None = None

    def folder(self, request: gr.Request | None) -> Path:
        self.store.sweep()
        return self.store.folder(session_of(request))

    def uploaded(self, path: str | None) -> str | None:
        """A file the client uploaded (Gradio checks it too): never another server path."""
        if path and not Path(path).resolve().is_relative_to(self.upload_root):
            raise AudioError("only uploaded files can be edited; upload the file again")
        return path

    @staticmethod
    def show(results: list[dict[str, Any]], index: int = 0) -> tuple[Any, ...]:
        """Values of `ResultArea.outputs()` for `results`, the `index`-th chosen."""
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

    # Parameter names are the API's (gradio_client keyword arguments): keep them.
    def on_generate(
        self,
        prompt_v: str,
        duration_v: float,
        variations_v: float,
        seed_v: str,
        chords_v: str,
        k: float,
        p: float,
        t: float,
        c: float,
        g: bool,
        h: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
    ) -> Iterator[tuple[Any, ...]]:
        """Generate: live preview chunks while the job runs (when `live`), then the results."""
        cancelled = self.holder.begin(session_of(request))
        progress(0, desc="generating")
        workdir = self.folder(request)

        def job(on_audio: Callable[[AudioChunk], None], stop: Callable[[], bool]) -> list[dict[str, Any]]:
            return generate_job(
                self.holder,
                workdir,
                prompt_v,
                duration=duration_v,
                seed=seed_v,
                chords=chords_v,
                variations=int(variations_v),
                sampling=sampling_settings(k, p, t, c, g, h),
                limits=self.limits,
                progress=lambda d, n: progress((d, n), desc="generating"),
                cancelled=lambda: stop() or cancelled(),
                on_audio=on_audio,
            )

        skip = tuple(gr.skip() for _ in fields(ResultArea))  # a preview leaves the result area as is
        try:
            for item in stream_job(job):
                if isinstance(item, list):  # the job's results come last
                    yield (*self.show(item), gr.skip())
                elif self.live and item.num_samples:
                    yield (*skip, preview_pcm(item))
        except Exception as exc:
            raise gr_error(exc) from None

    def run_edit(
        self,
        source_v: str,
        song_v: str | None,
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
        h: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
    ) -> tuple[Any, ...]:
        """Regenerate stems of the chosen source: the last result, an uploaded song or stems."""
        cancelled = self.holder.begin(session_of(request))
        progress(0, desc="editing")
        try:
            if source_v == "Upload a song":
                if not song_v:
                    raise AudioError("upload a song first (or pick another source)")
                given: dict[str, Any] = {"song": self.uploaded(song_v)}
            elif source_v == "Upload stems":
                uploads = (bass_v, drums_v, other_v, vocals_v)
                given = {"stems": {r: self.uploaded(u) for r, u in zip(UPLOAD_ROLES, uploads, strict=True)}}
            else:
                if not last_v:
                    raise AudioError("there is no result yet: generate first, or upload a song or stems")
                given = {"last": last_v}
            result = edit_job(
                self.holder,
                self.folder(request),
                regenerate=regen_v,
                prompt=prompt_v,
                start=start_v or None,  # Gradio gives 0 for an empty number box
                end=end_v or None,
                seed=seed_v,
                sampling=sampling_settings(k, p, t, c, g, h),
                limits=self.limits,
                progress=lambda d, n: progress((d, n), desc="editing"),
                cancelled=cancelled,
                **given,
            )
        except Exception as exc:
            raise gr_error(exc) from None
        return self.show([result])

    @staticmethod
    def on_pick(results: list[dict[str, Any]], value: str) -> tuple[Any, ...]:
        """Another variation chosen: its mix and downloads; it becomes the one to edit."""
        i = min(max(int(value or 1) - 1, 0), max(len(results) - 1, 0))
        chosen = results[i] if results else None
        return chosen, (chosen["mix"] if chosen else None), result_files(chosen)

    def on_cancel(self, request: gr.Request) -> None:
        self.holder.cancel(session_of(request))
        gr.Info("Cancelling…")

    def on_close(self, request: gr.Request) -> None:
        session = session_of(request)
        if self.on_page_close is not None:
            self.on_page_close(session)  # its jam stops
        self.store.drop(session)  # the page was closed: its files go at once

    @staticmethod
    def on_source(value: str) -> tuple[Any, Any]:
        return gr.Group(visible=value == "Upload a song"), gr.Group(visible=value == "Upload stems")


# ------------------------------------------------------------------------------------------ the page
def wire(demo: gr.Blocks, gen: GenerateTab, edit: EditTab, area: ResultArea, handlers: Handlers) -> None:
    """Connect the buttons to the handlers; both jobs share one queue slot (`model`)."""
    outputs = area.outputs()
    gen_inputs = [gen.prompt, gen.duration, gen.variations, gen.seed, gen.chords, *gen.sampling]
    gen_evt = gen.button.click(
        handlers.on_generate, gen_inputs, [*outputs, gen.preview], concurrency_id="model"
    )
    edit_inputs = [edit.source, edit.song, *edit.stem_uploads, edit.regenerate, edit.prompt, edit.start]
    edit_inputs += [edit.end, edit.seed, area.last, *gen.sampling]
    edit_evt = edit.button.click(handlers.run_edit, edit_inputs, outputs, concurrency_id="model")
    gen.cancel.click(handlers.on_cancel, None, None, cancels=[gen_evt], queue=False)
    edit.cancel.click(handlers.on_cancel, None, None, cancels=[edit_evt], queue=False)
    area.pick.change(
        handlers.on_pick, [area.results, area.pick], [area.last, area.mix, area.files], queue=False
    )
    demo.unload(handlers.on_close)
    edit.source.change(handlers.on_source, [edit.source], [edit.song_group, edit.stems_group], queue=False)
    gen.random_btn.click(lambda: "random", None, [gen.seed], queue=False)
    gen.reuse_btn.click(
        lambda last, cur: str(last["seed"]) if last else cur, [area.last, gen.seed], [gen.seed], queue=False
    )


def build_app(
    holder: ModelHolder, sessions: SessionStore | str | os.PathLike[str], limits: Limits | None = None
) -> gr.Blocks:
    """The Gradio Blocks of the app (queue and launch settings are applied by `server.launch`).
    `sessions`: the per-session folders (a path: a `SessionStore` rooted there)."""
    limits = limits or Limits()
    store = sessions if isinstance(sessions, SessionStore) else SessionStore(Path(sessions))
    stems = list(holder.model.stems) if holder.model is not None else list(LAYOUT_MINI.stems)
    # Gradio's own copies of uploads and results are deleted on the same schedule as our folders
    ttl = int(max(60, store.ttl))
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(max(60, ttl // 4), ttl)) as demo:
        gr.Markdown(
            f"# {TITLE}\nGenerate music as separate stems (bass, drums, other) from a text prompt, "
            "regenerate some stems of a song, or jam over a loop. Jobs run one at a time."
        )
        results, last = gr.State([]), gr.State(None)
        gr.Markdown(holder.status(), elem_id="mgs-model-status")  # chosen at launch: read-only
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                defaults = holder.model.defaults if holder.model is not None else SamplingParams()
                gen = generate_tab(float(limits.max_duration), defaults)  # sliders at the model's defaults
            with gr.Tab("Edit", id="edit"):
                edit = edit_tab(stems, holder.separator_label)
            with gr.Tab("Jam", id="jam"):
                jam = jam_tab(stems)
        area = result_area(results, last)
        upload_root = Path(gr_utils.get_upload_folder()).resolve()
        handlers = Handlers(holder, store, limits, upload_root, gen.live)
        jams = JamHandlers(handlers, len(area.outputs()), stems)
        handlers.on_page_close = jams.on_close
        wire(demo, gen, edit, area, handlers)
        wire_jam(jam, jams, gen.sampling, area.outputs())
    return demo
