"""Ours against the reference implementation (audiocraft, MusicGen-Stem branch), side by side in one
process, on the same random weights in the released medium-6cb shapes.

    /work/scratch/refvenv/bin/python benchmarks/reference_side_by_side.py \
        --audiocraft /work/scratch/audiocraft --threads 2 --out runs/side_by_side.json

Run it with a Python environment where audiocraft's LM and EnCodec modules import (audiocraft's
source tree is given by --audiocraft; this repository's `src` is put on the path too). Our
package never imports audiocraft: only this script does.

The reference is built by audiocraft's own hydra configs and builders, as the released 6cb model
was trained (`solver=musicgenstem/musicgenstem_base_32khz`, `model/lm/model_scale=medium`,
`transformer_lm.n_q=6`, delays [0, 0, 0, 1, 2, 3]; codecs `solver=compression/encodec_musicgen_32khz`
with rvq.n_q 1/1/4), except that the text conditioner is a LUT (768-d like T5-base, noop tokenizer)
because T5 cannot be fetched offline. Ours is built from the reference's config and state dicts with
`musicgen_stem.reference` (the loader of released checkpoints), in memory: our float32 LM shares
no weights with the reference once packed for decoding; int8/int4 are quantized from the
reference's tensors.

Timed, in alternating rounds (medians reported):
- LM greedy decoding with classifier-free guidance (batch 1, cond + null rows), steps/s: the
  reference's `LMModel.generate` (its streaming KV cache; one step per callback) against ours
  (`generation.generate_codes`) in float32, int8 and int4; the median step over `--steps` steps
  (the first step, the prefill, excluded), as `benchmarks/decode.py` times ours.
- Codec decode of `--seconds` s of random codes, 3 stems: the reference's
  `MultiStemCompressionModel.decode` against our `MultiStemCodec.decode_stems`, under no_grad.

The codec timings also record each decode's minor page faults: decoding 10 s of 3 stems at once
touches ~1.3 M fresh pages (the reference's, and ours before it decoded in pieces), whose cost
depends on the machine's memory state (cheap right after a large free, dear under memory
pressure), so compare runs by their faults as well as their seconds.

Checks: ours float32 greedy tokens against the reference's (frames equal before the first
difference), our decoded audio against the reference's (max abs difference).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.machinery
import itertools
import json
import os
import resource
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
STUBBED = {"torchaudio": ["transforms", "functional", "functional.filtering"], "spacy": []}
TEXT = "80s pop track with bassy drums and synth"
LUT = {"model": "lut", "lut": {"n_bins": 32, "dim": 768, "tokenizer": "noop"}}


def stub_unimportable() -> list[str]:
    """Stand-ins for audiocraft imports that the LM and EnCodec never call (torchaudio's compiled
    extension must match torch exactly; spacy only tokenizes for T5). Returns the stubbed names."""
    stubbed = []
    for top, subs in STUBBED.items():
        try:
            importlib.import_module(top)
            continue
        except Exception:  # missing, or an extension built for another torch
            pass
        for name in [top, *(f"{top}.{s}" for s in subs)]:
            module = types.ModuleType(name)
            module.__path__ = []
            module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

            def placeholder(attr: str, _name: str = name) -> type:
                if attr.startswith("__"):
                    raise AttributeError(attr)

                def unavailable(self: object, *args: object, **kwargs: object) -> None:
                    raise RuntimeError(f"{_name}.{attr} is a stub in this benchmark")

                return type(attr, (), {"__init__": unavailable})

            module.__getattr__ = placeholder  # type: ignore[method-assign]
            sys.modules[name] = module
        stubbed.append(top)
    return stubbed


# ------------------------------------------------------------------------------------ reference


def compose(audiocraft: Path, overrides: list[str]) -> Any:
    """A config composed by audiocraft's hydra configs (as `dora run` would, without launching)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(audiocraft / "config"), version_base="1.1"):
        return hydra_compose(config_name="config", overrides=overrides)


def reference_configs(audiocraft: Path, layers: int | None) -> tuple[Any, dict[str, Any]]:
    """The LM config of the 6cb grid entry (LUT text) and the per-stem codec configs."""
    from omegaconf import OmegaConf

    lm_overrides = [
        "solver=musicgenstem/musicgenstem_base_32khz",
        "model/lm/model_scale=medium",
        "transformer_lm.n_q=6",
        "codebooks_pattern.delay.delays=[0,0,0,1,2,3]",
        "device=cpu",
        "dtype=float32",
        "autocast=false",
    ]
    if layers is not None:
        lm_overrides.append(f"transformer_lm.num_layers={layers}")
    lm_cfg = compose(audiocraft, lm_overrides)
    OmegaConf.set_struct(lm_cfg, False)
    lm_cfg.conditioners.description = OmegaConf.create(LUT)
    codec_cfgs = {}
    for stem, n_q in {"bass": 1, "drums": 1, "other": 4}.items():
        codec_cfgs[stem] = compose(
            audiocraft, ["solver=compression/encodec_musicgen_32khz", f"rvq.n_q={n_q}", "device=cpu"]
        )
    return lm_cfg, codec_cfgs


def build_reference(lm_cfg: Any, codec_cfgs: dict[str, Any], seed: int) -> tuple[Any, Any]:
    """The reference LM and MultiStemCompressionModel, eval mode, random weights."""
    from audiocraft.models import builders
    from audiocraft.models.encodec import MultiStemCompressionModel

    torch.manual_seed(seed)
    lm = builders.get_lm_model(lm_cfg).eval()
    codecs = []
    for i, cfg in enumerate(codec_cfgs.values()):
        torch.manual_seed(seed + 1 + i)
        codec = builders.get_compression_model(cfg).eval()
        for layer in codec.quantizer.vq.layers:  # random codebooks in place of the k-means init
            layer._codebook.embed.normal_()
            layer._codebook.inited.fill_(1.0)
        codecs.append(codec)
    return lm, MultiStemCompressionModel(list(codec_cfgs), codecs).eval()


# ------------------------------------------------------------------------------------------- ours


def ours_from_reference(lm_cfg: Any, codec_cfgs: dict[str, Any], ref_lm: Any, ref_codec: Any) -> Any:
    """Our ModelParts from the reference's configs and weights, through the released-format
    mapping of `musicgen_stem.reference` (the stored xp.cfg is the YAML of the config). Float
    tensors are shared with the reference (nothing is copied here)."""
    from omegaconf import OmegaConf

    from musicgen_stem import reference as ref
    from musicgen_stem.modeldir import build_parts

    def stored(cfg: Any) -> Any:
        return OmegaConf.create(OmegaConf.to_yaml(cfg))  # as written into xp.cfg

    config = ref.model_config(stored(lm_cfg), {s: stored(c) for s, c in codec_cfgs.items()}, "ref", None)
    parts = build_parts(config, device="cpu", empty=True)
    state = {k: v.detach() for k, v in ref_lm.state_dict().items()}
    keep = lambda t: None  # noqa: E731 (nothing memory-mapped to release)
    text = {k[len(ref.TEXT_PREFIX) :]: v for k, v in state.items() if k.startswith(ref.TEXT_PREFIX)}
    ref._assign(
        parts.lm, {k: v for k, v in state.items() if not k.startswith("condition_provider.")}, "LM", keep
    )
    ref._assign(parts.text, text, "text conditioner", keep)
    for stem, model in ref_codec.compression_models.items():
        ref._assign(parts.codec.codecs[stem], dict(model.state_dict()), f"{stem} codec", keep)
    parts.lm.eval(), parts.text.eval(), parts.codec.eval()
    return parts


# ------------------------------------------------------------------------------------------ timing


def median_step(stamps: list[float]) -> float:
    """Median seconds between consecutive step callbacks (the prefill step excluded)."""
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


def time_reference_lm(lm: Any, frames: int, cfg_coef: float) -> tuple[float, torch.Tensor]:
    """steps/s of the reference's greedy `generate` (CFG in one batch of 2) and its codes."""
    from audiocraft.modules.conditioners import ConditioningAttributes

    attrs = [ConditioningAttributes(text={"description": TEXT})]
    stamps: list[float] = []
    with torch.no_grad():
        codes = lm.generate(
            None,
            attrs,
            max_gen_len=frames,
            use_sampling=False,
            cfg_coef=cfg_coef,
            two_step_cfg=False,
            callback=lambda done, total: stamps.append(time.perf_counter()),
        )
    return 1.0 / median_step(stamps), codes


def time_our_lm(lm: Any, memory: torch.Tensor, null: torch.Tensor, frames: int, cfg_coef: float) -> tuple:
    """steps/s of our greedy decoding (CFG, batch 1) and its codes."""
    from musicgen_stem.generation import SamplingParams, generate_codes, text_task

    stamps: list[float] = []
    codes = generate_codes(
        lm,
        text_task(1, lm.layout, frames).known(),
        memory,
        null,
        SamplingParams(use_sampling=False, cfg_coef=cfg_coef),
        torch.Generator().manual_seed(0),
        callback=lambda done, total: stamps.append(time.perf_counter()),
    )
    return 1.0 / median_step(stamps), codes


def rss_gb() -> float:
    """Resident memory of this process, GB (Linux; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError):
        return 0.0


def timed(fn: Any) -> tuple[float, int, Any]:
    """Seconds, minor page faults of this process, and the result of `fn()`."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, out


def equal_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Leading frames where every stream of `a` and `b` [1, K, T] agree."""
    same = (a == b).all(dim=1)[0]
    return int(same.long().cumprod(0).sum())


def load_snapshot() -> dict[str, Any]:
    """uptime and the busiest processes, for the record."""
    load = os.getloadavg()
    try:
        import subprocess

        top = subprocess.run(
            ["ps", "-eo", "pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[1:6]
    except OSError:
        top = []
    return {"loadavg": [round(x, 2) for x in load], "top": [" ".join(t.split())[:120] for t in top]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audiocraft", type=Path, required=True, help="audiocraft source tree (multistem)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="decoding steps timed per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating LM rounds")
    parser.add_argument("--codec-rounds", type=int, default=5, help="alternating codec rounds")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio decoded per codec run")
    parser.add_argument(
        "--modes", nargs="+", default=["fp32", "int8", "int4"], choices=["fp32", "int8", "int4"]
    )
    parser.add_argument("--layers", type=int, default=None, help="LM layers (default: medium's 48)")
    parser.add_argument("--skip-lm", action="store_true", help="codec decode only")
    parser.add_argument("--skip-codec", action="store_true", help="LM decode only")
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="our package's source folder (to time another checkout)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    stubbed = stub_unimportable()
    sys.path[:0] = [str(args.audiocraft.resolve()), str(args.src.resolve())]
    torch.set_num_threads(args.threads)
    from musicgen_stem.api.decoding import text_memories
    from musicgen_stem.lm.packing import pack_for_decoding
    from musicgen_stem.lm.quantize import quantize

    lm_cfg, codec_cfgs = reference_configs(args.audiocraft, args.layers)
    t0 = time.perf_counter()
    ref_lm, ref_codec = build_reference(lm_cfg, codec_cfgs, args.seed)
    n_params = sum(p.numel() for p in ref_lm.parameters())
    print(
        f"reference built in {time.perf_counter() - t0:.0f} s: LM {n_params / 1e9:.3f} B parameters",
        flush=True,
    )
    parts = ours_from_reference(lm_cfg, codec_cfgs, ref_lm, ref_codec)
    print(f"RSS {rss_gb():.1f} GB", flush=True)
    results: dict[str, Any] = {
        "threads": args.threads,
        "torch": torch.__version__,
        "lm_params": n_params,
        "lm_layers": int(lm_cfg.transformer_lm.num_layers),
        "stubbed_imports": stubbed,
        "src": str(args.src.resolve()),
        "load_before": load_snapshot(),
    }
    rows: list[tuple[str, float, float]] = []  # (what, value, x reference)

    if not args.skip_lm:
        memory, null = text_memories(parts.text, [TEXT])
        frames = args.steps + 1
        results["lm"], results["lm_greedy_equal_frames"] = {}, {"of": frames}
        # float32 first, then the quantized LMs: our float32 copy (packed for decoding) and the
        # reference's do not fit in memory beside more copies
        for phase in ([m for m in args.modes if m == "fp32"], [m for m in args.modes if m != "fp32"]):
            if not phase:
                continue
            ours: dict[str, Any] = {}
            for mode in phase:
                if mode == "fp32":
                    ours[mode] = pack_for_decoding(parts.lm, "auto")  # MusicGenStem's CPU layout
                else:  # a fresh module on the reference's tensors, quantized (MusicGenStem.quantize)
                    ours[mode] = quantize(ours_from_reference(lm_cfg, codec_cfgs, ref_lm, ref_codec).lm, mode)
                gc.collect()
                print(f"built ours {mode}: RSS {rss_gb():.1f} GB", flush=True)
            order = ["reference", *ours]
            for key in order:  # warm-up (first calls set up kernels and caches), untimed
                if key == "reference":
                    time_reference_lm(ref_lm, 4, 3.0)
                else:
                    time_our_lm(ours[key], memory, null, 4, 3.0)
            rates: dict[str, list[float]] = {k: [] for k in order}
            codes: dict[str, torch.Tensor] = {}
            for r in range(args.rounds):
                for key in order[:: 1 if r % 2 == 0 else -1]:
                    if key == "reference":
                        rate, out = time_reference_lm(ref_lm, frames, 3.0)
                    else:
                        rate, out = time_our_lm(ours[key], memory, null, frames, 3.0)
                    rates[key].append(rate)
                    codes.setdefault(key, out)
                    print(f"  round {r}: {key:>9} {rate:6.2f} steps/s", flush=True)
            base = statistics.median(rates["reference"])
            ref_key = f"reference ({'+'.join(phase)} phase)"
            for k, v in rates.items():
                m = statistics.median(v)
                results["lm"][ref_key if k == "reference" else k] = {
                    "steps_per_s": m,
                    "runs": v,
                    "x_reference": m / base,
                }
                rows.append((f"LM greedy + CFG, {ref_key if k == 'reference' else k}", m, m / base))
            for k in ours:
                results["lm_greedy_equal_frames"][k] = equal_prefix(codes["reference"], codes[k])
            del ours, codes
            parts.lm = None
            gc.collect()
        del ref_lm
        gc.collect()

    if not args.skip_codec:
        n = round(args.seconds * 50)
        gen = torch.Generator().manual_seed(args.seed + 7)
        codes6 = torch.randint(0, 2048, (1, 6, n), generator=gen)
        ref_times, our_times = [], []
        faults: dict[str, list[int]] = {"reference": [], "ours": []}
        ref_out: dict[str, torch.Tensor] = {}
        our_out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            ref_codec.decode(codes6[..., :50]), parts.codec.decode_stems(codes6[..., :50])  # warm-up
            for r in range(args.codec_rounds):
                for key in ["reference", "ours"][:: 1 if r % 2 == 0 else -1]:
                    if key == "reference":
                        dt, nf, ref_out = timed(lambda: ref_codec.decode(codes6))
                        ref_times.append(dt)
                    else:
                        dt, nf, our_out = timed(lambda: parts.codec.decode_stems(codes6))
                        our_times.append(dt)
                    faults[key].append(nf)
                    print(f"  round {r}: codec {key:>9} {dt:6.2f} s, {nf} minor page faults", flush=True)
        rt, ot = statistics.median(ref_times), statistics.median(our_times)
        diff = max(float((ref_out[s] - our_out[s]).abs().max()) for s in our_out)
        results["codec_decode"] = {
            "seconds_of_audio": args.seconds,
            "stems": list(our_out),
            "reference_s": rt,
            "ours_s": ot,
            "reference_runs": ref_times,
            "ours_runs": our_times,
            "speedup": rt / ot,
            # fresh pages the decode touched: their cost depends on the machine's memory state
            "minor_page_faults": faults,
            "max_abs_diff": diff,
        }
        rows.append((f"codec decode {args.seconds:g} s x 3 stems, reference (s)", rt, 1.0))
        rows.append((f"codec decode {args.seconds:g} s x 3 stems, ours (s)", ot, rt / ot))

    results["load_after"] = load_snapshot()
    print(f"\nthreads {args.threads}, torch {torch.__version__}, LM {n_params / 1e9:.2f} B parameters")
    print(f"{'what':<52} {'value':>10} {'x reference':>12}")
    for what, value, x in rows:
        print(f"{what:<52} {value:>10.3f} {x:>11.2f}x")
    if "lm_greedy_equal_frames" in results:
        print(f"greedy frames equal to the reference's: {results['lm_greedy_equal_frames']}")
    if "codec_decode" in results:
        print(f"codec decode max |ours - reference|: {results['codec_decode']['max_abs_diff']:.2e}")
    print(f"load: {results['load_before']['loadavg']} -> {results['load_after']['loadavg']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
