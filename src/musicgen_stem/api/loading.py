"""Loading a model's parts: a folder of ours, the released (reference) format, or a hub id of either."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from ..modeldir import ModelParts, is_model_dir, load_model

__all__ = ["default_model_path", "default_parts", "download", "load_parts"]


def default_model_path() -> Path:
    """Where the shipped default model lives (inside the package)."""
    return Path(__file__).resolve().parent.parent / "models" / "mini"


def default_parts() -> ModelParts:
    """The parts of the shipped default model (`mini`)."""
    path = default_model_path()
    if not is_model_dir(path):
        raise ModelError(
            f"the default model is not installed ({path} is missing); pass a model folder with --model"
        )
    return load_model(path)


def load_parts(name_or_path: str | os.PathLike[str], text_encoder: str | None = None) -> ModelParts:
    """The parts of a model folder of ours, of a folder in the released format, or of a hub id
    of either; `text_encoder` replaces the T5 folder named in the config."""
    from .. import reference

    path = Path(name_or_path)
    if path.is_dir():
        if is_model_dir(path):
            return load_model(path, text_encoder=text_encoder)
        if reference.is_reference_dir(path):
            return reference.load_reference(path, text_encoder)
        raise ModelError(
            f"'{path}' is not a model folder (no config.json, no state_dict.bin); "
            "create one with `musicgen-stem init` or `musicgen-stem convert`"
        )
    if path.exists():
        raise ModelError(f"'{path}' is a file, not a model folder")
    name = str(name_or_path)
    ours = download(name)
    if ours is not None:
        return load_model(ours, text_encoder=text_encoder)
    return reference.load_reference(name, text_encoder)


def download(repo_id: str) -> Path | None:
    """Fetch a model folder of ours from the Hugging Face hub (cached); None when the repo holds
    no config.json (then it may be in the reference format)."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise ModelError(f"model '{repo_id}' is neither an existing folder nor a hub id (owner/name)")
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        hf_hub_download(repo_id, "config.json")
        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors"]))
    except EntryNotFoundError:
        return None
    except Exception as e:  # network, auth, missing repo: all user-fixable
        raise ModelError(
            f"cannot fetch model '{repo_id}' from the Hugging Face hub ({type(e).__name__}); check the id "
            "and your network, or download the repo's files into a folder and pass that folder"
        ) from None
