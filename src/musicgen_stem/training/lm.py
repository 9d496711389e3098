"""Train the text-conditioned multi-stem LM (method.md §2-3): `musicgen-stem train-lm`.

The shared training loop (`training/loop.py`) runs it on one CPU, one GPU or many processes under
torchrun (DDP, or FSDP2 with `--fsdp`, one shard unit per transformer block):

    musicgen-stem train-lm --model MODEL --data TOKENS --out RUN --steps 100000
    torchrun --nproc_per_node=8 -m musicgen_stem.training.lm --model MODEL --data TOKENS --out RUN --fsdp

`--batch-size` is the global batch: item i of step s is drawn from its own generator, seeded by
(seed, s, i), and the processes (and `--grad-accum` micro-batches) split the items, so the batches
do not depend on how many processes train. The loss is normalised by the global batch's token
count per stream, so N processes compute the gradients of one process with the same batch. Half
of the batches (`--edit-prob`) are masked-stem edit batches (method.md §3), built with the same
prefix builder as inference. The checkpoint holds the LM, the text projection, the optimizer and
the EMA; rerunning the same command resumes exactly where a killed run stopped. The result is a
complete model folder, `<out>/model/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.text import LUTTextEncoder, TextConditioner, Texts
from ..errors import MusicGenStemError
from ..generation.tasks import PREFIX_STRIDE
from ..layout import StemLayout
from ..lm.model import StemLM
from ..lm.pattern import build_sequence
from ..modeldir import ModelParts, load_model, save_model
from . import loop
from .checkpoint import step_seed
from .distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    cleanup,
    distributed,
    init_distributed,
    on_main,
)
from .lm_data import EDIT, TEXT, BatchBuilder, LMBatch, TokenDataset, cat_batches

MODEL_SUBDIR = "model"
AMP_CHOICES = ("auto", "bf16", "fp16", "none")
NAME = "train-lm"
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
        if self.grad_clip < 0 or not 0 <= self.ema_decay < 1:
            raise MusicGenStemError("grad clip must be >= 0 and the EMA decay in [0, 1)")
        for name, p in (("edit probability", self.edit_prob), ("condition dropout", self.cond_dropout)):
            if not 0 <= p <= 1:
                raise MusicGenStemError(f"the {name} must be in [0, 1], got {p}")
        if self.crop_seconds is not None and not self.crop_seconds > 0:
            raise MusicGenStemError(f"the crop must be > 0 seconds, got {self.crop_seconds}")
        if self.amp not in AMP_CHOICES:
            raise MusicGenStemError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if not self.data:
            raise MusicGenStemError("give at least one token dataset with --data")


# ------------------------------------------------------------------------------------------- model


class LMWithText(nn.Module):
    """The trainable pair: text conditioner and LM, as one module for DDP/FSDP."""

    def __init__(self, lm: StemLM, text: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self.text = text

    def forward(
        self, codes: torch.Tensor, texts: Texts, loss_mask: torch.Tensor, norm: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, K, T], loss_mask [B, K, T] bool -> (loss, per-stream losses [K]) by teacher
        forcing; `norm` [K]: token counts to divide by (see `sequence_loss`)."""
        memory, _ = self.text(texts)  # [B, L, D]
        return sequence_loss(self.lm, codes, memory, loss_mask, norm)


def target_counts(layout: StemLayout, loss_mask: torch.Tensor) -> torch.Tensor:
    """Positions per stream that count in `sequence_loss` for loss_mask [B, K, T] -> [K] long."""
    step_mask, _ = build_sequence(loss_mask.long(), layout.delays, 0, valid_steps_only=True)  # [B, K, T+1]
    return step_mask[:, :, 1:].sum(dim=(0, 2))


def sequence_loss(
    lm: StemLM,
    codes: torch.Tensor,
    memory: torch.Tensor,
    loss_mask: torch.Tensor,
    norm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of `lm_loss(*lm.frame_logits(codes, memory), ...)`, computed in step space.

    Equal to taking the frame logits (the output at step t + delays[k] predicts frame t of stream
    k), but without gathering and NaN-filling the [B, K, T, card] logits: the targets and the mask
    are laid out by the delay pattern instead. Positions without a prediction and positions outside
    `loss_mask` are ignored. norm [K]: divide each stream's summed cross-entropy by these counts
    (those of a whole global batch, `target_counts`) instead of this batch's own; the streams
    averaged are those with norm > 0.
    """
    layout = lm.layout
    seq, _ = build_sequence(codes, layout.delays, layout.special_token, valid_steps_only=True)  # [B, K, T+1]
    # frame mask laid out like the codes; 0 outside the pattern
    step_mask, _ = build_sequence(loss_mask.long(), layout.delays, 0, valid_steps_only=True)  # [B, K, T+1]
    logits = lm(seq, memory)  # [B, T+1, K, card]: step s predicts step s + 1
    B, S, K, card = logits.shape
    targets = seq[:, :, 1:].masked_fill(step_mask[:, :, 1:] == 0, -100)  # [B, K, T]
    targets = F.pad(targets, (0, 1), value=-100).transpose(1, 2)  # [B, S, K]: last step predicts nothing
    ce = F.cross_entropy(
        logits.reshape(-1, card).float(), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).view(B, S, K)
    count = (targets != -100).sum(dim=(0, 1)) if norm is None else norm.to(ce.device)  # [K]
    per_stream = ce.sum(dim=(0, 1)) / count.clamp(min=1)
    has = count > 0
    loss = per_stream[has].mean() if bool(has.any()) else ce.sum() * 0.0
    return loss, per_stream.detach()


def lm_loss(
    logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per stream, averaged over the streams, on frame logits (reference for `sequence_loss`).

    Args:
        logits: [B, K, T, card] (may hold NaN outside `mask`).
        codes: [B, K, T] targets.
        mask: [B, K, T] bool, positions that count.
    Returns:
        the loss (scalar) and the per-stream losses [K] (detached; 0 for a stream without positions).
    """
    card = logits.shape[-1]
    logits = torch.where(mask[..., None], logits.float(), torch.zeros((), device=logits.device))
    targets = codes.masked_fill(~mask, -100)
    ce = F.cross_entropy(logits.reshape(-1, card), targets.reshape(-1), ignore_index=-100, reduction="none")
    ce = ce.view_as(codes)  # [B, K, T]
    count = mask.sum(dim=(0, 2))  # [K]
    per_stream = ce.sum(dim=(0, 2)) / count.clamp(min=1)
    has = count > 0
    loss = per_stream[has].mean() if bool(has.any()) else ce.sum() * 0.0
    return loss, per_stream.detach()


def stream_names(parts: ModelParts) -> list[str]:
    """bass0, drums0, other0..3: one name per stream for logs."""
    layout = parts.config.layout
    return [f"{s}{i}" for s in layout.stems for i in range(len(layout.streams_of(s)))]


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Combined state -> (lm state, text state)."""
    lm = {k[3:]: v for k, v in state.items() if k.startswith("lm.")}
    text = {k[5:]: v for k, v in state.items() if k.startswith("text.")}
    return lm, text


def _join(lm: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**{f"lm.{k}": v for k, v in lm.items()}, **{f"text.{k}": v for k, v in text.items()}}


# ------------------------------------------------------------------------------------------- setup


def _load_parts(cfg: LMTrainConfig) -> ModelParts:
    parts = load_model(cfg.model)
    if cfg.init_from is not None:
        src = load_model(cfg.init_from)
        if src.config.layout != parts.config.layout or src.config.lm != parts.config.lm:
            raise MusicGenStemError(
                f"--init-from '{cfg.init_from}' has another layout or LM size than '{cfg.model}'"
            )
        try:
            parts.lm.load_state_dict(src.lm.state_dict())
            parts.text.load_state_dict(src.text.state_dict())
        except RuntimeError as e:
            raise MusicGenStemError(
                f"--init-from '{cfg.init_from}': its text conditioner does not fit '{cfg.model}' "
                f"({str(e).splitlines()[0][:200]})"
            ) from None
    return parts


def _silence_tokens(parts: ModelParts) -> list[int]:
    """The model's silence codes (config, else measured on the codecs)."""
    if parts.config.silence_tokens is not None:
        return list(parts.config.silence_tokens)
    return parts.codec.silence_codes()


def _check_resume(cfg: LMTrainConfig, saved: dict[str, Any]) -> list[str]:
    """Names of the settings that differ from the checkpoint's (other than the resumable ones);
    a setting the checkpoint predates counts as its default."""
    now = asdict(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(LMTrainConfig)}
    return sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != now[k])


# ------------------------------------------------------------------------------------------- train


def train_lm(cfg: LMTrainConfig) -> Path:
    """Train (or resume training) and write `<out>/model/`; returns that folder."""
    cfg.check()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, info)
    finally:
        cleanup()


def loop_config(cfg: LMTrainConfig, amp: str) -> loop.LoopConfig:
    """The shared loop's settings of this run (`amp` resolved by `loop.amp_setting`)."""
    return loop.LoopConfig(
        name=NAME,
        steps=cfg.steps,
        lr=cfg.lr,
        warmup=cfg.warmup,
        min_lr_ratio=cfg.min_lr_ratio,
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.95),
        grad_clip=cfg.grad_clip,
        ema_decay=cfg.ema_decay,
        grad_accum=cfg.grad_accum,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        seed=cfg.seed,
        amp=amp,
        fsdp=cfg.fsdp,
        stop_at=cfg.stop_at,
    )


class LMTask(loop.Task):
    """What LM training plugs into the shared loop: batches, loss, validation, checkpoint layout."""

    def __init__(
        self,
        cfg: LMTrainConfig,
        info: DistInfo,
        builder: BatchBuilder,
        valid_builder: BatchBuilder | None,
        names: list[str],
    ) -> None:
        self.cfg, self.info, self.names = cfg, info, names
        self.builder, self.valid_builder = builder, valid_builder
        self.local = cfg.batch_size // info.world_size  # items per process and step
        self.norm: torch.Tensor | None = None  # [K] token counts of the step's global batch
        self.kind, self.tokens, self.steps = TEXT, 0, 0

    def micro_batches(self, step: int) -> list[LMBatch]:
        """This process's share of the global batch, `grad_accum` micro-batches. The kind and the
        condition dropout are drawn once per step (the same on every process), item i with its
        own generator: the batch is the same however many processes split it."""
        cfg = self.cfg
        shared = torch.Generator().manual_seed(step_seed(cfg.seed, step, 0) + 1)
        kind, drop = self.builder.decide(shared)
        first = self.info.rank * self.local
        items = [
            self.builder.build(1, torch.Generator().manual_seed(step_seed(cfg.seed, step, i) + 2), kind, drop)
            for i in range(first, first + self.local)
        ]
        size = self.local // cfg.grad_accum
        return [cat_batches(items[i : i + size]) for i in range(0, self.local, size)]

    def begin_step(self, step: int, micro: list[LMBatch]) -> None:
        counts = sum(target_counts(self.builder.layout, b.loss_mask) for b in micro)
        self.norm = all_reduce_sum(counts.to(self.info.device))  # type: ignore[union-attr]
        self.kind = micro[0].kind
        B, K, T = micro[0].codes.shape
        self.tokens += self.cfg.batch_size * K * T
        self.steps += 1

    def loss(self, model: nn.Module, batch: LMBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        device, world = self.info.device, self.info.world_size
        loss, per_stream = model(batch.codes.to(device), batch.texts, batch.loss_mask.to(device), self.norm)
        loss = loss * world  # this item's share of the global loss; DDP/FSDP average over the ranks
        terms = {
            "loss": loss.detach(),
            f"loss_{batch.kind}": loss.detach(),
            "loss_per_stream": per_stream * world,
        }
        return loss, terms

    def log_extra(self, record: dict[str, Any]) -> None:
        record["kind"] = self.kind
        record["loss_per_stream"] = dict(zip(self.names, record.pop("loss_per_stream"), strict=True))
        record["tokens_per_s"] = record["steps_per_s"] * self.tokens / max(1, self.steps)
        self.tokens = self.steps = 0

    def validate(self, trainer: loop.Trainer, done: int) -> dict[str, float] | None:
        cfg = self.cfg
        if self.valid_builder is None or not cfg.validate_every or done % cfg.validate_every:
            return None
        return validate(
            trainer.wrapped, self.valid_builder, cfg, self.local, self.info.device, trainer.autocast()
        )

    def check_resume(self, header: dict[str, Any]) -> None:
        diff = _check_resume(self.cfg, header.get("config", {}))
        if diff:
            raise MusicGenStemError(
                f"'{Path(self.cfg.out) / loop.CHECKPOINT_NAME}' was written with other settings "
                f"({', '.join(diff)}); rerun with the same options to resume, or choose another --out"
            )

    def pack(self, core: dict[str, Any]) -> dict[str, Any]:
        lm_sd, text_sd = _split(core["model"])
        ema = None if core["ema"] is None else dict(zip(("lm", "text"), _split(core["ema"]), strict=True))
        return {
            "step": core["step"],
            "lm": lm_sd,
            "text": text_sd,
            "optimizer": core["optimizer"],
            "ema": ema,
            "scaler": core["scaler"],
            "config": asdict(self.cfg),
        }

    def unpack(self, state: dict[str, Any]) -> dict[str, Any]:
        path = Path(self.cfg.out) / loop.CHECKPOINT_NAME
        if self.cfg.ema_decay > 0 and state.get("ema") is None:
            raise MusicGenStemError(f"'{path}' holds no EMA weights but --ema-decay is set")
        try:
            ema = state.get("ema")
            return {
                "model": _join(state["lm"], state["text"]),
                "optimizer": state["optimizer"],
                "ema": None if ema is None else _join(ema["lm"], ema["text"]),
                "scaler": state.get("scaler"),
            }
        except (KeyError, TypeError) as e:
            raise MusicGenStemError(
                f"cannot resume from '{path}' ({type(e).__name__}: {e}); move it away to start afresh"
            ) from None


def _train(cfg: LMTrainConfig, info: DistInfo) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise MusicGenStemError(f"--out '{out}' exists and is not a folder")
    if cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise MusicGenStemError(
            f"the batch size {cfg.batch_size} is not divisible by the {info.world_size} process(es) "
            f"x {cfg.grad_accum} accumulation step(s)"
        )
    amp = loop.amp_setting(cfg.amp, info.device)

    parts = _load_parts(cfg)
    layout, mcfg = parts.config.layout, parts.config
    frame_rate = float(parts.codec.frame_rate)
    silence = _silence_tokens(parts)
    crop_seconds = cfg.crop_seconds if cfg.crop_seconds is not None else mcfg.max_duration
    crop_frames = round(crop_seconds * frame_rate)
    window_frames = round(mcfg.edit_window * frame_rate)
    window_frames -= window_frames % PREFIX_STRIDE
    train_set = TokenDataset(cfg.data, layout, frame_rate, "train", cfg.valid_fraction)
    valid_set = (
        TokenDataset(cfg.data, layout, frame_rate, "valid", cfg.valid_fraction)
        if cfg.valid_fraction > 0 and cfg.validate_every > 0 and cfg.valid_batches > 0
        else None
    )
    builder = BatchBuilder(train_set, crop_frames, window_frames, silence, cfg.edit_prob, cfg.cond_dropout)
    valid_builder = (
        BatchBuilder(valid_set, crop_frames, window_frames, silence, cfg.edit_prob, 0.0)
        if valid_set is not None and len(valid_set)
        else None
    )

    module = LMWithText(parts.lm, parts.text)
    blocks = list(parts.lm.transformer.layers)
    trainer = loop.build_trainer(module, info, loop_config(cfg, amp), units=blocks)
    task = LMTask(cfg, info, builder, valid_builder, stream_names(parts))
    if info.is_main:
        n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        hours = train_set.total_frames / frame_rate / 3600
        n_valid = len(valid_set) if valid_set is not None else 0
        mode = f" ({'FSDP' if cfg.fsdp else 'DDP'})" if distributed() else ""
        print(
            f"[{NAME}] {len(train_set)} training tracks ({hours:.2f} h), {n_valid} validation; "
            f"{n_params / 1e6:.2f} M parameters; crop {crop_frames} frames, edit window {window_frames} "
            f"frames; {info.world_size} process(es){mode} on {info.device}, amp {amp}",
            flush=True,
        )
    start = loop.run(trainer, task, out)
    if start >= trainer.cfg.end and info.is_main:
        print(f"[{NAME}] already trained for {start} steps: writing the model", flush=True)
    return _write_model(parts, trainer, silence, crop_seconds, out, info)


@torch.no_grad()
def validate(
    wrapped: nn.Module,
    builder: BatchBuilder,
    cfg: LMTrainConfig,
    batch_size: int,
    device: torch.device,
    autocast: Any,
) -> dict[str, float]:
    """Loss on `cfg.valid_batches` fixed batches (text and edit alternating), all texts kept; every
    process runs the same batches (FSDP needs every process in each forward)."""
    wrapped.eval()
    losses: dict[str, list[float]] = {TEXT: [], EDIT: []}
    for i in range(cfg.valid_batches):
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, 10**9 + i, 0))
        kind = EDIT if (i % 2 and builder.edit_prob > 0) else TEXT
        batch = builder.build(batch_size, gen, kind, False)
        with autocast:
            loss, _ = wrapped(batch.codes.to(device), batch.texts, batch.loss_mask.to(device))
        losses[kind].append(float(all_reduce_mean(loss.detach().float())))
    wrapped.train()
    out = {f"valid_loss_{k}": sum(v) / len(v) for k, v in losses.items() if v}
    every = [x for v in losses.values() for x in v]
    out["valid_loss"] = sum(every) / len(every)
    return out


def _write_model(
    parts: ModelParts,
    trainer: loop.Trainer,
    silence: list[int],
    crop_seconds: float,
    out: Path,
    info: DistInfo,
) -> Path:
    """Write `<out>/model/` (EMA weights if enabled; codecs as loaded) on the main process."""
    state = trainer.model_state(ema=True)  # every process: the shards are gathered
    target = out / MODEL_SUBDIR

    def write() -> None:
        lm_sd, text_sd = _split(state)
        # fresh modules: under FSDP the trained ones hold shards
        with torch.device("meta"):  # no random init of a large model: the weights are assigned
            final_lm = StemLM(parts.config.layout, parts.config.lm)
        final_lm.load_state_dict(lm_sd, assign=True)
        encoder = None if isinstance(parts.text.encoder, LUTTextEncoder) else parts.text.encoder
        final_text = TextConditioner(parts.config.text, parts.config.lm.dim, encoder=encoder)
        final_text.load_state_dict(text_sd)
        config = replace(parts.config, silence_tokens=list(silence), max_duration=float(crop_seconds))
        save_model(ModelParts(config, final_lm.eval(), final_text.eval(), parts.codec), target, force=True)
        print(f"[{NAME}] wrote {target}", flush=True)

    on_main(info, write)
    return target


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


def run(args: argparse.Namespace) -> int:
    """`musicgen-stem train-lm`: MusicGenStemError propagates to the CLI's one-line handler."""
    train_lm(config_from_args(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m musicgen_stem.training.lm ...` (e.g. under torchrun)."""
    from ..commands.options import module_main

    return module_main(sys.modules[__name__], "musicgen-stem train-lm", argv)


if __name__ == "__main__":
    sys.exit(main())
