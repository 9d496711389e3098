"""How long the notes take: `transcribe` of a 3-minute stem of each kind, and writing stems.mid
against the generation it belongs to (text -> 10 s of stems with the default model, in one warm
process). Medians of `--repeats` runs; say what else was running when you quote them.

    python benchmarks/transcription.py --song runs/heldout/song_00000 [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import soundfile as sf

from musicgen_stem.notes.midi import midi_of_stems, transcribe


def median_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--song", required=True, help="a folder with bass.wav, drums.wav, other.wav")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=3.0)
    args = ap.parse_args()
    for stem in ("bass", "drums", "other"):
        x, sr = sf.read(f"{args.song}/{stem}.wav", dtype="float32", always_2d=True)
        x = x.T  # [C, T]
        reps = int(np.ceil(args.minutes * 60 * sr / x.shape[1]))
        long = np.tile(x, (1, reps))[:, : int(args.minutes * 60 * sr)]
        transcribe(stem, long[:, : sr * 5], sr)  # warm up (imports, filter banks)
        t = median_time(lambda long=long, stem=stem, sr=sr: transcribe(stem, long, sr), args.repeats)
        print(f"transcribe {stem:5s} {args.minutes:g} min: {t:.2f} s")

    from musicgen_stem.api import MusicGenStem

    model = MusicGenStem.default()
    model.generate(["warm up"], seed=0, duration=2.0)
    gen = []
    out = None
    for i in range(args.repeats):
        t = time.perf_counter()
        out = model.generate(["funky drums and slap bass in A minor at 110 bpm"], seed=i, duration=10.0)
        gen.append(time.perf_counter() - t)
    stems = {s: out[s][0].numpy() for s in out}
    midi_of_stems(stems, out.sample_rate, 110.0)
    t_midi = median_time(lambda: midi_of_stems(stems, out.sample_rate, 110.0), args.repeats)
    g = statistics.median(gen)
    share = 100 * t_midi / g
    print(f"text -> 10 s of stems {g:.2f} s; stems.mid {t_midi:.3f} s ({share:.1f} % of the generation)")


if __name__ == "__main__":
    main()
