"""GPU check of generation and training (random weights; run by `scripts/gpu_check.sh`).

    python benchmarks/gpu_check.py generate          # tiny + medium-6cb, fp32/bf16/fp16, eager + compiled
    python benchmarks/gpu_check.py train --work DIR  # 30 steps of LM and codec training, bf16 autocast
    python benchmarks/gpu_check.py generate --device cpu --dtypes float32 --presets tiny --compile-dtypes

generate: per preset and dtype, a text -> stems generation (greedy, CFG 3) and an edit of its
drums, eager and with `compile()` (CUDA graphs); prints decoding steps/s (median step, and all
steps over the wall time), the real-time factor (audio seconds per second, codec decoding
included), the graphs compiled, the peak memory; compares each dtype's tokens and teacher-forced
logits with float32's; checks the edit keeps the other stems bit-exact and the decoding cache is
allocated once. train: writes a tiny model folder, a token dataset and songs in DIR (for the
torchrun step of the shell script) and trains the LM and a codec for 30 steps each.
Every line of results starts with `[gpu-check]`; a failed check exits non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import bench_config, random_parts

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.lm import model as lm_model

SECONDS = {"tiny": 10.0, "medium-6cb": 5.0}


def say(msg: str) -> None:
    print(f"[gpu-check] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_generation(model: MusicGenStem, seconds: float) -> tuple[torch.Tensor, float, float, float]:
    """(codes, median steps/s, mean steps/s over the wall time, real-time factor)."""
    stamps: list[float] = []
    sync(model.device)
    t0 = time.perf_counter()
    out = model.generate(
        ["a"], progress=lambda d, t: stamps.append(time.perf_counter()), seed=0, duration=seconds
    )
    sync(model.device)
    wall = time.perf_counter() - t0
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return out.codes, 1 / statistics.median(gaps), len(stamps) / wall, seconds / wall


def check_preset(name: str, device: torch.device, dtypes: list[str], compile_dtypes: list[str]) -> None:
    config, note = bench_config(name, lut=True)
    parts = random_parts(config)
    model = MusicGenStem(parts, device=device)
    model.set_generation_params(use_sampling=False, cfg_coef=3.0)
    fp32_state = {k: v.detach().cpu().clone() for k, v in model.lm.state_dict().items()}
    seconds = SECONDS.get(name, 5.0)
    n_params = sum(v.numel() for v in fp32_state.values())
    say(f"{name}: {n_params / 1e6:.0f} M LM parameters; {note or 'LUT text'}")
    ref_codes = ref_logits = None
    allocations: list[tuple[int, ...]] = []
    real_init = lm_model.KVCache.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(self, *args, **kwargs)
        allocations.append(tuple(self.k.shape))

    lm_model.KVCache.__init__ = counting_init  # type: ignore[method-assign]
    try:
        for dtype in dtypes:
            model.lm.compiled_step = None
            model.lm.decode_cache = None
            model.lm.to(torch.float32).load_state_dict(fp32_state)
            model.set_dtype(dtype)
            for compiled in (False, True) if dtype in compile_dtypes else (False,):
                label = f"{name} {dtype} {'compiled' if compiled else 'eager'}"
                if compiled:
                    model.compile()
                    graphs0 = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                    t = time.perf_counter()
                    timed_generation(model, seconds)  # compiles (and records the CUDA graphs)
                    say(f"{label}: first call (compiling) {time.perf_counter() - t:.1f} s")
                allocations.clear()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                codes, median_sps, mean_sps, rtf = timed_generation(model, seconds)
                codes2, *_ = timed_generation(model, seconds)  # again: the same cache, no recompile
                assert torch.equal(codes, codes2), f"{label}: greedy decoding is not repeatable"
                assert len(allocations) <= 1, f"{label}: {len(allocations)} decoding caches allocated"
                assert 0 <= int(codes.min()) and int(codes.max()) < model.layout.card
                t = time.perf_counter()
                edit = model.regenerate_from_codes(codes, ["drums"], ["b"], seed=1).codes
                sync(device)
                edit_s = time.perf_counter() - t
                kept = model.layout.streams_of_stems(["bass", "other"])
                assert torch.equal(edit[:, kept], codes[:, kept]), f"{label}: the edit changed kept stems"
                logits, mask = model.compute_logits(codes if ref_codes is None else ref_codes, ["a"])
                assert torch.isfinite(logits[:, mask]).all(), f"{label}: non-finite logits"
                peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else 0.0
                msg = (
                    f"{label}: {median_sps:.1f} steps/s (median step), {mean_sps:.1f} steps/s over the wall "
                    f"time, real-time factor {rtf:.2f}; edit {edit_s:.1f} s; peak {peak:.1f} GB"
                )
                if compiled:
                    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs0
                    msg += f"; graphs compiled {graphs}"
                say(msg)
                if ref_codes is None:
                    ref_codes, ref_logits = codes, logits
                else:
                    same = float((codes == ref_codes).float().mean())
                    valid = logits[:, mask].float()
                    ref = ref_logits[:, mask].float()  # type: ignore[index]
                    rel = float((valid - ref).abs().max() / ref.abs().max())
                    agree = float((valid.argmax(-1) == ref.argmax(-1)).float().mean())
                    say(
                        f"{label} vs float32 eager: {100 * same:.1f}% of greedy tokens equal; teacher-forced "
                        f"logits max rel. error {rel:.2e}, argmax agreement {100 * agree:.1f}%"
                    )
            model.lm.compiled_step = None
    finally:
        lm_model.KVCache.__init__ = real_init  # type: ignore[method-assign]
    del model, parts
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------- training


def write_data(work: Path) -> None:
    """A tiny model folder (1 s edit window, 2 s crops), 8 tracks of random tokens, 4 songs."""
    cfg = dataclasses.replace(presets.tiny(), edit_window=1.0, max_duration=2.0)
    MusicGenStem.from_config(cfg, seed=0, device="cpu").save(work / "model", force=True)
    rng = np.random.default_rng(0)
    data = work / "tokens"
    (data / "tokens").mkdir(parents=True, exist_ok=True)
    meta = {"layout": cfg.layout.to_dict(), "frame_rate": 50.0, "sample_rate": 32000, "codec_model": "rand"}
    (data / "prepare.json").write_text(json.dumps(meta))
    with (data / "index.jsonl").open("w") as f:
        for i in range(8):
            codes = rng.integers(0, cfg.layout.card, size=(cfg.layout.num_streams, 500)).astype(np.int16)
            np.save(data / "tokens" / f"t{i}.npy", codes)
            entry = {"id": f"t{i}", "tokens": f"tokens/t{i}.npy", "frames": 500, "captions": [f"song {i}"]}
            f.write(json.dumps(entry) + "\n")
    t = np.arange(32000) / 32000
    for i in range(4):
        song = work / "songs" / f"s{i}"
        song.mkdir(parents=True, exist_ok=True)
        sf.write(song / "bass.wav", 0.3 * np.sin(2 * np.pi * 55 * (i + 1) * t), 32000)


def check_training(work: Path, device: str, steps: int) -> None:
    from musicgen_stem.training.codec import CodecTrainConfig, train_codec
    from musicgen_stem.training.lm import LMTrainConfig, train_lm

    write_data(work)
    amp = "bf16" if device == "cuda" else "none"
    t = time.perf_counter()
    cfg = LMTrainConfig(
        model=str(work / "model"), data=[str(work / "tokens")], out=str(work / "lm_amp"), steps=steps,
        batch_size=8, lr=1e-3, warmup=5, log_every=10, checkpoint_every=steps, validate_every=steps,
        valid_fraction=0.25, valid_batches=2, device=device, amp=amp,
    )  # fmt: skip
    train_lm(cfg)
    say(f"LM: {steps} steps under {amp} autocast in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ccfg = CodecTrainConfig(
        data=[str(work / "songs")], stem="bass", out=str(work / "codec_amp"), codec="mini", steps=steps,
        batch_size=8, segment=0.5, warmup=5, log_every=10, checkpoint_every=steps, val_every=steps,
        device=device, amp=device == "cuda", w_stft=1.0,
    )  # fmt: skip
    train_codec(ccfg)
    say(f"codec: {steps} steps under {amp} autocast in {time.perf_counter() - t:.1f} s")
    for run in ("lm_amp", "codec_amp"):
        logs = [json.loads(x) for x in (work / run / "log.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in logs if "loss" in r]
        assert all(np.isfinite(losses)), f"{run}: non-finite losses {losses}"
        say(f"{run}: losses {', '.join(f'{x:.3f}' for x in losses)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["generate", "train"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--presets", nargs="+", default=["tiny", "medium-6cb"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--compile-dtypes", nargs="*", default=["float32", "bfloat16", "float16"], help="dtypes also compiled"
    )
    parser.add_argument("--work", type=Path, default=Path("gpu-check-work"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        say(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    if args.what == "generate":
        for name in args.presets:
            check_preset(name, device, args.dtypes, args.compile_dtypes)
    else:
        check_training(args.work, args.device, args.steps)
    say(f"{args.what}: all checks passed")


if __name__ == "__main__":
    main()
