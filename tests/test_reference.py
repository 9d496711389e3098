"""Loading the released checkpoint format through the public loader, against the reference's
golden outputs (tests/fixtures/ref6cb_tiny), and a 7cb layout of the same format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from ties import assert_codes_match_up_to_ties

from musicgen_stem import LAYOUT_7CB, MusicGenStem
from musicgen_stem.cli import main
from musicgen_stem.codec import CodecConfig, MultiStemCodec
from musicgen_stem.conditioning import TextConditioner, TextEncoderConfig
from musicgen_stem.errors import ModelError
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.reference import RELEASED_SILENCE_TOKENS, _page_releaser, locate, reference_files


@pytest.fixture(scope="module")
def golden(ref_fixture: Path) -> dict[str, np.ndarray]:
    with np.load(ref_fixture / "golden.npz") as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def meta(ref_fixture: Path) -> dict:
    return json.loads((ref_fixture / "golden_meta.json").read_text())


@pytest.fixture(scope="module")
def ref_model(ref_fixture: Path) -> MusicGenStem:
    return MusicGenStem.from_pretrained(ref_fixture, device="cpu")


def test_loader_rebuilds_the_config(ref_model: MusicGenStem, meta: dict) -> None:
    cfg = ref_model.config
    assert cfg.layout.stems == ("bass", "drums", "other")
    assert cfg.layout.streams_of("other") == meta["model"]["instrument_indices"]["other"]
    assert cfg.layout.delays == (0, 0, 0, 1, 2, 3)
    assert cfg.text.kind == "lut"
    assert ref_model.sample_rate == meta["model"]["sample_rate"]
    assert ref_model.max_duration == meta["model"]["max_duration"]
    assert (
        sum(p.numel() for p in ref_model.lm.parameters())
        + sum(p.numel() for p in ref_model.text.parameters())
        == meta["lm_num_params"]
    )
    assert all(p.dtype == torch.float32 for p in ref_model.lm.parameters())  # fp16 file upcast


def test_teacher_forced_logits(ref_model: MusicGenStem, golden: dict, meta: dict) -> None:
    codes = torch.from_numpy(golden["tf_codes"])
    for texts, name in [([meta["text"]], "cond"), ([None], "null")]:
        logits, mask = ref_model.compute_logits(codes, texts)
        ref_mask = golden["tf_logits_mask"]
        np.testing.assert_array_equal(mask.numpy(), ref_mask[0])
        diff = np.abs(logits.numpy()[0][ref_mask[0]] - golden[f"tf_logits_{name}"][0][ref_mask[0]])
        assert diff.max() < 1e-4


def test_text_condition(ref_model: MusicGenStem, golden: dict, meta: dict) -> None:
    mem, mask = ref_model.text([meta["text"], None])
    np.testing.assert_allclose(mem[:1].detach().numpy(), golden["cond_embeds"], atol=1e-5)
    np.testing.assert_allclose(mem[1:].detach().numpy(), golden["null_cond_embeds"], atol=1e-5)


def test_codec_parity(ref_model: MusicGenStem, golden: dict) -> None:
    wave = torch.from_numpy(golden["wave_in"])  # [1, 3, 1, T]
    stems = {s: wave[:, i] for i, s in enumerate(ref_model.stems)}
    codes = ref_model.encode_stems(stems, 32000)
    ref_codes = torch.from_numpy(golden["codec_encode_codes"])
    assert codes.shape == ref_codes.shape
    for i, (stem, sl) in enumerate(ref_model.layout.stream_slices().items()):
        codec = ref_model.codec.codecs[stem]
        with torch.no_grad():
            latent = codec.encode_latent(wave[:, i])
        assert (latent - torch.from_numpy(golden[f"codec_encoder_latents_{stem}"])).abs().max() < 1e-4
        assert_codes_match_up_to_ties(codec, latent, codes[:, sl], ref_codes[:, sl])
    audio = ref_model.decode(torch.from_numpy(golden["prompt_codes"]))
    for stem in ref_model.stems:
        assert (audio[stem] - torch.from_numpy(golden[f"codec_decode_{stem}"])).abs().max() < 1e-4


def test_greedy_generation_and_continuation(ref_model: MusicGenStem, golden: dict, meta: dict) -> None:
    ref_model.set_generation_params(use_sampling=False)
    out = ref_model.generate([meta["text"]], seed=0, duration=1.0)
    np.testing.assert_array_equal(out.codes.numpy(), golden["gen_greedy_text_1s"])
    for stem in ref_model.stems:
        ref_audio = torch.from_numpy(golden[f"gen_greedy_text_1s_audio_{stem}"])
        assert (out[stem] - ref_audio).abs().max() < 1e-4
    prompt = torch.from_numpy(golden["prompt_codes"])
    cont = ref_model.generate_continuation_from_codes(prompt, [meta["text"]], seed=0, duration=3.0)
    np.testing.assert_array_equal(cont.codes.numpy(), golden["gen_greedy_continuation_3s"])


def test_sampled_generation_uses_torch_rng_like_the_reference(
    ref_model: MusicGenStem, golden: dict, meta: dict
) -> None:
    ref_model.set_generation_params(use_sampling=True, top_k=250)
    out = ref_model.generate([meta["text"]], seed=meta["seeds"]["sampled_generation"], duration=1.0)
    np.testing.assert_array_equal(out.codes.numpy(), golden["gen_sampled_text_1s_torchrng"])


def test_editing_works_where_upstream_crashes(ref_model: MusicGenStem, golden: dict, meta: dict) -> None:
    # silence tokens measured on the codecs equal the reference's (most frequent code of silence)
    assert ref_model.silence_tokens() == meta["silence_tokens_tiny"]
    ref_model.set_generation_params(use_sampling=False)
    codes = torch.from_numpy(golden["gen_greedy_text_1s"])
    out = ref_model.regenerate_from_codes(codes, ["bass"], [meta["text"]], seed=0, duration=49 / 50)
    np.testing.assert_array_equal(out.codes.numpy(), golden["patched_regenerate_from_codes_bass_tokens"])


def test_convert_gives_identical_outputs(
    ref_fixture: Path, ref_model: MusicGenStem, tmp_path: Path, meta
) -> None:
    dst = tmp_path / "converted"
    assert main(["convert", str(ref_fixture), str(dst)]) == 0
    assert (dst / "config.json").is_file() and not list(dst.glob("*.bin"))
    conv = MusicGenStem.from_pretrained(dst, device="cpu")
    for a, b in [(ref_model.lm, conv.lm), (ref_model.text, conv.text), (ref_model.codec, conv.codec)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for m in (ref_model, conv):
        m.set_generation_params(use_sampling=True)
    a = ref_model.generate([meta["text"]], seed=5, duration=0.5)
    b = conv.generate([meta["text"]], seed=5, duration=0.5)
    assert torch.equal(a.codes, b.codes)
    assert main(["convert", str(ref_fixture), str(dst)]) == 2  # exists: refused without --force


def test_released_silence_tokens_are_known() -> None:
    assert len(RELEASED_SILENCE_TOKENS["facebook/musicgen-stem-6cb"]) == 6
    assert len(RELEASED_SILENCE_TOKENS["facebook/musicgen-stem-7cb"]) == 7


def test_offline_hub_id_says_which_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        locate("facebook/musicgen-stem-6cb")
    msg = str(err.value)
    assert "\n" not in msg and all(f in msg for f in reference_files())


def test_incomplete_reference_folder(ref_fixture: Path, tmp_path: Path) -> None:
    (tmp_path / "state_dict.bin").write_bytes((ref_fixture / "state_dict.bin").read_bytes())
    with pytest.raises(ModelError, match="compression_state_dict_bass.bin"):
        MusicGenStem.from_pretrained(tmp_path)
    (tmp_path / "state_dict.bin").write_bytes(b"not a checkpoint")
    for stem in ("bass", "drums", "other"):
        (tmp_path / f"compression_state_dict_{stem}.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="cannot read"):
        MusicGenStem.from_pretrained(tmp_path)


# --- the same format with another layout: 7cb (two bass codebooks, unsorted delays) ------------------


def _write_reference_7cb(ref_fixture: Path, dst: Path) -> tuple[StemLM, dict[str, torch.Tensor]]:
    """A tiny 7cb model written in the released format, configs derived from the fixture's YAML."""
    torch.manual_seed(7)
    lm = StemLM(LAYOUT_7CB, LMConfig(dim=64, num_heads=4, num_layers=2, ff_dim=256))
    text = TextConditioner(TextEncoderConfig(kind="lut", n_bins=32, dim=32), 64)
    codec = MultiStemCodec(
        LAYOUT_7CB,
        {s: CodecConfig.tiny(n) for s, n in zip(LAYOUT_7CB.stems, LAYOUT_7CB.codebooks, strict=True)},
    )
    for c in codec.codecs.values():  # random codebooks so that codes are not all equal
        for layer in c.quantizer.vq.layers:
            layer._codebook.embed.normal_()
    lm_cfg = OmegaConf.create((ref_fixture / "xp_cfg_lm.yaml").read_text())
    lm_cfg.transformer_lm.n_q = 7
    lm_cfg.codebooks_pattern.delay.delays = list(LAYOUT_7CB.delays)
    state = {k: v.half() for k, v in lm.state_dict().items()}
    state.update(
        {f"condition_provider.conditioners.description.{k}": v.half() for k, v in text.state_dict().items()}
    )
    dst.mkdir()
    pkg = {"best_state": state, "xp.cfg": OmegaConf.to_yaml(lm_cfg), "version": "test", "exported": True}
    torch.save(pkg, dst / "state_dict.bin")
    for stem in LAYOUT_7CB.stems:
        ccfg = OmegaConf.create((ref_fixture / f"xp_cfg_compression_{stem}.yaml").read_text())
        ccfg.rvq.n_q = codec.codecs[stem].n_q
        pkg = {"best_state": codec.codecs[stem].state_dict(), "xp.cfg": OmegaConf.to_yaml(ccfg)}
        torch.save({**pkg, "version": "test", "exported": True}, dst / f"compression_state_dict_{stem}.bin")
    return lm, state


def test_7cb_layout_loads_without_code_changes(ref_fixture: Path, tmp_path: Path) -> None:
    lm, state = _write_reference_7cb(ref_fixture, tmp_path / "ref7cb")
    model = MusicGenStem.from_pretrained(tmp_path / "ref7cb", device="cpu")
    assert model.layout == LAYOUT_7CB
    assert model.codec.codecs["bass"].n_q == 2
    for k, v in model.lm.state_dict().items():
        assert torch.equal(v, state[k].float())
    model.set_generation_params(use_sampling=True)
    out = model.generate(["a test"], seed=1, duration=0.4)
    assert out.codes.shape == (1, 7, 20)
    edit = model.regenerate_from_codes(out.codes, ["bass"], ["new bass"], seed=2)
    kept = model.layout.streams_of_stems(["drums", "other"])
    assert torch.equal(edit.codes[:, kept], out.codes[:, kept])
    assert not torch.equal(edit.codes[:, :2], out.codes[:, :2])


def _mapped_rss(file: Path) -> int:
    """Resident bytes of this process's mappings of `file` (/proc/self/smaps)."""
    target, total, inside = str(file.resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:  # a mapping's header line
            inside = len(fields) == 6 and fields[5] == target
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc/self/smaps")
def test_converted_pages_are_released_and_reread_intact(tmp_path: Path) -> None:
    w = torch.randn(2**20).half()  # 2 MiB
    file = tmp_path / "w.bin"
    torch.save({"best_state": {"w": w}}, file)
    mapped = torch.load(file, map_location="cpu", weights_only=True, mmap=True)["best_state"]["w"]
    assert torch.equal(mapped, w)  # every page read
    before = _mapped_rss(file)
    assert before >= 2**21
    _page_releaser(file)(mapped)
    assert before - _mapped_rss(file) >= 2**21 - 2 * 4096  # all but the partial end pages
    assert torch.equal(mapped, w)  # read again from the file: nothing lost
    _page_releaser(tmp_path / "other.bin")(mapped)  # not a mapping of that file: left alone
