"""The page's HTML (no Gradio): stem mixers, result summary, downloads, and the mixer's script.

The mixer HTML is driven by `assets/mixer.js` (play/pause/stop all stems in sync, solo and mute),
styled by `assets/mixer.css`; the Jam tab's cycles are played by `assets/jam.js`, its microphone
recorded by `assets/jam_mic.js`; all are inlined into the page's head (`head_html`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["ASSETS", "TITLE", "file_url", "head_html", "mixer_html", "result_files", "result_summary"]

TITLE = "MusicGen-Stem"
ASSETS = Path(__file__).resolve().parent / "assets"


def file_url(path: str | os.PathLike[str]) -> str:
    """URL under which Gradio serves a file of an allowed folder."""
    return "gradio_api/file=" + quote(str(Path(path).resolve()))


def _track(name: str, path: str) -> str:
    n, url = html.escape(name), html.escape(file_url(path))
    return (
        f"<div class='mgs-track' data-stem='{n}'><span class='mgs-name'>{n}</span>"
        f"<button type='button' data-mgs-action='solo' aria-pressed='false'>Solo</button>"
        f"<button type='button' data-mgs-action='mute' aria-pressed='false'>Mute</button>"
        f"<audio controls preload='auto' src='{url}'></audio>"
        f"<a href='{url}' download='{n}.wav'>wav</a></div>"
    )


def _downloads(r: Mapping[str, Any]) -> str:
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
    return f"<div class='mgs-downloads'>{''.join(links)}</div>"


def _mixer(r: Mapping[str, Any]) -> str:
    titles = {"edit": "Edit", "jam": f"Jam: {len(r.get('cycles', []))} cycles at {r.get('bpm')} bpm"}
    title = titles.get(r.get("kind", ""), f"Variation {r.get('variation', 1)}")
    meta = f"seed {r.get('seed')} · {float(r.get('duration', 0)):.1f} s · {r.get('sample_rate')} Hz"
    if r.get("regenerated") and r.get("kind") in ("edit", "jam"):
        meta += f" · regenerated: {', '.join(r['regenerated'])}"
    return (
        f"<div class='mgs-mixer'><h4>{html.escape(title)}</h4>"
        f"<div class='mgs-meta'>{html.escape(meta)}</div>"
        "<div class='mgs-transport'>"
        "<button type='button' data-mgs-action='play'>▶ Play stems</button>"
        "<button type='button' data-mgs-action='pause'>Pause</button>"
        "<button type='button' data-mgs-action='stop'>Stop</button></div>"
        + "".join(_track(name, path) for name, path in r.get("stems", {}).items())
        + _downloads(r)
        + "</div>"
    )


def mixer_html(results: Sequence[Mapping[str, Any]]) -> str:
    """HTML of the stem mixers: per result, a transport (play/pause/stop all in sync), one row per
    stem with solo/mute and its player, and download links."""
    if not results:
        return "<div class='mgs-empty'>Results appear here.</div>"
    return "<div class='mgs-mixers'>" + "".join(_mixer(r) for r in results) + "</div>"


def result_files(result: Mapping[str, Any] | None) -> list[str]:
    """Downloads of a result: zip, .stem.mp4, mix and every stem."""
    if not result:
        return []
    paths = [result.get("zip"), result.get("stem_mp4"), result.get("mix"), *result.get("stems", {}).values()]
    return [str(p) for p in paths if p]


def result_summary(results: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown line: what was made, the seed, the duration and the prompt."""
    if not results:
        return ""
    r = results[0]
    what = {"edit": "Edited", "jam": "Jammed"}.get(
        r.get("kind", ""), f"Generated {len(results)} variation(s)"
    )
    prompt = f" · prompt: “{r['prompt']}”" if r.get("prompt") else ""
    return f"**{what}** · **seed {r.get('seed')}** · {float(r.get('duration', 0)):.1f} s{prompt}"


def head_html() -> str:
    """The mixer's and the jam player's script and style, for the page's <head>."""
    js = "\n".join(
        (ASSETS / name).read_text(encoding="utf-8") for name in ("mixer.js", "jam.js", "jam_mic.js")
    )
    css = (ASSETS / "mixer.css").read_text(encoding="utf-8")
    return f"<script>{js}</script>\n<style>{css}</style>"
