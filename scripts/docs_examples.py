"""Regenerate docs/examples.md: audio and spectrograms of what the default model makes.

    python scripts/docs_examples.py [--model MODEL] [--out docs] [--song SONG_FOLDER]

Text to stems for a few prompts naming tempo, key and instruments, then edits of a held-out song
(synthesised with seed 1, never used in training, unless --song is given): its bass regenerated
under the kept drums and other, and its drums under the kept bass and other. Each example gets
Ogg Vorbis files (the mix and every stem, 10 s mono: about 100 kB each), a spectrogram per stem, and
the tempo, key and pitch content measured with the `evaluate --tasks text` detectors. Deterministic
(seeded); about two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

import librosa
import librosa.display
import matplotlib
import numpy as np
import soundfile as sf
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from musicgen_stem import MusicGenStem  # noqa: E402
from musicgen_stem.evaluation.songs import load_song  # noqa: E402
from musicgen_stem.evaluation.text_control import PromptSpec, parse_key, text_metrics  # noqa: E402

PROMPTS = [
    (
        "A driving house groove in C major at 124 BPM: offbeat synth bass, electric piano stabs, drums.",
        124,
        "C major",
    ),
    (
        "Laid-back reggae in G minor at 76 BPM with a one-drop beat, organ skank and deep electric bass.",
        76,
        "G minor",
    ),
    ("Heavy metal in E minor at 160 BPM: distorted guitars, picked bass and fast drums.", 160, "E minor"),
    ("A funky groove in A minor at 100 BPM with slap bass, clavinet and tight drums.", 100, "A minor"),
]
SECONDS = 10.0
GAINS: dict[str, float] = {}  # example -> the playback gain of its files


def spectrogram(stems: dict[str, np.ndarray], sr: int, title: str, path: Path) -> None:
    """One row per stem, log frequency (bass up to 2 kHz, the others up to 8 kHz)."""
    fig, axes = plt.subplots(len(stems), 1, figsize=(9, 1.9 * len(stems)), squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], stems.items(), strict=True):
        db = librosa.amplitude_to_db(np.abs(librosa.stft(x, n_fft=4096, hop_length=320)), ref=1.0)
        librosa.display.specshow(
            db, sr=sr, hop_length=320, x_axis="time", y_axis="log", ax=ax, vmin=-60, vmax=30
        )
        ax.set_ylim(30, 2000 if name.startswith("bass") else 8000)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlabel("")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def save(
    stems: dict[str, torch.Tensor],
    sr: int,
    folder: Path,
    name: str,
    title: str,
    kept_from: str | None = None,
    regenerated: Sequence[str] = (),
) -> list[str]:
    """Write <name>_<stem>.ogg, <name>_mix.ogg and <name>.png; returns the Markdown lines. For an
    edit, only the `regenerated` stems and the mix are written; the kept stems link to the files of
    the example `kept_from`, whose playback gain is reused (kept stems stay identical)."""
    mono = {s: w.float().mean(0).numpy() for s, w in stems.items()}
    mono["mix"] = sum(mono.values())
    new = [*regenerated, "mix"] if kept_from else list(mono)
    peak = max(float(np.abs(mono["mix"]).max()), 1e-6)
    gain = GAINS.setdefault(kept_from or name, min(1.0, 0.9 / peak))  # one gain per song
    for s in new:
        sf.write(folder / f"{name}_{s}.ogg", mono[s] * gain, sr, format="OGG", subtype="VORBIS")
    labels = {s: s if s in new else f"{s} (kept)" for s in mono}
    spectrogram({labels[s]: mono[s] for s in stems}, sr, title, folder / f"{name}.png")
    links = " · ".join(f"[{labels[s]}](examples/{name if s in new else kept_from}_{s}.ogg)" for s in mono)
    return [f"Listen: {links}", "", f"![{title}](examples/{name}.png)", ""]


def measured(stems: dict[str, torch.Tensor], sr: int, tempo: float | None, key: str | None) -> str:
    m = text_metrics(stems, sr, PromptSpec("", tempo, parse_key(key) if key else None))
    bits = []
    if "tempo_bpm" in m:
        bits.append(f"tempo {m['tempo_bpm']:.0f} BPM" + (" (matches)" if m.get("tempo_exact") else ""))
    if "key_score" in m:
        bits.append(f"key score {m['key_score']:.1f} (MIREX)")
    if "bass_voiced" in m:
        bits.append(f"bass voiced {100 * m['bass_voiced']:.0f} %")
    if np.isfinite(m.get("bass_in_key", np.nan)):
        bits.append(f"bass notes in key {100 * m['bass_in_key']:.0f} %")
    return "Measured: " + ", ".join(bits) + "."


def held_out_song(folder: str | None, work: Path) -> Path:
    if folder:
        return Path(folder)
    from musicgen_stem.data.synth import synth_dataset

    return synth_dataset(work / "heldout", num_songs=1, seed=1, duration=30.0, progress=False)[0]


CHORDS = (
    "A soulful funk groove in A minor at 100 BPM: electric piano chords, slap bass, drums.",
    "Am7 Dm7 F G",
)


def chords_example(model: MusicGenStem, folder: Path) -> list[str]:
    """Text -> stems following a chord progression (`--chords`), and the stems.mid that comes with
    it; skipped for a model that reads no chords."""
    from musicgen_stem.conditioning.chords import parse_progression
    from musicgen_stem.notes.transcribe import bass_notes
    from musicgen_stem.outputs import result_midi

    if model.steps is None or model.steps.chord is None:
        return []
    prompt, progression = CHORDS
    res = model.generate([prompt], seed=0, duration=SECONDS, chords=progression)
    stems = {s: res[s][0] for s in model.stems}
    sr = model.sample_rate
    meta = {"prompt": prompt, **res.params["step_conditions"][0]}
    result_midi({s: w.numpy() for s, w in stems.items()}, sr, meta).save(folder / "chords.mid")
    chart = parse_progression(progression, 100.0).looped(SECONDS)
    notes = bass_notes(stems["bass"].numpy(), sr)
    on = [
        n.pitch % 12 in chart.at((n.start + n.end) / 2).tones
        for n in notes
        if chart.at((n.start + n.end) / 2)
    ]
    names = "C C# D Eb E F F# G Ab A Bb B".split()
    line = " ".join(f"{names[n.pitch % 12]}{n.pitch // 12 - 1}" for n in notes[:16])
    md = [
        "## Chords in, MIDI out",
        "",
        f'`musicgen-stem generate "{prompt}" --chords "{progression}"`: a chord a bar, looped. '
        f"The bass's first notes (transcribed): {line}; {sum(on)} of its {len(on)} notes are tones of "
        "the chord sounding. Every output folder also holds `stems.mid` (this one: "
        "[chords.mid](examples/chords.mid)): a track per stem, the tempo, and the chord chart as markers "
        "and a chords track.",
        "",
        measured(stems, sr, 100.0, "A minor"),
        "",
    ]
    return md + save(stems, sr, folder, "chords", prompt[:70])


def wrapped(md: list[str], width: int = 100) -> list[str]:
    """Prose lines of `md` wrapped at `width` (headings and images stay whole)."""
    out: list[str] = []
    for line in md:
        if line.startswith(("#", "!", "|")) or len(line) <= width:
            out.append(line)
        else:
            out += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--out", default="docs", help="docs folder (examples.md and examples/ are replaced)")
    ap.add_argument("--song", default=None, help="song folder to edit (default: a synthesised held-out song)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = MusicGenStem.default() if args.model is None else MusicGenStem.from_pretrained(args.model)
    model.quantize("auto")  # as the command line runs it: mini's LM in int8 on CPU
    sr = model.sample_rate
    out = Path(args.out)
    folder = out / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    md = [
        "# What the default model makes",
        "",
        "Generated by `python scripts/docs_examples.py` with the shipped model `mini` as the command "
        f"line runs it ({model.lm_precision} LM) at its default sampling (temperature 0.6, the two "
        "streams its LM does not read taken by argmax; seeded: "
        "rerun it after retraining). Each example: the mix and "
        "every stem (Ogg Vorbis, 10 s), a spectrogram per "
        "stem (log frequency; bass up to 2 kHz), and the tempo, key and pitch content measured with "
        "the detectors of `musicgen-stem evaluate --tasks text`. `mini` is a small model trained "
        "on synthetic songs (TRAINING.md): judge its pitch, timing and editing, not its timbre. "
        "Single examples vary: how often the tempo, key, chords and grid hold over held-out songs "
        "and prompts is in README's table and EVALUATION.md.",
        "",
        "## Text to stems",
        "",
    ]
    for i, (prompt, tempo, key) in enumerate(PROMPTS):
        res = model.generate([prompt], seed=i, duration=SECONDS)
        stems = {s: res[s][0] for s in model.stems}
        md += [f"### {i + 1}. “{prompt}”", "", measured(stems, sr, tempo, key), ""]
        md += save(stems, sr, folder, f"text{i + 1}", prompt[:70])
        print(f"text {i + 1}/{len(PROMPTS)}", flush=True)
    md += chords_example(model, folder)
    with tempfile.TemporaryDirectory() as tmp:
        song = load_song(held_out_song(args.song, Path(tmp)), model.stems, sr, model.codec.channels)
    seconds = min(SECONDS, model.max_edit_duration)
    truth = {s: w[..., : round(seconds * sr)] for s, w in song.stems.items()}
    meta = song.meta or {}
    tempo, key = meta.get("tempo"), meta.get("key_name")
    md += [
        "## Editing a held-out song",
        "",
        f"A song the model never saw: “{song.caption}”. Its first {seconds:g} s as made, then with one "
        "stem regenerated under the others (the caption as the description).",
        "",
        "### The song",
        "",
        measured(truth, sr, tempo, key),
        "",
    ]
    md += save(truth, sr, folder, "song", "the held-out song")
    for j, stem in enumerate(("bass", "drums")):
        kept = {s: w for s, w in truth.items() if s != stem}
        res = model.regenerate_instruments_from_stems(
            kept, sr, [stem], [song.caption], seed=j, duration=seconds
        )
        stems = {s: truth[s] if s != stem else res[s][0, :, : truth[s].shape[-1]] for s in model.stems}
        md += [f"### {stem.capitalize()} regenerated", "", measured(stems, sr, tempo, key), ""]
        md += save(
            stems, sr, folder, f"edit_{stem}", f"{stem} regenerated under the kept stems", "song", [stem]
        )
        print(f"edit {stem}", flush=True)
    (out / "examples.md").write_text("\n".join(wrapped(md)))
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"wrote {out / 'examples.md'} and {len(list(folder.iterdir()))} files ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
