"""Web app: generate and edit stems in the browser (`musicgen-stem app`).

Three tabs: *Generate* (prompt -> bass, drums, other; seed, variations, sampling settings), *Edit*
(regenerate some stems of an uploaded song, of uploaded stems, or of the last result, optionally in a
time range only) and *Jam* (an uploaded loop plays over and over while the model writes a new take
of the other stems every cycle, heard gaplessly in the browser; prompt, mute and solo change while
it plays). Every result comes with a stem mixer (per-stem players with solo/mute, played in
sync), a mix player and downloads: each stem, the whole pack as a zip and a `.stem.mp4`.

Trust boundaries: the model and the separator are chosen when the app is launched (`--model`,
`--separator`) and shown read-only; no client input names a server path or a model. Each browser
session writes into a folder of its own with an unguessable name, whose links are given to that
session only, and which is deleted when the session goes idle, its page is closed or the app stops.
The app binds 127.0.0.1 by default and refuses another address without a login (`--auth`) unless
`--insecure` is given; jobs run one at a time from a bounded queue, uploads and durations are
limited, and errors are shown as one-line messages. Stems a user uploads (and separated ones) come
back exactly as given; new stems and the mix are written in a format that loses nothing of them.

Gradio is an optional dependency (`pip install musicgen-stem[app]`); its frontend is served
locally (no CDN) and its analytics are turned off.
"""

# Modules, from the bottom up (each imports only those above it):
#   options   `musicgen-stem app` options and defaults (no torch: `--help` answers at once)
#   sessions  per-session folders, logins, exposure rules
#   forms     limits and the form's values (seed, sampling settings, seconds)
#   holder    the launch-time model and separator, one job at a time, cancel flags
#   results   job folders and result dicts (a stem pack per result)
#   jobs      generate_job, edit_job, stream_job: plain functions of paths and dicts, no Gradio
#   jams      jam_job: a jam's cycles as WAVs on the clock, then its result; no Gradio
#   page      the mixer HTML, result summary and downloads, no Gradio
#   events    what every event shares: the session, errors as one line
#   jam_tab   the Jam tab's widgets and events
#   ui        the Gradio page: tabs, result area, handlers (imported when the app is built)
#   server    `musicgen-stem app`: checks, launch

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".forms": ["MAX_VARIATIONS", "UPLOAD_ROLES", "Limits", "parse_seed", "sampling_settings"],
        ".holder": ["ModelHolder"],
        ".jobs": ["Cancelled", "edit_job", "generate_job", "preview_pcm", "stream_job"],
        ".jams": ["MAX_JAM_SECONDS", "jam_job"],
        ".options": ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_QUEUE", "add_arguments"],
        ".page": ["file_url", "head_html", "mixer_html", "result_files", "result_summary"],
        ".results": ["write_result"],
        ".server": ["build_app", "host_warning", "launch", "main", "run"],
        ".sessions": ["SessionStore", "is_loopback"],
    },
)
