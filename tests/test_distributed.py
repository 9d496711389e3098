"""Training at scale, proven on CPU with gloo (2 ranks, tiny models):

- DDP on 2 ranks == 1 process with the same global batch (and == 1 process with 2 accumulated
  micro-batches); the parameters are identical on both ranks;
- FSDP2 on 2 ranks == DDP, for the LM and for the codec;
- a 2-rank torchrun run killed mid-way and rerun with the same command == the uninterrupted run;
- the weight-decay groups, the same under DDP and FSDP; work of rank 0 that fails stops every rank.

One spawned pair of processes runs the four 2-rank trainings in a row (the module fixture); the
torchrun commands are those of README/TRAINING.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp
from torch.nn.attention import SDPBackend, sdpa_kernel

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.codec import CodecConfig, StemCodec
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.modeldir import load_model
from musicgen_stem.training import distributed as dist_mod
from musicgen_stem.training import loop
from musicgen_stem.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from musicgen_stem.training.codec import CodecTrainConfig, train_codec
from musicgen_stem.training.distributed import DistInfo, on_main
from musicgen_stem.training.lm import LMTrainConfig, train_lm
from musicgen_stem.training.lm_loss import LMWithText
from musicgen_stem.training.optim import DECAY, NO_DECAY, decay_groups

STEPS = 6
#: The LM run of every test, as `train-lm` options (the torchrun commands use them as they are).
LM_ARGS = {
    "--steps": STEPS, "--batch-size": 4, "--lr": 1e-3, "--warmup": 1, "--crop-seconds": 0.6,
    "--log-every": 1, "--checkpoint-every": 2, "--validate-every": 3, "--valid-batches": 1,
    "--valid-fraction": 0.25, "--ema-decay": 0.9, "--seed": 3, "--device": "cpu", "--num-threads": 1,
}  # fmt: skip


def _free_ports(n: int) -> list[int]:
    """n distinct ports free now, below Linux's ephemeral range (32768-60999): the fixture's runs
    start one after another, and a port taken from that range minutes before its run could by then
    be held by a connection of an earlier run (gloo's pairs take ephemeral ports)."""
    rng, ports = random.Random(), []
    while len(ports) < n:
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def _lm_cfg(root: Path, out: str, **kw) -> LMTrainConfig:
    args = {k[2:].replace("-", "_"): v for k, v in LM_ARGS.items()}
    args.update(kw)
    return LMTrainConfig(model=str(root / "model"), data=[str(root / "data")], out=str(root / out), **args)


def _codec_cfg(root: Path, out: str, **kw) -> CodecTrainConfig:
    base = dict(
        data=[str(root / "songs")], stem="bass", out=str(root / out), codec="tiny", segment=0.25,
        batch_size=2, steps=5, warmup=1, log_every=5, checkpoint_every=5, val_every=5, val_batches=1,
        mel_scales=(64, 256), device="cpu", threads=1,
    )  # fmt: skip
    base.update(kw)
    return CodecTrainConfig(**base)


def _write_data(root: Path) -> None:
    """A tiny model folder, a token dataset (4 tracks of random tokens) and 3 songs of audio."""
    cfg = dataclasses.replace(presets.tiny(), edit_window=1.0, max_duration=2.0)
    MusicGenStem.from_config(cfg, seed=0, device="cpu").save(root / "model")
    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "tokens").mkdir(parents=True)
    meta = {"layout": cfg.layout.to_dict(), "frame_rate": 50.0, "sample_rate": 32000, "codec_model": "t"}
    (data / "prepare.json").write_text(json.dumps(meta))
    with (data / "index.jsonl").open("w") as f:
        for i in range(4):
            codes = rng.integers(0, cfg.layout.card, size=(cfg.layout.num_streams, 300)).astype(np.int16)
            np.save(data / "tokens" / f"t{i}.npy", codes)
            entry = {"id": f"t{i}", "tokens": f"tokens/t{i}.npy", "frames": 300, "captions": [f"song {i}"]}
            f.write(json.dumps(entry) + "\n")
    t = np.arange(8000) / 32000
    for i in range(3):
        (root / "songs" / f"s{i}").mkdir(parents=True)
        sf.write(root / "songs" / f"s{i}" / "bass.wav", (0.3 * np.sin(2 * np.pi * 55 * (i + 1) * t)), 32000)


# ------------------------------------------------------------------------------ the 2-rank worker


def _spy_run(rank: int, dump: Path):
    """loop.run, then each rank saves its (gathered) parameters and optimizer groups by name."""
    real = loop.run

    def run(trainer, task, out):
        start = real(trainer, task, out)
        params = {}
        for n, p in trainer.model.named_parameters():
            full = getattr(p, "full_tensor", None)  # FSDP: gathered from every rank
            params[n] = (full() if callable(full) else p).detach().clone()
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        groups = {g["name"]: [names[id(p)] for p in g["params"]] for g in trainer.optimizer.param_groups}
        torch.save({"params": params, "groups": groups}, dump / f"{Path(out).name}.rank{rank}.pt")
        return start

    return run


def _worker(rank: int, world: int, ports: list[int], root: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    loop.run = _spy_run(rank, root)
    jobs = [
        (train_lm, _lm_cfg(root, "lm_ddp"), nullcontext()),
        (train_lm, _lm_cfg(root, "lm_ddp_math"), _math_attention()),
        (train_lm, _lm_cfg(root, "lm_fsdp", fsdp=True), nullcontext()),
        (train_codec, _codec_cfg(root, "codec_ddp"), nullcontext()),
        (train_codec, _codec_cfg(root, "codec_fsdp", fsdp=True), nullcontext()),
    ]
    for port, (train, cfg, context) in zip(ports, jobs, strict=False):
        os.environ["MASTER_PORT"] = str(port)
        with context:
            train(cfg)
    # work of rank 0 that fails stops every rank (no rank left waiting in the next collective)
    os.environ["MASTER_PORT"] = str(ports[-1])
    info = dist_mod.init_distributed("cpu")
    try:
        on_main(info, lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    except (OSError, MusicGenStemError) as e:
        (root / f"on_main.rank{rank}.txt").write_text(f"{type(e).__name__}: {e}")
    # fp16 under FSDP: the sharded grad scaler (found-inf reduced over the shards)
    cfg = loop.LoopConfig(name="t", steps=1, lr=1e-3, amp="fp16", fsdp=True)
    trainer = loop.build_trainer(torch.nn.Sequential(torch.nn.Linear(4, 4)), info, cfg)
    (root / f"scaler.rank{rank}.txt").write_text(type(trainer.scaler).__name__)
    dist_mod.cleanup()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    _write_data(root)
    ports = _free_ports(6)
    ctx = mp.start_processes(_worker, args=(2, ports, root), nprocs=2, start_method="spawn", join=False)
    deadline = time.monotonic() + 300  # about 30 s on 2 idle cores
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:  # fail, rather than wait out gloo's 30-minute timeout
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2-process trainings did not finish within 300 s")
    return root


def _params(root: Path, name: str, rank: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(root / f"{name}.rank{rank}.pt", weights_only=True)["params"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _ckpt_lm(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path / CHECKPOINT_NAME)
    return {f"{part}.{k}": v for part in ("lm", "text") for k, v in ckpt[part].items()}


# ----------------------------------------------------------------------------------------- tests


TOLERANCE = 2e-5  # rounding of different batch splits, far below one AdamW step (lr 1e-3)


def _math_attention():
    """Attention by the plain formula. With the tiny model's one-token text memory the
    cross-attention's softmax is constant: its query weights get zero gradients, exactly with this
    kernel, as rounding noise with the fused one, which AdamW (eps 1e-8) turns into steps of up to
    lr, different for different batch splits. Every other weight agrees within 2e-5 either way
    (1.03e-5 seen, a feed-forward weight; a step of lr is 1e-3)."""
    return sdpa_kernel([SDPBackend.MATH])


def test_ddp_equals_one_process_and_ranks_agree(runs):
    ddp = _params(runs, "lm_ddp_math")
    assert _max_diff(ddp, _params(runs, "lm_ddp_math", rank=1)) == 0.0  # identical on both ranks
    assert _max_diff(_params(runs, "lm_ddp"), _params(runs, "lm_ddp", rank=1)) == 0.0
    with _math_attention():
        one = train_lm(_lm_cfg(runs, "lm_one", num_threads=None))  # this process, the same global batch
        accum = train_lm(_lm_cfg(runs, "lm_accum", grad_accum=2, num_threads=None))  # 2 micro-batches
    single = _ckpt_lm(runs / "lm_one")
    assert one.is_dir() and _max_diff(single, ddp) < TOLERANCE
    assert _max_diff(single, _ckpt_lm(runs / "lm_ddp_math")) < TOLERANCE  # rank 0's checkpoint
    assert accum.is_dir() and _max_diff(single, _ckpt_lm(runs / "lm_accum")) < TOLERANCE
    start = load_model(runs / "model").lm.state_dict()
    assert max(float((single[f"lm.{k}"] - v).abs().max()) for k, v in start.items()) > 1e-3  # it trained
    logs = [json.loads(x) for x in (runs / "lm_ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == list(range(1, STEPS + 1))
    assert sum("valid_loss" in r for r in logs) == 2


def test_fsdp_equals_ddp_lm_and_codec(runs):
    assert _max_diff(_params(runs, "lm_fsdp"), _params(runs, "lm_ddp")) < 1e-4
    assert _max_diff(_ckpt_lm(runs / "lm_fsdp"), _ckpt_lm(runs / "lm_ddp")) < 1e-4
    assert _max_diff(_params(runs, "codec_fsdp"), _params(runs, "codec_ddp")) < 1e-4
    a, b = (load_checkpoint(runs / d / CHECKPOINT_NAME) for d in ("codec_fsdp", "codec_ddp"))
    assert _max_diff(a["model"], b["model"]) < 1e-4  # codebooks (buffers) included
    assert _max_diff(a["ema"], b["ema"]) < 1e-4
    for name in ("lm_fsdp", "codec_fsdp"):
        assert (runs / name / ("model" if name.startswith("lm") else "codec_bass.safetensors")).exists()


def test_decay_groups_by_role_same_under_ddp_and_fsdp(runs):
    parts = load_model(runs / "model")
    lm_groups = decay_groups(LMWithText(parts.lm, parts.text))
    no_decay = set(lm_groups[NO_DECAY])
    assert {f"lm.emb.{k}.weight" for k in range(6)} <= no_decay  # embeddings (the old bug decayed them)
    assert "text.embed.weight" in no_decay and "text.output_proj.bias" in no_decay
    assert "lm.transformer.layers.0.norm1.weight" in no_decay and "lm.out_norm.bias" in no_decay
    assert set(lm_groups[DECAY]) == {
        n for n, p in LMWithText(parts.lm, parts.text).named_parameters() if n not in no_decay
    }
    assert all(n.endswith("weight") and ".norm" not in n and "emb" not in n for n in lm_groups[DECAY])
    codec_groups = decay_groups(StemCodec(CodecConfig.tiny(1)))
    assert all(n.endswith("weight_v") or ".weight_" in n for n in codec_groups[DECAY])  # conv, LSTM
    assert all(n.endswith(("weight_g", "bias")) or ".bias_" in n for n in codec_groups[NO_DECAY])
    for run, expected in (("lm", lm_groups), ("codec", codec_groups)):
        for mode in ("ddp", "fsdp"):
            got = torch.load(runs / f"{run}_{mode}.rank1.pt", weights_only=True)["groups"]
            assert got == {k: v for k, v in expected.items() if v}, (run, mode)


def test_fp16_under_fsdp_uses_the_sharded_scaler(runs):
    assert (runs / "scaler.rank0.txt").read_text() == "ShardedGradScaler"


def test_failure_on_rank0_stops_every_rank(runs):
    assert (runs / "on_main.rank0.txt").read_text().startswith("OSError")
    assert "rank 0 failed" in (runs / "on_main.rank1.txt").read_text()
    assert "No space left" in (runs / "on_main.rank1.txt").read_text()


def _torchrun(root: Path, out: str) -> list[str]:
    """`torchrun --standalone --nproc_per_node=2 -m musicgen_stem.training.lm ...` of LM_ARGS."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "musicgen_stem.training.lm", "--model", str(root / "model"), "--data", str(root / "data")]
    cmd += ["--out", str(root / out)] + [str(x) for kv in LM_ARGS.items() for x in kv]
    return cmd


def _kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process below it (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    for p in reversed(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def test_torchrun_killed_midway_then_rerun_equals_uninterrupted(runs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = runs / "killed"
    log, console = out / "log.jsonl", runs / "killed.txt"
    with console.open("w") as f:
        proc = subprocess.Popen(_torchrun(runs, "killed"), stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 150
    while proc.poll() is None and time.monotonic() < deadline:  # kill once step 3 is logged
        lines = log.read_text().splitlines() if log.is_file() else []
        if any(json.loads(x).get("step", 0) >= 3 and "loss" in json.loads(x) for x in lines):
            break
        time.sleep(0.05)
    _kill_tree(proc.pid)  # torchrun and its workers (which run in sessions of their own)
    proc.wait()
    assert proc.returncode != 0, console.read_text()[-3000:]
    killed_at = load_checkpoint(out / CHECKPOINT_NAME)["step"]
    assert 2 <= killed_at < STEPS and not (out / "model").exists()

    rerun = subprocess.run(_torchrun(runs, "killed"), capture_output=True, text=True, env=env, timeout=150)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert f"resuming from step {killed_at}" in rerun.stdout
    assert rerun.stdout.count("| grad_norm ") == STEPS - killed_at  # rank 0 logs only
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == STEPS
    assert _max_diff(_ckpt_lm(out), _ckpt_lm(runs / "lm_ddp")) < 1e-6  # the uninterrupted run
    a, b = (load_checkpoint(d / CHECKPOINT_NAME)["ema"]["lm"] for d in (out, runs / "lm_ddp"))
    assert _max_diff(a, b) < 1e-6
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines() if "loss" in json.loads(x)]
    assert steps == list(range(1, STEPS + 1))  # entries after the checkpoint were dropped, then rewritten


def test_reductions_run_on_the_backends_device(monkeypatch):
    """Values are reduced where they live, moved to the backend's device (CUDA under NCCL, here
    the meta device stands for it): no `.cpu()` on the way (the NCCL bug)."""
    seen = []
    monkeypatch.setattr(dist_mod, "distributed", lambda: True)
    monkeypatch.setattr(dist_mod, "comm_device", lambda: torch.device("meta"))
    monkeypatch.setattr(dist_mod.dist, "all_reduce", lambda t, op=None: seen.append(t.device))
    monkeypatch.setattr(dist_mod.dist, "get_world_size", lambda group=None: 2)
    value = torch.ones(3, device="meta")
    assert dist_mod.all_reduce_mean(value).device.type == "meta"
    assert dist_mod.all_reduce_sum(value).device.type == "meta"
    assert seen == [torch.device("meta")] * 2


def test_one_process_info_helpers():
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    assert on_main(info, lambda: 7) == 7
    with pytest.raises(OSError):
        on_main(info, lambda: (_ for _ in ()).throw(OSError("disk full")))
    assert loop.amp_setting("auto", torch.device("cpu")) == "none"
    with pytest.raises(MusicGenStemError, match="needs a CUDA device"):
        loop.amp_setting("fp16", torch.device("cpu"))
