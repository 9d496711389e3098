"""Source separation of full songs into drums / bass / other / vocals with Demucs (htdemucs).

This module is the one place that talks to Demucs. `separate` is deterministic (no random time
shift, unlike upstream's default `shifts=1`), works at the input's sample rate and channel count,
and splits long songs into overlapping segments (`apply_model(split=True, overlap=0.25)`).

Weights: `load_separator("htdemucs")` downloads them when online (cached by the HF hub / torch hub);
offline, download the file named in the error message and pass its path (`--separator PATH`).
Weights files are read without running code from them (`separator_files`): a `.th` pickle that
asks for anything but tensors and a Demucs model class is refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .audio import convert_audio_channels, load_audio, save_audio
from .devices import resolve_device
from .errors import AudioError, ModelError, MusicGenStemError, OutputExistsError
from .safeio import io_reason, make_temp_sibling, replace_dir
from .separation_options import BITS, DEFAULT_SEPARATOR, KNOWN_FILES, SOURCES, VOCALS, add_arguments

__all__ = [
    "DEFAULT_SEPARATOR",
    "SOURCES",
    "add_arguments",
    "load_separator",
    "run",
    "separate",
    "separate_file",
    "write_sources",
]


PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _load_file(path: Path) -> nn.Module:
    """One model from a `.th` package or a `.safetensors` export, without running code from it."""
    from .separator_files import load_weights

    return load_weights(path)


def _load_folder(path: Path) -> nn.Module:
    """A folder holding `<name>.yaml` bag definitions and/or `<sig>[-<checksum>].th|.safetensors` files."""
    from demucs.apply import BagOfModels

    yamls = sorted(path.glob("*.yaml"))
    weights = sorted([*path.glob("*.th"), *path.glob("*.safetensors")])
    if len(yamls) == 1:
        import yaml

        bag = yaml.safe_load(yamls[0].read_text())
        models = []
        for sig in bag.get("models", []):
            found = [w for w in weights if w.stem == sig or w.stem.startswith(f"{sig}-")]
            if not found:
                raise ModelError(
                    f"separator folder '{path}': {yamls[0].name} needs model {sig} but no {sig}*.th file "
                    "is there; download it beside the yaml"
                )
            models.append(_load_file(found[0]))
        if not models:
            raise ModelError(f"separator folder '{path}': {yamls[0].name} lists no models")
        return BagOfModels(models, bag.get("weights"), bag.get("segment"))
    if len(weights) == 1:
        return _load_file(weights[0])
    raise ModelError(
        f"separator folder '{path}' must hold one Demucs weights file (.th) or one bag .yaml with its "
        f"weights; found {len(weights)} weights and {len(yamls)} yaml file(s); pass the file itself"
    )


def _check_sources(model: nn.Module, name: str) -> nn.Module:
    sources = list(getattr(model, "sources", []))
    missing = [s for s in SOURCES if s != VOCALS and s not in sources]
    if missing or not hasattr(model, "samplerate") or not hasattr(model, "audio_channels"):
        raise ModelError(
            f"separator '{name}' does not produce bass/drums/other (its sources: {sources}); "
            "use htdemucs or another 4-source Demucs model"
        )
    return model


def load_separator(
    name_or_path: PathLike | nn.Module = DEFAULT_SEPARATOR, device: str | None = None
) -> nn.Module:
    """A Demucs separator in eval mode on `device` (default cpu).

    name_or_path: a pretrained name (`htdemucs`, downloaded when online and cached), a local weights
    file (`.th` as Demucs stores them, or `.safetensors`), a folder of such files (optionally with the
    bag `.yaml`), or an already built model (returned as is, moved to `device`).
    """
    if isinstance(name_or_path, nn.Module):
        model = name_or_path
        name = type(model).__name__
    else:
        name = str(name_or_path)
        path = Path(name).expanduser()
        if path.exists():
            model = _load_folder(path) if path.is_dir() else _load_file(path)
        elif path.suffix in (".th", ".safetensors", ".yaml") or os.sep in name or name.startswith("."):
            raise ModelError(f"separator weights '{name}' not found; check the path given to --separator")
        else:
            model = _load_pretrained(name)
    model = _check_sources(model, name)
    return model.to(resolve_device(device) if device else torch.device("cpu")).eval()


def _load_pretrained(name: str) -> nn.Module:
    """A Demucs pretrained name: its legacy single file (cached or downloaded), else its bag on the
    Demucs hub namespace (yaml + safetensors); both read without running code from them."""
    url = KNOWN_FILES.get(name)
    if not name.replace("_", "").isalnum():
        raise ModelError(f"unknown separator '{name}'; give a Demucs name (e.g. htdemucs) or a local file")
    try:
        if url is not None:
            cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
            if not cached.is_file():
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(cached), progress=False)
            return _load_file(cached)
        import yaml
        from demucs.hf import hf_repo_name
        from huggingface_hub import hf_hub_download

        repo = f"adefossez/{hf_repo_name(name)}"
        folder = Path(hf_hub_download(repo, f"{name}.yaml")).parent
        for sig in yaml.safe_load((folder / f"{name}.yaml").read_text()).get("models", []):
            hf_hub_download(repo, f"{sig}.safetensors")
        return _load_folder(folder)
    except ModelError:
        raise
    except Exception as exc:  # offline, unknown name, bad cache: one clear message
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        where = (
            f"download {url} and pass the file with --separator {url.rsplit('/', 1)[1]} "
            "(Python: separator=PATH)"
            if url
            else "check the name (e.g. htdemucs) or pass a local weights file with --separator PATH"
        )
        raise ModelError(f"cannot load the '{name}' separator ({reason}); {where}") from None


# --------------------------------------------------------------------------------------------
# Separation
# --------------------------------------------------------------------------------------------
def separate(
    model: nn.Module,
    wav: torch.Tensor,
    sample_rate: int,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Split a song `wav` [C, T] (C = 1 or 2) at `sample_rate` into the model's sources.

    Returns {source: [C, T]} (htdemucs: drums, bass, other, vocals) at the input rate, channel
    count and length. Deterministic (`shifts=0`); long inputs are processed in overlapping
    segments (`split=True`, `overlap=0.25`); `progress` shows a tqdm bar over the segments.
    Mono input runs as dual mono and is averaged back.
    """
    import julius
    from demucs.apply import apply_model

    if wav.dim() != 2 or wav.shape[-1] == 0:
        raise AudioError(f"separate expects audio shaped [C, T] with T > 0, got {tuple(wav.shape)}")
    channels, length = wav.shape
    if channels > 2:
        raise AudioError(f"cannot separate {channels}-channel audio; downmix it to stereo or mono first")
    model_sr = int(model.samplerate)
    x = convert_audio_channels(wav.float().cpu(), int(model.audio_channels))  # [2, T]
    if int(sample_rate) != model_sr:
        x = julius.resample_frac(x, int(sample_rate), model_sr)  # [2, T']
    # Normalise as the demucs CLI does (the models were trained on standardised mixtures).
    ref = x.mean(0)
    mean, std = ref.mean(), ref.std()
    std = std if float(std) > 1e-8 else torch.ones_like(std)
    x = (x - mean) / std
    with torch.inference_mode():
        out = apply_model(
            model, x[None], shifts=0, split=True, overlap=0.25, progress=progress, device=device
        )[0]  # [S, 2, T']
    out = (out.cpu() * std + mean).float()
    if int(sample_rate) != model_sr:
        out = julius.resample_frac(out, model_sr, int(sample_rate))  # [S, 2, ~T]
    if out.shape[-1] >= length:
        out = out[..., :length]
    else:
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    if channels == 1:
        out = out.mean(dim=1, keepdim=True)  # [S, 1, T]
    return {str(name): out[i].contiguous() for i, name in enumerate(model.sources)}


def write_sources(
    folder: PathLike, sources: Mapping[str, torch.Tensor], sample_rate: int, subtype: str = "FLOAT"
) -> dict[str, Path]:
    """Write {source: [C, T]} as `folder/<source>.wav` atomically (temp folder, then rename or,
    over an existing folder, swap; see `safeio.replace_dir`). PCM_24 clips to [-1, 1] (separated
    sources can exceed full scale); FLOAT (the default) keeps them exactly.
    """
    final = Path(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_sibling(final)
    try:
        for name, wav in sources.items():
            data = wav.clamp(-1.0, 1.0) if subtype != "FLOAT" else wav
            save_audio(tmp / f"{name}.wav", data, sample_rate, subtype=subtype)
        replace_dir(tmp, final)
    except OSError as exc:
        raise MusicGenStemError(f"cannot write '{final}': {io_reason(exc)}; check free space") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {name: final / f"{name}.wav" for name in sources}


def separate_file(
    path: PathLike,
    out_dir: PathLike,
    model: nn.Module,
    force: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
    subtype: str = "FLOAT",
) -> dict[str, Path]:
    """Separate one song into `out_dir/<track>/{bass,drums,other,vocals}.wav` (the demucs layout).

    Files are at the song's sample rate and channel count (float wav by default, or PCM_24),
    written atomically; with `force` the new folder replaces the old one only once it is complete.
    An existing track folder is an `OutputExistsError` unless `force`.
    Returns {source: path}.
    """
    path = Path(path)
    final = Path(out_dir) / path.stem
    if final.exists() and not force:
        raise OutputExistsError(f"'{final}' already exists; choose another --out or pass --force")
    wav, sr = load_audio(path)  # [C, T]
    if wav.shape[0] > 2:
        wav = convert_audio_channels(wav, 2)
    sources = separate(model, wav, sr, device=device, progress=progress)
    ordered = {s: sources[s] for s in SOURCES if s in sources}
    ordered.update({s: w for s, w in sources.items() if s not in ordered})
    return write_sources(final, ordered, sr, subtype)


# --------------------------------------------------------------------------------------------
# Command line: musicgen-stem separate
# --------------------------------------------------------------------------------------------
def default_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    """Run `musicgen-stem separate`; returns the exit code."""
    songs = [Path(s) for s in args.songs]
    for song in songs:
        if not song.is_file():
            raise AudioError(f"cannot read '{song}': file not found; check the path")
    stems = [s.stem for s in songs]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise OutputExistsError(f"several songs are named {dupes}; their stems would share a folder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out '{out}' is a file; give a folder path")
    existing = [str(out / s) for s in stems if (out / s).exists()]
    if existing and not args.force:
        raise OutputExistsError(f"'{existing[0]}' already exists; choose another --out or pass --force")
    device = default_device(args.device)
    model = load_separator(args.separator, device=device)
    for song in songs:
        paths = separate_file(
            song,
            out,
            model,
            force=args.force,
            device=device,
            progress=not args.quiet,
            subtype=BITS[args.bits],
        )
        print(f"{song} -> {paths[SOURCES[0]].parent}", file=sys.stdout)
    return 0
