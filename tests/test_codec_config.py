"""`CodecConfig` and its kinds (`codec/kinds.py`): checks, the nested form, the flat form written before."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from musicgen_stem import reference
from musicgen_stem.api.loading import default_model_path
from musicgen_stem.codec import (
    ChromaEncoderConfig,
    CodecConfig,
    HarmonicDecoderConfig,
    ISTFTDecoderConfig,
    PitchEncoderConfig,
    SEANetConfig,
    StemCodec,
    STFTEncoderConfig,
    TonalDecoderConfig,
)
from musicgen_stem.codec.kinds import DECODER_KINDS, ENCODER_KINDS
from musicgen_stem.codec.model import DECODERS, ENCODERS
from musicgen_stem.modeldir import load_codecs

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "codecs"

#: one small codec of each encoder and decoder kind
KINDS = {
    "seanet": CodecConfig.seanet(SEANetConfig(n_filters=4, lstm=0, pad_mode="reflect"), dimension=16, n_q=2),
    "stft_istft": CodecConfig(
        dimension=16,
        encoder=STFTEncoderConfig(width=16, layers=1, n_ffts=(256, 1024), lstm=1),
        decoder=ISTFTDecoderConfig(width=8, layers=1, n_fft=512, hop=128, phase="absolute", lstm=0),
    ),
    "pitch_harmonic": CodecConfig(
        dimension=15,
        encoder=PitchEncoderConfig(fmin=40.0, detail=True),
        decoder=HarmonicDecoderConfig(width=16, layers=1, harmonics=8, noise_bands=4),
    ),
    "chroma_tonal": CodecConfig(
        dimension=21,
        encoder=ChromaEncoderConfig(),
        decoder=TonalDecoderConfig(width=8, layers=1, noise_bands=4),
    ),
}


def _shapes(cfg: CodecConfig) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in StemCodec(cfg).state_dict().items()}


def test_config_facts_and_checks() -> None:
    cfg = CodecConfig.musicgen_32khz(4)
    assert cfg.hop_length == 640 and cfg.frame_rate == 50.0
    assert (cfg.encoder.n_filters, cfg.dimension, cfg.bins, cfg.encoder.lstm) == (64, 128, 2048, 2)
    assert cfg.encoder == cfg.decoder == SEANetConfig()
    mini = CodecConfig.mini(2)
    assert (mini.encoder.n_filters, mini.decoder.lstm, mini.dimension, mini.n_q) == (8, 1, 64, 2)
    assert mini.encoder is not mini.decoder  # one section's change leaves the other alone
    with pytest.raises(ValueError, match="trim_right_ratio"):
        CodecConfig(decoder=SEANetConfig(trim_right_ratio=0.5))
    assert CodecConfig(causal=True, decoder=SEANetConfig(trim_right_ratio=0.5)).causal
    for kind in ("pitch", "mel", ISTFTDecoderConfig()):  # a name, not a config; a decoder's kind
        with pytest.raises(ValueError, match="encoder must be the config of a kind in seanet, stft"):
            CodecConfig(encoder=kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decoder must be"):
        CodecConfig(decoder=PitchEncoderConfig())


def test_every_kind_has_its_builder_and_the_detail_features_are_a_flag() -> None:
    assert set(ENCODERS) == set(ENCODER_KINDS) == {"seanet", "stft", "pitch", "chroma"}
    assert set(DECODERS) == set(DECODER_KINDS) == {"seanet", "istft", "harmonic", "tonal"}
    assert all(k.kind == name for name, k in (ENCODER_KINDS | DECODER_KINDS).items())
    assert (PitchEncoderConfig().dimension, PitchEncoderConfig(detail=True).dimension) == (8, 15)
    assert (ChromaEncoderConfig().dimension, ChromaEncoderConfig(detail=True).dimension) == (21, 38)
    harmonic = HarmonicDecoderConfig()
    with pytest.raises(ValueError, match="dimension 8 .* the codec has dimension 15"):
        CodecConfig(dimension=15, encoder=PitchEncoderConfig(), decoder=harmonic)  # detail is not inferred
    with pytest.raises(ValueError, match="dimension 38"):
        CodecConfig(dimension=21, encoder=ChromaEncoderConfig(detail=True), decoder=TonalDecoderConfig())


@pytest.mark.parametrize("name", list(KINDS))
def test_the_nested_form_round_trips_and_holds_only_the_chosen_kinds(name: str) -> None:
    cfg = KINDS[name]
    d = json.loads(json.dumps(cfg.to_dict()))
    for section in ("encoder", "decoder"):
        part = getattr(cfg, section)
        assert d[section] == {
            "kind": part.kind,
            **{f.name: d[section][f.name] for f in dataclasses.fields(part)},
        }
    assert not {"n_filters", "stft_width", "synth_width", "lstm", "pitch_fmin"} & set(d)
    again = CodecConfig.from_dict(d)
    assert again == cfg and again.to_dict() == d and _shapes(again) == _shapes(cfg)


def test_a_flat_dict_and_its_nested_equivalent_give_equal_configs() -> None:
    flat = {
        "dimension": 16,
        "encoder": "stft",
        "decoder": "istft",
        "lstm": 1,  # the flat form's one LSTM depth: both kinds read it
        "stft_width": 16,
        "stft_n_ffts": [256, 1024],
        "istft_n_fft": 512,
        "istft_hop": 128,
        "n_filters": 4,  # the other kinds' fields are read and left out
        "pitch_fmin": 50.0,
        "synth_width": 8,
    }
    nested = {
        "dimension": 16,
        "encoder": {"kind": "stft", "width": 16, "n_ffts": [256, 1024], "lstm": 1},
        "decoder": {"kind": "istft", "n_fft": 512, "hop": 128, "lstm": 1},
    }
    assert CodecConfig.from_dict(flat) == CodecConfig.from_dict(nested)
    assert CodecConfig.from_dict(nested).to_dict() == CodecConfig.from_dict(flat).to_dict()
    # the flat form had no detail flag: a parametric encoder's detail is told by the latent size
    bass = {"encoder": "pitch", "decoder": "harmonic", "pitch_fmax": 300.0, "synth_harmonics": 8}
    for dimension, detail in ((8, False), (15, True)):
        want = CodecConfig(
            dimension=dimension,
            encoder=PitchEncoderConfig(fmax=300.0, detail=detail),
            decoder=HarmonicDecoderConfig(harmonics=8),
        )
        assert CodecConfig.from_dict({**bass, "dimension": dimension}) == want
    assert CodecConfig.from_dict({"encoder": "chroma", "decoder": "tonal", "dimension": 38}).encoder.detail
    assert (
        CodecConfig.from_dict({}) == CodecConfig.from_dict({"encoder": {"kind": "seanet"}}) == CodecConfig()
    )
    # every field of a config written before, at its default, reads as the default config
    full = {**dataclasses.asdict(CodecConfig()), **dataclasses.asdict(SEANetConfig())}
    full |= {"encoder": "seanet", "decoder": "seanet", "ratios": [8, 5, 4, 4]}
    assert CodecConfig.from_dict(full) == CodecConfig()
    for bad, match in (
        ({**flat, "not_a_field": 1}, "unknown CodecConfig fields"),
        ({**flat, "encoder": "mel"}, "encoder must be one of seanet, stft"),
        ({**nested, "lstm": 1}, "unknown CodecConfig fields"),
        ({**nested, "decoder": {"kind": "istft", "stft_width": 8}}, "unknown ISTFTDecoderConfig fields"),
        ({**nested, "decoder": "istft"}, "decoder must be a section"),
        ({**nested, "encoder": {"kind": "tonal"}}, "encoder must be a section"),
    ):
        with pytest.raises(ValueError, match=match):
            CodecConfig.from_dict(bad)


def test_the_shipped_model_and_the_released_fixture_load(ref_fixture: Path) -> None:
    """The shipped mini's codecs, written in the flat form, load whole (weights strict) as the
    kinds they were trained as; the released fixture's xp.cfg gives the tiny SEANet codecs."""
    path = default_model_path()
    written = json.loads((path / "config.json").read_text())["codecs"]
    assert all(isinstance(c["encoder"], str) for c in written.values())  # the flat form, as shipped
    codecs = load_codecs(path).codec.codecs
    bass, drums, other = (codecs[s].cfg for s in ("bass", "drums", "other"))
    assert bass.encoder == PitchEncoderConfig(detail=True) and bass.dimension == 15
    assert bass.decoder == HarmonicDecoderConfig(width=128, layers=3, harmonics=32, noise_bands=16)
    assert drums.encoder == STFTEncoderConfig(width=192, layers=2, n_ffts=(256, 1024), down=4, lstm=1)
    assert drums.decoder == ISTFTDecoderConfig(width=192, layers=4, n_fft=512, hop=128, lstm=1)
    assert other.encoder == ChromaEncoderConfig(detail=True) and other.decoder == TonalDecoderConfig()
    for stem, cfg in written.items():
        assert CodecConfig.from_dict(CodecConfig.from_dict(cfg).to_dict()) == codecs[stem].cfg
    with torch.no_grad():
        codes = codecs["drums"].encode(torch.randn(1, 1, 3200) * 0.1)
    assert codes.shape == (1, 1, 5)
    for stem, n_q in (("bass", 1), ("drums", 1), ("other", 4)):
        xp = OmegaConf.load(ref_fixture / f"xp_cfg_compression_{stem}.yaml")
        assert reference.codec_config(xp) == CodecConfig.tiny(n_q)
    for file in sorted(SCRIPTS.glob("*.json")):  # the codec training scripts' configs (flat)
        CodecConfig.from_dict(json.loads(file.read_text()))
