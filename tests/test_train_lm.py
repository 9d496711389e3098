"""LM training: batches (text / masked-stem edit), loss, resume, DDP under torchrun, final model."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem
from musicgen_stem.errors import MusicGenStemError
from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB, StemLayout
from musicgen_stem.lm import LMConfig, StemLM
from musicgen_stem.modeldir import load_model
from musicgen_stem.training import lm as train_mod
from musicgen_stem.training import loop
from musicgen_stem.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from musicgen_stem.training.distributed import DistInfo
from musicgen_stem.training.lm import LMTrainConfig, train_lm
from musicgen_stem.training.lm_data import EDIT, TEXT, BatchBuilder, TokenDataset
from musicgen_stem.training.lm_loss import LMWithText, lm_loss, sequence_loss, target_counts

WINDOW = 50  # 1.0 s edit window at 50 Hz
CROP = 100  # 2.0 s crop


def write_token_dataset(
    root: Path,
    layout: StemLayout,
    lengths: list[int],
    seed: int = 0,
    frame_rate: float = 50.0,
    captions: bool = True,
) -> Path:
    """A token dataset as `musicgen-stem prepare` writes it: random tokens, a few captions per track."""
    rng = np.random.default_rng(seed)
    (root / "tokens").mkdir(parents=True, exist_ok=True)
    meta = {"layout": layout.to_dict(), "frame_rate": frame_rate, "sample_rate": 32000, "codec_model": "test"}
    (root / "prepare.json").write_text(json.dumps(meta))
    with (root / "index.jsonl").open("w") as f:
        for i, n in enumerate(lengths):
            tid = f"track{i:03d}"
            codes = rng.integers(0, layout.card, size=(layout.num_streams, n)).astype(np.int16)
            np.save(root / "tokens" / f"{tid}.npy", codes)
            caps = [f"caption {i} a", f"caption {i} b"] if captions else []
            entry = {
                "id": tid,
                "tokens": f"tokens/{tid}.npy",
                "frames": n,
                "captions": caps,
                "duration": n / frame_rate,
            }
            f.write(json.dumps(entry) + "\n")
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    cfg = dataclasses.replace(presets.tiny(), edit_window=1.0, max_duration=2.0)
    path = tmp_path_factory.mktemp("lmtrain") / "model"
    MusicGenStem.from_config(cfg, seed=0, device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_token_dataset(tmp_path_factory.mktemp("tokens") / "data", presets.tiny().layout, [300] * 4)


def _builder(data_dir: Path, edit_prob: float = 0.5, cond_dropout: float = 0.3) -> BatchBuilder:
    ds = TokenDataset([data_dir], presets.tiny().layout, 50.0)
    return BatchBuilder(ds, CROP, WINDOW, [7] * 6, edit_prob, cond_dropout)


def _cfg(model_dir: Path, data_dir: Path, out: Path, **kw) -> LMTrainConfig:
    base = dict(
        steps=4,
        batch_size=2,
        lr=3e-3,
        warmup=1,
        checkpoint_every=2,
        validate_every=2,
        valid_fraction=0.25,
        valid_batches=2,
        log_every=1,
        ema_decay=0.9,
        seed=3,
    )
    base.update(kw)
    return LMTrainConfig(model=str(model_dir), data=[str(data_dir)], out=str(out), **base)


# ------------------------------------------------------------------------------------------ batches


def test_edit_batch_layout(data_dir):
    layout = presets.tiny().layout
    b = _builder(data_dir)
    P = WINDOW // 5 + 1
    counts = set()
    for seed in range(8):
        batch = b.build(3, torch.Generator().manual_seed(seed), EDIT, False)
        assert batch.kind == EDIT and batch.prefix_len == P
        assert batch.codes.shape == (3, 6, P + WINDOW) and batch.loss_mask.shape == batch.codes.shape
        assert not batch.loss_mask[..., :P].any() and batch.loss_mask[..., P:].all()
        assert (batch.codes[:, :, P - 1] == layout.special_token).all()  # transition step
        main = batch.codes[..., P:]
        for i in range(3):
            stems = [s for s in layout.stems if batch.masked[i, layout.streams_of(s)].all()]
            # whole stems are masked, 1 to N-1 of them
            assert batch.masked[i].sum() == len(layout.streams_of_stems(stems))
            assert 1 <= len(stems) <= layout.num_stems - 1
            counts.add(len(stems))
            for k in range(6):
                if batch.masked[i, k]:
                    assert (batch.codes[i, k, :P] == layout.special_token).all()
                else:  # every 5th frame of the window, then the transition
                    assert torch.equal(batch.codes[i, k, : P - 1], main[i, k, ::5])
            assert (main[i] < layout.card).all()
    assert counts == {1, 2}


def test_text_batch_and_determinism(data_dir):
    b = _builder(data_dir)
    batch = b.build(4, torch.Generator().manual_seed(1), TEXT, False)
    assert batch.kind == TEXT and batch.codes.shape == (4, 6, CROP)
    assert batch.loss_mask.all() and (batch.codes < 2048).all()
    assert all(t is not None and t.startswith("caption") for t in batch.texts)
    again = b.build(4, torch.Generator().manual_seed(1), TEXT, False)
    assert torch.equal(batch.codes, again.codes) and batch.texts == again.texts
    # drawn kinds / dropout are deterministic too, and both kinds occur
    kinds = []
    for s in range(12):
        x, y = (b.build(2, torch.Generator().manual_seed(s)) for _ in range(2))
        assert x.kind == y.kind and x.texts == y.texts and torch.equal(x.codes, y.codes)
        kinds.append(x.kind)
    assert set(kinds) == {TEXT, EDIT}
    assert b.build(2, torch.Generator(), TEXT, True).texts == [None, None]
    assert _builder(data_dir, cond_dropout=1.0).build(2, torch.Generator()).texts == [None, None]


def test_short_tracks_are_padded_and_masked(tmp_path):
    layout = presets.tiny().layout
    d = write_token_dataset(tmp_path / "short", layout, [30, 40], captions=False)
    b = BatchBuilder(TokenDataset([d], layout), CROP, WINDOW, [7] * 6)
    text = b.build(2, torch.Generator().manual_seed(0), TEXT, False)
    n = text.loss_mask[:, 0].sum(-1)
    assert set(n.tolist()) <= {30, 40} and text.texts == [None, None]
    for i in range(2):
        assert (text.codes[i, :, n[i] :] == layout.special_token).all()
    edit = b.build(2, torch.Generator().manual_seed(0), EDIT, False)
    P = edit.prefix_len
    for i in range(2):
        m = int(edit.loss_mask[i, 0].sum())
        assert m in (30, 40) and edit.loss_mask[i, :, P : P + m].all()
        kept = (~edit.masked[i]).nonzero()[0, 0]
        assert (edit.codes[i, kept, m // 5 + (m % 5 > 0) : P - 1] == 7).all()  # prefix padded with silence


def test_split_by_id(data_dir):
    layout = presets.tiny().layout
    train = TokenDataset([data_dir], layout, split="train", valid_fraction=0.25)
    valid = TokenDataset([data_dir], layout, split="valid", valid_fraction=0.25)
    assert [t.id for t in train.tracks] == ["track000", "track001", "track002"]
    assert [t.id for t in valid.tracks] == ["track003"]


# --------------------------------------------------------------------------------------------- loss


def test_loss_ignores_masked_and_nan():
    logits = torch.zeros(1, 2, 3, 4)
    logits[0, 1, 2] = float("nan")
    codes = torch.zeros(1, 2, 3, dtype=torch.long)
    mask = torch.ones(1, 2, 3, dtype=torch.bool)
    mask[0, 1, 2] = False
    loss, per = lm_loss(logits.requires_grad_(), codes, mask)
    loss.backward()
    assert torch.allclose(per, torch.full((2,), np.log(4.0), dtype=torch.float32))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("layout", [LAYOUT_6CB, LAYOUT_7CB])
def test_sequence_loss_equals_frame_logits_loss(layout):
    torch.manual_seed(0)
    lm = StemLM(layout, LMConfig(dim=32, num_heads=2, num_layers=1, ff_dim=64))
    codes = torch.randint(0, layout.card, (2, layout.num_streams, 20))
    mask = torch.rand(codes.shape) > 0.3
    memory = torch.randn(2, 3, 32)
    want, want_per = lm_loss(*_frame(lm, codes, memory, mask))
    got, got_per = sequence_loss(lm, codes, memory, mask)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_per, want_per)


def _frame(lm, codes, memory, mask):
    logits, valid = lm.frame_logits(codes, memory)
    return logits, codes, valid[None] & mask


class _FixedBatch(loop.Task):
    """The same batch at every step, through the LM's loss."""

    def __init__(self, batch):
        self.batch = batch

    def micro_batches(self, step):
        return [self.batch]

    def loss(self, model, batch):
        loss, per_stream = model(batch.codes, batch.texts, batch.loss_mask)
        return loss, {"loss": loss.detach(), "per_stream": per_stream}


@pytest.mark.parametrize("kind", [TEXT, EDIT])
def test_steps_decrease_loss(model_dir, data_dir, kind):
    parts = load_model(model_dir)
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    cfg = loop.LoopConfig(name="test", steps=6, lr=3e-3, weight_decay=0.1, grad_clip=1.0)
    trainer = loop.build_trainer(LMWithText(parts.lm, parts.text).train(), info, cfg)
    task = _FixedBatch(_builder(data_dir).build(2, torch.Generator().manual_seed(0), kind, False))
    losses = []
    for step in range(6):
        terms = loop.train_step(trainer, task, step)
        losses.append(float(terms["loss"]))
        assert terms["per_stream"].shape == (6,) and terms["grad_norm"] > 0
    assert losses[-1] < losses[0] - 0.05, losses


def test_global_token_normalisation(model_dir, data_dir):
    """Split in pieces whose losses are normalised by the whole batch's token counts, a batch's
    loss is the sum of the pieces' losses (what makes N processes equal one)."""
    parts = load_model(model_dir)
    module = LMWithText(parts.lm, parts.text).eval()
    batch = _builder(data_dir).build(4, torch.Generator().manual_seed(5), EDIT, False)
    norm = target_counts(presets.tiny().layout, batch.loss_mask)
    with torch.no_grad():
        whole, _ = module(batch.codes, batch.texts, batch.loss_mask)
        pieces = [
            module(batch.codes[i : i + 2], batch.texts[i : i + 2], batch.loss_mask[i : i + 2], norm)[0]
            for i in (0, 2)
        ]
    torch.testing.assert_close(sum(pieces), whole, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------- full runs


def test_resume_equals_uninterrupted_and_final_model(model_dir, data_dir, tmp_path, monkeypatch):
    ref = train_lm(_cfg(model_dir, data_dir, tmp_path / "a"))
    full = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    assert full["step"] == 4

    calls = {"n": 0}
    real_step = loop.train_step

    def killed(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during step 3, after the step-2 checkpoint
        return real_step(*args, **kw)

    monkeypatch.setattr(loop, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 2
    monkeypatch.setattr(loop, "train_step", real_step)
    train_lm(_cfg(model_dir, data_dir, tmp_path / "b"))
    resumed = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert resumed["step"] == 4
    for part in ("lm", "text"):
        for k, v in full[part].items():
            torch.testing.assert_close(resumed[part][k], v, rtol=0, atol=1e-6)
            torch.testing.assert_close(resumed["ema"][part][k], full["ema"][part][k], rtol=0, atol=1e-6)
    start = load_model(model_dir)
    assert not torch.equal(full["lm"]["linears.0.weight"], start.lm.state_dict()["linears.0.weight"])

    # the log holds the per-stream / per-kind losses and validation
    records = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if "loss" in r]
    assert len(train_recs) == 4 and all(len(r["loss_per_stream"]) == 6 for r in train_recs)
    assert {"lr", "grad_norm", "steps_per_s", "tokens_per_s"} <= set(train_recs[0])
    assert any("valid_loss" in r for r in records)

    # the final model: EMA weights, codecs unchanged, loads and generates
    final = load_model(ref)
    for k, v in final.lm.state_dict().items():
        torch.testing.assert_close(v, full["ema"]["lm"][k])
    for stem, codec in start.codec.codecs.items():
        for k, v in codec.state_dict().items():
            assert torch.equal(v, final.codec.codecs[stem].state_dict()[k])
    assert final.config.silence_tokens is not None
    model = MusicGenStem.from_pretrained(ref, device="cpu")
    audio, codes = model.generate(["caption 1 a"], return_tokens=True, seed=0, duration=0.2)
    assert codes.shape == (1, 6, 10)
    _, edited = model.regenerate_from_codes(codes, ["drums"], ["x"], return_tokens=True, seed=0)
    kept = model.layout.streams_of_stems(["bass", "other"])
    assert torch.equal(edited[:, kept], codes[:, kept])

    # rerunning a finished run only rewrites the model
    assert train_lm(_cfg(model_dir, data_dir, tmp_path / "a")) == ref


def test_dropout_option_trains_with_dropout_and_is_recorded(model_dir, data_dir, tmp_path):
    """--dropout sets the LM's dropout while training: the steps differ from a run without it, and
    the written model's config records it (inactive at inference: eval mode)."""
    plain = load_checkpoint(
        Path(train_lm(_cfg(model_dir, data_dir, tmp_path / "a", steps=2))).parent / CHECKPOINT_NAME
    )
    out = train_lm(_cfg(model_dir, data_dir, tmp_path / "b", steps=2, dropout=0.3))
    dropped = load_checkpoint(Path(out).parent / CHECKPOINT_NAME)
    assert not torch.equal(plain["lm"]["linears.0.weight"], dropped["lm"]["linears.0.weight"])
    final = load_model(out)
    assert final.config.lm.dropout == 0.3 and load_model(model_dir).config.lm.dropout == 0.0
    with pytest.raises(MusicGenStemError, match="--dropout"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "c", dropout=1.0))


def test_history_noise_corrupts_only_the_regenerated_streams_after_the_prefix(data_dir):
    """Edit batches: random inputs where a masked stream continues after the prefix (at rate p),
    the kept streams and the prefix untouched; the targets are the batch's own codes."""
    from musicgen_stem.training.lm_loss import history_noise

    batch = _builder(data_dir).build(4, torch.Generator().manual_seed(0), EDIT, False)
    card = presets.tiny().layout.card
    torch.manual_seed(0)
    noisy = history_noise(batch.codes, batch.masked, batch.prefix_len, 1.0, card)
    changed = noisy != batch.codes
    assert not changed[:, :, : batch.prefix_len].any()
    assert not changed[~batch.masked].any()  # kept streams: [n, T]
    main = batch.codes[:, :, batch.prefix_len :]
    regen = batch.masked[:, :, None].expand_as(main)
    assert changed[:, :, batch.prefix_len :][regen].float().mean() > 0.9  # random tokens (1/card equal)
    assert int(noisy[:, :, batch.prefix_len :][regen].max()) < card
    half = history_noise(batch.codes, batch.masked, batch.prefix_len, 0.5, card)
    rate = (half != batch.codes)[:, :, batch.prefix_len :][regen].float().mean()
    assert 0.4 < float(rate) < 0.6
    assert torch.equal(history_noise(batch.codes, batch.masked, batch.prefix_len, 0.0, card), batch.codes)


def test_history_noise_option_trains(model_dir, data_dir, tmp_path):
    """--history-noise changes the edit steps' gradients (same seed, other weights) and is checked."""
    a = train_lm(_cfg(model_dir, data_dir, tmp_path / "a", steps=2, edit_prob=1.0))
    b = train_lm(_cfg(model_dir, data_dir, tmp_path / "b", steps=2, edit_prob=1.0, history_noise=0.5))
    wa = load_checkpoint(Path(a).parent / CHECKPOINT_NAME)["lm"]["linears.0.weight"]
    wb = load_checkpoint(Path(b).parent / CHECKPOINT_NAME)["lm"]["linears.0.weight"]
    assert not torch.equal(wa, wb)
    with pytest.raises(MusicGenStemError, match="history noise"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "c", history_noise=1.5))


def test_train_heads_moves_only_those_heads(model_dir, data_dir, tmp_path):
    """--train-heads 1 3: those output heads learn, every other LM and text weight stays bit-exact
    (the written model gives the other streams the probabilities they had)."""
    out = train_lm(_cfg(model_dir, data_dir, tmp_path / "a", steps=2, train_heads=(1, 3)))
    start, end = load_model(model_dir), load_model(out)
    before = {**start.lm.state_dict(), **{f"text.{k}": v for k, v in start.text.state_dict().items()}}
    after = {**end.lm.state_dict(), **{f"text.{k}": v for k, v in end.text.state_dict().items()}}
    moved = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert moved == ["linears.1.weight", "linears.3.weight"]
    with pytest.raises(MusicGenStemError, match="streams 0..5"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "b", train_heads=(6,)))
    with pytest.raises(MusicGenStemError, match="train-heads"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "c", train_heads=(-1,)))


def test_train_embeddings_moves_only_those_embeddings(model_dir, data_dir, tmp_path):
    """--train-embeddings 1 --train-heads 1: that stream's embedding and head learn, nothing else
    (LM or text conditioner) moves; alone, only the embedding."""

    def weights(parts):
        return {**parts.lm.state_dict(), **{f"text.{k}": v for k, v in parts.text.state_dict().items()}}

    start = weights(load_model(model_dir))
    for heads, want in (((1,), ["emb.1.weight", "linears.1.weight"]), ((), ["emb.1.weight"])):
        out = train_lm(
            _cfg(
                model_dir,
                data_dir,
                tmp_path / str(len(heads)),
                steps=2,
                train_heads=heads,
                train_embeddings=(1,),
            )
        )
        after = weights(load_model(out))
        assert sorted(k for k in start if not torch.equal(start[k], after[k])) == want
    with pytest.raises(MusicGenStemError, match="train-embeddings"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "b", train_embeddings=(6,)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_ddp_two_processes(model_dir, data_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "musicgen_stem.training.lm",
        "--model",
        str(model_dir),
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        "--validate-every",
        "2",
        "--valid-batches",
        "1",
        "--valid-fraction",
        "0.25",
        "--device",
        "cpu",
        "--num-threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["step"] == 2
    assert (out / "model" / "config.json").is_file()
    assert proc.stdout.count("| grad_norm ") == 2  # rank 0 only


# ------------------------------------------------------------------------------------------ errors


def test_bad_inputs(model_dir, data_dir, tmp_path):
    bad = write_token_dataset(tmp_path / "7cb", LAYOUT_7CB, [120])
    with pytest.raises(MusicGenStemError, match="layout"):
        train_lm(_cfg(model_dir, bad, tmp_path / "o1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MusicGenStemError, match="prepare.json"):
        train_lm(_cfg(model_dir, empty, tmp_path / "o2"))
    no_tracks = write_token_dataset(tmp_path / "none", presets.tiny().layout, [])
    with pytest.raises(MusicGenStemError, match="no tracks"):
        train_lm(_cfg(model_dir, no_tracks, tmp_path / "o3"))
    with pytest.raises(MusicGenStemError, match="steps"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "o4", steps=0))
    with pytest.raises(MusicGenStemError, match="validation"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "o5", valid_fraction=0.9))
    rc = train_mod.main(["--model", str(model_dir), "--data", str(empty), "--out", str(tmp_path / "o6")])
    assert rc == 2
    # a checkpoint written with other settings is not silently mixed in
    train_lm(_cfg(model_dir, data_dir, tmp_path / "o7", steps=1, valid_fraction=0.0))
    with pytest.raises(MusicGenStemError, match="other settings"):
        train_lm(_cfg(model_dir, data_dir, tmp_path / "o7", steps=2, lr=1.0, valid_fraction=0.0))
