"""Settings of a codec training run (`CodecTrainConfig`), the codec presets it starts from,
and the `train-codec` command-line options that fill it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..codec.config import CodecConfig
from ..errors import MusicGenStemError
from ..layout import LAYOUT_6CB

__all__ = [
    "CODEC_PRESETS",
    "CodecTrainConfig",
    "add_arguments",
    "codec_preset",
    "config_from_args",
    "default_n_q",
]

# --------------------------------------------------------------------------------------------
# Codec presets
# --------------------------------------------------------------------------------------------
CODEC_PRESETS = {
    "mini": CodecConfig.mini,  # the shipped CPU-trained model's codec
    "tiny": CodecConfig.tiny,  # n_filters 4, dimension 16, 2048 bins (test fixture sizes)
    "musicgen_32khz": CodecConfig.musicgen_32khz,  # released sizes: n_filters 64, dimension 128
}


def default_n_q(stem: str) -> int | None:
    """Codebooks of `stem` in the default 6cb layout (bass 1, drums 1, other 4); None for other stems."""
    if stem in LAYOUT_6CB.stems:
        return LAYOUT_6CB.codebooks[LAYOUT_6CB.stems.index(stem)]
    return None


def codec_preset(name: str, n_q: int | None = None) -> CodecConfig:
    """The `CodecConfig` of a named preset (`mini`, `tiny`, `musicgen_32khz`), optionally with `n_q`."""
    if name not in CODEC_PRESETS:
        raise MusicGenStemError(f"unknown codec preset '{name}': choose one of {', '.join(CODEC_PRESETS)}")
    make = CODEC_PRESETS[name]
    return make() if n_q is None else make(n_q)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
@dataclass
class CodecTrainConfig:
    """Settings of one codec training run (all serialisable; saved in the checkpoint)."""

    data: list[str]  # roots holding song folders <root>/<song>/<stem>.wav
    stem: str  # stem to train on, e.g. "bass"
    out: str  # run folder: checkpoint.pt, log.jsonl, codec_<stem>.{safetensors,json}
    codec: str | dict[str, Any] = "mini"  # preset name, or a CodecConfig dict (nested or flat form)
    n_q: int | None = None  # codebooks; None: the 6cb layout's count for bass/drums/other, else the preset's
    segment: float = 1.0  # seconds per training crop
    batch_size: int = 8  # per rank
    steps: int = 20000
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    warmup: int = 500
    min_lr_ratio: float = 0.0
    # loss weights (EnCodec/audiocraft defaults)
    w_l1: float = 0.1
    w_msspec: float = 2.0
    w_commit: float = 1.0
    n_mels: int = 64
    mel_scales: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    # multi-resolution linear STFT loss (spectral convergence + log magnitude): long windows resolve
    # bass pitch, which 64 mel bands over 0-16 kHz cannot (their lowest bands are ~40 Hz wide)
    w_stft: float = 0.0
    stft_scales: tuple[int, ...] = (512, 1024, 2048, 4096)
    # chroma loss (1 - per-frame correlation of 12-bin STFT chroma, frames weighted by level): keeps the
    # harmony of tonal stems, which mel and linear STFT losses weigh little against broadband energy
    w_chroma: float = 0.0
    # start from trained weights (a codec_<stem>.safetensors); with freeze_codes only the decoder
    # learns: encoder and codebooks stay as they are, so tokens made with the codec stay valid
    init_from: str | None = None
    freeze_codes: bool = False
    # grow a trained codec (a larger latent, more codebooks): its encoder and first keep_codebooks
    # codebooks stay bit-exact (their tokens stay valid), the new codebooks and the decoder learn
    keep_codebooks: int = 0
    # adversarial (off by default)
    adversarial: bool = False
    w_adv: float = 4.0
    w_feat: float = 4.0
    disc_filters: int = 32
    disc_lr: float = 3e-4
    adv_start: int = 0  # first step with adversarial training
    # optimisation
    ema_decay: float = 0.999  # 0 disables the weight EMA
    grad_clip: float = 10.0  # 0 disables clipping
    amp: bool = True  # bf16 autocast for the codec forward (CUDA only; fp32 on CPU)
    grad_accum: int = 1  # micro-batches of `batch_size` crops per step and process
    fsdp: bool = False  # shard with FSDP2 under torchrun (else DDP)
    stop_at: int | None = None  # stop (checkpoint, export) after this step; the schedule stays `steps`'s
    # data
    num_workers: int = 0
    silence_db: float = -50.0  # crops quieter than this RMS (dBFS) are re-drawn...
    silence_retries: int = 5  # ...up to this many times
    pitch_shift: int = 0  # transpose each crop by a whole number of semitones up to this (resampling)
    memory_cap_gb: float = 2.0  # keep all audio in RAM when it fits, else read crops from disk
    val_fraction: float = 0.1
    val_batches: int = 4
    # bookkeeping
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    val_every: int = 1000
    device: str | None = None  # cpu / cuda / None (cuda if available)
    threads: int | None = None  # torch CPU threads (None: torch default)

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, os.PathLike)):
            self.data = [str(self.data)]
        self.data = [str(d) for d in self.data]
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.mel_scales = tuple(int(s) for s in self.mel_scales)
        self.stft_scales = tuple(int(s) for s in self.stft_scales)
        checks = [
            (bool(self.data), "give at least one data folder"),
            (bool(self.stem), "give a stem name, e.g. --stem bass"),
            (self.steps > 0, f"steps must be > 0, got {self.steps}"),
            (self.batch_size > 0, f"batch size must be > 0, got {self.batch_size}"),
            (self.segment > 0, f"segment must be > 0 seconds, got {self.segment}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (0 <= self.ema_decay < 1, f"ema decay must be in [0, 1), got {self.ema_decay}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (
                self.log_every > 0 and self.checkpoint_every > 0 and self.val_every > 0,
                "log/checkpoint/val intervals must be > 0",
            ),
            (self.num_workers >= 0, f"num workers must be >= 0, got {self.num_workers}"),
            (self.grad_accum >= 1, f"gradient accumulation must be >= 1, got {self.grad_accum}"),
            (self.stop_at is None or self.stop_at >= 1, f"stop-at must be >= 1, got {self.stop_at}"),
            (self.n_q is None or self.n_q >= 1, f"n_q must be >= 1, got {self.n_q}"),
            (0 <= self.pitch_shift <= 12, f"pitch shift must be in [0, 12] semitones: {self.pitch_shift}"),
            (self.w_chroma >= 0, f"chroma loss weight must be >= 0, got {self.w_chroma}"),
            (
                not self.freeze_codes or self.init_from is not None,
                "--freeze-codes keeps a trained codec's codes: give its weights with --init-from",
            ),
            (
                self.keep_codebooks == 0 or self.init_from is not None,
                "--keep-codebooks grows a trained codec: give its weights with --init-from",
            ),
            (
                not (self.keep_codebooks and self.freeze_codes),
                "--keep-codebooks and --freeze-codes both say which codebooks stay: give one",
            ),
            (self.keep_codebooks >= 0, f"--keep-codebooks must be >= 0, got {self.keep_codebooks}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise MusicGenStemError(msg)

    def codec_config(self) -> CodecConfig:
        """The codec's `CodecConfig` (preset or dict, with the `n_q` override)."""
        if isinstance(self.codec, dict):
            try:
                d = dict(self.codec)
                if self.n_q is not None:
                    d["n_q"] = self.n_q
                return CodecConfig.from_dict(d)
            except (TypeError, ValueError) as e:
                raise MusicGenStemError(f"invalid codec config: {e}") from None
        return codec_preset(self.codec, self.n_q if self.n_q is not None else default_n_q(self.stem))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["mel_scales"] = list(self.mel_scales)
        d["stft_scales"] = list(self.stft_scales)
        return d


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `musicgen-stem train-codec` (defaults from `CodecTrainConfig`)."""
    d = CodecTrainConfig(data=["."], stem="x", out=".")
    parser.add_argument("data", nargs="+", help="folders holding song folders <song>/<stem>.wav")
    parser.add_argument(
        "--stem", "-s", required=True, help="stem to train the codec on (bass, drums, other...)"
    )
    parser.add_argument("--out", "-o", required=True, help="run folder (rerun the same command to resume)")
    g = parser.add_argument_group("codec")
    g.add_argument(
        "--codec",
        default=d.codec,
        help=f"codec preset ({', '.join(CODEC_PRESETS)}) or a JSON file holding a CodecConfig dict",
    )
    g.add_argument(
        "--n-q",
        type=int,
        default=None,
        help="number of codebooks (default: bass 1, drums 1, other 4 as in the 6cb layout; "
        "the preset's for other stems)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="start from these trained weights (codec_<stem>.safetensors of the same codec config)",
    )
    g.add_argument(
        "--freeze-codes",
        action="store_true",
        help="train the decoder only: encoder and codebooks stay as --init-from has them, so tokens "
        "already made with that codec (an LM's training data) stay valid",
    )
    g.add_argument(
        "--keep-codebooks",
        type=int,
        default=d.keep_codebooks,
        metavar="N",
        help="grow --init-from into the --codec config (a larger pitch latent, more codebooks): its "
        "encoder and first N codebooks stay bit-exact, so their tokens stay valid; new latent rows "
        "start at zero, the new codebooks (k-means) and the decoder learn",
    )
    g = parser.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps, help="total training steps")
    g.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="N",
        help="stop after step N (checkpoint and export; rerun to continue: the schedule is --steps's)",
    )
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step (per process)")
    g.add_argument("--segment", type=float, default=d.segment, help="seconds per crop")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    g.add_argument("--betas", type=float, nargs=2, default=list(d.betas), help="AdamW betas")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    g.add_argument(
        "--warmup", type=int, default=d.warmup, help="linear warm-up steps before the cosine decay"
    )
    g.add_argument("--ema-decay", type=float, default=d.ema_decay, help="weight EMA decay (0: off)")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    g.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA (always fp32 on CPU)")
    g.add_argument(
        "--grad-accum", type=int, default=d.grad_accum, help="micro-batches per step (gradients accumulated)"
    )
    g = parser.add_argument_group("loss weights")
    g.add_argument("--w-l1", type=float, default=d.w_l1, help="time-domain L1")
    g.add_argument("--w-msspec", type=float, default=d.w_msspec, help="multi-scale mel loss")
    g.add_argument(
        "--mel-scales", type=int, nargs="+", default=list(d.mel_scales), help="FFT sizes of the mel loss"
    )
    g.add_argument("--w-commit", type=float, default=d.w_commit, help="VQ commitment loss")
    g.add_argument("--w-stft", type=float, default=d.w_stft, help="multi-resolution linear STFT loss")
    g.add_argument(
        "--stft-scales", type=int, nargs="+", default=list(d.stft_scales), help="FFT sizes of the STFT loss"
    )
    g.add_argument(
        "--w-chroma", type=float, default=d.w_chroma, help="chroma loss (harmony of tonal stems; 0: off)"
    )
    g.add_argument("--adversarial", action="store_true", help="add a multi-scale STFT discriminator (GPU)")
    g.add_argument("--w-adv", type=float, default=d.w_adv, help="adversarial (hinge) loss")
    g.add_argument("--w-feat", type=float, default=d.w_feat, help="feature-matching loss")
    g = parser.add_argument_group("data")
    g.add_argument("--num-workers", type=int, default=d.num_workers, help="data loader worker processes")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction, help="songs held out (last by name)")
    g.add_argument("--memory-cap-gb", type=float, default=d.memory_cap_gb, help="max audio kept in RAM")
    g.add_argument(
        "--pitch-shift",
        type=int,
        default=d.pitch_shift,
        metavar="SEMITONES",
        help="transpose each training crop by a random whole number of semitones up to this (spreads "
        "the notes a pitch codec sees over its range, and keeps them on the semitone grid)",
    )
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    g.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints"
    )
    g.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the codec with FSDP2 when several processes train (else DDP)",
    )


def config_from_args(args: argparse.Namespace) -> CodecTrainConfig:
    """`CodecTrainConfig` from parsed `add_arguments` options."""
    codec: str | dict[str, Any] = args.codec
    if args.codec not in CODEC_PRESETS:
        path = Path(args.codec)
        if not path.is_file():
            raise MusicGenStemError(
                f"unknown codec '{args.codec}': give a preset ({', '.join(CODEC_PRESETS)}) or a JSON file"
            )
        try:
            codec = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MusicGenStemError(f"cannot read codec config '{path}': {e}") from None
        if not isinstance(codec, dict):
            raise MusicGenStemError(f"codec config '{path}' must hold a JSON object")
    return CodecTrainConfig(
        data=list(args.data),
        stem=args.stem,
        out=args.out,
        codec=codec,
        n_q=args.n_q,
        segment=args.segment,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        betas=tuple(args.betas),
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        w_l1=args.w_l1,
        w_msspec=args.w_msspec,
        w_commit=args.w_commit,
        w_stft=args.w_stft,
        stft_scales=tuple(args.stft_scales),
        w_chroma=args.w_chroma,
        init_from=args.init_from,
        freeze_codes=args.freeze_codes,
        keep_codebooks=args.keep_codebooks,
        adversarial=args.adversarial,
        w_adv=args.w_adv,
        w_feat=args.w_feat,
        ema_decay=args.ema_decay,
        grad_clip=args.grad_clip,
        amp=not args.no_amp,
        grad_accum=args.grad_accum,
        fsdp=args.fsdp,
        stop_at=args.stop_at,
        pitch_shift=args.pitch_shift,
        mel_scales=tuple(args.mel_scales),
        num_workers=args.num_workers,
        val_fraction=args.val_fraction,
        memory_cap_gb=args.memory_cap_gb,
        seed=args.seed,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        val_every=args.val_every,
        device=args.device,
        threads=args.threads,
    )
