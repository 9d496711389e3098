"""Do generated drums swing when the description says so? Text -> stems with the prompt's swing
(the default: `MusicAttributes.swing` swings the LM's beat grid) against the same prompts with it
zeroed (a straight grid), scored as onsets on the swung 16th grid (`sixteenth_grid_fraction`).

    python benchmarks/text_swing.py --data runs/heldout [--seeds 0 1]

Prompts: the captions of the held-out songs that say swing (scored at their song's swing, from
meta.json) and a few of a user's (scored at triplet swing, `NAMED_SWING`). 10 s each; the beats
from frame 0 at the prompt's tempo (text -> stems starts on a downbeat).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import musicgen_stem.api.decoding as decoding
from musicgen_stem import MusicGenStem
from musicgen_stem.conditioning.attributes import NAMED_SWING, MusicAttributes, parse_attributes
from musicgen_stem.evaluation.rhythm import ONSET_THRESHOLDS, detect_onsets, sixteenth_grid_fraction

USER_PROMPTS = [
    "a blues shuffle in E at 96 bpm, organ and guitar, drums and bass",
    "swing jazz at 140 bpm with brushed drums, walking bass and piano comping",
    "a swinging hip hop beat at 90 bpm in F minor",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="held-out song folders (their captions and meta.json)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    prompts = []  # (prompt, tempo, swing to score at)
    for meta_path in sorted(Path(args.data).glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if parse_attributes(meta["caption"]).swing:
            prompts.append((meta["caption"], float(meta["tempo"]), float(meta.get("swing8", 0.0))))
    prompts += [(t, float(parse_attributes(t).tempo or 120.0), NAMED_SWING) for t in USER_PROMPTS]

    straight = {"on": False}
    parse = decoding.parse_attributes

    def parse_for_decoding(text: str | None) -> MusicAttributes:  # the swing zeroed when straight
        return dataclasses.replace(parse(text), swing=0.0) if straight["on"] else parse(text)

    decoding.parse_attributes = parse_for_decoding
    model = MusicGenStem.default("cpu")
    means: dict[str, list[float]] = {"straight grid": [], "swung by the prompt": []}
    for text, tempo, swing in prompts:
        beats = np.arange(0.0, 10.01, 60.0 / tempo)
        cells = []
        for name in means:
            straight["on"] = name == "straight grid"
            scores = []
            for seed in args.seeds:
                drums = model.generate([text], seed=seed, duration=10)["drums"][0]
                onsets = detect_onsets(drums, model.sample_rate, threshold=ONSET_THRESHOLDS["drums"])
                scores.append(sixteenth_grid_fraction(onsets, beats, (swing, 0.0)))
            means[name].append(float(np.mean(scores)))
            cells.append(f"{name} {means[name][-1]:.2f}")
        print(f"swing {swing:.2f}: {' | '.join(cells)} | {text[:70]}", flush=True)
    print("mean: " + " | ".join(f"{k} {np.mean(v):.3f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
