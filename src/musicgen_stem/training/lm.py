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
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..conditioning.steps import StepConditioner, StepConfig
from ..conditioning.text import LUTTextEncoder, TextConditioner
from ..errors import MusicGenStemError
from ..generation.tasks import PREFIX_STRIDE
from ..lm.model import Attention, StemLM
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
from .lm_config import LMTrainConfig, add_arguments, changed_settings, config_from_args
from .lm_data import EDIT, TEXT, BatchBuilder, LMBatch, TokenDataset, cat_batches
from .lm_loss import LMWithText, history_noise, stream_names, target_counts

__all__ = [
    "LMTask",
    "LMTrainConfig",
    "add_arguments",
    "config_from_args",
    "main",
    "run",
    "train_lm",
    "validate",
]

MODEL_SUBDIR = "model"
NAME = "train-lm"

# ------------------------------------------------------------------------------------- checkpoint


PARTS = ("lm", "text", "steps")  # the modules of `LMWithText`


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ...]:
    """Combined state (the keys of `LMWithText`) -> (lm state, text state, step conditioner state)."""
    return tuple({k[len(p) + 1 :]: v for k, v in state.items() if k.startswith(p + ".")} for p in PARTS)


def _join(parts: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{"lm": state, "text": state, "steps": state (optional)} -> combined state."""
    return {f"{p}.{k}": v for p in PARTS for k, v in (parts.get(p) or {}).items()}


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
            if parts.steps is not None and src.steps is not None:
                parts.steps.load_state_dict(src.steps.state_dict())
        except RuntimeError as e:
            raise MusicGenStemError(
                f"--init-from '{cfg.init_from}': its text conditioner does not fit '{cfg.model}' "
                f"({str(e).splitlines()[0][:200]})"
            ) from None
    if cfg.dropout is not None:
        parts = set_dropout(parts, cfg.dropout)
    return add_step_conditions(parts, cfg.beat_grid, cfg.chords)


def add_step_conditions(parts: ModelParts, beat: bool, chords: bool) -> ModelParts:
    """`parts` reading the beat grid and/or chords too: the conditions it lacks are added at zero
    (the model's outputs unchanged until they train), those it has keep their weights."""
    old = parts.config.steps
    new = StepConfig(old.beat or beat, old.chords or chords)
    if new == old:
        return parts
    steps = StepConditioner(new, parts.config.lm.dim).to(parts.lm.device)
    if parts.steps is not None:
        steps.load_state_dict(parts.steps.state_dict(), strict=False)
    return replace(parts, config=replace(parts.config, steps=new), steps=steps)


def freeze_except(
    module: nn.Module, heads: Sequence[int], embeddings: Sequence[int], num_streams: int
) -> None:
    """Freeze every weight of `module` (an `LMWithText`) but the output heads of streams `heads`
    and the input embeddings of streams `embeddings`."""
    for flag, streams in (("--train-heads", heads), ("--train-embeddings", embeddings)):
        if streams and max(streams) >= num_streams:
            raise MusicGenStemError(f"{flag} {list(streams)}: the model has streams 0..{num_streams - 1}")
    keep = tuple(f"lm.linears.{k}." for k in heads) + tuple(f"lm.emb.{k}." for k in embeddings)
    for name, p in module.named_parameters():
        p.requires_grad_(name.startswith(keep))


def set_dropout(parts: ModelParts, p: float) -> ModelParts:
    """`parts` with LM dropout `p` (attention and residual), in its modules and its config."""
    for module in parts.lm.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(module, Attention):
            module.dropout = p
    return replace(parts, config=replace(parts.config, lm=replace(parts.config.lm, dropout=p)))


def _silence_tokens(parts: ModelParts) -> list[int]:
    """The model's silence codes (config, else measured on the codecs)."""
    if parts.config.silence_tokens is not None:
        return list(parts.config.silence_tokens)
    return parts.codec.silence_codes()


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
        lr_scales={
            prefix: cfg.steps_lr_scale
            for prefix, named in (("steps.beat.", cfg.beat_grid), ("steps.chord.", cfg.chords))
            if named and cfg.steps_lr_scale != 1.0
        },
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
        codes = batch.codes.to(device)
        inputs = None
        if self.cfg.history_noise > 0 and batch.masked is not None:  # global RNG: seeded per step
            p, card = self.cfg.history_noise, self.builder.layout.card
            inputs = history_noise(codes, batch.masked.to(device), batch.prefix_len, p, card)
        mask = batch.loss_mask.to(device)
        loss, per_stream = model(
            codes, batch.texts, mask, self.norm, inputs, batch.conds, batch.starts, batch.prefix_len
        )
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
        diff = changed_settings(self.cfg, header.get("config", {}))
        if diff:
            raise MusicGenStemError(
                f"'{Path(self.cfg.out) / loop.CHECKPOINT_NAME}' was written with other settings "
                f"({', '.join(diff)}); rerun with the same options to resume, or choose another --out"
            )

    def pack(self, core: dict[str, Any]) -> dict[str, Any]:
        lm_sd, text_sd, steps_sd = _split(core["model"])
        ema = None if core["ema"] is None else dict(zip(PARTS, _split(core["ema"]), strict=True))
        return {
            "step": core["step"],
            "lm": lm_sd,
            "text": text_sd,
            "steps": steps_sd,
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
                "model": _join(state),
                "optimizer": state["optimizer"],
                "ema": None if ema is None else _join(ema),
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
    beat, chords = parts.config.steps.beat, parts.config.steps.chords
    builder = BatchBuilder(
        train_set,
        crop_frames,
        window_frames,
        silence,
        cfg.edit_prob,
        cfg.cond_dropout,
        frame_rate,
        beat,
        chords,
    )
    if chords and not any(t.chords for t in train_set.tracks):
        raise MusicGenStemError(
            "--chords: no track has chord annotations (a synthetic song's meta.json beside its source)"
        )
    valid_builder = (
        BatchBuilder(
            valid_set, crop_frames, window_frames, silence, cfg.edit_prob, 0.0, frame_rate, beat, chords, 0.0
        )
        if valid_set is not None and len(valid_set)
        else None
    )

    module = LMWithText(parts.lm, parts.text, parts.steps, frame_rate)
    if cfg.train_heads or cfg.train_embeddings:
        freeze_except(module, cfg.train_heads, cfg.train_embeddings, layout.num_streams)
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
            codes, mask = batch.codes.to(device), batch.loss_mask.to(device)
            loss, _ = wrapped(
                codes, batch.texts, mask, None, None, batch.conds, batch.starts, batch.prefix_len
            )
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
        lm_sd, text_sd, steps_sd = _split(state)
        # fresh modules: under FSDP the trained ones hold shards
        with torch.device("meta"):  # no random init of a large model: the weights are assigned
            final_lm = StemLM(parts.config.layout, parts.config.lm)
        final_lm.load_state_dict(lm_sd, assign=True)
        encoder = None if isinstance(parts.text.encoder, LUTTextEncoder) else parts.text.encoder
        final_text = TextConditioner(parts.config.text, parts.config.lm.dim, encoder=encoder)
        final_text.load_state_dict(text_sd)
        config = replace(parts.config, silence_tokens=list(silence), max_duration=float(crop_seconds))
        steps = None
        if parts.steps is not None:
            steps = StepConditioner(parts.config.steps, parts.config.lm.dim)
            steps.load_state_dict(steps_sd)
            steps.eval()
        save_model(
            ModelParts(config, final_lm.eval(), final_text.eval(), parts.codec, steps), target, force=True
        )
        print(f"[{NAME}] wrote {target}", flush=True)

    on_main(info, write)
    return target


# --------------------------------------------------------------------------------------------- CLI


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
