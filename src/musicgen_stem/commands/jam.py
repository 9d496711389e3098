"""`musicgen-stem jam`: a loop of kept stems plays over and over and the model writes a new take of
the other stems for every cycle, tempo-locked to the loop; to the sound card or a PCM pipe on the
clock (`--realtime`), and the whole session to `--out`. Commands typed on stdin while it plays
(one a line): prompt TEXT, regenerate STEM..., vary 0..1, mute STEM..., unmute, solo STEM..., quit.
`--input STEM`: what is played into the sound card is that stem, answered one cycle after it ends
(`jam.live`); `--measure-latency` measures the card's round trip for `--input-latency`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .options import UsageError, add_model_options, check_stem_names, parse_stem_files

__all__ = ["add_arguments", "cmd_jam"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", default=None, help="what the model plays (genre, instruments, key)")
    p.add_argument(
        "--loop",
        action="append",
        default=[],
        metavar="STEM=FILE",
        help="a stem of the loop (repeatable: --loop drums=d.wav --loop other=keys.wav), whole bars long",
    )
    p.add_argument(
        "--regenerate",
        nargs="+",
        default=None,
        metavar="STEM",
        help="the stems the model writes (default: every stem not in the loop)",
    )
    p.add_argument("--bpm", type=float, default=None, help="the loop's tempo (default: estimated)")
    p.add_argument(
        "--bars", type=int, default=None, help="the loop's length in bars (default: from the tempo)"
    )
    p.add_argument(
        "--vary",
        type=float,
        default=1.0,
        help="0: every cycle repeats the first take; 1: a new take every cycle; between: the last "
        "bars of each cycle are new (default: 1)",
    )
    p.add_argument(
        "--cycles", type=int, default=None, help="cycles to play (default: until Ctrl-C or 'quit')"
    )
    p.add_argument(
        "--chords", default=None, help="the loop's chords, e.g. 'Am F C G' (default: read from it)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the first take (take n: seed + n)")
    p.add_argument("--realtime", action="store_true", help="play on the clock (the loop alone first)")
    p.add_argument("--out", "-o", default=None, help="folder for the whole session (stems, mix, jam.json)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument(
        "--pcm",
        choices=["s16", "f32"],
        default=None,
        help="raw interleaved PCM of the mix to stdout at the model's rate (e.g. | aplay -f S16_LE -r 32000)",
    )
    p.add_argument("--no-play", action="store_true", help="with --realtime: not on the sound card")
    p.add_argument(
        "--input",
        default=None,
        metavar="STEM",
        help="with --realtime: the stem you play into the sound card (e.g. other); the model answers "
        "it one cycle after you play it",
    )
    p.add_argument(
        "--input-device", default=None, help="PortAudio device, number or name (default: the system's)"
    )
    p.add_argument(
        "--input-latency",
        type=float,
        default=None,
        metavar="MS",
        help="the card's round trip, output to input (default: PortAudio's figure; see --measure-latency)",
    )
    p.add_argument(
        "--measure-latency",
        action="store_true",
        help="play a probe, find it in the input (connect output to input), print the round trip, and stop",
    )
    add_model_options(p)


def _check(args: argparse.Namespace) -> dict[str, Path]:
    """Everything checkable before the model loads."""
    from ..inputs import check_prompt, check_seed

    if not args.loop:
        raise UsageError("give the loop: --loop STEM=FILE (repeatable, e.g. --loop drums=d.wav)")
    check_prompt(args.text)
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if not 0.0 <= args.vary <= 1.0:
        raise UsageError(f"--vary takes a number from 0 to 1, got {args.vary:g}")
    if args.cycles is not None and not 1 <= args.cycles <= 100_000:
        raise UsageError(f"--cycles must be at least 1, got {args.cycles}")
    if args.bpm is not None and not 20 <= args.bpm <= 400:
        raise UsageError(f"--bpm must be between 20 and 400, got {args.bpm:g}")
    if args.input is not None and (not args.realtime or args.no_play):
        raise UsageError("--input plays live: it needs --realtime and the sound card (not --no-play)")
    if args.input_latency is not None and not 0 <= args.input_latency <= 1000:
        raise UsageError(f"--input-latency is in ms, from 0 to 1000, got {args.input_latency:g}")
    if args.out is None and args.pcm is None and (not args.realtime or args.no_play):
        raise UsageError("nothing to play to: pass --out DIR, --pcm s16 (stdout) or --realtime (sound card)")
    if args.out is not None:
        from ..jam.loop import MAX_LOOP_SECONDS
        from .generate import check_out

        seconds = (args.cycles or 100) * MAX_LOOP_SECONDS  # a bound: 3 stems + mix, stereo float
        check_out(args.out, args.force, int(min(seconds, 3600) * 48000 * 2 * 4 * 4))
    if args.pcm is not None and sys.stdout.isatty():
        raise UsageError("--pcm writes raw audio to stdout: pipe it (e.g. | aplay -f S16_LE -r 32000)")
    files = parse_stem_files(args.loop, "--loop")
    if args.chords is not None:
        from ..conditioning.chords import parse_progression

        parse_progression(args.chords, args.bpm or 120.0)  # the symbols, before the model loads
    return files


def _stdin_commands(player: Any) -> None:
    """Each line of stdin is a command for the player; EOF (or no stdin) stops reading, not the jam."""
    try:
        for line in sys.stdin:
            player.command(line)
    except (OSError, ValueError):
        return


def _device(name: str | None) -> int | str | None:
    return int(name) if name is not None and name.isdigit() else name


def _measure(args: argparse.Namespace) -> int:
    """--measure-latency: the round trip of the sound card at the model's rate."""
    from ..jam.sinks import NoSoundDevice, measure_latency

    rate = 32000  # mini's; the figure barely depends on the rate
    try:
        seconds = measure_latency(rate, 1, _device(args.input_device))
    except NoSoundDevice as e:
        raise UsageError(f"{e}: --measure-latency needs a sound card") from None
    print(f"round trip: {seconds * 1000:.1f} ms (pass --input-latency {seconds * 1000:.0f})")
    return 0


def cmd_jam(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..jam.loop import read_loop

    if args.measure_latency:
        return _measure(args)
    files = _check(args)
    names = {"--loop": list(files), "--regenerate": args.regenerate or []}
    check_stem_names(args.model, names | ({"--input": [args.input]} if args.input else {}))
    loop = read_loop(files, args.bpm, args.bars)
    from ..conditioning.chords import parse_progression
    from ..jam.live import ANSWER_CYCLES, Recording
    from ..jam.output import write_session
    from ..jam.player import Player
    from ..jam.session import Jam, JamSettings
    from ..jam.sinks import DeviceSink, NoSoundDevice, PcmSink
    from .options import load_model_from_args

    model = load_model_from_args(args.model, args)
    free = [s for s in model.stems if s not in loop.stems and s != args.input]
    if args.input in loop.stems:
        raise UsageError(f"--input {args.input} is in the loop: play a stem the loop does not hold")
    regen = tuple(args.regenerate or free)
    for s in list(loop.stems) + list(regen):
        if s not in model.stems:
            raise UsageError(f"unknown stem '{s}': this model's stems are {', '.join(model.stems)}")
    bad = [s for s in regen if s not in free]
    if bad:
        raise UsageError(
            f"{', '.join(bad)} is in the loop or played live: --regenerate takes {', '.join(free)}"
        )
    chords = None if args.chords is None else parse_progression(args.chords, loop.bpm).looped(loop.seconds)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    recording = None if args.input is None else Recording(model.codec.channels)
    jam = Jam(model, loop, seed=seed, chords=chords, live=args.input, recording=recording)
    sinks: list[Any] = []
    if args.pcm is not None:
        sinks.append(PcmSink(sys.stdout.buffer, args.pcm))
    if args.realtime and not args.no_play:
        latency = None if args.input_latency is None else args.input_latency / 1000
        try:
            card = DeviceSink(
                model.sample_rate, model.codec.channels, recording, _device(args.input_device), latency
            )
            sinks.append(card)
        except NoSoundDevice as e:
            if recording is not None:
                raise UsageError(f"{e}: --input needs a sound card") from None
            if args.out is None and args.pcm is None:
                raise UsageError(f"{e}; pass --out DIR or --pcm s16 to jam without one") from None
            others = " and ".join(n for n, on in (("--out", args.out), ("stdout", args.pcm)) if on)
            print(f"{e}: playing to {others} only", file=sys.stderr)
    player = Player(jam, JamSettings(args.text, regen, args.vary), sinks, realtime=args.realtime)
    threading.Thread(target=_stdin_commands, args=(player,), daemon=True, name="jam-stdin").start()
    print(
        f"jam: {loop.bars} bar(s) at {loop.bpm:.1f} bpm ({loop.seconds:.2f} s a cycle), "
        f"the model writes {', '.join(regen)}; type 'quit' to stop",
        file=sys.stderr,
    )
    records = player.run(args.cycles)
    late = sum(r.late for r in records)
    print(f"jam: {len(records)} cycle(s), {late} late", file=sys.stderr)
    if args.out is not None and records:
        meta = {
            "task": "jam",
            "prompt": args.text,
            "loop": {s: str(p) for s, p in files.items()},
            "bars": loop.bars,
            "regenerate": list(regen),
            "seed": seed,
            "beat_grid": {"bpm": round(loop.bpm, 3)},
            "chords": None
            if jam.chords is None
            else jam.chords.looped(len(records) * loop.seconds).to_json(),
            "model": model.name,
            "params": model.params.to_dict(),
            "version": __version__,
        }
        if recording is not None:
            meta["input"] = {
                "stem": args.input,
                "latency_ms": round(recording.latency / model.sample_rate * 1000, 2),
                "answer_cycles": ANSWER_CYCLES,
            }
        out = write_session(args.out, jam, records, meta, force=args.force)
        print(f"wrote {out} ({len(records)} cycles, {len(records) * loop.seconds:.1f} s)", file=sys.stderr)
    return 0
