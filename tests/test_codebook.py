"""Filling the pitch codec's codebook on the note grid (`training/codebook.py`)."""

from __future__ import annotations

import numpy as np
import torch

from musicgen_stem.api import default_model_path
from musicgen_stem.codec.harmonic import LOW_MIDI, SEMITONE
from musicgen_stem.evaluation.probes import codec_round_trip, pure_tone_check
from musicgen_stem.modeldir import load_model
from musicgen_stem.training.codebook import code_counts, fill_note_grid, lm_rows_for, main


def _codebook() -> tuple[torch.Tensor, np.ndarray]:
    """16 codes: 8 used ones on E1 and G1 (two timbres, two levels), 8 unused far away."""
    rows = []
    for note in (28, 31):
        for bands in (-1.0, -5.0):
            for level in (-3.0, -6.0):
                rows.append([(note - LOW_MIDI) * SEMITONE, level] + [bands] * 6)
    rows += [[500.0] + [0.0] * 7] * 8
    counts = np.array([5] * 8 + [0] * 8)
    return torch.tensor(rows), counts


def test_fill_note_grid_writes_only_unused_entries_and_covers_the_notes():
    embed, counts = _codebook()
    out, replaced = fill_note_grid(embed, counts, low=28, high=31, timbres=2, min_distance=1.0)
    assert torch.equal(out[:8], embed[:8])  # used codes keep their vectors
    assert replaced and set(replaced) <= set(range(8, 16))
    notes = {round(float(out[i, 0]) / SEMITONE) + LOW_MIDI for i in replaced}
    assert {29, 30} <= notes  # the notes without codes got some
    assert all(float(out[i, 0]) % SEMITONE == 0 for i in replaced)  # on the semitone grid
    rows = lm_rows_for(out, replaced, counts)
    assert set(rows) == set(replaced) and all(counts[r] > 0 for r in rows.values())
    # run again on the filled codebook: every candidate is now there, nothing more to write
    again, more = fill_note_grid(out, counts, 28, 31, timbres=2, min_distance=1.0)
    assert more == [] and torch.equal(again, out)


def test_fill_the_shipped_bass_codebook(tmp_path, capsys):
    """Codes 0..511 'used' by an LM: the filler writes into 512..1023 only, every pure tone E1..G3
    comes back on its note, and the LM reads each new code as the used code nearest to it."""
    (tmp_path / "tokens" / "tokens").mkdir(parents=True)
    streams = load_model(default_model_path()).config.layout.num_streams
    tokens = np.tile(np.arange(512, dtype=np.int64), (streams, 1))
    np.save(tmp_path / "tokens" / "tokens" / "song.npy", tokens)
    assert code_counts([str(tmp_path / "tokens")], 0, 1024)[:512].sum() == 512

    out = tmp_path / "filled"
    assert main([str(default_model_path()), "--tokens", str(tmp_path / "tokens"), "--out", str(out)]) == 0
    old, new = load_model(default_model_path()), load_model(out)
    book = lambda m: m.codec.codecs["bass"].quantizer.vq.layers[0]._codebook.embed  # noqa: E731
    changed = torch.nonzero((book(old) != book(new)).any(1)).flatten()
    assert len(changed) > 0 and int(changed.min()) >= 512
    emb_old, emb_new = old.lm.emb[0].weight, new.lm.emb[0].weight
    for slot in changed.tolist():
        assert any(torch.equal(emb_new[slot], emb_old[i]) for i in range(512))
    tones = pure_tone_check(codec_round_trip(new.codec.codecs["bass"]))
    assert tones["passed"] == tones["total"], [r for r in tones["notes"] if not r["passed"]]
    missing = [str(default_model_path()), "--tokens", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    assert main(missing) == 1
    (tmp_path / "other" / "tokens").mkdir(parents=True)  # tokens of another layout (one more stream)
    np.save(tmp_path / "other" / "tokens" / "song.npy", np.zeros((streams + 1, 10), np.int64))
    other = [str(default_model_path()), "--tokens", str(tmp_path / "other"), "--out", str(tmp_path / "o")]
    assert main(other) == 1 and f"not [{streams}, T]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
