"""Settings of an LM training run (`LMTrainConfig`), which of them a resume may change, and the
`train-lm` command-line options that fill it. No torch here: the options are built without it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import MusicGenStemError

__all__ = [
    "AMP_CHOICES",
    "RESUMABLE_CHANGES",
    "LMTrainConfig",
    "add_arguments",
    "changed_settings",
    "config_from_args",
]

AMP_CHOICES = ("auto", "bf16", "fp16", "none")

#: Settings that may change between a run and its resume (everything else must match).
RESUMABLE_CHANGES = {
    "steps",
    "log_every",
    "checkpoint_every",
    "validate_every",
    "device",
    "num_threads",
    "out",
    "init_from",
    "grad_accum",  # the same global batch, in other micro-batches
    "fsdp",  # checkpoints hold full state dicts: DDP and FSDP runs resume each other
    "stop_at",
}


@dataclass
class LMTrainConfig:
    """Everything `train_lm` needs. Paths are strings so that the config stores in checkpoints."""

    model: str  # model folder of ours (codecs trained; LM/text weights are the starting point)
    data: list[str]  # token dataset folders (`musicgen-stem prepare`)
    out: str  # run folder: checkpoint.pt, log.jsonl, model/
    steps: int = 100_000
    batch_size: int = 8  # global: split over the processes and the accumulation steps
    grad_accum: int = 1  # micro-batches per step on each process (gradients accumulated)
    lr: float = 1e-4
    warmup: int = 4000
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0: no clipping
    ema_decay: float = 0.99  # 0: no EMA (the final model holds the raw weights)
    edit_prob: float = 0.5
    cond_dropout: float = 0.3
    dropout: float | None = None  # LM dropout while training (attention, residual); None: the model's
    history_noise: float = 0.0  # edit batches: P(an input token of a regenerated stream is random)
    beat_grid: bool = False  # add the LM's beat grid (zero at first) to a model without one
    chords: bool = False  # add per-step chord conditioning (zero at first), fed from the tracks' chords
    steps_lr_scale: float = (
        1.0  # learning-rate multiplier of the per-step conditions named by beat_grid/chords
    )
    # train only the output heads of these streams, every other weight frozen: the new streams of a
    # grown model (`training/grow.py`) learnt without moving anything the LM knew
    train_heads: tuple[int, ...] = ()
    # with train_heads, or alone: the input embeddings of these streams learn too (a stream whose
    # embedding is zero, as a grown one's, is never read: this teaches the LM its history)
    train_embeddings: tuple[int, ...] = ()
    crop_seconds: float | None = None  # default: the model's max_duration
    valid_fraction: float = 0.02
    valid_batches: int = 4
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    validate_every: int = 1000  # 0: never
    device: str | None = None  # default: cuda if available
    amp: str = "auto"  # auto: bf16 on CUDA, none on CPU
    fsdp: bool = False
    init_from: str | None = None  # another model folder whose LM/text weights start the run
    stop_at: int | None = None  # stop after this step (checkpoint, model); the schedule stays `steps`'s
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, stored in the checkpoint

    def check(self) -> None:
        """Raise MusicGenStemError on settings that cannot work."""
        ints = {
            "steps": self.steps,
            "batch size": self.batch_size,
            "log interval": self.log_every,
            "gradient accumulation": self.grad_accum,
        }
        for name, v in ints.items():
            if v <= 0:
                raise MusicGenStemError(f"the {name} must be a positive integer, got {v}")
        for name, v in (
            ("checkpoint interval", self.checkpoint_every),
            ("validation interval", self.validate_every),
        ):
            if v < 0:
                raise MusicGenStemError(f"the {name} must be >= 0, got {v}")
        if self.stop_at is not None and self.stop_at < 1:
            raise MusicGenStemError(f"--stop-at must be >= 1, got {self.stop_at}")
        if self.warmup < 0 or self.valid_batches < 0:
            raise MusicGenStemError("warmup and validation batches must be >= 0")
        if not self.lr > 0:
            raise MusicGenStemError(f"the learning rate must be > 0, got {self.lr}")
        if not self.steps_lr_scale > 0:
            raise MusicGenStemError(f"--steps-lr-scale must be > 0, got {self.steps_lr_scale}")
        if self.grad_clip < 0 or not 0 <= self.ema_decay < 1:
            raise MusicGenStemError("grad clip must be >= 0 and the EMA decay in [0, 1)")
        for name, p in (
            ("edit probability", self.edit_prob),
            ("condition dropout", self.cond_dropout),
            ("history noise", self.history_noise),
        ):
            if not 0 <= p <= 1:
                raise MusicGenStemError(f"the {name} must be in [0, 1], got {p}")
        for flag, streams in (
            ("--train-heads", self.train_heads),
            ("--train-embeddings", self.train_embeddings),
        ):
            if any(k < 0 for k in streams):
                raise MusicGenStemError(f"{flag} are stream indices >= 0, got {list(streams)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise MusicGenStemError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.crop_seconds is not None and not self.crop_seconds > 0:
            raise MusicGenStemError(f"the crop must be > 0 seconds, got {self.crop_seconds}")
        if self.amp not in AMP_CHOICES:
            raise MusicGenStemError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if not self.data:
            raise MusicGenStemError("give at least one token dataset with --data")


def changed_settings(cfg: LMTrainConfig, saved: dict[str, Any]) -> list[str]:
    """Names of the settings that differ from the checkpoint's (other than the resumable ones);
    a setting the checkpoint predates counts as its default."""
    now = asdict(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(LMTrainConfig)}
    return sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != now[k])


# --------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train-lm` options."""
    d = LMTrainConfig(model="", data=[], out="")
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        help="model folder of ours (trained codecs; its LM/text weights are the start)",
    )
    parser.add_argument("--data", nargs="+", required=True, help="token dataset folder(s) from `prepare`")
    parser.add_argument(
        "--out", "-o", required=True, help="run folder (checkpoint.pt, log.jsonl, model/); rerun to resume"
    )
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="DIR",
        help="copy the LM and text weights of this model folder first (fine-tuning)",
    )
    g = parser.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps, help="total optimisation steps")
    g.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="N",
        help="stop after step N (checkpoint and model; rerun to continue: the schedule is --steps's)",
    )
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (split over processes)")
    g.add_argument(
        "--grad-accum",
        type=int,
        default=d.grad_accum,
        help="micro-batches per step and process (gradients accumulated; same global batch)",
    )
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (higher for small models)")
    g.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (then cosine decay)")
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final lr / peak lr")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip (0: off)")
    g.add_argument(
        "--ema-decay",
        type=float,
        default=d.ema_decay,
        help="EMA decay of the weights written at the end (0: no EMA)",
    )
    g = parser.add_argument_group("batches")
    g.add_argument(
        "--edit-prob",
        type=float,
        default=d.edit_prob,
        help="probability that a batch is a masked-stem edit batch",
    )
    g.add_argument(
        "--cond-dropout",
        type=float,
        default=d.cond_dropout,
        help="probability of dropping the text of a whole batch",
    )
    g.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="LM dropout while training, attention and residual (default: the model's, 0 in the presets)",
    )
    g.add_argument(
        "--history-noise",
        type=float,
        default=d.history_noise,
        help="edit batches: probability that an input token of a regenerated stem (after the prefix) is "
        "replaced by a random one, the target kept: the model must take the timing from the kept stems",
    )
    g.add_argument(
        "--beat-grid",
        action="store_true",
        help="give the LM a beat grid (zero at first) if it has none, fed in text batches from the tempo "
        "the caption names (tracks start on a downbeat); text -> stems then follows the prompt's tempo",
    )
    g.add_argument(
        "--chords",
        action="store_true",
        help="give the LM per-step chord conditioning (zero at first) if it has none, fed with the chords "
        "annotated beside each track (synthetic songs' meta.json); `--chords` in generate and edit then "
        "steers the harmony",
    )
    g.add_argument(
        "--steps-lr-scale",
        type=float,
        default=1.0,
        help="learning-rate multiplier of the per-step conditions this run names (--beat-grid, --chords): "
        "a layer added at zero learns its input to a trained LM faster",
    )
    g.add_argument(
        "--train-heads",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="train only the output heads of these streams (0-based), every other weight frozen: the "
        "new streams of a grown model (python -m musicgen_stem.training.grow), learnt without moving "
        "what the LM knew (its other streams keep their probabilities)",
    )
    g.add_argument(
        "--train-embeddings",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="train only the input embeddings of these streams (and the heads of --train-heads), every "
        "other weight frozen: a grown stream's embedding starts at zero, so until it learns the LM never "
        "reads that stream's history",
    )
    g.add_argument(
        "--crop-seconds",
        type=float,
        default=None,
        help="text -> stems crop (default: the model's max_duration)",
    )
    g.add_argument(
        "--valid-fraction",
        type=float,
        default=d.valid_fraction,
        help="last fraction of the tracks (by id) held out for validation",
    )
    g.add_argument("--valid-batches", type=int, default=d.valid_batches, help="batches per validation")
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of every random draw")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between checkpoints (one is also written at the end)",
    )
    g.add_argument(
        "--validate-every", type=int, default=d.validate_every, help="steps between validations (0: never)"
    )
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument(
        "--amp", choices=AMP_CHOICES, default=d.amp, help="mixed precision (auto: bf16 on CUDA, none on CPU)"
    )
    g.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the model with FSDP2 (one unit per transformer block) when several processes "
        "train (else DDP)",
    )
    g.add_argument("--num-threads", type=int, default=None, help="torch CPU threads per process")


def config_from_args(args: argparse.Namespace) -> LMTrainConfig:
    """The run's settings from the parsed `train-lm` options."""
    return LMTrainConfig(
        model=str(args.model),
        data=[str(d) for d in args.data],
        out=str(args.out),
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup=args.warmup,
        min_lr_ratio=args.min_lr_ratio,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        ema_decay=args.ema_decay,
        edit_prob=args.edit_prob,
        cond_dropout=args.cond_dropout,
        dropout=args.dropout,
        history_noise=args.history_noise,
        beat_grid=args.beat_grid,
        chords=args.chords,
        steps_lr_scale=args.steps_lr_scale,
        train_heads=tuple(args.train_heads),
        train_embeddings=tuple(args.train_embeddings),
        crop_seconds=args.crop_seconds,
        valid_fraction=args.valid_fraction,
        valid_batches=args.valid_batches,
        seed=args.seed,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        device=args.device,
        amp=args.amp,
        fsdp=args.fsdp,
        init_from=args.init_from,
        stop_at=args.stop_at,
        num_threads=args.num_threads,
    )
