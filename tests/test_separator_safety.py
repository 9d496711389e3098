"""Separator weights are read without running code from them: a booby-trapped .th is refused and
its payload never runs; `convert-separator` writes a .safetensors that loads to the same model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from musicgen_stem import separation
from musicgen_stem.cli import main
from musicgen_stem.errors import ModelError

SOURCES = ["drums", "bass", "other", "vocals"]


class Payload:
    """Unpickling this runs `open(marker, 'w')`: the proof a loader executed the file's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_htdemucs() -> torch.nn.Module:
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HTDemucs(sources=SOURCES, channels=8, depth=2, t_layers=0, nfft=512, segment=1).eval()


def package(model: torch.nn.Module) -> dict:
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    return {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None)}


@pytest.mark.parametrize("where", ["klass", "state", "kwargs", "top"])
def test_booby_trapped_th_does_not_run(tmp_path: Path, where: str):
    marker = tmp_path / "pwned"
    pkg = package(small_htdemucs())
    if where == "top":
        pkg = Payload(marker)
    elif where == "state":
        pkg["state"]["evil"] = Payload(marker)
    elif where == "kwargs":
        pkg["kwargs"]["segment"] = Payload(marker)
    else:
        pkg["klass"] = Payload(marker)
    evil = tmp_path / "evil.th"
    torch.save(pkg, evil)
    with pytest.raises(ModelError, match="refusing to load separator weights") as err:
        separation.load_separator(evil)
    assert "\n" not in str(err.value)
    assert not marker.exists()  # the payload never ran


def test_th_naming_another_class_is_refused(tmp_path: Path):
    pkg = package(small_htdemucs())
    pkg["klass"] = torch.nn.Linear  # a real class, but not a Demucs model
    torch.save(pkg, tmp_path / "linear.th")
    with pytest.raises(ModelError, match="refusing|not a Demucs model"):
        separation.load_separator(tmp_path / "linear.th")


def test_cli_separate_with_evil_th_is_one_line(tmp_path: Path, capsys):
    import soundfile as sf

    marker = tmp_path / "pwned"
    torch.save({"klass": Payload(marker)}, tmp_path / "evil.th")
    sf.write(tmp_path / "song.wav", torch.zeros(1600).numpy(), 16000)
    rc = main(
        [
            "separate",
            str(tmp_path / "song.wav"),
            "--out",
            str(tmp_path / "o"),
            "--separator",
            str(tmp_path / "evil.th"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "refusing" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_convert_separator_round_trip(tmp_path: Path, capsys):
    model = small_htdemucs()
    torch.save(package(model), tmp_path / "sep.th")
    assert main(["convert-separator", str(tmp_path / "sep.th"), str(tmp_path / "sep.safetensors")]) == 0
    wav = torch.randn(2, 16000) * 0.1
    ref = separation.separate(model, wav, 16000)
    for src in ("sep.th", "sep.safetensors"):
        out = separation.separate(separation.load_separator(tmp_path / src), wav, 16000)
        assert all(torch.equal(out[s], ref[s]) for s in SOURCES)
    # refuses to overwrite without --force, and a bad target name
    assert main(["convert-separator", str(tmp_path / "sep.th"), str(tmp_path / "sep.safetensors")]) == 2
    assert main(["convert-separator", str(tmp_path / "sep.th"), str(tmp_path / "sep.bin")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_safetensors_naming_a_function_is_refused(tmp_path: Path):
    meta = {"klass": "os.system", "args": json.dumps(["touch pwned"]), "kwargs": "{}"}
    save_file({"w": torch.zeros(1)}, str(tmp_path / "evil.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match="not a Demucs model"):
        separation.load_separator(tmp_path / "evil.safetensors")
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": "{}", "structure": "{}"}
    save_file({"w": torch.zeros(1)}, str(tmp_path / "q.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match="quantized"):
        separation.load_separator(tmp_path / "q.safetensors")


def test_pretrained_names_are_plain_names():
    with pytest.raises(ModelError, match="not found|unknown separator"):
        separation.load_separator("someone/htdemucs")  # never another hub namespace
    with pytest.raises(ModelError, match="unknown separator"):
        separation.load_separator("hf:htdemucs")
