"""Fill a pitch codec's codebook on the note grid, after training, without retraining anything.

The bass codec's latent puts the note first (`codec.harmonic`: 10 units a semitone), and k-means
on the training songs gives each note as many codes as the songs play it: D3 got one code, F#3
none, and no code anywhere has the timbre of a sine. A pure D3 then takes a C#3 code, and a pure F1
the code of an F1 whose octave is louder than its fundamental (TRAINING.md, the tone probe).

`fill_note_grid` writes, into codebook entries that an LM's training tokens never use, the
timbres the codebook lacks on each note from `low` to `high`: the codebook's own timbres
(level and band levels, k-means over the used codes weighted by their counts) and those of
decaying sines at a few levels, each moved onto the note. Codes in use keep their vectors, so
tokens that an LM learnt from mostly stay as they were; `lm_rows_for` says which used code each
new one stands for, so the LM reads a kept stem's new code as it read the code it replaces.

    python -m musicgen_stem.training.codebook MODEL --tokens TOKENS... --out NEW_MODEL
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..codec.harmonic import LOW_MIDI, SEMITONE, SILENT
from ..codec.kinds import PITCH_DIM
from ..codec.quantizer import kmeans
from ..errors import MusicGenStemError
from ..layout import MONOPHONIC_STEMS

__all__ = ["code_counts", "fill_note_grid", "lm_rows_for", "main", "sine_timbres"]


def code_counts(token_dirs: Sequence[str], stream: int, card: int, streams: int | None = None) -> np.ndarray:
    """How often each code of `stream` occurs in prepared token folders -> [card] int64; `streams`:
    the number of streams each file must hold (the model's), if given."""
    files = [f for d in token_dirs for f in sorted(glob.glob(str(Path(d) / "tokens" / "*.npy")))]
    if not files:
        raise MusicGenStemError(f"no token files under {list(token_dirs)}: give folders made by `prepare`")
    counts = np.zeros(card, np.int64)
    for f in files:
        try:
            tokens = np.load(f)
        except (OSError, ValueError) as e:
            raise MusicGenStemError(f"cannot read token file '{f}': {e}") from None
        if tokens.ndim != 2 or (streams is not None and tokens.shape[0] != streams):
            raise MusicGenStemError(
                f"token file '{f}' holds {tokens.shape} tokens, not [{streams or 'K'}, T]: "
                "give the token folders this model's LM was trained on"
            )
        row = tokens[stream]
        counts += np.bincount(row[(row >= 0) & (row < card)], minlength=card)
    return counts


def sine_timbres(encoder: torch.nn.Module, sample_rate: int, levels_db: Sequence[float]) -> torch.Tensor:
    """Latent timbres (dims 1.. of the pitch latent) of a decaying A1 sine at each peak level
    -> [len(levels_db), D - 1]: the frame a quarter second in (past the attack). The rows of a
    detail latent are zero: the first codebook of a grown codec leaves them to the second."""
    t = torch.arange(sample_rate) / sample_rate
    tone = torch.sin(2 * torch.pi * 55.0 * t) * torch.exp(-t / 0.35) * torch.clamp(t / 0.01, max=1.0)
    wav = torch.stack([tone * 10 ** (db / 20) for db in levels_db])[:, None]  # [L, 1, T]
    latent = encoder(wav)  # [L, D, F]
    latent[:, PITCH_DIM:] = 0.0
    return latent[:, 1:, latent.shape[-1] // 4]


def fill_note_grid(
    embed: torch.Tensor,
    counts: np.ndarray,
    low: int,
    high: int,
    extra_timbres: torch.Tensor | None = None,
    timbres: int = 12,
    min_distance: float = 4.0,
    seed: int = 0,
) -> tuple[torch.Tensor, list[int]]:
    """embed [K, D] (pitch latent codes), counts [K] (uses in an LM's tokens) -> (new embed,
    replaced entries). Candidates: every note low..high (MIDI) x every timbre (k-means of the
    used codes' timbres, `timbres` of them, plus `extra_timbres` [E, D - 1]); a candidate farther
    than `min_distance` from every code of its note is written into an unused entry, farthest
    first, until the unused entries run out."""
    used = torch.from_numpy(counts > 0)
    free = [int(i) for i in torch.nonzero(~used).flatten()]
    voiced = embed[:, 0] > SILENT / 2
    pool = embed[used & voiced, 1:]
    weights = torch.from_numpy(counts).float()[used & voiced]
    copies = (weights / weights.sum() * 20000).round().long().clamp(min=1)  # each code ~ its use
    with torch.random.fork_rng(devices=[]):  # k-means draws its start; the caller's RNG is left alone
        torch.manual_seed(seed)
        centres, _ = kmeans(torch.repeat_interleave(pool, copies, dim=0), min(timbres, len(pool)), 50)
    if extra_timbres is not None:
        centres = torch.cat([centres, extra_timbres.to(centres)])
    candidates = []
    out = embed.clone()
    for note in range(low, high + 1):
        pitch = (note - LOW_MIDI) * SEMITONE
        same = out[(out[:, 0] - pitch).abs() <= SEMITONE / 2]  # codes of this note [M, D]
        for c in centres:
            vec = torch.cat([torch.tensor([pitch], dtype=out.dtype), c])
            gap = float((same - vec).norm(dim=1).min()) if len(same) else float("inf")
            if gap > min_distance:
                candidates.append((gap, vec))
    candidates.sort(key=lambda g: -g[0])
    replaced = []
    for slot, (_, vec) in zip(free, candidates, strict=False):
        out[slot] = vec
        replaced.append(slot)
    return out, replaced


def lm_rows_for(embed: torch.Tensor, replaced: list[int], counts: np.ndarray) -> dict[int, int]:
    """For each replaced entry, the used code nearest to its new vector (whose LM input row it gets)."""
    used = torch.nonzero(torch.from_numpy(counts > 0)).flatten()
    rows = {}
    for slot in replaced:
        d = (embed[used] - embed[slot]).norm(dim=1)
        rows[slot] = int(used[int(d.argmin())])
    return rows


def stored_dtype(path: Path) -> torch.dtype | None:
    """dtype of the first tensor in a safetensors file (None if it cannot be read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return f.get_tensor(next(iter(f.keys()))).dtype
    except (OSError, StopIteration, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    from ..modeldir import load_model, save_model

    p = argparse.ArgumentParser(
        prog="python -m musicgen_stem.training.codebook", description=__doc__.split("\n")[0]
    )
    p.add_argument("model", help="model folder whose pitch codec to fill")
    p.add_argument("--tokens", nargs="+", required=True, help="token folders the model's LM was trained on")
    p.add_argument("--out", required=True, help="new model folder")
    line = min(MONOPHONIC_STEMS)
    p.add_argument("--stem", default=line, help=f"the stem whose pitch codec to fill (default: {line})")
    p.add_argument("--low", type=int, default=24, help="lowest MIDI note (C1)")
    p.add_argument("--high", type=int, default=55, help="highest MIDI note (G3)")
    p.add_argument("--timbres", type=int, default=12, help="timbres k-means finds among the used codes")
    p.add_argument("--sine-levels", type=float, nargs="*", default=[-6.0, -12.0, -18.0, -24.0, -30.0])
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = p.parse_args(argv)
    try:
        parts = load_model(args.model)
        layout = parts.config.layout
        if args.stem not in layout.stems:
            raise MusicGenStemError(f"stem '{args.stem}' is not in the model's layout {list(layout.stems)}")
        codec = parts.codec.codecs[args.stem]
        if codec.cfg.encoder.kind != "pitch":
            raise MusicGenStemError(
                f"the {args.stem} codec has no pitch latent (encoder '{codec.cfg.encoder.kind}')"
            )
        stream = sum(layout.codebooks[: layout.stems.index(args.stem)])  # the stem's first stream
        book = codec.quantizer.vq.layers[0]._codebook
        counts = code_counts(args.tokens, stream, book.embed.shape[0], layout.num_streams)
        sines = sine_timbres(codec.encoder, codec.sample_rate, args.sine_levels)
        embed, replaced = fill_note_grid(book.embed, counts, args.low, args.high, sines, args.timbres)
        rows = lm_rows_for(embed, replaced, counts)
        with torch.no_grad():
            size = book.cluster_size[torch.from_numpy(counts > 0)].median()
            for slot in replaced:
                book.embed[slot] = embed[slot]
                book.cluster_size[slot] = size
                book.embed_avg[slot] = embed[slot] * size
                parts.lm.emb[stream].weight[slot] = parts.lm.emb[stream].weight[rows[slot]]
        save_model(
            parts, args.out, force=args.force, lm_dtype=stored_dtype(Path(args.model) / "lm.safetensors")
        )
    except MusicGenStemError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"filled {len(replaced)} unused codes of the {args.stem} codebook; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
