"""Per-stem codec training (`musicgen-stem train-codec`): one `StemCodec` on one stem's audio.

Data: song folders `<root>/<song>/<stem>.<wav|flac|...>` (as written by `musicgen-stem synth` and
MUSDB-style multitracks). Files are converted to the codec's rate and channels. Random crops are a
pure function of (seed, step, rank), so a resumed run sees exactly the batches an uninterrupted run
would; near-silent crops are re-drawn a few times. The last `val_fraction` of songs (by sorted
name) are held out for validation (SI-SNR and mel distance).

Training: one loop for 1 CPU, 1 GPU or torchrun DDP. AdamW (betas 0.5, 0.9, no weight decay by
default) with warm-up + cosine schedule, gradient clipping, EMA of the weights, optional
adversarial training with a multi-scale STFT discriminator. Loss weights follow EnCodec/audiocraft
(`l1 0.1`, `msspec 2.0`, commitment 1.0; adversarial `adv 4.0`, `feat 4.0` when `--adversarial`).
The quantizer initialises its codebooks by k-means on the first real batch (step 0), keeps EMA
codebooks and restarts dead codes (all-reduced under DDP).

Outputs in `out`: `checkpoint.pt` (atomic, resumable: rerunning the same command continues),
`log.jsonl`, and at the end `codec_<stem>.safetensors` + `codec_<stem>.json` (EMA weights if enabled).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from ..audio import convert_audio, load_audio
from ..codec.model import CodecConfig, StemCodec
from ..errors import MusicGenStemError
from ..layout import LAYOUT_6CB
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, seed_step, step_seed
from .distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from .losses import (
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
from .optim import EMA, build_optimizer, cosine_lr, grad_norm

__all__ = [
    "CODEC_PRESETS",
    "CodecTrainConfig",
    "StemSegments",
    "add_arguments",
    "codec_loss",
    "codec_preset",
    "default_n_q",
    "find_songs",
    "run",
    "train_codec",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


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
    codec: str | dict[str, Any] = "mini"  # preset name or CodecConfig.to_dict()
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
    # data
    num_workers: int = 0
    silence_db: float = -50.0  # crops quieter than this RMS (dBFS) are re-drawn...
    silence_retries: int = 5  # ...up to this many times
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
            (self.n_q is None or self.n_q >= 1, f"n_q must be >= 1, got {self.n_q}"),
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
# Data
# --------------------------------------------------------------------------------------------
def _stem_file(song: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        p = song / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def find_songs(roots: Sequence[str | os.PathLike[str]], stem: str) -> list[Path]:
    """Audio files of `stem` in the song folders under `roots`, sorted by (song name, path).

    Raises `MusicGenStemError` when a root is missing, holds no song folders, or no song has the stem.
    """
    songs: list[Path] = []
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise MusicGenStemError(f"data folder '{root}' not found; give folders holding <song>/<stem>.wav")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        if _stem_file(root, stem) is not None:  # the root itself is one song folder
            subdirs.append(root)
        songs += subdirs
        files += [f for f in (_stem_file(s, stem) for s in subdirs) if f is not None]
    if not songs:
        raise MusicGenStemError(
            f"no song folders found in {', '.join(map(str, roots))}; expected <root>/<song>/{stem}.wav"
        )
    if not files:
        present = sorted(
            {p.stem for s in songs[:20] for p in s.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
        )
        raise MusicGenStemError(
            f"stem '{stem}' is missing in all {len(songs)} song folders (found stems: "
            f"{', '.join(present) or 'none'}); check --stem"
        )
    return sorted(files, key=lambda p: (p.parent.name, str(p)))


def split_songs(files: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, val): the last `val_fraction` of the sorted songs (at least one if > 0) are held out."""
    n_val = 0 if val_fraction <= 0 or len(files) < 2 else max(1, round(len(files) * val_fraction))
    n_val = min(n_val, len(files) - 1)
    return files[: len(files) - n_val], files[len(files) - n_val :]


class StemSegments:
    """Fixed-length crops [C, T] of one stem's files at the codec's rate and channels.

    Audio is loaded once and kept in memory when the converted total fits in `memory_cap_bytes`,
    else each crop is read from disk (soundfile `start`/`frames`) and converted on the fly.
    """

    def __init__(
        self,
        files: Sequence[Path],
        sample_rate: int,
        channels: int,
        segment_samples: int,
        memory_cap_bytes: float = 2e9,
        silence_db: float = -50.0,
        silence_retries: int = 5,
    ) -> None:
        self.files = list(files)
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment = segment_samples
        self.silence_db = silence_db
        self.retries = max(0, silence_retries)
        self.native: list[tuple[int, int]] = []  # (frames, rate) per file
        for f in self.files:
            try:
                info = sf.info(str(f))
                self.native.append((int(info.frames), int(info.samplerate)))
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
                self.native.append((-1, -1))  # not readable by soundfile: must be loaded
        total = sum(max(fr, 0) * sample_rate / max(sr, 1) * channels * 4 for fr, sr in self.native)
        self.in_memory = total <= memory_cap_bytes or any(fr < 0 for fr, _ in self.native)
        self.audio: list[torch.Tensor] = []
        if self.in_memory:
            for f in self.files:
                wav, sr = load_audio(f)
                self.audio.append(convert_audio(wav, sr, sample_rate, channels).contiguous())  # [C, T]
            self.lengths = [a.shape[-1] for a in self.audio]
        else:
            self.lengths = [int(fr * sample_rate // sr) for fr, sr in self.native]

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int, offset: int) -> torch.Tensor:
        """Crop of file i starting at `offset` (codec-rate samples) -> [C, segment] (zero-padded)."""
        if self.in_memory:
            wav = self.audio[i][:, offset : offset + self.segment]
        else:
            _, sr = self.native[i]
            start = int(offset * sr // self.sample_rate)
            frames = int(math.ceil(self.segment * sr / self.sample_rate)) + 64
            data, _ = sf.read(str(self.files[i]), start=start, frames=frames, dtype="float32", always_2d=True)
            raw = torch.from_numpy(np.ascontiguousarray(data.T))  # [C_native, n]
            wav = convert_audio(raw, sr, self.sample_rate, self.channels)[:, : self.segment]
        if wav.shape[-1] < self.segment:
            wav = torch.nn.functional.pad(wav, (0, self.segment - wav.shape[-1]))
        return wav

    def crop(self, gen: torch.Generator) -> torch.Tensor:
        """One random crop [C, segment] drawn with `gen`; near-silent crops are re-drawn."""
        best, best_db = None, -math.inf
        for _ in range(self.retries + 1):
            i = int(torch.randint(len(self.files), (1,), generator=gen))
            room = max(0, self.lengths[i] - self.segment)
            offset = int(torch.randint(room + 1, (1,), generator=gen))
            wav = self._read(i, offset)
            db = 10 * math.log10(float(wav.pow(2).mean()) + 1e-12)
            if db > best_db:
                best, best_db = wav, db
            if db > self.silence_db:
                break
        assert best is not None
        return best

    def batch(self, gen: torch.Generator, size: int) -> torch.Tensor:
        """[size, C, segment] crops drawn with `gen`."""
        return torch.stack([self.crop(gen) for _ in range(size)])


class _StepBatches(torch.utils.data.Dataset):
    """Item k = the batch of step `start + k` on `rank`: a pure function of (seed, step, rank)."""

    def __init__(self, data: StemSegments, batch_size: int, seed: int, rank: int, start: int, stop: int):
        self.data, self.batch_size, self.seed, self.rank = data, batch_size, seed, rank
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, k: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(step_seed(self.seed, self.start + k, self.rank))
        return self.data.batch(gen, self.batch_size)  # [B, C, T]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _batches(data: StemSegments, cfg: CodecTrainConfig, rank: int, start: int) -> Iterator[torch.Tensor]:
    ds = _StepBatches(data, cfg.batch_size, cfg.seed, rank, start, cfg.steps)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        shuffle=False,
        num_workers=cfg.num_workers,
        worker_init_fn=_worker_init if cfg.num_workers else None,
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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted reconstruction loss (without the adversarial terms) and its parts (detached)."""
    recon = recon.float()
    terms = {"l1": l1_loss(recon, wav), "msspec": msspec(recon, wav), "commit": commit.float()}
    total = cfg.w_l1 * terms["l1"] + cfg.w_msspec * terms["msspec"] + cfg.w_commit * terms["commit"]
    if cfg.w_stft > 0:
        terms["stft"] = multiscale_stft_loss(recon, wav, cfg.stft_scales)
        total = total + cfg.w_stft * terms["stft"]
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


def _ema_decay(base: float, step: int) -> float:
    """EMA decay warmed up over the first steps so the average is not dominated by the init."""
    return min(base, (1 + step) / (10 + step))


def _exported_state(model: StemCodec, ema: EMA | None) -> dict[str, torch.Tensor]:
    state = ema.averaged_state(model) if ema is not None else model.state_dict()
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _export(model: StemCodec, ema: EMA | None, out: Path, stem: str) -> Path:
    """Write codec_<stem>.safetensors and codec_<stem>.json atomically; returns the weights path."""
    from safetensors.torch import save_file

    weights = out / f"codec_{stem}.safetensors"
    tmp = out / f".{weights.name}.tmp"
    save_file(_exported_state(model, ema), str(tmp), metadata={"stem": stem, "format": "pt"})
    os.replace(tmp, weights)
    meta = out / f"codec_{stem}.json"
    tmp = out / f".{meta.name}.tmp"
    tmp.write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    os.replace(tmp, meta)
    return weights


@torch.no_grad()
def _validate(
    model: StemCodec, ema: EMA | None, val: list[torch.Tensor], device: torch.device
) -> dict[str, float]:
    """Mean SI-SNR (dB) and mel distance of the (EMA) codec on the fixed held-out batches."""
    net = copy.deepcopy(model)
    if ema is not None:
        net.load_state_dict(ema.averaged_state(model))
    net.eval()
    snr, mel = [], []
    for batch in val:
        batch = batch.to(device)
        recon = net.decode(net.encode(batch))[..., : batch.shape[-1]]
        snr.append(si_snr(recon, batch))
        mel.append(mel_distance(recon, batch, net.sample_rate))
    return {"val_si_snr": float(torch.cat(snr).mean()), "val_mel_distance": float(torch.cat(mel).mean())}


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def _clip(params: list[nn.Parameter], max_norm: float) -> float:
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return grad_norm(params)


class _Logger:
    """Plain lines on stdout and JSON lines in log.jsonl (main rank only)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.is_file():  # drop entries written after the checkpoint we resume from
            kept = [
                ln for ln in path.read_text().splitlines() if ln.strip() and self._step(ln) <= resume_step
            ]
            path.write_text("".join(ln + "\n" for ln in kept))

    @staticmethod
    def _step(line: str) -> int:
        try:
            return int(json.loads(line).get("step", 0))
        except (ValueError, AttributeError):
            return 0

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"step {record['step']}"]
        for k, v in record.items():
            if k != "step":
                parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        print(" | ".join(parts), flush=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


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


def _train(
    cfg: CodecTrainConfig, codec_cfg: CodecConfig, files: list[Path], out: Path, info: DistInfo
) -> Path:
    device, main = info.device, info.is_main
    ckpt_path = out / CHECKPOINT_NAME
    state = load_checkpoint(ckpt_path)
    if state is not None and state.get("codec_config") != codec_cfg.to_dict():
        raise MusicGenStemError(
            f"'{ckpt_path}' was made with a different codec config; use another --out or move it away"
        )
    if state is not None and state.get("stem") != cfg.stem:
        raise MusicGenStemError(
            f"'{ckpt_path}' trains stem '{state.get('stem')}', not '{cfg.stem}'; use another --out"
        )
    start = int(state["step"]) if state is not None else 0

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = StemCodec(codec_cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay)
    ema: EMA | None = None
    if cfg.ema_decay > 0:
        ema = EMA(model, cfg.ema_decay)
        for name, _ in model.named_buffers():  # codebooks are not averaged: exported as they are
            ema.shadow.pop(name, None)
    disc: MultiScaleSTFTDiscriminator | None = None
    disc_opt: torch.optim.Optimizer | None = None
    if cfg.adversarial:
        disc = MultiScaleSTFTDiscriminator(codec_cfg.channels, cfg.disc_filters).to(device)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas, weight_decay=0.0)

    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        if disc is not None and disc_opt is not None and state.get("disc") is not None:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_optimizer"])

    def checkpoint(step: int) -> None:
        if not main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "step": step,
                "stem": cfg.stem,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "disc": disc.state_dict() if disc is not None else None,
                "disc_optimizer": disc_opt.state_dict() if disc_opt is not None else None,
                "codec_config": codec_cfg.to_dict(),
                "config": cfg.to_dict(),
            },
        )

    if start >= cfg.steps:
        if main:
            path = _export(model, ema, out, cfg.stem)
            print(f"already finished: {start} steps in '{out}'; weights in {path}", flush=True)
        barrier()
        return out / f"codec_{cfg.stem}.safetensors"

    segment = max(1, round(cfg.segment * codec_cfg.sample_rate))
    train_files, val_files = split_songs(files, cfg.val_fraction)
    kwargs = {
        "sample_rate": codec_cfg.sample_rate,
        "channels": codec_cfg.channels,
        "segment_samples": segment,
        "memory_cap_bytes": cfg.memory_cap_gb * 1e9,
        "silence_db": cfg.silence_db,
        "silence_retries": cfg.silence_retries,
    }
    train_data = StemSegments(train_files, **kwargs)
    val: list[torch.Tensor] = []
    if val_files and main:
        val_data = StemSegments(val_files, **kwargs)
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, 0, 10_000))  # fixed held-out crops
        val = [val_data.batch(gen, cfg.batch_size) for _ in range(max(1, cfg.val_batches))]

    if main:
        out.mkdir(parents=True, exist_ok=True)
        n_params = sum(p.numel() for p in params)
        what = f"resuming at step {start}" if start else "starting"
        print(
            f"train-codec '{cfg.stem}': {what}; {len(train_files)} train / {len(val_files)} val songs "
            f"({'in memory' if train_data.in_memory else 'read from disk'}), codec {n_params / 1e6:.2f}M "
            f"params, n_q {codec_cfg.n_q} x {codec_cfg.bins} bins, {info.world_size} process(es) on {device}",
            flush=True,
        )
    log = _Logger(out / "log.jsonl", main, start)
    ddp_model = wrap_ddp(model, info)
    ddp_disc = wrap_ddp(disc, info) if disc is not None else None
    msspec = MultiScaleMelLoss(codec_cfg.sample_rate, cfg.mel_scales, cfg.n_mels).to(device)
    use_amp = cfg.amp and device.type == "cuda"
    model.train()

    batches = _batches(train_data, cfg, info.rank, start)
    sums: dict[str, float] = {}
    code_counts = torch.zeros(codec_cfg.n_q, codec_cfg.bins, dtype=torch.float64, device=device)
    count, t0 = 0, time.perf_counter()
    for step in range(start, cfg.steps):
        seed_step(cfg.seed, step, info.rank)  # global RNG: k-means init, dead-code restarts
        wav = next(batches).to(device, non_blocking=True)  # [B, C, T]
        lr = cfg.lr * cosine_lr(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio)
        _set_lr(opt, lr)

        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            result = ddp_model(wav)
        loss, terms = codec_loss(result.recon, wav, result.commit_loss, msspec, cfg)
        adv_on = disc is not None and step >= cfg.adv_start
        if adv_on:
            assert disc is not None
            disc.requires_grad_(False)
            real_logits, real_feats = disc(wav)
            fake_logits, fake_feats = disc(result.recon.float())
            disc.requires_grad_(True)
            adv = hinge_generator_loss(fake_logits)
            feat = feature_matching_loss(real_feats, fake_feats)
            loss = loss + cfg.w_adv * adv + cfg.w_feat * feat
            terms["adv"], terms["feat"] = adv.detach(), feat.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = _clip(params, cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.decay = _ema_decay(cfg.ema_decay, step)
            ema.update(model)

        if adv_on:
            assert ddp_disc is not None and disc_opt is not None
            both = torch.cat([wav, result.recon.detach().float()])  # one forward: [2B, C, T]
            logits, _ = ddp_disc(both)
            real = [lg[: wav.shape[0]] for lg in logits]
            fake = [lg[wav.shape[0] :] for lg in logits]
            d_loss = hinge_discriminator_loss(real, fake)
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            _set_lr(disc_opt, cfg.disc_lr * cosine_lr(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio))
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)  # type: ignore[union-attr]
            disc_opt.step()
            terms["disc"] = d_loss.detach()

        terms["loss"] = loss.detach()
        for q in range(codec_cfg.n_q):
            code_counts[q] += torch.bincount(result.codes[:, q].reshape(-1), minlength=codec_cfg.bins)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + gnorm
        count += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            means = torch.tensor([sums[k] / count for k in sorted(sums)], dtype=torch.float64)
            means = all_reduce_mean(means.to(device)).cpu()
            elapsed = time.perf_counter() - t0
            record: dict[str, Any] = {"step": done}
            record.update({k: float(v) for k, v in zip(sorted(sums), means, strict=True)})
            record.update({"lr": lr, "steps_per_s": count / max(elapsed, 1e-9)})
            record.update(vq_health(all_reduce_sum(code_counts)))
            log(record)
            sums, count, t0 = {}, 0, time.perf_counter()
            code_counts.zero_()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            checkpoint(done)
        if main and val and (done % cfg.val_every == 0 or done == cfg.steps):
            model.eval()
            log({"step": done, **_validate(model, ema, val, device)})
            model.train()

    path = out / f"codec_{cfg.stem}.safetensors"
    if main:
        path = _export(model, ema, out, cfg.stem)
        print(f"done: {cfg.steps} steps; exported {path} and {path.with_suffix('.json')}", flush=True)
    barrier()
    return path


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
    g = parser.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps, help="total training steps")
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
    g = parser.add_argument_group("loss weights")
    g.add_argument("--w-l1", type=float, default=d.w_l1, help="time-domain L1")
    g.add_argument("--w-msspec", type=float, default=d.w_msspec, help="multi-scale mel loss")
    g.add_argument("--w-commit", type=float, default=d.w_commit, help="VQ commitment loss")
    g.add_argument("--w-stft", type=float, default=d.w_stft, help="multi-resolution linear STFT loss")
    g.add_argument(
        "--stft-scales", type=int, nargs="+", default=list(d.stft_scales), help="FFT sizes of the STFT loss"
    )
    g.add_argument("--adversarial", action="store_true", help="add a multi-scale STFT discriminator (GPU)")
    g.add_argument("--w-adv", type=float, default=d.w_adv, help="adversarial (hinge) loss")
    g.add_argument("--w-feat", type=float, default=d.w_feat, help="feature-matching loss")
    g = parser.add_argument_group("data")
    g.add_argument("--num-workers", type=int, default=d.num_workers, help="data loader worker processes")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction, help="songs held out (last by name)")
    g.add_argument("--memory-cap-gb", type=float, default=d.memory_cap_gb, help="max audio kept in RAM")
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    g.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints"
    )
    g.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


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
        adversarial=args.adversarial,
        w_adv=args.w_adv,
        w_feat=args.w_feat,
        ema_decay=args.ema_decay,
        grad_clip=args.grad_clip,
        amp=not args.no_amp,
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


def run(args: argparse.Namespace) -> int:
    """Entry point of `musicgen-stem train-codec`; returns the exit code."""
    train_codec(config_from_args(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m musicgen_stem.training.codec ...` (e.g. under torchrun)."""
    from ..cli import module_main

    return module_main(sys.modules[__name__], "musicgen-stem train-codec", argv)


if __name__ == "__main__":
    sys.exit(main())
