"""Per-stem codec training (`musicgen-stem train-codec`): one `StemCodec` on one stem's audio.

Data: song folders `<root>/<song>/<stem>.<wav|flac|...>` (as written by `musicgen-stem synth` and
MUSDB-style multitracks). Files are converted to the codec's rate and channels. Random crops are a
pure function of (seed, step, rank), so a resumed run sees exactly the batches an uninterrupted run
would; near-silent crops are re-drawn a few times. The last `val_fraction` of songs (by sorted
name) are held out for validation (SI-SNR and mel distance).

Training: the shared loop (`training/loop.py`) on 1 CPU, 1 GPU or torchrun (DDP, or FSDP2 with
`--fsdp`: encoder and decoder sharded); `--batch-size` crops per process and micro-batch.
AdamW (betas 0.5, 0.9, no weight decay by default) with warm-up + cosine schedule, gradient
clipping, EMA of the weights, optional adversarial training with a multi-scale STFT discriminator
(replicated, DDP). Loss weights follow EnCodec/audiocraft
(`l1 0.1`, `msspec 2.0`, commitment 1.0; adversarial `adv 4.0`, `feat 4.0` when `--adversarial`).
The quantizer initialises its codebooks by k-means on the first real batch (step 0), keeps EMA
codebooks in float32 (also under bf16 autocast) and restarts dead codes (all-reduced over ranks).

Outputs in `out`: `checkpoint.pt` (atomic, resumable: rerunning the same command continues),
`log.jsonl`, and at the end `codec_<stem>.safetensors` + `codec_<stem>.json` (EMA weights if enabled).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..codec.config import CodecConfig
from ..codec.model import StemCodec
from ..errors import MusicGenStemError
from . import loop
from .checkpoint import CHECKPOINT_NAME, step_seed
from .codec_config import CodecTrainConfig, add_arguments, config_from_args
from .codec_data import StemSegments, StepBatches, find_songs, split_songs, worker_init
from .distributed import (
    DistInfo,
    all_reduce_sum,
    cleanup,
    distributed,
    init_distributed,
    on_main,
    wrap_model,
)
from .losses import (
    ChromaLoss,
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    l1_loss,
    mel_distance,
    multiscale_stft_loss,
    si_snr,
)
from .optim import cosine_lr, set_lr

__all__ = ["CodecTrainConfig", "add_arguments", "codec_loss", "run", "train_codec"]

NAME = "train-codec"


# --------------------------------------------------------------------------------------------
# Data (`codec_data.py`)
# --------------------------------------------------------------------------------------------
def _batches(data: StemSegments, cfg: CodecTrainConfig, rank: int, start: int) -> Iterator[torch.Tensor]:
    ds = StepBatches(data, cfg.batch_size, cfg.seed, rank, start, cfg.steps, cfg.grad_accum)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        shuffle=False,
        num_workers=cfg.num_workers,
        worker_init_fn=worker_init if cfg.num_workers else None,
    )
    return iter(loader)


# --------------------------------------------------------------------------------------------
# Losses and steps
# --------------------------------------------------------------------------------------------
def codec_loss(
    recon: torch.Tensor,
    wav: torch.Tensor,
    commit: torch.Tensor,
    msspec: MultiScaleMelLoss,
    cfg: CodecTrainConfig,
    chroma: ChromaLoss | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted reconstruction loss (without the adversarial terms) and its parts (detached)."""
    recon = recon.float()
    terms = {"l1": l1_loss(recon, wav), "msspec": msspec(recon, wav), "commit": commit.float()}
    total = cfg.w_l1 * terms["l1"] + cfg.w_msspec * terms["msspec"] + cfg.w_commit * terms["commit"]
    if cfg.w_stft > 0:
        terms["stft"] = multiscale_stft_loss(recon, wav, cfg.stft_scales)
        total = total + cfg.w_stft * terms["stft"]
    if chroma is not None and cfg.w_chroma > 0:
        terms["chroma"] = chroma(recon, wav)
        total = total + cfg.w_chroma * terms["chroma"]
    return total, {k: v.detach() for k, v in terms.items()}


def vq_health(counts: torch.Tensor) -> dict[str, float]:
    """Codebook usage (fraction of entries used) and perplexity (exp entropy) of code counts
    [n_q, bins], one pair per codebook: `usage_q{i}`, `perplexity_q{i}`."""
    out: dict[str, float] = {}
    for i, c in enumerate(counts.double()):
        p = c / c.sum().clamp(min=1)
        out[f"usage_q{i}"] = float((c > 0).double().mean())
        out[f"perplexity_q{i}"] = float(torch.exp(-(p * p.clamp(min=1e-12).log()).sum()))
    return out


def _export(state: dict[str, torch.Tensor], codec_cfg: CodecConfig, out: Path, stem: str) -> Path:
    """Write codec_<stem>.safetensors and codec_<stem>.json atomically; returns the weights path."""
    from safetensors.torch import save_file

    weights = out / f"codec_{stem}.safetensors"
    tmp = out / f".{weights.name}.tmp"
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(tmp), metadata={"stem": stem, "format": "pt"})
    os.replace(tmp, weights)
    meta = out / f"codec_{stem}.json"
    tmp = out / f".{meta.name}.tmp"
    tmp.write_text(json.dumps(codec_cfg.to_dict(), indent=2) + "\n")
    os.replace(tmp, meta)
    return weights


@torch.no_grad()
def _validate(net: StemCodec, val: list[torch.Tensor], device: torch.device) -> dict[str, float]:
    """Mean SI-SNR (dB) and mel distance of `net` (the EMA weights) on the fixed held-out batches."""
    snr, mel = [], []
    for batch in val:
        batch = batch.to(device)
        recon = net.decode(net.encode(batch))[..., : batch.shape[-1]]
        snr.append(si_snr(recon, batch))
        mel.append(mel_distance(recon, batch, net.sample_rate))
    return {"val_si_snr": float(torch.cat(snr).mean()), "val_mel_distance": float(torch.cat(mel).mean())}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train_codec(cfg: CodecTrainConfig) -> Path:
    """Train (or resume) one stem codec; returns the exported `<out>/codec_<stem>.safetensors`."""
    codec_cfg = cfg.codec_config()
    files = find_songs(cfg.data, cfg.stem)
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, codec_cfg, files, out, info)
    finally:
        cleanup()


def loop_config(cfg: CodecTrainConfig, device: torch.device) -> loop.LoopConfig:
    """The shared loop's settings of this run (bf16 autocast on CUDA unless `amp` is off)."""
    return loop.LoopConfig(
        name=NAME,
        steps=cfg.steps,
        lr=cfg.lr,
        warmup=cfg.warmup,
        min_lr_ratio=cfg.min_lr_ratio,
        weight_decay=cfg.weight_decay,
        betas=cfg.betas,
        grad_clip=cfg.grad_clip,
        ema_decay=cfg.ema_decay,
        ema_warmup=True,
        grad_accum=cfg.grad_accum,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        seed=cfg.seed,
        amp="bf16" if cfg.amp and device.type == "cuda" else "none",
        fsdp=cfg.fsdp,
        stop_at=cfg.stop_at,
    )


def legacy_optimizer_order(model: nn.Module) -> list[str]:
    """Parameter names in the order of the optimizers of the first codec checkpoints (one group
    of tensors with >= 2 dims, then the others), whose states were keyed by that index."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    first = [n for n, p in named if p.dim() >= 2 and "emb" not in n.split(".")[0] and "embed" not in n]
    return first + [n for n, _ in named if n not in set(first)]


class CodecTask(loop.Task):
    """What codec training plugs into the shared loop: crops, losses, the discriminator's step,
    codebook health, validation of the EMA weights and the checkpoint layout."""

    def __init__(
        self,
        cfg: CodecTrainConfig,
        codec_cfg: CodecConfig,
        info: DistInfo,
        data: StemSegments,
        val: list[torch.Tensor],
        has_val: bool,
        disc: MultiScaleSTFTDiscriminator | None,
        disc_opt: torch.optim.Optimizer | None,
        frozen: list[nn.Module] | None = None,
    ) -> None:
        self.cfg, self.codec_cfg, self.info = cfg, codec_cfg, info
        self.data, self.val, self.has_val = data, val, has_val
        self.device = info.device
        self.msspec = MultiScaleMelLoss(codec_cfg.sample_rate, cfg.mel_scales, cfg.n_mels).to(self.device)
        self.chroma = ChromaLoss(codec_cfg.sample_rate).to(self.device) if cfg.w_chroma > 0 else None
        self.frozen = frozen or []
        self.disc, self.disc_opt = disc, disc_opt
        self.ddp_disc = wrap_model(disc, info, fsdp=False) if disc is not None else None
        self.batches: Iterator[torch.Tensor] | None = None
        self.counts = torch.zeros(codec_cfg.n_q, codec_cfg.bins, dtype=torch.float64, device=self.device)
        self.step = 0
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (wav, recon) for the discriminator

    def begin(self, start: int) -> None:
        self.batches = _batches(self.data, self.cfg, self.info.rank, start)

    def micro_batches(self, step: int) -> list[torch.Tensor]:
        assert self.batches is not None
        return [next(self.batches) for _ in range(self.cfg.grad_accum)]

    def begin_step(self, step: int, micro: list[torch.Tensor]) -> None:
        self.step = step
        for module in self.frozen:  # --freeze-codes: no k-means, no codebook EMA, no dead-code swaps
            module.eval()
        self.pairs = []

    def _adversarial(self) -> bool:
        return self.disc is not None and self.step >= self.cfg.adv_start

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, accum = self.cfg, self.cfg.grad_accum
        wav = batch.to(self.device, non_blocking=True)  # [B, C, T]
        result = model(wav)  # under the loop's autocast; the codebooks stay float32
        with torch.autocast(self.device.type, enabled=False):  # losses in float32
            loss, terms = codec_loss(result.recon, wav, result.commit_loss, self.msspec, cfg, self.chroma)
            if self._adversarial():
                assert self.disc is not None
                self.disc.requires_grad_(False)
                real_logits, real_feats = self.disc(wav)
                fake_logits, fake_feats = self.disc(result.recon.float())
                self.disc.requires_grad_(True)
                adv = hinge_generator_loss(fake_logits)
                feat = feature_matching_loss(real_feats, fake_feats)
                loss = loss + cfg.w_adv * adv + cfg.w_feat * feat
                terms["adv"], terms["feat"] = adv.detach(), feat.detach()
                self.pairs.append((wav, result.recon.detach().float()))
        terms["loss"] = loss.detach()
        codes = result.codes  # [B, n_q, F]
        for q in range(self.codec_cfg.n_q):
            self.counts[q] += torch.bincount(codes[:, q].reshape(-1), minlength=self.codec_cfg.bins)
        return loss / accum, {k: v / accum for k, v in terms.items()}

    def end_step(self, step: int) -> dict[str, torch.Tensor]:
        """The discriminator's step on this step's real and generated crops."""
        if not self.pairs:
            return {}
        assert self.ddp_disc is not None and self.disc is not None and self.disc_opt is not None
        cfg = self.cfg
        wav = torch.cat([w for w, _ in self.pairs])
        both = torch.cat([wav, torch.cat([r for _, r in self.pairs])])  # one forward: [2B, C, T]
        logits, _ = self.ddp_disc(both)
        d_loss = hinge_discriminator_loss(
            [lg[: len(wav)] for lg in logits], [lg[len(wav) :] for lg in logits]
        )
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        set_lr(self.disc_opt, cfg.disc_lr * cosine_lr(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio))
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
        self.disc_opt.step()
        self.pairs = []
        return {"disc": d_loss.detach()}

    def log_extra(self, record: dict[str, Any]) -> None:
        record.update(vq_health(all_reduce_sum(self.counts)))
        self.counts.zero_()

    def validate(self, trainer: loop.Trainer, done: int) -> dict[str, float] | None:
        """SI-SNR and mel distance of the EMA weights on rank 0's held-out crops."""
        if not self.has_val or (done % self.cfg.val_every and done != trainer.cfg.end):
            return None
        state = trainer.model_state(ema=True)  # every rank: the shards are gathered

        def run() -> dict[str, float]:
            net = StemCodec(self.codec_cfg).to(self.device)
            net.load_state_dict(state)
            return _validate(net.eval(), self.val, self.device)

        return on_main(self.info, run) or {}

    def check_resume(self, header: dict[str, Any]) -> None:
        path = Path(self.cfg.out) / CHECKPOINT_NAME
        try:  # fields added to CodecConfig since the checkpoint take their defaults
            same = CodecConfig.from_dict(header.get("codec_config") or {}) == self.codec_cfg
        except (TypeError, ValueError):
            same = False
        if not same:
            raise MusicGenStemError(
                f"'{path}' was made with a different codec config; use another --out or move it away"
            )
        if header.get("stem") != self.cfg.stem:
            raise MusicGenStemError(
                f"'{path}' trains stem '{header.get('stem')}', not '{self.cfg.stem}'; use another --out"
            )

    def pack(self, core: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": core["step"],
            "stem": self.cfg.stem,
            "model": core["model"],
            "optimizer": core["optimizer"],
            "ema": core["ema"],
            "disc": core.get("disc"),
            "disc_optimizer": core.get("disc_optimizer"),
            "codec_config": self.codec_cfg.to_dict(),
            "config": self.cfg.to_dict(),
        }

    def unpack(self, state: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's states; optimizers keyed by index (checkpoints before the shared loop)
        are keyed by name."""
        model = StemCodec(self.codec_cfg)
        core = {
            "model": state["model"],
            "optimizer": loop.by_name(state["optimizer"], legacy_optimizer_order(model)),
            "ema": state.get("ema"),
            "scaler": None,
        }
        if self.disc is not None and state.get("disc") is not None:
            names = [n for n, _ in self.disc.named_parameters()]
            core["disc"] = state["disc"]
            core["disc_optimizer"] = loop.by_name(state["disc_optimizer"], names)
        return core


def grown_state(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source` weights fitted into the shapes of `target` (a state dict of a grown codec): equal
    shapes are copied, smaller ones fill the leading slice of zeros (the new latent rows: the
    decoder's new input channels and the codebooks' new dimensions start at zero); target keys that
    `source` lacks (new codebooks) are left out. Raises on a weight that does not fit."""
    extra = sorted(set(source) - set(target))
    if extra:
        raise MusicGenStemError(
            f"--init-from has weights this --codec config lacks ({', '.join(extra[:3])}...): "
            "give the config it was trained with, grown only in latent size and codebooks"
        )
    out = {}
    for key, t in target.items():
        s = source.get(key)
        if s is None:
            continue
        if s.shape != t.shape:
            if s.dim() != t.dim() or any(a > b for a, b in zip(s.shape, t.shape, strict=True)):
                raise MusicGenStemError(
                    f"--init-from weight '{key}' {tuple(s.shape)} does not grow into {tuple(t.shape)}: "
                    "give the config the codec was trained with, grown only in latent size and codebooks"
                )
            grown = torch.zeros_like(t)
            grown[tuple(slice(0, n) for n in s.shape)] = s
            s = grown
        out[key] = s
    return out


def load_init(model: StemCodec, path: str, keep_codebooks: int = 0) -> None:
    """Load trained weights (a codec safetensors file of the same config) into `model`; with
    `keep_codebooks`, a codec with that many codebooks, grown into `model` (`grown_state`)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise MusicGenStemError(f"--init-from '{path}' does not exist: give a codec_<stem>.safetensors file")
    try:
        state = load_file(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user error
        raise MusicGenStemError(f"cannot read --init-from '{path}': {e}") from None
    if keep_codebooks:
        layers = {int(k.split(".")[3]) for k in state if k.startswith("quantizer.vq.layers.")}
        if len(layers) != keep_codebooks or keep_codebooks >= model.n_q:
            raise MusicGenStemError(
                f"--init-from '{path}' has {len(layers)} codebooks and --codec {model.n_q}: "
                f"--keep-codebooks {keep_codebooks} must be the first and less than the second"
            )
        state = grown_state(model.state_dict(), state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    new = [k for k in missing if keep_codebooks and k.startswith("quantizer.vq.layers.")]
    if len(missing) != len(new) or unexpected:
        raise MusicGenStemError(
            f"--init-from '{path}' does not fit this codec config ({len(missing) - len(new)} weights "
            f"missing, {len(unexpected)} unexpected): give the --codec config it was trained with"
        )


def _train(
    cfg: CodecTrainConfig, codec_cfg: CodecConfig, files: list[Path], out: Path, info: DistInfo
) -> Path:
    device, main = info.device, info.is_main
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = StemCodec(codec_cfg)
    frozen: list[nn.Module] = []
    if cfg.init_from is not None:
        load_init(model, cfg.init_from, cfg.keep_codebooks)
    if cfg.freeze_codes:
        frozen = [model.encoder, model.quantizer]
    elif cfg.keep_codebooks:
        frozen = [model.encoder, *model.quantizer.vq.layers[: cfg.keep_codebooks]]
    for module in frozen:
        module.requires_grad_(False)
    extras: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {}
    disc: MultiScaleSTFTDiscriminator | None = None
    disc_opt: torch.optim.Optimizer | None = None
    if cfg.adversarial:
        disc = MultiScaleSTFTDiscriminator(codec_cfg.channels, cfg.disc_filters).to(device)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas, weight_decay=0.0)
        extras["disc"] = (disc, disc_opt)
    lcfg = loop_config(cfg, device)
    trainer = loop.build_trainer(model, info, lcfg, units=[model.encoder, model.decoder], extras=extras)

    segment = max(1, round(cfg.segment * codec_cfg.sample_rate))
    train_files, val_files = split_songs(files, cfg.val_fraction)
    kwargs = {
        "sample_rate": codec_cfg.sample_rate,
        "channels": codec_cfg.channels,
        "segment_samples": segment,
        "memory_cap_bytes": cfg.memory_cap_gb * 1e9,
        "silence_db": cfg.silence_db,
        "pitch_shift": cfg.pitch_shift,
        "silence_retries": cfg.silence_retries,
    }
    train_data = StemSegments(train_files, **kwargs)
    val: list[torch.Tensor] = []
    if val_files and main:
        val_data = StemSegments(val_files, **(kwargs | {"pitch_shift": 0}))
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, 0, 10_000))  # fixed held-out crops
        val = [val_data.batch(gen, cfg.batch_size) for _ in range(max(1, cfg.val_batches))]
    task = CodecTask(cfg, codec_cfg, info, train_data, val, bool(val_files), disc, disc_opt, frozen)

    if main:
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        mode = f" ({'FSDP' if cfg.fsdp else 'DDP'})" if distributed() else ""
        print(
            f"[{NAME}] '{cfg.stem}': {len(train_files)} train / {len(val_files)} val songs "
            f"({'in memory' if train_data.in_memory else 'read from disk'}), codec {n_params / 1e6:.2f}M "
            f"params, n_q {codec_cfg.n_q} x {codec_cfg.bins} bins, {info.world_size} process(es){mode} "
            f"on {device}, amp {lcfg.amp}",
            flush=True,
        )
    start = loop.run(trainer, task, out)
    state = trainer.model_state(ema=True)  # every rank: the shards are gathered
    path = out / f"codec_{cfg.stem}.safetensors"

    def export() -> None:
        _export(state, codec_cfg, out, cfg.stem)
        if start >= cfg.steps:
            msg = f"already finished: {start} steps in '{out}'; weights in {path}"
        elif start >= lcfg.end:
            msg = f"already at step {start} of {cfg.steps} (--stop-at); weights in {path}"
        elif lcfg.end < cfg.steps:
            msg = f"stopped at step {lcfg.end} of {cfg.steps} (rerun to continue); exported {path}"
        else:
            msg = f"done: {cfg.steps} steps; exported {path} and {path.with_suffix('.json')}"
        print(f"[{NAME}] {msg}", flush=True)

    on_main(info, export)
    return path


def run(args: argparse.Namespace) -> int:
    """Entry point of `musicgen-stem train-codec`; returns the exit code."""
    train_codec(config_from_args(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m musicgen_stem.training.codec ...` (e.g. under torchrun)."""
    from ..commands.options import module_main

    return module_main(sys.modules[__name__], "musicgen-stem train-codec", argv)


if __name__ == "__main__":
    sys.exit(main())
