"""End-to-end real-time factors: text -> stems, an edit, and the codecs.

    python benchmarks/realtime.py --preset mini medium-6cb --threads 2
    python benchmarks/realtime.py --preset medium-6cb --seconds 0.5 --edit-seconds 0.5   # quick smoke run
    python benchmarks/realtime.py --preset medium-6cb --quantize int8

RTF = seconds of compute per second of audio (< 1: faster than real time); "x real time" is its
inverse. Batch 1, CFG 3, top-k 250, the LM's weights as the CLI runs them (`--quantize auto`: int8
for mini, float32 for the random presets; `--quantize none|int8|int4` to choose).

- text -> stems: `--seconds` (default 10) of all stems from a description: text encoding, LM
  decoding, codec decode of every stem;
- edit: regenerate the bass under given drums and other over `--edit-seconds` (default: the
  model's edit window, 25 s for the released models, shorter for mini): codec encode of the
  given stems, text encoding, LM (the masked-stem prefix is one prefill step, then one step per
  frame) and codec decode;
- streaming: text -> `--seconds` of stems through `generate_stream`: when the first audio
  arrives (what a player waits before it can start) and when all of it has;
- codecs: encode and decode of `--codec-seconds` (default 10) of audio, per stem.

Models: `mini` is the shipped model (`MusicGenStem.default()`: trained weights, MiniLM text
encoder); other presets get random weights, their T5 text encoder replaced by a LUT (T5 weights
are not available offline; text encoding is a negligible part of the time).
Parts are timed inside one call through the progress callback (it fires after every LM step):
"LM" runs from the call (minus the separately timed text encoding) to the last step, the codec
decode from the last step to the return.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from common import bench_config, random_parts

from musicgen_stem import MusicGenStem
from musicgen_stem.lm.quantize import quantization_of

DESCRIPTION = "funky drums with a slap bass line and warm electric piano chords at 110 bpm"


@dataclass
class Clock:
    """A progress callback noting when each LM step ends."""

    stamps: list[float] = field(default_factory=list)

    def __call__(self, done: int, total: int) -> None:
        self.stamps.append(time.perf_counter())


@dataclass
class Split:
    """Seconds spent in one timed call, by part."""

    total: float
    lm: float  # LM decoding, prefill included
    first_step: float  # the first step: the prefill (the masked-stem prefix of an edit)
    steps: int
    decode: float  # codec decode after the last step

    @property
    def steps_per_s(self) -> float:
        return (self.steps - 1) / max(1e-9, self.lm - self.first_step) if self.steps > 1 else float("nan")


def timed(call: Callable[[Clock], Any], text_s: float) -> Split:
    """Run `call(progress_callback)` and split its time into LM and codec decode."""
    clock = Clock()
    t0 = time.perf_counter()
    call(clock)
    end = time.perf_counter()
    last = clock.stamps[-1]
    return Split(
        total=end - t0,
        lm=last - t0 - text_s,
        first_step=clock.stamps[0] - t0 - text_s,
        steps=len(clock.stamps),
        decode=end - last,
    )


def synth_stems(sample_rate: int, seconds: float, channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic stem audio {stem: [C, T]}: sine bass, noise-burst drums, a chord."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
    stems = {
        "bass": 0.3 * torch.sin(2 * math.pi * 55 * t) + 0.1 * torch.sin(2 * math.pi * 110 * t),
        "drums": 0.4 * torch.exp(-30 * (t % 0.5)) * noise,
        "other": 0.15 * sum(torch.sin(2 * math.pi * f * t) for f in (440.0, 554.37, 659.25)),
    }
    return {s: w[None].expand(channels, -1).contiguous() for s, w in stems.items()}


def text_seconds(model: MusicGenStem, repeats: int = 3) -> float:
    """Time of encoding one description and the null condition (as generation does), best of a few."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.inference_mode():
            model.text([DESCRIPTION, None])
        best = min(best, time.perf_counter() - t)
    return best


def load(name: str, quantize: str) -> tuple[MusicGenStem, str]:
    if name == "mini":
        model, note = MusicGenStem.default(device="cpu"), "the shipped model (trained weights, MiniLM text)"
    else:
        cfg, lut = bench_config(name)
        model = MusicGenStem(random_parts(cfg), device="cpu", name=name)
        note = "random weights" + (f"; {lut}" if lut else "")
    if quantize != "none":
        model.quantize(quantize)
    model.set_generation_params(use_sampling=True, top_k=250, cfg_coef=3.0)
    return model, note


def warm_up(model: MusicGenStem) -> None:
    """First calls build kernels and caches (oneDNN primitives, silence tokens): keep them out."""
    model.generate([DESCRIPTION], seed=0, duration=0.1)
    model.silence_tokens()
    codec = next(iter(model.codec.codecs.values()))
    with torch.inference_mode():
        codec.decode(codec.encode(torch.zeros(1, codec.channels, model.sample_rate)))


def rtf(seconds_compute: float, seconds_audio: float) -> str:
    r = seconds_compute / seconds_audio
    return f"RTF {r:.3f} ({1 / r:.2f}x real time)"


def bench_text(model: MusicGenStem, seconds: float, text_s: float) -> float:
    s = timed(lambda cb: model.generate([DESCRIPTION], progress=cb, seed=1, duration=seconds), text_s)
    print(
        f"  text -> {seconds:g} s of stems: {s.total:.2f} s, {rtf(s.total, seconds)} | text {text_s:.3f} s | "
        f"LM {s.lm:.2f} s ({s.steps} steps, {s.steps_per_s:.2f} steps/s after the first) | "
        f"codec decode {s.decode:.2f} s",
        flush=True,
    )
    return s.total / seconds


def bench_stream(model: MusicGenStem, seconds: float) -> float:
    """Latency of `generate_stream`: when the first audio arrives, how much, and the whole run."""
    sr, t0 = model.sample_rate, time.perf_counter()
    first: tuple[float, float] | None = None  # (seconds after the call, seconds of audio)
    samples = 0
    for chunk in model.generate_stream([DESCRIPTION], seed=1, duration=seconds):
        if first is None and chunk.num_samples:
            first = (time.perf_counter() - t0, chunk.num_samples / sr)
        samples += chunk.num_samples
    total = time.perf_counter() - t0
    assert first is not None and samples == round(seconds * model.frame_rate) * model.codec.hop_length
    print(
        f"  streaming text -> {seconds:g} s: first audio ({first[1]:.2f} s of it) after {first[0]:.2f} s, "
        f"all {samples / sr:.2f} s after {total:.2f} s",
        flush=True,
    )
    return first[0]


def bench_edit(model: MusicGenStem, seconds: float, text_s: float) -> float:
    kept = {
        k: v for k, v in synth_stems(model.sample_rate, seconds, model.codec.channels).items() if k != "bass"
    }
    t = time.perf_counter()
    codes = model.encode_stems(kept, model.sample_rate)
    encode = time.perf_counter() - t
    s = timed(
        lambda cb: model.regenerate_from_codes(codes, ["bass"], [DESCRIPTION], progress=cb, seed=2), text_s
    )
    total = encode + s.total
    print(
        f"  edit (bass under drums + other), {seconds:g} s: {total:.2f} s, {rtf(total, seconds)} | "
        f"codec encode {encode:.2f} s (3 stems, bass silent) | text {text_s:.3f} s | LM {s.lm:.2f} s "
        f"(prefix prefill + first step {s.first_step:.2f} s, then {s.steps - 1} steps at "
        f"{s.steps_per_s:.2f} steps/s) | codec decode {s.decode:.2f} s",
        flush=True,
    )
    return total / seconds


def bench_codecs(model: MusicGenStem, seconds: float) -> None:
    stems = synth_stems(model.sample_rate, seconds, model.codec.channels)
    for stem, codec in model.codec.codecs.items():
        wav = stems[stem][None]  # [1, C, T]
        with torch.inference_mode():
            t = time.perf_counter()
            codes = codec.encode(wav)
            encode = time.perf_counter() - t
            t = time.perf_counter()
            codec.decode(codes)
            decode = time.perf_counter() - t
        print(
            f"  codec {stem:>5} ({codec.n_q} codebook{'s' if codec.n_q > 1 else ''}), {seconds:g} s: "
            f"encode {encode:.2f} s, {rtf(encode, seconds)} | decode {decode:.2f} s, {rtf(decode, seconds)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", nargs="+", default=["mini", "medium-6cb"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="text -> stems duration")
    parser.add_argument("--edit-seconds", type=float, default=None, help="edit length (default: edit window)")
    parser.add_argument("--codec-seconds", type=float, default=10.0, help="audio per codec encode/decode")
    parser.add_argument(
        "--quantize",
        choices=["auto", "none", "int8", "int4"],
        default="auto",
        help="LM weights (auto: the model's own, int8 for mini and float32 for random presets)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["text", "stream", "edit", "codec"],
        default=["text", "stream", "edit", "codec"],
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="decode through torch.compile (MusicGenStem.compile); its compilation, in warm-up runs "
        "of every timed part, is reported apart",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of text, stream and edit (medians)")
    parser.add_argument("--out", default=None, help="write the medians here (JSON, per preset)")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    torch.set_num_threads(args.threads)
    lm = f"LM weights {args.quantize}" + (", compiled step" if args.compile else "")
    print(f"threads {args.threads}, {lm}, batch 1, CFG 3, top-k 250")
    for name in args.preset:
        t = time.perf_counter()
        model, note = load(name, args.quantize)
        weights = quantization_of(model.lm) or "float32"
        print(f"{name}: {note}, {weights} LM (ready in {time.perf_counter() - t:.1f} s)", flush=True)
        warm_up(model)
        text_s = text_seconds(model)
        if args.compile:
            t = time.perf_counter()
            model.compile()
            model.generate([DESCRIPTION], seed=0, duration=args.seconds)  # the shapes timed below
            if "edit" in args.parts:
                bench_edit(
                    model, model.max_edit_duration if args.edit_seconds is None else args.edit_seconds, 0
                )
            print(f"  compiled in {time.perf_counter() - t:.1f} s (warm-up runs included)", flush=True)
        fig = figures.setdefault(name, {"threads": args.threads, "lm_weights": weights})
        if "text" in args.parts:
            fig["text_seconds"] = args.seconds
            fig["text_rtf"] = statistics.median(
                bench_text(model, args.seconds, text_s) for _ in range(args.runs)
            )
        if "stream" in args.parts:
            fig["first_audio_s"] = statistics.median(
                bench_stream(model, args.seconds) for _ in range(args.runs)
            )
        if "edit" in args.parts:
            window = model.max_edit_duration
            seconds = window if args.edit_seconds is None else args.edit_seconds
            print(f"  edit window of this model: {window:g} s ({model.config.edit_window:g} s configured)")
            fig["edit_seconds"] = seconds
            fig["edit_rtf"] = statistics.median(bench_edit(model, seconds, text_s) for _ in range(args.runs))
        if "codec" in args.parts:
            bench_codecs(model, args.codec_seconds)
        print(f"  medians of {args.runs}: {fig}", flush=True)
        del model
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
