"""Streaming: the codec's streaming decoder, the engine's final-frame reports, streamed audio in the API."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from musicgen_stem import AudioChunk, MusicGenStem
from musicgen_stem.api.decoding import text_memories
from musicgen_stem.codec import (
    ChromaEncoderConfig,
    CodecConfig,
    HarmonicDecoderConfig,
    ISTFTDecoderConfig,
    MultiStemCodec,
    PitchEncoderConfig,
    SEANetConfig,
    StemCodec,
    TonalDecoderConfig,
)
from musicgen_stem.codec.context import receptive_field
from musicgen_stem.codec.streaming import MultiStemStreamingDecoder, StreamingDecoder, _SliceStage
from musicgen_stem.errors import GenerationError
from musicgen_stem.generation import SamplingParams, generate_codes
from musicgen_stem.generation.engine import UNKNOWN, final_frames_after
from musicgen_stem.generation.tasks import Task
from musicgen_stem.generation.windows import fill_windows
from musicgen_stem.layout import LAYOUT_6CB, StemLayout
from musicgen_stem.presets import tiny

TOL = 1e-5


def _randomize_codebooks(codec: StemCodec, seed: int) -> StemCodec:
    """Random codebook vectors (fresh codecs have all-zero codebooks, whose audio ignores the codes)."""
    g = torch.Generator().manual_seed(seed)
    for layer in codec.quantizer.vq.layers:
        cb = layer._codebook
        cb.embed.copy_(torch.randn(cb.embed.shape, generator=g))
    return codec.eval()


def _codec(seed: int = 0, n_q: int = 2, **kw: object) -> StemCodec:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CodecConfig.tiny(n_q), bins=16, **kw)
    return _randomize_codebooks(StemCodec(cfg), seed)


def _stream(dec: StreamingDecoder, codes: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    assert sum(sizes) == codes.shape[-1]
    outs, i = [], 0
    for n in sizes:
        outs.append(dec.push(codes[..., i : i + n]))
        i += n
    return [*outs, dec.flush()]


# --------------------------------------------------------------------------------------------
# StreamingDecoder
# --------------------------------------------------------------------------------------------
def _seanet(**kw: object) -> dict[str, SEANetConfig]:
    """The tiny codec's SEANet encoder and decoder with `kw` changed."""
    return {"encoder": SEANetConfig(n_filters=4, **kw), "decoder": SEANetConfig(n_filters=4, **kw)}  # type: ignore[arg-type]


CODECS = {
    "lstm2": {},
    "no_lstm": _seanet(lstm=0),
    "causal": {"causal": True, "decoder": SEANetConfig(n_filters=4, trim_right_ratio=0.5)},
    "reflect_2res": _seanet(pad_mode="reflect", n_residual_layers=2),
    "istft": {"decoder": ISTFTDecoderConfig(width=16, layers=2, n_fft=192, hop=64)},
    "istft_absolute": {"decoder": ISTFTDecoderConfig(phase="absolute", n_fft=192, hop=64)},
    "istft_no_lstm": {**_seanet(lstm=0), "decoder": ISTFTDecoderConfig(width=8, layers=1, n_fft=320, lstm=0)},
    "harmonic": {
        "encoder": PitchEncoderConfig(),
        "decoder": HarmonicDecoderConfig(width=8, layers=1, harmonics=8, noise_bands=4),
        "dimension": 8,
    },
    "tonal": {
        "encoder": ChromaEncoderConfig(),
        "decoder": TonalDecoderConfig(width=8, layers=1, noise_bands=4),
        "dimension": 21,
    },
}
#: most frames a stage may hold back: SEANet's kernels reach 6 frames; ConvNeXt blocks 3 each
MAX_LAG = {"istft": 3 + 2 * 3 + 2, "istft_no_lstm": 3 + 3 + 1, "istft_absolute": 3 + 4 * 3 + 2}
F = 61
SIZES = {"one": [1] * F, "uneven": [3, 0, 7, 1, 20, 5, 25], "all": [F]}


@pytest.mark.parametrize("kind", list(CODECS))
@pytest.mark.parametrize("sizes", list(SIZES))
def test_streaming_decode_equals_full_decode(kind, sizes):
    codec = _codec(**CODECS[kind])
    codes = torch.randint(0, 16, (2, 2, F), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = codec.decode(codes)
    dec = StreamingDecoder(codec)
    outs = _stream(dec, codes, SIZES[sizes])
    got = torch.cat(outs, dim=-1)
    assert got.shape == full.shape == (2, 1, F * codec.hop_length)
    assert (got - full).abs().max() <= TOL
    assert full.abs().max() > 0.01 and full[..., : codec.hop_length].std() > 0  # not a trivial signal
    # the decoder starts a new stream after flush
    again = torch.cat(_stream(dec, codes, [F]), dim=-1)
    assert (again - full).abs().max() <= TOL


@pytest.mark.parametrize("kind", list(CODECS))
def test_streaming_decoder_returns_audio_early_with_bounded_state(kind):
    codec = _codec(**CODECS[kind])
    hop = codec.hop_length
    dec = StreamingDecoder(codec)
    stages = [s for s in dec._stages if isinstance(s, _SliceStage)]
    expected = {"no_lstm": 1, "istft": 3, "istft_no_lstm": 2, "istft_absolute": 2}
    assert len(stages) == expected.get(kind, 2)
    # the held-back frames are the exact receptive field, far below the generic bound
    assert dec.lag <= sum(receptive_field(s.net, upsampling=True) for s in stages)
    assert dec.lag <= MAX_LAG.get(kind, 6)
    codes = torch.randint(0, 16, (1, 2, F))
    for f in range(1, F + 1):
        wav = dec.push(codes[..., f - 1 : f])
        assert dec.samples_returned == max(0, f - dec.lag) * hop  # every frame not held back is out
        assert wav.shape[-1] in (0, hop)
        for s in stages:  # state bounded: left context + held-back frames (+ the new one)
            assert s._buf.shape[-1] <= s.left + s.right + 1
    assert dec.flush().shape[-1] == min(F, dec.lag) * hop


def test_streaming_decoder_splits_long_pushes():
    codec = _codec()
    codes = torch.randint(0, 16, (1, 2, F))
    with torch.inference_mode():
        full = codec.decode(codes)
    dec = StreamingDecoder(codec)
    dec._max_frames = 8  # a push longer than this runs in pieces (memory bounded)
    got = torch.cat([dec.push(codes), dec.flush()], dim=-1)
    assert got.shape == full.shape and (got - full).abs().max() <= TOL


@pytest.mark.parametrize("kind", ["lstm2", "istft"])
def test_streaming_decoder_context_is_tight(kind):
    """One frame less of left context or right lag in any stage changes the audio."""
    codec = _codec(**CODECS[kind])
    codes = torch.randint(0, 16, (1, 2, 30), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        full = codec.decode(codes)
    n_stages = len([s for s in StreamingDecoder(codec)._stages if isinstance(s, _SliceStage)])
    for i in range(n_stages):
        for side in ("left", "right"):
            dec = StreamingDecoder(codec)
            stage = [s for s in dec._stages if isinstance(s, _SliceStage)][i]
            setattr(stage, side, getattr(stage, side) - 1)
            got = torch.cat(_stream(dec, codes, [1] * 30), dim=-1)
            assert (got - full).abs().max() > 10 * TOL, (i, side)


def test_streaming_decoder_checks():
    codec = _codec()
    dec = StreamingDecoder(codec)
    assert dec.flush().shape == (0, 1, 0)  # nothing pushed
    dec.push(torch.zeros(2, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        dec.push(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        dec.push(torch.zeros(2, 3, 3, dtype=torch.long))  # wrong n_q
    with pytest.raises(ValueError, match="circular"):
        StreamingDecoder(_codec(**_seanet(pad_mode="circular")))


def test_multi_stem_streaming_decoder_aligns_stems():
    layout = StemLayout(("a", "b"), (1, 2), (0, 0, 1), 16)
    cfgs = {
        "a": dataclasses.replace(CodecConfig.tiny(1), bins=16),
        "b": dataclasses.replace(CodecConfig.tiny(2), bins=16, **_seanet(n_residual_layers=2, lstm=0)),
    }
    torch.manual_seed(0)
    msc = MultiStemCodec(layout, cfgs)
    for i, c in enumerate(msc.codecs.values()):
        _randomize_codebooks(c, i)
    dec = MultiStemStreamingDecoder(msc)
    assert dec.decoders["a"].lag != dec.decoders["b"].lag  # the stems hold back different amounts
    codes = torch.randint(0, 16, (1, 3, 40))
    with torch.inference_mode():
        full = msc.decode_stems(codes)
    outs, i = [], 0
    for n in (1, 2, 9, 1, 17, 10):
        out = dec.push(codes[..., i : i + n])
        i += n
        assert len({w.shape[-1] for w in out.values()}) == 1  # the same length for every stem
        outs.append(out)
    outs.append(dec.flush())
    for stem in layout.stems:
        got = torch.cat([o[stem] for o in outs], dim=-1)
        assert got.shape == full[stem].shape and (got - full[stem]).abs().max() <= TOL
    with pytest.raises(ValueError, match="B, 3, f"):
        dec.push(codes[:, :2])


# --------------------------------------------------------------------------------------------
# Engine and windows: final-frame reports
# --------------------------------------------------------------------------------------------
def test_final_frames_after_follows_the_delay_pattern():
    T, delays = 10, (0, 0, 0, 1, 2, 3)
    unknown = torch.ones(6, T, dtype=torch.bool)
    final = final_frames_after(unknown, delays)
    assert final == [min(T, max(0, s - 3)) for s in range(T + 4)]  # frame f is done at step f + 1 + 3
    unknown[:, :4] = False  # a known prompt: final from the start
    unknown[5, 6] = False  # a known token does not wait for its step (its frame waits for the others)
    final = final_frames_after(unknown, delays)
    assert final[0] == final[7] == 4 and final[8] == 5  # frame 4 is done at step 8
    assert final[9] == final[10] == 7 and final[11] == 8 and final[-1] == T  # frame 6 at step 6 + 1 + 2


@pytest.fixture(scope="module")
def tiny_lm():
    model = MusicGenStem.from_config("tiny", seed=0, device="cpu")
    mem, null = text_memories(model.text, ["x", "y"])
    return model.lm, mem, null


def _engine_run(tiny_lm, known, seed=0, mutate=False):
    lm, mem, null = tiny_lm
    reports, steps = [], []

    def on_frames(codes: torch.Tensor, final: int) -> None:
        reports.append((codes.clone(), final, len(steps)))
        if mutate:
            codes.fill_(0)  # a fresh tensor: the callee may do anything with it

    gen = torch.Generator().manual_seed(seed)
    out = generate_codes(lm, known, mem, null, SamplingParams(), gen, lambda d, t: steps.append(t), on_frames)
    return out, reports, steps


@pytest.mark.parametrize("prompt", [0, 7])
def test_engine_reports_final_frames(tiny_lm, prompt):
    T = 20
    known = torch.full((2, 6, T), UNKNOWN, dtype=torch.long)
    known[..., :prompt] = torch.randint(0, 2048, (2, 6, prompt))
    out, reports, steps = _engine_run(tiny_lm, known)
    finals = [f for _, f, _ in reports]
    assert finals == sorted(set(finals)) and finals[-1] == T  # strictly increasing, ends with T
    assert finals[0] >= prompt and reports[0][2] == 1  # the prompt is final at the first report
    assert reports[0][2] < len(steps)  # the first report comes before the last step
    assert len(reports) >= T - prompt - 1  # about one report per step once frames complete
    for codes, final, _ in reports:
        assert codes.shape == out.shape
        assert torch.equal(codes[..., :final], out[..., :final])  # final frames are the output's
        if final < T:
            assert (codes[..., final] == UNKNOWN).any()  # and the next frame is really not done
    same, _, _ = _engine_run(tiny_lm, known, mutate=True)
    assert torch.equal(same, out)  # reports do not change the result


def test_engine_reports_once_when_everything_is_known(tiny_lm):
    known = torch.randint(0, 2048, (2, 6, 5))
    out, reports, steps = _engine_run(tiny_lm, known)
    assert torch.equal(out, known) and steps == []
    assert len(reports) == 1 and reports[0][1] == 5 and torch.equal(reports[0][0], known)


def _fake_run(known: torch.Tensor, on_frames=None, start: int = 0, prefix: int = 0) -> torch.Tensor:
    """A stand-in for one window of the engine: fills the unknown tokens one frame at a time,
    reporting the leading final frames after each."""
    out = known.clone()
    T = out.shape[-1]
    reported = -1
    for t in range(T + 1):
        if t:
            col = out[..., t - 1]
            col[col == UNKNOWN] = 1000 + t
        done = int((out != UNKNOWN).all(dim=1).all(dim=0).long().cumprod(0).sum())
        if on_frames is not None and done > reported:
            reported = done
            on_frames(out.clone(), done)
    return out


@pytest.mark.parametrize("edit", [False, True])
def test_fill_windows_reports_global_final_frames(edit):
    T, window, overlap = 180, 50, 20
    codes = torch.randint(0, 900, (1, 6, T))
    free = torch.zeros(6, T, dtype=torch.bool)
    if edit:  # regenerate the bass of frames [40, 170): prefixed windows, known frames after them
        free[0, 40:170] = True
        regen, silence = ["bass"], [7] * 6
    else:
        free[:] = True
        regen, silence = list(LAYOUT_6CB.stems), None
    reports = []
    out = fill_windows(
        _fake_run,
        LAYOUT_6CB,
        Task(codes, free, tuple(regen)),
        window,
        overlap,
        silence,
        on_frames=lambda c, f: reports.append((c, f)),
    )
    assert torch.equal(
        out, fill_windows(_fake_run, LAYOUT_6CB, Task(codes, free, tuple(regen)), window, overlap, silence)
    )
    finals = [f for _, f in reports]
    assert finals == sorted(set(finals)) and finals[-1] == T
    assert len(finals) > 10  # reports come during the windows, not only at the end
    if edit:
        assert finals[0] >= 40  # the untouched start is final at once
    for c, f in reports:
        assert c.shape == out.shape and torch.equal(c[..., :f], out[..., :f])
        if f < T:
            assert (c[..., f] == UNKNOWN).any()


# --------------------------------------------------------------------------------------------
# API: on_audio and generate_stream
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    """Tiny model with a 1 s generation window, a 0.5 s edit window and random codebooks."""
    cfg = dataclasses.replace(tiny(), max_duration=1.0, edit_window=0.5)
    m = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    for i, codec in enumerate(m.codec.codecs.values()):
        _randomize_codebooks(codec, 10 + i)
    return m


def _joined(chunks: list[AudioChunk], stems) -> dict[str, torch.Tensor]:
    starts = [c.start for c in chunks]
    ends = [c.start + c.num_samples for c in chunks]
    assert starts[0] == 0 and starts[1:] == ends[:-1]  # contiguous, in order
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.codes is None for c in chunks[:-1])
    return {s: torch.cat([c.stems[s] for c in chunks], dim=-1) for s in stems}


def _assert_same_audio(chunks: list[AudioChunk], out) -> None:
    joined = _joined(chunks, out.stems)
    for s, wav in out.stems.items():
        assert joined[s].shape == wav.shape
        assert (joined[s] - wav).abs().max() <= TOL
    assert torch.equal(chunks[-1].codes, out.codes)
    assert any(wav.abs().max() > 0.01 for wav in out.stems.values())


def test_on_audio_generate_longer_than_one_window(model):
    chunks: list[AudioChunk] = []
    out = model.generate(["a"], seed=3, duration=2.3, on_audio=chunks.append, stream_seconds=0.3)
    plain = model.generate(["a"], seed=3, duration=2.3)
    assert torch.equal(out.codes, plain.codes) and out.codes.shape[-1] == 115  # 4 windows of 50 frames
    for s in plain:
        assert torch.equal(out[s], plain[s])  # streaming does not change the result
    _assert_same_audio(chunks, plain)
    assert len(chunks) >= 6
    assert all(c.num_samples <= 0.3 * model.sample_rate + model.codec.hop_length for c in chunks[:-1])


def test_on_audio_edits(model):
    base = model.generate(["a"], seed=5, duration=1.6)
    chunks: list[AudioChunk] = []
    out = model.regenerate_from_codes(base.codes, ["bass"], ["b"], seed=6, on_audio=chunks.append)
    _assert_same_audio(chunks, model.regenerate_from_codes(base.codes, ["bass"], ["b"], seed=6))
    assert len(chunks) > 1 and torch.equal(out.codes[:, 1:], base.codes[:, 1:])
    chunks = []
    model.regenerate_range(base.codes, ["drums"], ["c"], seed=7, start=0.4, end=0.9, on_audio=chunks.append)
    _assert_same_audio(
        chunks, model.regenerate_range(base.codes, ["drums"], ["c"], seed=7, start=0.4, end=0.9)
    )
    chunks = []
    model.generate_continuation_from_codes(
        base.codes[..., :20], ["d"], seed=8, duration=1.2, on_audio=chunks.append
    )
    _assert_same_audio(
        chunks, model.generate_continuation_from_codes(base.codes[..., :20], ["d"], seed=8, duration=1.2)
    )


def test_generate_stream_equals_generate(model):
    chunks = list(model.generate_stream(["a", None], seed=4, duration=1.5, stream_seconds=0.25))
    assert all(c.stems["bass"].shape[:2] == (2, 1) for c in chunks)
    _assert_same_audio(chunks, model.generate(["a", None], seed=4, duration=1.5))
    assert not _workers()


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "musicgen-stem-stream"]


@pytest.mark.parametrize("how", ["close", "with", "for"])
def test_generate_stream_stops_early(model, how):
    """Closing the stream, leaving a `with` block or a `for` loop over it stops and joins the worker."""
    steps: list[int] = []
    kwargs = {"seed": 1, "duration": 60.0, "stream_seconds": 0.1, "progress": lambda d, t: steps.append(d)}
    if how == "close":
        stream = model.generate_stream(["a"], **kwargs)
        first = next(stream)
        stream.close()
        assert first.start == 0 and first.num_samples > 0 and not first.last
        assert list(stream) == []
    elif how == "with":
        with model.generate_stream(["a"], **kwargs) as stream:
            next(stream)
    else:
        for _ in model.generate_stream(["a"], **kwargs):
            break
    assert not _workers()
    assert 0 < len(steps) < 300  # stopped: 60 s take 3000+ steps


def test_generate_stream_raises_errors(model):
    def fail(done: int, total: int) -> None:
        if done == 5:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(model.generate_stream(["a"], seed=1, duration=0.5, progress=fail))
    assert not _workers()
    with pytest.raises(GenerationError, match="stream_seconds"):
        model.generate_stream(["a"], stream_seconds=0)
    with pytest.raises(GenerationError, match="stream_seconds"):
        model.generate(["a"], duration=0.2, on_audio=print, stream_seconds=float("nan"))
