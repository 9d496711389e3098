"""The one training loop of `train-lm` and `train-codec`: one CPU, one GPU or torchrun (DDP, FSDP).

A trainer hands `run` its model and a `Task` (batches, loss, checkpoint layout, extras); the loop
does the rest, the same way for both:

- device and precision: bf16/fp16 autocast on CUDA (fp16 with a grad scaler, the sharded one
  under FSDP); codebooks stay float32 (the quantizer turns autocast off);
- wrapping: DDP, or FSDP2 (`fully_shard` on the task's units, then the whole model); the
  weight-decay roles are decided on the unsharded model (`optim.decay_groups`);
- each step: learning rate, the task's micro-batches with gradient accumulation (gradients are
  reduced on the last one only), the unscaled gradient norm and clipping, the optimizer, the EMA;
- logs: running sums kept on the device, reduced over ranks on the backend's device at log steps,
  written by rank 0 (stdout and `log.jsonl`, entries after the resumed step dropped);
- checkpoints: full state dicts gathered from every rank, written by rank 0 (atomically); on
  resume rank 0 reads the file and broadcasts its step and settings, then the weights;
- work done by rank 0 alone reports failure to every rank (`distributed.on_main`).

Losses follow one convention: `Task.loss` returns the loss to backpropagate, scaled so that the
gradients summed over micro-batches and averaged over ranks are the gradients of the global
batch's loss, and detached terms whose sum over micro-batches, averaged over ranks, is the value
to log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint import state_dict as dcp

from ..errors import MusicGenStemError
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, seed_step
from .distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_object,
    distributed,
    on_main,
    reshard,
    wrap_model,
)
from .optim import EMA, build_optimizer, cosine_lr, decay_groups, set_lr

LOG_FILE = "log.jsonl"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


@dataclass
class LoopConfig:
    """The settings the loop reads (each trainer maps its own config to these)."""

    name: str  # log prefix, e.g. "train-lm"
    steps: int
    lr: float
    warmup: int = 0
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 0.0  # 0: no clipping (the norm is still logged)
    ema_decay: float = 0.0  # 0: no EMA
    ema_warmup: bool = False  # decay min(ema_decay, (1 + step) / (10 + step))
    grad_accum: int = 1
    log_every: int = 10
    checkpoint_every: int = 0  # 0: at the end only
    seed: int = 0
    amp: str = "none"  # bf16, fp16 or none (resolved by `amp_setting`)
    fsdp: bool = False
    stop_at: int | None = None  # stop after this step (checkpoint written); the schedule is `steps`'s
    lr_scales: dict[str, float] | None = None  # {parameter name prefix: lr multiplier} (`build_optimizer`)

    @property
    def end(self) -> int:
        """The step this run stops at: `steps`, or `stop_at` if earlier."""
        return self.steps if self.stop_at is None else min(self.steps, self.stop_at)


def amp_setting(amp: str, device: torch.device) -> str:
    """`auto` -> bf16 on CUDA (fp16 where bf16 is not supported), none on CPU; checks the rest."""
    if amp == "auto":
        if device.type != "cuda":
            return "none"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp not in AMP_DTYPES:
        raise MusicGenStemError(f"unknown mixed precision '{amp}': choose auto, {', '.join(AMP_DTYPES)}")
    if amp != "none" and device.type != "cuda":
        raise MusicGenStemError(f"--amp {amp} needs a CUDA device; use --amp none on {device.type}")
    return amp


class Task:
    """What a trainer plugs into `run`. Every method runs on every rank (collectives allowed)."""

    def begin(self, start: int) -> None:
        """Once, before the first step run (`start`: the step resumed from, else 0)."""

    def micro_batches(self, step: int) -> list[Any]:
        """This rank's micro-batches of `step` (one without gradient accumulation)."""
        raise NotImplementedError

    def begin_step(self, step: int, micro: list[Any]) -> None:
        """Before the micro-batches run (e.g. count the global batch's tokens)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to backpropagate, detached terms to log); see the module docstring."""
        raise NotImplementedError

    def end_step(self, step: int) -> dict[str, torch.Tensor]:
        """After the optimizer step (e.g. a discriminator's step); more terms to log."""
        return {}

    def log_extra(self, record: dict[str, Any]) -> None:
        """Add to or reshape a log record before rank 0 writes it."""

    def validate(self, trainer: Trainer, done: int) -> dict[str, float] | None:
        """Validation after `done` steps, or None when none is due; rank 0's result is logged."""
        return None

    def check_resume(self, header: dict[str, Any]) -> None:
        """Raise MusicGenStemError if a checkpoint's settings (its tensor-free entries) do not fit."""

    def pack(self, core: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint file's content from the loop's states (see `Trainer.states`)."""
        return core

    def unpack(self, state: dict[str, Any]) -> dict[str, Any]:
        """Inverse of `pack` (on rank 0)."""
        return state


@dataclass
class Trainer:
    """The model side of a run: the module, its wrapper, optimizer, EMA, scaler and extra parts."""

    model: nn.Module  # the module itself (sharded in place under FSDP): names and state dicts
    wrapped: nn.Module  # what forward and backward run on (DDP wrapper, or `model`)
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    scaler: Any  # torch.amp.GradScaler (ShardedGradScaler under FSDP) for fp16, else None
    info: DistInfo
    cfg: LoopConfig
    #: other trained modules with their own optimizer and step (e.g. a discriminator): name ->
    #: (module, optimizer); replicated, saved as `name` and `name_optimizer`
    extras: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = field(default_factory=dict)

    def autocast(self) -> Any:
        dtype = AMP_DTYPES[self.cfg.amp]
        return nullcontext() if dtype is None else torch.autocast(self.info.device.type, dtype=dtype)

    def model_state(self, ema: bool = False) -> dict[str, torch.Tensor]:
        """The full (unsharded) model state on the CPU, with the EMA weights if `ema` and an EMA
        is kept; collective: complete on rank 0 (other ranks may get an empty dict)."""
        opts = dcp.StateDictOptions(full_state_dict=True, cpu_offload=True)
        reshard(self.model)
        if not ema or self.ema is None:
            return dcp.get_model_state_dict(self.model, options=opts)
        with _ema_swapped(self):  # copies: without sharding the state dict holds the parameters
            return {k: v.clone() for k, v in dcp.get_model_state_dict(self.model, options=opts).items()}

    def states(self) -> dict[str, Any]:
        """Everything a checkpoint holds but the step (collective; complete on rank 0)."""
        opts = dcp.StateDictOptions(full_state_dict=True, cpu_offload=True)
        core: dict[str, Any] = {
            "model": self.model_state(),
            "optimizer": dcp.get_optimizer_state_dict(self.model, self.optimizer, options=opts),
            "ema": None,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }
        if self.ema is not None:
            averaged = self.model_state(ema=True)
            core["ema"] = {k: v for k, v in averaged.items() if k in self.ema.shadow}
        for name, (module, optim) in self.extras.items():
            core[name] = dcp.get_model_state_dict(module, options=opts)
            core[f"{name}_optimizer"] = dcp.get_optimizer_state_dict(module, optim, options=opts)
        return core

    def load_states(self, core: dict[str, Any] | None) -> None:
        """Inverse of `states`: `core` on rank 0 (None elsewhere), broadcast to every rank."""
        opts = dcp.StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed())
        c = core if self.info.is_main and core is not None else {}
        if self.ema is not None and broadcast_object(c.get("ema") is not None):
            # the averages go through the model (and are sharded like it), then the weights
            dcp.set_model_state_dict(self.model, {**c["model"], **c["ema"]} if c else {}, options=opts)
            with torch.no_grad():
                for n, p in self.model.named_parameters():
                    if n in self.ema.shadow:
                        self.ema.shadow[n].copy_(p.detach())
        dcp.set_model_state_dict(self.model, c.get("model", {}), options=opts)
        optim_state = regroup(c["optimizer"], self.optimizer, self.model) if c else {}
        dcp.set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=opts)
        for name, (module, optim) in self.extras.items():
            if not broadcast_object(c.get(name) is not None):
                continue
            dcp.set_model_state_dict(module, c.get(name, {}), options=opts)
            osd = regroup(c[f"{name}_optimizer"], optim, module) if c else {}
            dcp.set_optimizer_state_dict(module, optim, osd, options=opts)
        scaler = broadcast_object(c.get("scaler"))
        if self.scaler is not None and scaler:
            self.scaler.load_state_dict(scaler)


@contextmanager
def _ema_swapped(trainer: Trainer) -> Iterator[None]:
    """Inside, the model holds the EMA weights (and the EMA the raw ones)."""
    assert trainer.ema is not None
    trainer.ema.swap(trainer.model)
    try:
        yield
    finally:
        trainer.ema.swap(trainer.model)


def regroup(state: dict[str, Any], optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    """An optimizer state keyed by parameter name, with `optimizer`'s param groups: the groups of
    the file may predate the weight-decay policy, the state of each parameter is what counts."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
        for g in optimizer.param_groups
    ]
    return {"state": state["state"], "param_groups": groups}


def by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An optimizer `state_dict()` keyed by parameter index (its groups' order) -> keyed by name:
    `names` lists the parameter names in the order the indices count them."""
    if all(isinstance(k, str) for k in state["state"]):
        return state
    return {
        "state": {names[int(i)]: s for i, s in state["state"].items()},
        "param_groups": [
            {**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]
        ],
    }


def build_trainer(
    model: nn.Module,
    info: DistInfo,
    cfg: LoopConfig,
    units: list[nn.Module] | None = None,
    extras: dict[str, tuple[nn.Module, torch.optim.Optimizer]] | None = None,
) -> Trainer:
    """Move `model` to the device, decide its weight-decay roles, wrap it (DDP, or FSDP with
    `units` sharded one by one) and build its optimizer, EMA and scaler."""
    model.to(info.device)
    groups = decay_groups(model)  # on the unsharded model
    wrapped = wrap_model(model, info, cfg.fsdp, units or [])
    optimizer = build_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay, groups, cfg.lr_scales)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    scaler = None
    if cfg.amp == "fp16":
        if cfg.fsdp and distributed():
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            scaler = ShardedGradScaler(info.device.type)
        else:
            scaler = torch.amp.GradScaler(info.device.type)
    return Trainer(model, wrapped, optimizer, ema, scaler, info, cfg, extras or {})


# ----------------------------------------------------------------------------------------- one step


@contextmanager
def _grad_sync(trainer: Trainer, sync: bool) -> Iterator[None]:
    """Gradients reduced over ranks in this backward only if `sync` (accumulation)."""
    wrapped = trainer.wrapped
    if isinstance(wrapped, nn.parallel.DistributedDataParallel) and not sync:
        with wrapped.no_sync():
            yield
        return
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(sync)
    yield


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` (0: no clipping); returns the norm before clipping (over every shard)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    full = getattr(norm, "full_tensor", None)  # FSDP: a replicated DTensor
    return full() if callable(full) else norm


def train_step(trainer: Trainer, task: Task, step: int) -> dict[str, torch.Tensor]:
    """One optimisation step over the task's micro-batches; returns the summed terms + grad norm."""
    micro = task.micro_batches(step)
    task.begin_step(step, micro)
    trainer.optimizer.zero_grad(set_to_none=True)
    terms: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(micro):
        with _grad_sync(trainer, i == len(micro) - 1):
            with trainer.autocast():
                loss, parts = task.loss(trainer.wrapped, batch)
            (trainer.scaler.scale(loss) if trainer.scaler is not None else loss).backward()
        for k, v in parts.items():
            terms[k] = terms[k] + v.float() if k in terms else v.float()
    if trainer.scaler is not None:
        trainer.scaler.unscale_(trainer.optimizer)
    terms["grad_norm"] = clip_gradients(trainer.model, trainer.cfg.grad_clip).detach().float()
    if trainer.scaler is not None:
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        trainer.optimizer.step()
    if trainer.ema is not None:
        if trainer.cfg.ema_warmup:
            trainer.ema.decay = min(trainer.cfg.ema_decay, (1 + step) / (10 + step))
        trainer.ema.update(trainer.model)
    terms.update(task.end_step(step))
    return terms


# ------------------------------------------------------------------------------------------ logging


class Meter:
    """Running sums of the logged terms (tensors on the device: no sync per step)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1

    def reduce(self) -> dict[str, Any]:
        """Means over the window's steps and the ranks (one all-reduce), then a fresh window."""
        keys = sorted(self.sums)
        means = [(self.sums[k] / self.counts[k]).reshape(-1) for k in keys]
        flat = all_reduce_mean(torch.cat(means)).cpu().tolist() if means else []
        out: dict[str, Any] = {}
        i = 0
        for k, m in zip(keys, means, strict=True):
            n = m.numel()
            out[k] = flat[i] if self.sums[k].dim() == 0 else flat[i : i + n]
            i += n
        out["steps_per_s"] = self.steps / max(time.perf_counter() - self.t0, 1e-9)
        self.reset()
        return out


class Logger:
    """One line per record on stdout and in `log.jsonl`, written by rank 0 (failures stop all ranks)."""

    def __init__(self, path: Path, name: str, info: DistInfo, resume_step: int) -> None:
        self.path, self.name, self.info = path, name, info

        def trim() -> None:  # drop entries written after the checkpoint we resume from (or cut short)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                kept = [ln for ln in path.read_text().splitlines() if _step(ln) <= resume_step]
                path.write_text("".join(ln + "\n" for ln in kept))

        on_main(info, trim)

    def __call__(self, record: dict[str, Any]) -> None:
        on_main(self.info, lambda: self._write(record))

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        parts = [f"step {record['step']}"]
        for k, v in record.items():
            if k != "step" and not isinstance(v, (dict, list)):
                parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        print(f"[{self.name}] " + " | ".join(parts), flush=True)


def _step(line: str) -> float:
    """The step of a log line; infinity for a line that is not a record (e.g. cut short by a kill)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


# --------------------------------------------------------------------------------------- checkpoints


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def resume(trainer: Trainer, task: Task, path: Path) -> int:
    """Load the checkpoint at `path` if there is one; returns its step (0 without one).

    Rank 0 reads the file and broadcasts its tensor-free entries (step, settings), which every
    rank checks with `task.check_resume`; the weights follow by broadcast from rank 0.
    """
    info = trainer.info
    box: dict[str, Any] = {}

    def read() -> dict[str, Any] | None:
        state = load_checkpoint(path)
        box["state"] = state
        return None if state is None else {k: v for k, v in state.items() if not _has_tensor(v)}

    header = broadcast_object(on_main(info, read))
    if header is None:
        return 0
    task.check_resume(header)

    def unpack() -> dict[str, Any]:
        core = task.unpack(box.pop("state"))
        _check_model_state(core["model"], trainer.model, path)
        return core

    trainer.load_states(on_main(info, unpack))
    return int(header["step"])


def _check_model_state(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    """Raise before any broadcast if the checkpoint's tensors do not fit the model (rank 0)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        bad = sorted(set(expected) ^ set(got)) or sorted(k for k in expected if expected[k] != got[k])
        raise MusicGenStemError(
            f"cannot resume from '{path}': its weights do not fit this model ({', '.join(bad[:3])}); "
            "move it away to start afresh"
        )


def save(trainer: Trainer, task: Task, path: Path, step: int) -> None:
    """Gather the states (every rank) and write the checkpoint (rank 0)."""
    core = trainer.states()
    on_main(trainer.info, lambda: save_checkpoint(path, task.pack({"step": step, **core})))


# --------------------------------------------------------------------------------------------- loop


def run(trainer: Trainer, task: Task, out: Path) -> int:
    """Train from the checkpoint in `out` (if any) up to `cfg.end` (`steps`, or `stop_at`);
    returns the step it started from. Checkpoints go to `out/checkpoint.pt`, logs to `out/log.jsonl`."""
    cfg, info = trainer.cfg, trainer.info
    path = out / CHECKPOINT_NAME
    start = resume(trainer, task, path)
    if start and info.is_main:
        print(f"[{cfg.name}] resuming from step {start} ({path})", flush=True)
    log = Logger(out / LOG_FILE, cfg.name, info, start)
    task.begin(start)
    meter = Meter()
    trainer.wrapped.train()
    for step in range(start, cfg.end):
        seed_step(cfg.seed, step, info.rank)  # global RNG (dropout, k-means, dead codes): per rank
        lr = cfg.lr * cosine_lr(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio)
        set_lr(trainer.optimizer, lr)
        meter.add(train_step(trainer, task, step))
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.end:
            record: dict[str, Any] = {"step": done, **meter.reduce(), "lr": lr}
            task.log_extra(record)
            log(record)
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.end:
            save(trainer, task, path, done)
        valid = task.validate(trainer, done)
        if valid is not None:
            reshard(trainer.model)
            trainer.wrapped.train()
            log({"step": done, **valid})
    return start
