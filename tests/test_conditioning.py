"""Tests of the text conditioning (LUT parity with the reference fixture, MiniLM, tiny local T5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicgen_stem.conditioning import (
    LUTTextEncoder,
    MiniLMTextEncoder,
    T5TextEncoder,
    TextConditioner,
    TextConfigError,
    TextEncoderConfig,
    build_text_conditioner,
    drop_words,
    hash_trick,
)
from musicgen_stem.errors import ModelError

PREFIX = "condition_provider.conditioners.description."


# ----------------------------------------------------------------------------------------- config


def test_config_roundtrip_and_errors() -> None:
    for cfg in (
        TextEncoderConfig(kind="lut", n_bins=32, dim=8),
        TextEncoderConfig(kind="t5", name="t5-base", word_dropout=0.3),
        TextEncoderConfig(kind="minilm", max_length=64),
    ):
        assert TextEncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TextConfigError, match="unknown text encoder kind"):
        TextEncoderConfig(kind="clap")
    with pytest.raises(TextConfigError, match="unknown text encoder config key"):
        TextEncoderConfig.from_dict({"kind": "t5", "finetune": True})
    with pytest.raises(ModelError, match="n_bins"):
        TextEncoderConfig(kind="lut", dim=8)
    ref = TextEncoderConfig.from_audiocraft(
        {
            "model": "t5",
            "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3, "normalize_text": False},
        }
    )
    assert ref == TextEncoderConfig(kind="t5", name="t5-base", word_dropout=0.3)


# -------------------------------------------------------------------------------------------- LUT


def test_lut_state_dict_keys_and_null() -> None:
    cond = build_text_conditioner(TextEncoderConfig(kind="lut", n_bins=8, dim=4), lm_dim=6)
    assert sorted(cond.state_dict()) == ["embed.weight", "output_proj.bias", "output_proj.weight"]
    out, mask = cond(["a", None, "b"])
    assert out.shape == (3, 1, 6) and mask.tolist() == [[1], [0], [1]]
    assert torch.all(out[1] == 0)
    null, null_mask = cond.null(2)
    assert torch.all(null == 0) and torch.all(null_mask == 0) and null.shape == (2, 1, 6)
    cond.double()
    assert cond(["a"])[0].dtype == torch.float64


def test_lut_parity_with_reference_fixture(ref_fixture: Path) -> None:
    meta = json.loads((ref_fixture / "golden_meta.json").read_text())
    golden = np.load(ref_fixture / "golden.npz")
    best = torch.load(ref_fixture / "state_dict.bin", map_location="cpu", weights_only=True)["best_state"]
    sd = {k[len(PREFIX) :]: v.float() for k, v in best.items() if k.startswith(PREFIX)}
    cfg_text = (ref_fixture / "xp_cfg_lm.yaml").read_text()
    assert "model: lut" in cfg_text and "n_bins: 32" in cfg_text and "dim: 32" in cfg_text
    lm_dim = golden["cond_embeds"].shape[-1]
    assert lm_dim == 64

    cond = build_text_conditioner(TextEncoderConfig(kind="lut", n_bins=32, dim=32), lm_dim=lm_dim)
    cond.load_state_dict(sd, strict=True)
    cond.eval()
    text = meta["text"]
    tokens, tok_mask = cond.encoder.tokenize([text])
    np.testing.assert_array_equal(tokens.numpy(), golden["cond_tokens"])
    np.testing.assert_array_equal(tok_mask.numpy(), golden["cond_tokens_mask"])
    with torch.no_grad():
        out, mask = cond([text])
        null, null_mask = cond.null(1)
        null_tokens, _ = cond.encoder.tokenize([None])
    np.testing.assert_allclose(out.numpy(), golden["cond_embeds"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(mask.numpy(), golden["cond_mask"])
    np.testing.assert_array_equal(null_tokens.numpy(), golden["null_cond_tokens"])
    np.testing.assert_allclose(null.numpy(), golden["null_cond_embeds"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(null_mask.numpy(), golden["null_cond_mask"])
    assert hash_trick(text, 32) == int(golden["cond_tokens"][0, 0])


# ----------------------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        return MiniLMTextEncoder()
    finally:
        mp.undo()


def test_minilm_offline(minilm: MiniLMTextEncoder) -> None:
    torch.manual_seed(0)
    assert minilm.output_dim == 384
    cond = TextConditioner(TextEncoderConfig(kind="minilm"), lm_dim=16, encoder=minilm)
    assert sorted(cond.state_dict()) == ["output_proj.bias", "output_proj.weight"]
    assert len(list(cond.parameters())) == 2
    cond.eval()
    with torch.no_grad():
        out, mask = cond(["80s pop track with bassy drums and synth", "calm piano", None])
        embeds, _ = minilm.encode(["80s pop track with bassy drums and synth", "calm piano"])
    assert embeds.shape[-1] == 384 and embeds.dtype == torch.float32
    assert out.shape[:2] == mask.shape and out.shape[-1] == 16
    assert mask[0].all() and 0 < int(mask[1].sum()) < mask.shape[1]
    assert torch.all(out[mask == 0] == 0)  # padding zeroed (bias included)
    assert torch.all(out[2] == 0) and torch.all(mask[2] == 0)  # None -> null
    n = int(mask[1].sum())
    assert not torch.allclose(out[0, :n], out[1, :n])  # different prompts, different memories
    null, null_mask = cond.null(2)
    assert torch.all(null == 0) and torch.all(null_mask == 0)


# ------------------------------------------------------------------------------------------ T5


def _make_tiny_t5(folder: Path) -> None:
    """A random 1-layer T5 encoder and a small Unigram T5 tokenizer, saved like a hub folder."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = "▁ a b c d e f g h i j k l m n o p q r s t u v w x y z ▁a ▁the ▁pop ▁drums ▁calm ▁piano".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0 - i) for i, w in enumerate(words)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok_cls = getattr(transformers, "T5TokenizerFast", None) or transformers.T5Tokenizer
    tok_cls(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0
    ).save_pretrained(folder)
    config = transformers.T5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
    )
    torch.manual_seed(0)
    transformers.T5EncoderModel(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_t5")
    _make_tiny_t5(folder)
    return folder


def test_t5_local_folder(tiny_t5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = T5TextEncoder(str(tiny_t5_dir))
    assert enc.output_dim == 16
    assert not any(p.requires_grad for p in enc.model.parameters())
    texts = ["the pop drums", "a", None, ""]
    embeds, mask = enc.encode(texts)
    # padded to the longest: "the pop drums" -> 3 pieces + </s>
    assert embeds.shape == (4, 4, 16) and mask.dtype == torch.long
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert torch.all(embeds[mask == 0] == 0)
    assert embeds[0].abs().sum() > 0
    # a text alone gives the same states as inside a padded batch (T5 masks padding internally)
    alone, _ = enc.encode(["a"])
    torch.testing.assert_close(alone[0], embeds[1, :3], atol=1e-5, rtol=1e-5)

    cond = TextConditioner(TextEncoderConfig(kind="t5", name=str(tiny_t5_dir)), lm_dim=8, encoder=enc)
    assert sorted(cond.state_dict()) == ["output_proj.bias", "output_proj.weight"]
    out, out_mask = cond(texts)
    assert out.shape == (4, 4, 8) and torch.all(out[out_mask == 0] == 0)

    built = build_text_conditioner(TextEncoderConfig(kind="t5", name=str(tiny_t5_dir)), lm_dim=8)
    assert sorted(built.state_dict()) == ["output_proj.bias", "output_proj.weight"]


def test_t5_missing_model_is_model_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="could not load the T5 text encoder") as info:
        T5TextEncoder("nobody-here/no-such-t5-model")
    assert "\n" not in str(info.value) and "--text-encoder" in str(info.value)
    with pytest.raises(ModelError, match="does not exist"):
        T5TextEncoder(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="could not load"):
        T5TextEncoder(str(tmp_path))  # an existing but empty folder


# ------------------------------------------------------------------------------------ word dropout


def test_drop_words() -> None:
    torch.manual_seed(0)
    assert drop_words(["a b c", None], 0.0) == ["a b c", None]
    out = [drop_words(["w1 w2 w3 w4 w5 w6 w7 w8"], 0.5)[0] for _ in range(20)]
    assert any(o != "w1 w2 w3 w4 w5 w6 w7 w8" for o in out)
    assert all(set(o.split()) <= {f"w{i}" for i in range(1, 9)} for o in out)


def test_minilm_matches_transformers_bert(minilm: MiniLMTextEncoder) -> None:
    """Our BERT (torch's encoder layers, `tokenizers`) gives transformers' BertModel's token states."""
    transformers = pytest.importorskip("transformers")
    texts = ["funky drums with a slap bass line at 110 bpm", "", "80s pop in F# minor, synth pads " * 30]
    folder = str(minilm.path)
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ref = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    inputs = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=minilm.max_length)
    with torch.no_grad():
        want = ref(**inputs).last_hidden_state * inputs["attention_mask"][..., None]
        got, mask = minilm.encode(texts)
    assert inputs["input_ids"].shape[1] == minilm.max_length  # the long text is cut as transformers cuts it
    assert torch.equal(mask[0], inputs["attention_mask"][0]) and mask[2].sum() == minilm.max_length
    assert (got[[0, 2]] - want[[0, 2]]).abs().max() < 1e-4 * want.abs().max()
    assert torch.all(got[1] == 0)  # the empty text: the null condition


def test_the_default_text_encoder_does_not_import_transformers() -> None:
    """transformers' import took 3.4 s of every command's start: the MiniLM path does without it."""
    code = (
        "import sys; from musicgen_stem.conditioning import MiniLMTextEncoder; "
        "MiniLMTextEncoder().encode(['x']); print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_word_dropout_only_in_training(minilm: MiniLMTextEncoder) -> None:
    cond = TextConditioner(TextEncoderConfig(kind="minilm", word_dropout=0.9), lm_dim=4, encoder=minilm)
    minilm.word_dropout = 0.9
    try:
        text = ["one two three four five six seven eight nine ten"]
        cond.eval()
        ref, ref_mask = cond(text)
        assert not minilm.training and not minilm.model.training
        for _ in range(3):
            again, again_mask = cond(text)
            assert torch.equal(again, ref) and torch.equal(again_mask, ref_mask)
        cond.train()
        assert minilm.training and not minilm.model.training  # frozen model stays in eval mode
        torch.manual_seed(0)
        lengths = {int(cond(text)[1].sum()) for _ in range(5)}
        assert max(lengths) < int(ref_mask.sum())  # words were dropped
    finally:
        minilm.word_dropout = 0.0
        cond.eval()


def test_lut_encoder_direct() -> None:
    enc = LUTTextEncoder(n_bins=16, dim=3)
    emb, mask = enc.encode(["x", None])
    assert emb.shape == (2, 1, 3) and mask.tolist() == [[1], [0]] and torch.all(emb[1] == 0)
