"""Train the text-conditioned multi-stem LM (method.md §2-3): `musicgen-stem train-lm`.

One loop for one CPU, one GPU or many processes under torchrun (DDP, or FSDP with `--fsdp`):

    musicgen-stem train-lm --model MODEL --data TOKENS --out RUN --steps 100000
    torchrun --nproc_per_node=8 -m musicgen_stem.training.lm --model MODEL --data TOKENS --out RUN

Every step re-seeds all randomness from (seed, step, rank) and the checkpoint holds the LM, the text
projection, the optimizer and the EMA, so rerunning the same command resumes exactly where a killed
run stopped. Half of the batches (`--edit-prob`) are masked-stem edit batches (method.md §3), built
with the same prefix builder as inference. The result is a complete model folder, `<out>/model/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.text import LUTTextEncoder, TextConditioner, Texts
from ..errors import MusicGenStemError
from ..generation.tasks import PREFIX_STRIDE
from ..lm.model import Block, StemLM
from ..lm.pattern import build_sequence
from ..modeldir import ModelParts, load_model, save_model
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, seed_step, step_seed
from .distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, wrap_ddp
from .lm_data import EDIT, TEXT, BatchBuilder, LMBatch, TokenDataset
from .optim import EMA, build_optimizer, cosine_lr

LOG_FILE = "log.jsonl"
MODEL_SUBDIR = "model"
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
}


@dataclass
class LMTrainConfig:
    """Everything `train_lm` needs. Paths are strings so that the config stores in checkpoints."""

    model: str  # model folder of ours (codecs trained; LM/text weights are the starting point)
    data: list[str]  # token dataset folders (`musicgen-stem prepare`)
    out: str  # run folder: checkpoint.pt, log.jsonl, model/
    steps: int = 100_000
    batch_size: int = 8  # global: split over the processes
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
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, stored in the checkpoint

    def check(self) -> None:
        """Raise MusicGenStemError on settings that cannot work."""
        ints = {"steps": self.steps, "batch size": self.batch_size, "log interval": self.log_every}
        for name, v in ints.items():
            if v <= 0:
                raise MusicGenStemError(f"the {name} must be a positive integer, got {v}")
        for name, v in (
            ("checkpoint interval", self.checkpoint_every),
            ("validation interval", self.validate_every),
        ):
            if v < 0:
                raise MusicGenStemError(f"the {name} must be >= 0, got {v}")
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
        self, codes: torch.Tensor, texts: Texts, loss_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, K, T], loss_mask [B, K, T] bool -> (loss, per-stream losses [K]) by teacher forcing."""
        memory, _ = self.text(texts)  # [B, L, D]
        return sequence_loss(self.lm, codes, memory, loss_mask)


def sequence_loss(
    lm: StemLM, codes: torch.Tensor, memory: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of `lm_loss(*lm.frame_logits(codes, memory), ...)`, computed in step space.

    Equal to taking the frame logits (the output at step t + delays[k] predicts frame t of stream
    k), but without gathering and NaN-filling the [B, K, T, card] logits: the targets and the mask
    are laid out by the delay pattern instead. Positions without a prediction and positions outside
    `loss_mask` are ignored.
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
    count = (targets != -100).sum(dim=(0, 1))  # [K]
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


class _Params(nn.Module):
    """A view whose `state_dict()` is the parameters of `target` (local shards under FSDP), for EMA."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "target", target)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {n: p for n, p in self.target.named_parameters()}  # type: ignore[attr-defined]


@contextmanager
def _swapped(params: _Params, ema: EMA) -> Iterator[None]:
    """Inside, the parameters hold the EMA values (and the EMA the raw ones); swapped back on exit."""

    def swap() -> None:
        with torch.no_grad():
            for name, p in params.state_dict().items():
                tmp = p.detach().clone()
                p.copy_(ema.shadow[name])
                ema.shadow[name].copy_(tmp)

    swap()
    try:
        yield
    finally:
        swap()


def _wrap(module: LMWithText, info: DistInfo, fsdp: bool) -> nn.Module:
    """FSDP (one unit per transformer block) with `fsdp` on several processes, else DDP / the module."""
    if fsdp and info.world_size > 1:
        if info.device.type != "cuda":
            raise MusicGenStemError("--fsdp needs CUDA devices; drop it to train with DDP on CPU")
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return FullyShardedDataParallel(
            module,
            auto_wrap_policy=ModuleWrapPolicy({Block}),
            use_orig_params=True,
            device_id=info.device if info.device.type == "cuda" else None,
        )
    return wrap_ddp(module, info)


class _State:
    """Full (unsharded) state dicts of the wrapped model and optimizer, the same code for all wrappers."""

    def __init__(self, wrapped: nn.Module, optim: torch.optim.Optimizer) -> None:
        from torch.distributed.checkpoint import state_dict as dcp

        self.dcp = dcp
        self.wrapped = wrapped
        self.optim = optim
        self.get_opts = dcp.StateDictOptions(full_state_dict=True, cpu_offload=True)
        self.set_opts = dcp.StateDictOptions(full_state_dict=True)

    def model(self) -> dict[str, torch.Tensor]:
        return self.dcp.get_model_state_dict(self.wrapped, options=self.get_opts)

    def load_model(self, state: dict[str, torch.Tensor]) -> None:
        self.dcp.set_model_state_dict(self.wrapped, state, options=self.set_opts)

    def optimizer(self) -> dict[str, Any]:
        return self.dcp.get_optimizer_state_dict(self.wrapped, self.optim, options=self.get_opts)

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.dcp.set_optimizer_state_dict(self.wrapped, self.optim, state, options=self.set_opts)


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


def _amp(cfg: LMTrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp != "none" and device.type != "cuda":
        raise MusicGenStemError(f"--amp {amp} needs a CUDA device; use --amp none on {device.type}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def _check_resume(cfg: LMTrainConfig, saved: dict[str, Any]) -> list[str]:
    """Names of the settings that differ from the checkpoint's (other than the resumable ones)."""
    now = asdict(cfg)
    return sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])


class _Logger:
    """stdout lines and `log.jsonl` on the main process."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.path = out / LOG_FILE
        self.enabled = enabled

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        keys = [k for k in record if not isinstance(record[k], dict)]
        line = " ".join(
            f"{k}={record[k]:.4g}" if isinstance(record[k], float) else f"{k}={record[k]}" for k in keys
        )
        print(f"[train-lm] {line}", flush=True)


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


def _train(cfg: LMTrainConfig, info: DistInfo) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise MusicGenStemError(f"--out '{out}' exists and is not a folder")
    if cfg.batch_size % info.world_size:
        raise MusicGenStemError(
            f"the batch size {cfg.batch_size} is not divisible by the {info.world_size} processes"
        )
    local_batch = cfg.batch_size // info.world_size
    device = info.device
    amp_dtype = _amp(cfg, device)

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

    module = LMWithText(parts.lm, parts.text).to(device)
    wrapped = _wrap(module, info, cfg.fsdp)
    optim = build_optimizer(wrapped, cfg.lr, weight_decay=cfg.weight_decay)
    params = _Params(wrapped)
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    states = _State(wrapped, optim)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    names = stream_names(parts)
    log = _Logger(out, info.is_main)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    ckpt_path = out / CHECKPOINT_NAME
    start = 0
    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None:
        start = _restore(ckpt, cfg, states, params, ema, scaler, ckpt_path)
        if info.is_main:
            print(f"[train-lm] resuming from step {start} ({ckpt_path})", flush=True)
    elif info.is_main:
        n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        hours = train_set.total_frames / frame_rate / 3600
        n_valid = len(valid_set) if valid_set is not None else 0
        print(
            f"[train-lm] {len(train_set)} training tracks ({hours:.2f} h), {n_valid} validation; "
            f"{n_params / 1e6:.2f} M parameters; "
            f"crop {crop_frames} frames, edit window {window_frames} frames; {info.world_size} process(es) "
            f"on {device}",
            flush=True,
        )

    def save(step: int) -> None:
        model_state = states.model()
        ema_state = None
        if ema is not None:
            with _swapped(params, ema):
                ema_state = states.model()
        optim_state = states.optimizer()
        if info.is_main:
            lm_sd, text_sd = _split(model_state)
            save_checkpoint(
                ckpt_path,
                {
                    "step": step,
                    "lm": lm_sd,
                    "text": text_sd,
                    "optimizer": optim_state,
                    "ema": None
                    if ema_state is None
                    else dict(zip(("lm", "text"), _split(ema_state), strict=True)),
                    "scaler": None if scaler is None else scaler.state_dict(),
                    "config": asdict(cfg),
                },
            )
        barrier()

    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    window: dict[str, Any] = {"t": time.perf_counter(), "steps": 0, "tokens": 0}
    step = start
    for step in range(start, cfg.steps):
        gen = seed_step(cfg.seed, step, info.rank)  # per-rank data + global RNG (dropout)
        shared = torch.Generator().manual_seed(step_seed(cfg.seed, step, 0) + 1)  # same on all ranks
        kind, drop = builder.decide(shared)
        batch = builder.build(local_batch, gen, kind, drop)
        lr = cfg.lr * cosine_lr(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio)
        for g in optim.param_groups:
            g["lr"] = lr
        wrapped.train()
        loss, per_stream, gnorm = _step(wrapped, optim, batch, device, autocast, scaler, cfg.grad_clip)
        if ema is not None:
            ema.update(params)
        window["steps"] += 1
        window["tokens"] += cfg.batch_size * batch.codes.shape[1] * batch.codes.shape[2]
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            stats = all_reduce_mean(torch.cat([loss.detach().float().reshape(1), per_stream.float()]).cpu())
            elapsed = max(time.perf_counter() - window["t"], 1e-9)
            log(
                {
                    "step": done,
                    "kind": batch.kind,
                    "loss": float(stats[0]),
                    f"loss_{batch.kind}": float(stats[0]),
                    "lr": lr,
                    "grad_norm": gnorm,
                    "steps_per_s": window["steps"] / elapsed,
                    "tokens_per_s": window["tokens"] / elapsed,
                    "loss_per_stream": {n: float(v) for n, v in zip(names, stats[1:].tolist(), strict=True)},
                }
            )
            window = {"t": time.perf_counter(), "steps": 0, "tokens": 0}
        if valid_builder is not None and cfg.validate_every and done % cfg.validate_every == 0:
            log({"step": done, **validate(wrapped, valid_builder, cfg, local_batch, device, autocast)})
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps:
            save(done)
    if start >= cfg.steps and info.is_main:
        print(f"[train-lm] already trained for {start} steps: writing the model", flush=True)
    return _write_model(parts, states, params, ema, silence, crop_seconds, out, info)


def _restore(
    ckpt: dict[str, Any],
    cfg: LMTrainConfig,
    states: _State,
    params: _Params,
    ema: EMA | None,
    scaler: torch.amp.GradScaler | None,
    path: Path,
) -> int:
    """Load a checkpoint into the model/optimizer/EMA; returns its step."""
    saved = ckpt.get("config", {})
    diff = _check_resume(cfg, saved)
    if diff:
        raise MusicGenStemError(
            f"'{path}' was written with other settings ({', '.join(diff)}); rerun with the same options "
            "to resume, or choose another --out"
        )
    try:
        if ema is not None:
            if ckpt.get("ema") is None:
                raise MusicGenStemError(f"'{path}' holds no EMA weights but --ema-decay is set")
            states.load_model(_join(ckpt["ema"]["lm"], ckpt["ema"]["text"]))
            with torch.no_grad():
                for name, p in params.state_dict().items():
                    ema.shadow[name].copy_(p)
        states.load_model(_join(ckpt["lm"], ckpt["text"]))
        states.load_optimizer(ckpt["optimizer"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise MusicGenStemError(
            f"cannot resume from '{path}' ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "move it away to start afresh"
        ) from None
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return int(ckpt["step"])


def _step(
    wrapped: nn.Module,
    optim: torch.optim.Optimizer,
    batch: LMBatch,
    device: torch.device,
    autocast: Any,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimisation step; returns (loss, per-stream losses [K], grad norm before clipping)."""
    codes = batch.codes.to(device)  # [B, K, T]
    with autocast:
        loss, per_stream = wrapped(codes, batch.texts, batch.loss_mask.to(device))
    optim.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optim)
    else:
        loss.backward()
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: norm over all shards
        gnorm = wrapped.clip_grad_norm_(max_norm)
    else:
        gnorm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), max_norm)
    if scaler is not None:
        scaler.step(optim)
        scaler.update()
    else:
        optim.step()
    return loss.detach(), per_stream, float(gnorm)


@torch.no_grad()
def validate(
    wrapped: nn.Module,
    builder: BatchBuilder,
    cfg: LMTrainConfig,
    batch_size: int,
    device: torch.device,
    autocast: Any,
) -> dict[str, float]:
    """Loss on `cfg.valid_batches` fixed batches (text and edit alternating), all texts kept."""
    wrapped.eval()
    losses: dict[str, list[float]] = {TEXT: [], EDIT: []}
    for i in range(cfg.valid_batches):
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, 10**9 + i, 0))
        kind = EDIT if (i % 2 and builder.edit_prob > 0) else TEXT
        batch = builder.build(batch_size, gen, kind, False)
        codes = batch.codes.to(device)
        with autocast:
            loss, _ = wrapped(codes, batch.texts, batch.loss_mask.to(device))
        losses[kind].append(float(all_reduce_mean(loss.detach().float().cpu())))
    wrapped.train()
    out = {f"valid_loss_{k}": sum(v) / len(v) for k, v in losses.items() if v}
    every = [x for v in losses.values() for x in v]
    out["valid_loss"] = sum(every) / len(every)
    return out


def _write_model(
    parts: ModelParts,
    states: _State,
    params: _Params,
    ema: EMA | None,
    silence: list[int],
    crop_seconds: float,
    out: Path,
    info: DistInfo,
) -> Path:
    """Write `<out>/model/` (EMA weights if enabled; codecs as loaded) on the main process."""
    if ema is not None:
        with _swapped(params, ema):
            state = states.model()
    else:
        state = states.model()
    target = out / MODEL_SUBDIR
    if info.is_main:
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
        print(f"[train-lm] wrote {target}", flush=True)
    barrier()
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
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (split over processes)")
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
        help="shard the model with FSDP when several processes train (else DDP)",
    )
    g.add_argument("--num-threads", type=int, default=None, help="torch CPU threads per process")


def config_from_args(args: argparse.Namespace) -> LMTrainConfig:
    return LMTrainConfig(
        model=str(args.model),
        data=[str(d) for d in args.data],
        out=str(args.out),
        steps=args.steps,
        batch_size=args.batch_size,
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
        num_threads=args.num_threads,
    )


def run(args: argparse.Namespace) -> int:
    """`musicgen-stem train-lm`: MusicGenStemError propagates to the CLI's one-line handler."""
    train_lm(config_from_args(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m musicgen_stem.training.lm ...` (e.g. under torchrun)."""
    from ..cli import module_main

    return module_main(sys.modules[__name__], "musicgen-stem train-lm", argv)


if __name__ == "__main__":
    sys.exit(main())
