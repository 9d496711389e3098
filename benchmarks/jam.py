"""The jam, measured: speed per cycle, following the loop as an offline edit does, borders, alignment.

For each held-out synthetic song, its first `--bars` bars of drums + other are the loop and the
model jams a bass over it for `--cycles` cycles (its caption as the prompt), as `musicgen-stem jam`
does without `--realtime` (every take generated, none late). Reported:

- speed: each take's generation time over the cycle's length (median and max; the jam needs < 1,
  the target is <= 0.5 quiet and <= 0.8 with one core busy: `--busy` runs a busy process beside it);
- following the loop: the bass on the song's chord tones (transcribed notes, length-weighted) and on
  the 16th grid of the loop's tempo, against an offline edit of the same loop (the bass regenerated
  under it, same prompt): the jam should reach >= 95 % of the edit's figures;
- takes differ: the share of consecutive cycles whose bass codes differ (vary 1);
- borders: the largest sample step within 2 ms of a cycle border over the bass's 99.9th-percentile step;
- alignment: the written drums are the loop repeated sample for sample, and the lag of the
  cross-correlation between the written mix and the loop repeated (0: aligned);
- realtime (`--realtime N`): N cycles on the clock: first sound after the start, late cycles.

    python benchmarks/jam.py --songs runs/heldout --num-songs 6 [--cycles 4] [--bars 4] [--busy]
        [--realtime 8]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from musicgen_stem.api import MusicGenStem
from musicgen_stem.conditioning.chords import ChordChart
from musicgen_stem.evaluation.rhythm import ONSET_THRESHOLDS, detect_onsets, sixteenth_grid_fraction
from musicgen_stem.jam.loop import read_loop
from musicgen_stem.jam.output import write_session
from musicgen_stem.jam.player import Player
from musicgen_stem.jam.session import Jam, JamSettings
from musicgen_stem.lm.quantize import quantization_of
from musicgen_stem.notes.transcribe import bass_notes


def _busy(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def bass_figures(
    bass: np.ndarray, sr: int, chart: ChordChart, bpm: float, swing: tuple[float, float]
) -> tuple[float, float]:
    """(share of the bass notes' length on chord tones, share of its onsets on the song's 16th
    grid: `evaluate`'s onsets and threshold for the bass, the song's swing)."""
    notes = bass_notes(bass, sr)
    on = total = 0.0
    for n in notes:
        chord = chart.at((n.start + n.end) / 2)
        if chord is not None:
            total += n.end - n.start
            on += (n.end - n.start) * (n.pitch % 12 in chord.tones)
    beats = np.arange(0, len(bass) / sr + 1e-9, 60 / bpm)
    onsets = detect_onsets(bass, sr, threshold=ONSET_THRESHOLDS["bass"])
    grid = sixteenth_grid_fraction(onsets, beats, swing)
    return (on / total if total else float("nan")), grid


def make_loop(song: Path, bars: int, folder: Path) -> tuple[dict[str, Path], dict]:
    meta = json.loads((song / "meta.json").read_text())
    n = None
    files = {}
    for stem in ("drums", "other"):
        wav, sr = sf.read(song / f"{stem}.wav", dtype="int16", always_2d=True)
        n = round(bars * 4 * 60 / meta["tempo"] * sr)
        sf.write(folder / f"{song.name}_{stem}.wav", wav[:n], sr, subtype="PCM_16")
        files[stem] = folder / f"{song.name}_{stem}.wav"
    return files, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", required=True, help="a folder of synthetic songs (musicgen-stem synth)")
    ap.add_argument("--num-songs", type=int, default=6)
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument(
        "--quantize",
        choices=["auto", "none", "int8", "int4"],
        default="auto",
        help="the LM's weights (auto: the model's own, int8 for mini)",
    )
    ap.add_argument("--model", default=None)
    ap.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    ap.add_argument("--realtime", type=int, default=0, metavar="N", help="also N cycles on the clock")
    ap.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(1 if args.busy else 2)
    model = MusicGenStem.default() if args.model is None else MusicGenStem.from_pretrained(args.model)
    if args.quantize != "none":
        model.quantize(args.quantize)
    weights = quantization_of(model.lm) or "float32"
    sr = model.sample_rate
    stop = multiprocessing.Event()
    busy = multiprocessing.Process(target=_busy, args=(stop,), daemon=True) if args.busy else None
    if busy is not None:
        busy.start()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="jam-bench-"))
    songs = sorted(p for p in Path(args.songs).iterdir() if (p / "meta.json").is_file())[: args.num_songs]
    for song in songs:
        files, meta = make_loop(song, args.bars, tmp)
        loop = read_loop(files, bpm=meta["tempo"])
        truth = ChordChart.from_json(meta["chords"])
        jam = Jam(model, loop, seed=1)
        began = time.perf_counter()
        records = Player(jam, JamSettings(meta["caption"], ("bass",))).run(args.cycles)
        jam_s = time.perf_counter() - began
        out = write_session(tmp / f"{song.name}_jam", jam, records, {"task": "jam"})
        bass, _ = sf.read(out / "bass.wav")
        drums, _ = sf.read(out / "drums.wav", dtype="int16")
        session_s = len(bass) / loop.sample_rate
        chart = truth.looped(loop.seconds).looped(session_s)
        swing = (meta.get("swing8", 0.0), meta.get("swing16", 0.0))
        tones, grid = bass_figures(bass, loop.sample_rate, chart, loop.bpm, swing)
        # the offline edit of the same loop, as long as the session
        stems = {
            s: torch.from_numpy(np.tile(x.to_float64(), (1, args.cycles))).float()
            for s, x in loop.stems.items()
        }
        edit = model.regenerate_instruments_from_stems(
            stems, loop.sample_rate, ["bass"], [meta["caption"]], seed=1
        )
        e_tones, e_grid = bass_figures(edit["bass"][0].mean(0).numpy(), sr, chart, loop.bpm, swing)
        step = np.abs(np.diff(bass))
        borders = [n * loop.frames for n in range(1, args.cycles)]
        w = round(0.002 * loop.sample_rate)
        border_ratio = max(step[b - w : b + w].max() for b in borders) / np.percentile(step, 99.9)
        tile = np.tile(loop.stems["drums"].data[0] // 65536, args.cycles).astype(np.int16)
        mix, _ = sf.read(out / "mix.wav")
        ref = np.tile(loop.mix()[0], args.cycles)
        xc = np.fft.irfft(np.fft.rfft(mix, 2 * len(mix)) * np.conj(np.fft.rfft(ref, 2 * len(mix))))
        lag = int(np.argmax(xc))
        lag = lag if lag < len(mix) else lag - 2 * len(mix)
        bass_rows = model.layout.stream_slices()["bass"]
        tl = jam.timeline
        cycles = [jam.codes[bass_rows, tl.frame(n) + jam.tail : tl.frame(n + 1)] for n in range(args.cycles)]
        differ = np.mean([not torch.equal(a, b) for a, b in zip(cycles, cycles[1:], strict=False)])
        ratios = [r.generate_s / loop.seconds for r in records]
        rows.append(
            {
                "song": song.name,
                "bpm": round(loop.bpm, 2),
                "cycle_s": round(loop.seconds, 3),
                "generate_over_cycle_median": float(np.median(ratios)),
                "generate_over_cycle_max": float(np.max(ratios)),
                "jam_s": jam_s,
                "bass_chord_tones": tones,
                "bass_grid": grid,
                "edit_chord_tones": e_tones,
                "edit_grid": e_grid,
                "takes_differ": float(differ),
                "border_step_over_p999": float(border_ratio),
                "drums_exact": bool(np.array_equal(drums, tile)),
                "mix_lag": lag,
            }
        )
        r = rows[-1]
        print(
            f"{song.name} {loop.bpm:6.1f} bpm {loop.seconds:5.2f} s: "
            f"take/cycle {r['generate_over_cycle_median']:.2f} (max {r['generate_over_cycle_max']:.2f}); "
            f"chord tones {tones:.3f} (edit {e_tones:.3f}); "
            f"16th grid {grid:.3f} (edit {e_grid:.3f}); differ {differ:.2f}; border {border_ratio:.2f}; "
            f"drums exact {r['drums_exact']}; lag {lag}",
            flush=True,
        )
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}
    summary["generate_over_cycle_max"] = float(max(r["generate_over_cycle_max"] for r in rows))
    summary["chord_tones_vs_edit"] = summary["bass_chord_tones"] / summary["edit_chord_tones"]
    summary["grid_vs_edit"] = summary["bass_grid"] / summary["edit_grid"]
    if args.realtime:
        files, meta = make_loop(songs[0], args.bars, tmp)
        loop = read_loop(files, bpm=meta["tempo"])
        began = time.perf_counter()  # the jam starts: the loop read, the model loaded
        jam = Jam(model, loop, seed=2)
        init_s = time.perf_counter() - began
        player = Player(jam, JamSettings(meta["caption"], ("bass",)), realtime=True)
        records = player.run(args.realtime)
        summary["realtime_cycles"] = len(records)
        summary["realtime_late"] = sum(r.late for r in records)
        summary["first_sound_s"] = init_s + (player.first_sound_s or 0.0)
    if busy is not None:
        stop.set()
        busy.join()
    print(json.dumps(summary, indent=1))
    if args.out:
        figures = {"summary": summary, "lm_weights": weights, "songs": rows}
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
