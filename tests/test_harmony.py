"""Chord guidance (generation/harmony.py): the pitch classes codes play, the offsets a chord chart
gives them, the engine applying them frame by frame, and the shipped model's bass keeping to chords."""

from __future__ import annotations

import pytest
import torch

from musicgen_stem.api import MusicGenStem, default_model_path
from musicgen_stem.codec.harmonic import LOW_MIDI, SEMITONE, SILENT, PitchEncoder
from musicgen_stem.codec.tonal import ChromaEncoder
from musicgen_stem.conditioning.chords import parse_progression
from musicgen_stem.generation import SamplingParams, generate_codes, text_task
from musicgen_stem.generation.harmony import chord_bias
from musicgen_stem.layout import LAYOUT_6CB
from musicgen_stem.lm.model import LMConfig, StemLM


def test_a_bass_code_plays_the_pitch_class_of_its_note():
    latent = torch.zeros(8, 3)
    latent[0] = torch.tensor([(40 - LOW_MIDI) * SEMITONE, (47.2 - LOW_MIDI) * SEMITONE, SILENT])  # E2, B2, -
    chroma = PitchEncoder.chroma_of(latent)
    assert chroma.shape == (3, 12)
    assert chroma[0].argmax() == 4 and chroma[1].argmax() == 11 and chroma[:2].sum(1).tolist() == [1, 1]
    assert chroma[2].sum() == 0  # silence plays nothing


def test_a_chord_code_plays_its_share_of_each_pitch_class():
    latent = torch.zeros(21, 2)
    latent[[0, 4, 7], 0] = torch.tensor([10.0, 5.0, 5.0])  # C strongest, E and G half as strong
    latent[17, 0] = -2.0  # -12 dB: sounding
    latent[0, 1], latent[17, 1] = 10.0, -12.0  # -72 dB: silent
    chroma = ChromaEncoder.chroma_of(latent)
    torch.testing.assert_close(chroma[0, [0, 4, 7]], torch.tensor([0.5, 0.25, 0.25]))
    assert chroma[1].sum() == 0


def test_chord_bias_lowers_codes_outside_the_chord_sounding():
    chart = parse_progression("C Dm", 120.0)  # a bar of 2 s each
    table = torch.eye(12)[[0, 2, 5, 11]]  # codes playing C, D, F, B
    bias = chord_bias([chart, None], {1: table}, 3, start=50, frames=100, frame_rate=50.0, strength=4.0)
    assert bias is not None and bias.shape == (2, 3, 100, 4)
    assert bias[0, 1, 0].tolist() == [0.0, -4.0, -4.0, -4.0]  # frame 50, C major: only C is a tone
    assert bias[0, 1, 99].tolist() == [-4.0, 0.0, 0.0, -4.0]  # frame 149, D minor: D and F
    assert bias[0, [0, 2]].abs().sum() == 0 and bias[1].abs().sum() == 0  # other streams, no chart
    prefixed = chord_bias([chart], {1: table}, 3, 50, 100, 50.0, 4.0, prefix=10)
    assert prefixed is not None and prefixed[0, 1, :10].abs().sum() == 0
    assert chord_bias([chart], {1: table}, 3, 50, 100, 50.0, strength=0.0) is None
    assert chord_bias([None], {1: table}, 3, 50, 100, 50.0, 4.0) is None


def test_the_engine_adds_the_bias_to_each_streams_own_frame():
    torch.manual_seed(0)
    lm = StemLM(LAYOUT_6CB, LMConfig(dim=32, num_heads=4, num_layers=2, ff_dim=64)).eval()
    mem = torch.randn(1, 2, 32)
    known = text_task(1, LAYOUT_6CB, 6).known()
    known[0, 0, 2] = 7  # a known token is kept whatever the bias says
    bias = torch.zeros(1, 6, 6, LAYOUT_6CB.card)
    wanted = torch.arange(36).view(6, 6) + 100  # a different token for every stream and frame
    bias.scatter_(3, wanted[None, :, :, None], 1e4)
    params = SamplingParams(temperature=1.0)
    codes = generate_codes(lm, known, mem, None, params, torch.Generator(), bias=bias)
    expected = wanted.clone()
    expected[0, 2] = 7
    assert torch.equal(codes[0], expected)


@pytest.mark.skipif(not (default_model_path() / "config.json").is_file(), reason="no default model")
def test_the_shipped_bass_keeps_to_the_given_chords_when_guided():
    model = MusicGenStem.default(device="cpu")
    table = model.codec.codec("bass").code_chroma()
    assert table is not None and model.codec.codec("drums").code_chroma() is None

    def off_chord(guide: float) -> float:
        model.set_generation_params(chord_guide=guide)
        out = model.generate(["funk at 120 bpm"], seed=3, duration=4.0, chords="E F#")
        played = table[out.codes[0, 0]]  # [T, 12]: the bass's first codebook
        tones = torch.zeros(len(played), 12)
        tones[:100, [4, 8, 11]] = 1.0  # E major for 2 s
        tones[100:, [6, 10, 1]] = 1.0  # F# major
        voiced = played.sum(1) > 0
        assert voiced.float().mean() > 0.5
        return float(((played * (1 - tones)).sum(1)[voiced]).mean())

    assert off_chord(50.0) == 0.0  # strongly guided: every voiced frame on a chord tone
    assert off_chord(0.0) > 0.0  # the model alone strays (E and F# major share no tone)
