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
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import julius
import numpy as np
import soundfile as sf
import torch
from torch import nn

from ..audio import convert_audio, load_audio
from ..codec.model import CodecConfig, StemCodec
from ..errors import MusicGenStemError
from ..layout import LAYOUT_6CB
from . import loop
from .checkpoint import CHECKPOINT_NAME, step_seed
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
NAME = "train-codec"


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
        pitch_shift: int = 0,
    ) -> None:
        self.files = list(files)
        self.pitch_shift = pitch_shift
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

    def _read(self, i: int, offset: int, length: int) -> torch.Tensor:
        """Crop of file i starting at `offset` (codec-rate samples) -> [C, length] (zero-padded)."""
        if self.in_memory:
            wav = self.audio[i][:, offset : offset + length]
        else:
            _, sr = self.native[i]
            start = int(offset * sr // self.sample_rate)
            frames = int(math.ceil(length * sr / self.sample_rate)) + 64
            data, _ = sf.read(str(self.files[i]), start=start, frames=frames, dtype="float32", always_2d=True)
            raw = torch.from_numpy(np.ascontiguousarray(data.T))  # [C_native, n]
            wav = convert_audio(raw, sr, self.sample_rate, self.channels)[:, :length]
        if wav.shape[-1] < length:
            wav = torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
        return wav

    def _shifted(self, i: int, offset: int, semitones: int) -> torch.Tensor:
        """Crop [C, segment] transposed by `semitones`: segment x ratio samples played at the
        codec rate (ratio to 1/100, resampled by `julius`: transposes and changes tempo alike)."""
        num = round(100 * 2 ** (semitones / 12))
        wav = self._read(i, offset, -(-self.segment * num // 100))
        return julius.resample_frac(wav, num, 100)[:, : self.segment]

    def crop(self, gen: torch.Generator) -> torch.Tensor:
        """One random crop [C, segment] drawn with `gen`; near-silent crops are re-drawn."""
        best, best_db = None, -math.inf
        for _ in range(self.retries + 1):
            i = int(torch.randint(len(self.files), (1,), generator=gen))
            room = max(0, self.lengths[i] - self.segment)
            offset = int(torch.randint(room + 1, (1,), generator=gen))
            if self.pitch_shift > 0:
                top = int(self.pitch_shift)
                semitones = int(torch.randint(-top, top + 1, (), generator=gen))
                wav = self._shifted(i, offset, semitones)
            else:
                wav = self._read(i, offset, self.segment)
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
    """Item k = micro-batch m = k % accum of step s = start + k // accum on `rank`: a pure
    function of (seed, s * accum + m, rank) (without accumulation: of (seed, step, rank))."""

    def __init__(
        self, data: StemSegments, batch_size: int, seed: int, rank: int, start: int, stop: int, accum: int = 1
    ):
        self.data, self.batch_size, self.seed, self.rank = data, batch_size, seed, rank
        self.start, self.stop, self.accum = start, stop, accum

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.accum

    def __getitem__(self, k: int) -> torch.Tensor:
        index = self.start * self.accum + k  # = step * accum + micro-batch
        gen = torch.Generator().manual_seed(step_seed(self.seed, index, self.rank))
        return self.data.batch(gen, self.batch_size)  # [B, C, T]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _batches(data: StemSegments, cfg: CodecTrainConfig, rank: int, start: int) -> Iterator[torch.Tensor]:
    ds = _StepBatches(data, cfg.batch_size, cfg.seed, rank, start, cfg.steps, cfg.grad_accum)
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
    ) -> None:
        self.cfg, self.codec_cfg, self.info = cfg, codec_cfg, info
        self.data, self.val, self.has_val = data, val, has_val
        self.device = info.device
        self.msspec = MultiScaleMelLoss(codec_cfg.sample_rate, cfg.mel_scales, cfg.n_mels).to(self.device)
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
        self.pairs = []

    def _adversarial(self) -> bool:
        return self.disc is not None and self.step >= self.cfg.adv_start

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, accum = self.cfg, self.cfg.grad_accum
        wav = batch.to(self.device, non_blocking=True)  # [B, C, T]
        result = model(wav)  # under the loop's autocast; the codebooks stay float32
        with torch.autocast(self.device.type, enabled=False):  # losses in float32
            loss, terms = codec_loss(result.recon, wav, result.commit_loss, self.msspec, cfg)
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


def _train(
    cfg: CodecTrainConfig, codec_cfg: CodecConfig, files: list[Path], out: Path, info: DistInfo
) -> Path:
    device, main = info.device, info.is_main
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = StemCodec(codec_cfg)
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
    task = CodecTask(cfg, codec_cfg, info, train_data, val, bool(val_files), disc, disc_opt)

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
