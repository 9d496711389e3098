"""The dataset writer: one folder per song (stems, mix, MIDI, meta.json), atomic and resumable."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ...errors import MusicGenStemError
from .fluid import FluidSynth
from .midi import song_midi
from .render import find_fluidsynth, render_stems
from .song import make_song_spec
from .soundfonts import find_soundfont
from .tables import SAMPLE_RATE, STEMS

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
CHUNK = 16  # songs per task with several workers (each task loads its soundfonts once)


def song_seed(seed: int, index: int) -> int:
    """Seed of song ``index`` of a dataset made with ``seed``."""
    return seed * 1_000_003 + index


def _song_dir_name(index: int) -> str:
    return f"song_{index:05d}"


def _is_complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file() and all((folder / f"{s}.wav").is_file() for s in (*STEMS, "mix"))


def quantize(x: np.ndarray, subtype: str) -> np.ndarray:
    """Samples exactly as ``soundfile`` writes them in ``subtype`` (int16, int32 holding 24 bits, float32),
    so that sums of quantized stems are exact and the mix file is exactly the sum of the stem files."""
    if subtype == "PCM_16":
        return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    if subtype == "PCM_24":
        return np.clip(np.round(x * 8388608.0), -8388608, 8388607).astype(np.int32) << 8
    return x.astype(np.float32)


def _write_song(folder: Path, stems: dict[str, np.ndarray], sample_rate: int, subtype: str) -> None:
    q = {s: quantize(stems[s], subtype) for s in STEMS}
    if subtype == "FLOAT":
        mix = q["bass"] + q["drums"] + q["other"]
    else:
        total = sum(q[s].astype(np.int64) for s in STEMS)
        info = np.iinfo(q["bass"].dtype)
        if total.min(initial=0) < info.min or total.max(initial=0) > info.max:
            raise MusicGenStemError(
                "the mix clips; this should not happen (stems are levelled below -1 dBFS)"
            )
        mix = total.astype(q["bass"].dtype)
    for name, x in (*q.items(), ("mix", mix)):
        sf.write(folder / f"{name}.wav", x, sample_rate, subtype=subtype)


def _make_song(
    out_dir: Path,
    index: int,
    seed: int,
    duration: float,
    soundfont: str | None,
    subtype: str,
    synth: FluidSynth,
) -> Path:
    """Render song ``index`` into ``out_dir/song_XXXXX`` atomically (temp folder, meta.json last, rename)."""
    final = out_dir / _song_dir_name(index)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=out_dir))
    try:
        spec = make_song_spec(song_seed(seed, index), duration, soundfont=soundfont)
        stems, info = render_stems(spec, soundfont, synth=synth)
        _write_song(tmp, stems, spec.sample_rate, subtype)
        song_midi(spec).save(tmp / "song.mid")
        meta = spec.meta()
        meta.update(
            index=index,
            dataset_seed=seed,
            levels=info,
            subtype=subtype,
            files={**{s: f"{s}.wav" for s in STEMS}, "mix": "mix.wav", "midi": "song.mid"},
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _make_songs(
    out_dir: Path, indices: list[int], seed: int, duration: float, soundfont: str | None, subtype: str
) -> list[int]:
    """Render several songs with one synthesizer (soundfonts load once); returns ``indices``."""
    with FluidSynth(SAMPLE_RATE) as synth:
        for i in indices:
            _make_song(out_dir, i, seed, duration, soundfont, subtype, synth)
    return indices


def _summary(folder: Path, out_dir: Path) -> dict[str, Any]:
    meta = json.loads((folder / "meta.json").read_text())
    rel = folder.relative_to(out_dir).as_posix()
    keys = ("caption", "captions", "duration", "genre", "tempo", "key", "mode", "seed")
    return {
        "path": rel,
        **{k: meta[k] for k in keys},
        "stems": {s: f"{rel}/{s}.wav" for s in STEMS},
        "mix": f"{rel}/mix.wav",
    }


def synth_dataset(
    out_dir: str | os.PathLike[str],
    num_songs: int,
    seed: int = 0,
    duration: float = 30.0,
    soundfont: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
    num_workers: int = 1,
    subtype: str = "PCM_16",
) -> list[Path]:
    """Write ``num_songs`` songs to ``out_dir/song_XXXXX/`` plus ``out_dir/metadata.jsonl``; resumable.

    Each folder holds ``bass.wav``, ``drums.wav``, ``other.wav``, ``mix.wav`` (32 kHz mono; the mix is
    exactly the sum of the stem files), ``song.mid`` and ``meta.json`` (written last: a folder without it
    is redone). Finished songs are skipped unless ``force``. Song ``i`` uses seed ``seed * 1_000_003 + i``;
    soundfonts are chosen per song and instrument among the installed ones unless ``soundfont`` (or
    ``$MUSICGEN_STEM_SOUNDFONT``) forces one. Returns the song folders in order.
    """
    if num_songs < 0:
        raise MusicGenStemError(f"num_songs must be >= 0, got {num_songs}")
    if subtype not in SUBTYPES:
        raise MusicGenStemError(f"subtype must be PCM_16, PCM_24 or FLOAT, got {subtype!r}")
    find_fluidsynth()
    find_soundfont(soundfont)  # fail early with the install hint
    sf2 = str(soundfont) if soundfont is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".song_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folders = [out / _song_dir_name(i) for i in range(num_songs)]
    todo = []
    for i, folder in enumerate(folders):
        if not force and _is_complete(folder):
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("seed") != song_seed(seed, i) or abs(meta.get("duration", -1) - duration) > 1e-9:
                raise MusicGenStemError(
                    f"{folder} was made with seed {meta.get('seed')} and duration {meta.get('duration')}, "
                    f"not {song_seed(seed, i)} and {duration}; use another folder or force=True"
                )
            continue
        todo.append(i)

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="synth songs", unit="song")
    try:
        if num_workers > 1 and len(todo) > 1:
            size = max(1, min(CHUNK, -(-len(todo) // num_workers)))
            chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
            with ProcessPoolExecutor(max_workers=num_workers) as ex:
                futures = [ex.submit(_make_songs, out, c, seed, duration, sf2, subtype) for c in chunks]
                for fut in as_completed(futures):
                    done = fut.result()
                    if bar:
                        bar.update(len(done))
        elif todo:
            with FluidSynth(SAMPLE_RATE) as synth:
                for i in todo:
                    _make_song(out, i, seed, duration, sf2, subtype, synth)
                    if bar:
                        bar.update(1)
    finally:
        if bar:
            bar.close()

    lines = [json.dumps(_summary(f, out)) for f in folders]
    tmp = out / ".metadata.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, out / "metadata.jsonl")
    return folders
