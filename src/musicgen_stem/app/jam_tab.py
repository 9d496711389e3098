"""The Jam tab: upload a loop, start, change the prompt or what is heard while it plays, stop; the
cycles play in the browser gaplessly (`assets/jam.js` schedules each cycle's WAV on the Web Audio
clock as `#mgs-jam-feed` lists it) and the session lands in the result area (stems, mix, zip).
Playing along live, the page records the microphone on the same clock and sends it in chunks
through `#mgs-jam-mic` (`jams.LiveInput`): the model answers it two cycles on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ..jam.live import Recording
from .events import gr_error, session_of
from .forms import sampling_settings
from .jams import Cycle, JamRegistry, LiveInput, jam_job
from .page import file_url

__all__ = ["JamTab", "jam_tab", "wire_jam"]


@dataclass
class JamTab:
    loops: list[gr.Audio]  # one per stem of the model
    prompt: gr.Textbox
    bpm: gr.Number
    bars: gr.Number
    regenerate: gr.CheckboxGroup
    vary: gr.Slider
    seed: gr.Textbox
    live: gr.Dropdown  # "none" or the stem played along live on the microphone
    start: gr.Button
    stop: gr.Button
    command: gr.Textbox
    send: gr.Button
    status: gr.Markdown
    feed: gr.Textbox
    mic: gr.Textbox  # the microphone's chunks, written by assets/jam.js


def jam_tab(stems: list[str]) -> JamTab:
    gr.Markdown(
        "Upload or record a loop (whole bars; for a recording, give its bars): it plays over and "
        "over while the model writes a new take of the other stems every cycle. Change the prompt or "
        "what you hear while it plays; Stop keeps the session as a result."
    )
    with gr.Row():
        loops = [
            gr.Audio(
                type="filepath",
                sources=["upload", "microphone"],
                label=f"loop: {role}",
                format=None,
                elem_id=f"mgs-jam-{role}",
            )
            for role in stems
        ]
    prompt = gr.Textbox(
        label="Prompt: what to play", placeholder="a walking jazz bass", elem_id="mgs-jam-prompt"
    )
    with gr.Row():
        bpm = gr.Number(value=None, label="Tempo (bpm; 0: found in the loop)", elem_id="mgs-jam-bpm")
        bars = gr.Number(value=None, label="Bars (0: from the tempo)", elem_id="mgs-jam-bars")
        vary = gr.Slider(0.0, 1.0, value=1.0, step=0.25, label="Vary (0: repeat the first take)")
        seed = gr.Textbox(value="random", label="Seed")
    with gr.Row():
        regenerate = gr.CheckboxGroup(
            stems, value=[], label="Stems the model writes (none ticked: all not in the loop)", scale=3
        )
        live = gr.Dropdown(
            ["none", *stems], value="none", label="Play along live (microphone)", elem_id="mgs-jam-live"
        )
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="mgs-jam-start")
        stop = gr.Button("Stop", variant="stop", elem_id="mgs-jam-stop")
    with gr.Row():
        command = gr.Textbox(
            label="While it plays: prompt TEXT, vary 0.5, mute STEM, solo STEM, unmute, regenerate STEM",
            elem_id="mgs-jam-command",
            scale=4,
        )
        send = gr.Button("Send", elem_id="mgs-jam-send", scale=1)
    status = gr.Markdown("", elem_id="mgs-jam-status")
    feed = gr.Textbox(  # read by assets/jam.js, hidden by assets/mixer.css
        value="[]", label="cycles", interactive=False, elem_id="mgs-jam-feed", container=False
    )
    mic = gr.Textbox(value="", label="microphone", elem_id="mgs-jam-mic", container=False)  # hidden too
    return JamTab(
        loops, prompt, bpm, bars, regenerate, vary, seed, live, start, stop, command, send, status, feed, mic
    )


@dataclass
class JamHandlers:
    """The Jam tab's events for the session of each request (`ui.Handlers` runs the rest)."""

    base: Any  # ui.Handlers: the holder, the session folders, the limits, uploads, show()
    area_size: int  # widgets of the result area (`ui.ResultArea.outputs()`)
    stems: list[str]  # the model's, in the order of the loop uploads
    registry: JamRegistry = field(default_factory=JamRegistry)
    _stops: dict[str, threading.Event] = field(default_factory=dict)

    def on_jam_start(self, request: gr.Request, *values: Any) -> Iterator[tuple[Any, ...]]:
        """Play until Stop: the feed of cycles as they are handed out, then the session's result.
        values: one upload per stem (`stems` order), prompt, bpm, bars, regenerate, vary, seed, the
        live stem and the sampling settings (`forms.sampling_settings`' order)."""
        n = len(self.stems)
        uploads = dict(zip(self.stems, values[:n], strict=True))
        prompt_v, bpm_v, bars_v, regen_v, vary_v, seed_v, live_v, *sampling = values[n:]
        session = session_of(request)
        stop = self._stops[session] = threading.Event()
        cycles: list[dict[str, Any]] = []
        skip = tuple(gr.skip() for _ in range(self.area_size))
        live = None
        try:
            if live_v and live_v != "none":
                model = self.base.holder.get()
                live = LiveInput(live_v, Recording(model.codec.channels), model.sample_rate)
                self.registry.set_live(session, live)
            job = jam_job(
                self.base.holder,
                self.base.folder(request),
                loop={r: self.base.uploaded(v) for r, v in uploads.items()},
                prompt=prompt_v,
                bpm=bpm_v,
                bars=bars_v,
                regenerate=regen_v,
                vary=vary_v,
                seed=seed_v,
                sampling=sampling_settings(*sampling),
                limits=self.base.limits,
                on_player=lambda player: self.registry.set(session, player),
                stopped=stop.is_set,
                live=live,
            )
            yield json.dumps([]), "Starting…", *skip
            for item in job:
                if isinstance(item, Cycle):
                    cycle = {"i": item.index, "url": file_url(item.path), "s": round(item.seconds, 4)}
                    cycles.append(cycle | ({"mic": live.sample_rate} if live else {}))
                    line = f"Playing: cycle {item.index + 1}" + (
                        " (the loop alone)" if item.index == 0 else ""
                    )
                    yield json.dumps(cycles[-8:]), line + _mic_line(live), *skip
                else:
                    late = sum(c["late"] for c in item["cycles"])
                    done = f"Stopped after {len(item['cycles'])} cycles ({late} late); the session is below."
                    yield json.dumps(cycles[-8:]), done + _mic_line(live), *self.base.show([item])
        except Exception as exc:
            raise gr_error(exc) from None
        finally:
            self.registry.drop(session)
            self._stops.pop(session, None)

    def on_jam_stop(self, request: gr.Request) -> str:
        event = self._stops.get(session_of(request))
        if event is None:
            return "No jam is playing."
        event.set()
        return "Stopping at the end of this cycle…"

    def on_jam_command(self, line: str, request: gr.Request) -> tuple[str, str]:
        return self.registry.command(session_of(request), line), ""

    def on_jam_mic(self, chunk: str, request: gr.Request) -> None:
        """A chunk of the microphone (`jams.parse_chunk`); one that does not parse is counted."""
        self.registry.mic(session_of(request), chunk)

    def on_close(self, session: str) -> None:
        """The page went away: its jam stops (not waiting for its microphone)."""
        live = self.registry.live(session)
        if live is not None:
            live.closed = True
        event = self._stops.get(session)
        if event is not None:
            event.set()


def _mic_line(live: LiveInput | None) -> str:
    """The status of the microphone: chunks received and the latency the page took off."""
    if live is None:
        return ""
    latency = "" if live.latency_ms is None else f", {live.latency_ms:.1f} ms latency compensated"
    ignored = f", {live.ignored} ignored" if live.ignored else ""
    return f" · microphone ({live.stem}): {live.chunks} chunks{latency}{ignored}"


def wire_jam(
    tab: JamTab, handlers: JamHandlers, sampling: list[Any], outputs: list[Any]
) -> Callable[..., Any]:
    """Connect the Jam tab; returns its start event. Stop, commands and the microphone's chunks
    skip the queue (the jam itself holds the one model slot while it plays)."""
    inputs = [*tab.loops, tab.prompt, tab.bpm, tab.bars, tab.regenerate, tab.vary, tab.seed, tab.live]
    inputs += sampling
    started = tab.start.click(
        handlers.on_jam_start, inputs, [tab.feed, tab.status, *outputs], concurrency_id="model"
    )
    tab.stop.click(handlers.on_jam_stop, None, [tab.status], queue=False)
    tab.send.click(handlers.on_jam_command, [tab.command], [tab.status, tab.command], queue=False)
    tab.command.submit(handlers.on_jam_command, [tab.command], [tab.status, tab.command], queue=False)
    tab.mic.change(  # every chunk, none dropped while one is on its way
        handlers.on_jam_mic, [tab.mic], None, queue=False, trigger_mode="multiple", show_progress="hidden"
    )
    return started
