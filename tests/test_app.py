"""The web app's logic (no browser): generate, edit, limits, errors, the Blocks, host warning."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicgen_stem.errors import AudioError, GenerationError, MusicGenStemError

pytest.importorskip("gradio", reason="the app needs gradio (pip install 'musicgen-stem[app]')")

from musicgen_stem import app, cli  # noqa: E402


@pytest.fixture(scope="module")
def holder() -> app.ModelHolder:
    from musicgen_stem.api import MusicGenStem

    model = MusicGenStem.from_config("tiny", seed=0, device="cpu")
    model.set_generation_params(duration=0.5)
    return app.ModelHolder(model=model, name="tiny")


@pytest.fixture(scope="module")
def generated(holder: app.ModelHolder, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    work = tmp_path_factory.mktemp("work")
    return app.generate_job(
        holder, work, "drums", duration=0.5, seed="random", variations=2, sampling=app.sampling_settings()
    )


def test_generate_returns_files_and_seed(generated: list[dict]):
    assert len(generated) == 2
    seed = generated[0]["seed"]
    assert isinstance(seed, int) and seed >= 0 and generated[1]["seed"] == seed
    for r in generated:
        assert set(r["stems"]) == {"bass", "drums", "other"}
        for path in [*r["stems"].values(), r["mix"], r["zip"], r["codes"]]:
            assert Path(path).is_file()
        assert abs(sf.info(r["mix"]).duration - 0.5) < 0.01
        with zipfile.ZipFile(r["zip"]) as z:
            assert {"bass.wav", "drums.wav", "other.wav", "mix.wav", "stems.json"} <= set(z.namelist())
        assert r["stem_mp4"] is None or r["stem_mp4"].endswith(".stem.mp4")
    html = app.mixer_html(generated)
    assert html.count("<audio") == 6 and "data-mgs-action='solo'" in html and "stems.zip" in html
    assert app.result_files(generated[0])[0] == generated[0]["zip"]
    assert f"seed {seed}" in app.result_summary(generated)


def test_seed_is_reproducible(holder: app.ModelHolder, generated: list[dict], tmp_path: Path):
    again = app.generate_job(
        holder, tmp_path, "drums", duration=0.5, seed=str(generated[0]["seed"]), variations=2
    )
    np.testing.assert_array_equal(np.load(again[1]["codes"]), np.load(generated[1]["codes"]))


def test_edit_last_keeps_kept_stems(holder: app.ModelHolder, generated: list[dict], tmp_path: Path):
    last = generated[0]
    work = Path(last["folder"]).parents[2]  # the session folder the result was written in
    out = app.edit_job(holder, work, regenerate=["bass"], last=last, seed=7, start=0.1, end=0.3)
    assert out["kind"] == "edit" and out["seed"] == 7 and out["regenerated"] == ["bass"]
    layout = holder.get().layout
    old, new = np.load(last["codes"]), np.load(out["codes"])
    kept = layout.streams_of_stems(["drums", "other"])
    np.testing.assert_array_equal(new[kept], old[kept])
    bass = layout.streams_of_stems(["bass"])
    fr = holder.get().frame_rate
    np.testing.assert_array_equal(new[bass][:, : int(0.1 * fr)], old[bass][:, : int(0.1 * fr)])
    for stem in ("drums", "other"):
        a, b = sf.read(out["stems"][stem])[0], sf.read(last["stems"][stem])[0]
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_edit_uploaded_stems_keeps_them(holder: app.ModelHolder, tmp_path: Path):
    sr = 16000
    t = torch.arange(sr) / sr
    drums = (0.3 * torch.sin(2 * torch.pi * 220 * t))[None]
    vocals = (0.2 * torch.sin(2 * torch.pi * 440 * t))[None]
    sf.write(tmp_path / "drums.wav", drums[0].numpy(), sr, subtype="PCM_16")
    sf.write(tmp_path / "vocals.wav", vocals[0].numpy(), sr, subtype="PCM_16")
    stems = {"drums": str(tmp_path / "drums.wav"), "vocals": str(tmp_path / "vocals.wav"), "bass": None}
    out = app.edit_job(holder, tmp_path / "work", regenerate=["bass", "other"], stems=stems, prompt="funk")
    assert set(out["stems"]) == {"bass", "drums", "other", "vocals"}
    got, got_sr = sf.read(out["stems"]["drums"], dtype="int16")
    assert got_sr == sr and sf.info(out["stems"]["drums"]).subtype == "PCM_16"
    np.testing.assert_array_equal(got, sf.read(tmp_path / "drums.wav", dtype="int16")[0])  # untouched
    assert sf.info(out["mix"]).subtype == "FLOAT" and out["kept"] == ["drums", "vocals"]


def test_limits_give_clear_errors(holder: app.ModelHolder, tmp_path: Path):
    limits = app.Limits(max_duration=1.0, max_upload_mb=0.01)
    with pytest.raises(GenerationError, match="1 s at most"):
        app.generate_job(holder, tmp_path, "x", duration=5, limits=limits)
    with pytest.raises(GenerationError, match="variations"):
        app.generate_job(holder, tmp_path, "x", duration=0.5, variations=9)
    with pytest.raises(GenerationError, match="seed"):
        app.generate_job(holder, tmp_path, "x", duration=0.5, seed="abc")
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(16000 * 2, dtype=np.float32), 16000)  # 2 s, ~62 kB
    with pytest.raises(AudioError, match="MB at most"):
        app.edit_job(holder, tmp_path, regenerate=["bass"], song=str(big), limits=limits)
    with pytest.raises(GenerationError, match="1 s at most"):
        app.edit_job(holder, tmp_path, regenerate=["bass"], stems={"drums": str(big)}, limits=app.Limits(1.0))
    with pytest.raises(GenerationError, match="at least one stem"):
        app.edit_job(holder, tmp_path, regenerate=[], stems={"drums": str(big)})
    with pytest.raises(AudioError, match="one source"):
        app.edit_job(holder, tmp_path, regenerate=["bass"])
    with pytest.raises(app.Cancelled):
        app.generate_job(holder, tmp_path, "x", duration=0.5, cancelled=lambda: True)


def test_parse_seed_and_sampling():
    assert app.parse_seed("random") is None and app.parse_seed("") is None and app.parse_seed(None) is None
    assert app.parse_seed(" 42 ") == 42 and app.parse_seed(42.0) == 42
    with pytest.raises(GenerationError):
        app.parse_seed("1.5")
    s = app.sampling_settings(top_k=0, top_p=0.9, temperature=0.7, cfg=2, greedy=True)
    assert s == {"use_sampling": False, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "cfg_coef": 2.0}
    assert app.sampling_settings(chord_guide=2)["chord_guide"] == 2.0


def test_model_holder_errors_are_messages(tmp_path: Path):
    h = app.ModelHolder()
    assert "could not load" in h.load(str(tmp_path))  # an empty folder is not a model
    assert h.model is None
    with pytest.raises(MusicGenStemError, match="no model is loaded.*--model"):
        h.get()
    h.loader = lambda name: (_ for _ in ()).throw(RuntimeError("boom\nline 2"))
    msg = h.load("x")
    assert "RuntimeError: boom" in msg and "line 2" not in msg


def test_app_loads_models_with_the_cli_model_options(tiny_model_dir: Path):
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model_dir), "--device", "cpu", "--quantize", "int8"])
    asked: list[str] = []

    def loader(name: str):
        asked.append(name)
        return cli.load_model_from_args(name, args)

    holder = app.ModelHolder.start(args.model, loader=loader)
    from musicgen_stem.lm.quantize import Int8Linear

    assert holder.model is not None and isinstance(holder.model.lm.linears[0], Int8Linear)  # int8 layers
    holder.load("mini")
    assert asked == [str(tiny_model_dir), ""]  # "mini"/"default" mean the shipped model


def test_separator_unavailable_is_a_message(tmp_path: Path):
    with pytest.raises(MusicGenStemError, match="Upload stems"):
        app.ModelHolder(separator_spec=str(tmp_path / "missing.th")).separator()
    with pytest.raises(MusicGenStemError, match="no songs"):
        app.ModelHolder(separator_spec=None).separator()


def test_host_warning():
    assert app.host_warning("127.0.0.1") is None
    assert app.host_warning("localhost") is None and app.host_warning("::1") is None
    assert "every network interface" in app.host_warning("0.0.0.0")
    assert "192.168.1.5" in app.host_warning("192.168.1.5")
    assert app.is_loopback("127.0.0.2") and not app.is_loopback("10.0.0.1")


def test_blocks_build(holder: app.ModelHolder, tmp_path: Path):
    import gradio as gr

    demo = app.build_app(holder, tmp_path)
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"mgs-generate", "mgs-edit", "mgs-mixer", "mgs-mix", "mgs-files", "mgs-separator"} <= ids
    # nothing a client types names a model or a separator: the only text boxes are prompts and seeds
    boxes = [b.label for b in demo.blocks.values() if isinstance(b, gr.Textbox)]
    assert not [label for label in boxes if "odel" in label or "eparator" in label], boxes
    assert all(b.format is None for b in demo.blocks.values() if isinstance(b, gr.Audio) and b.interactive)
    assert "mgsMixer" in app.head_html()


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.queue) == ("127.0.0.1", 7860, app.DEFAULT_QUEUE)
    with pytest.raises(MusicGenStemError):
        app.run(parser.parse_args(["--max-duration", "0"]))


def test_edit_song_with_separator(holder: app.ModelHolder, tmp_path: Path):
    import warnings

    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sep = HTDemucs(
            sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=0, nfft=512, segment=1
        ).eval()
    holder = app.ModelHolder(model=holder.model, name="tiny", separator_spec=sep)  # tiny random separator
    sr = 44100
    t = torch.arange(sr) / sr
    song = 0.3 * torch.stack([torch.sin(2 * torch.pi * 110 * t), torch.sin(2 * torch.pi * 330 * t)])
    sf.write(tmp_path / "song.wav", song.T.numpy(), sr, subtype="PCM_16")
    out = app.edit_job(holder, tmp_path / "work", regenerate=["drums"], song=str(tmp_path / "song.wav"))
    assert set(out["stems"]) == {"bass", "drums", "other", "vocals"}
    assert out["sample_rate"] == sr and sf.info(out["mix"]).channels == 2
    from musicgen_stem.audio import load_audio
    from musicgen_stem.separation import separate

    sources = separate(sep, load_audio(tmp_path / "song.wav")[0], sr)
    for name in ("bass", "other", "vocals"):  # the separated stems, sample for sample
        got, _ = sf.read(out["stems"][name], dtype="float32", always_2d=True)
        assert sf.info(out["stems"][name]).subtype == "FLOAT"
        np.testing.assert_array_equal(got.T, sources[name].numpy())


def test_generation_streams_a_preview_then_the_results(holder: app.ModelHolder, tmp_path: Path):
    """What the Generate button does: preview chunks while generating, the written results last."""

    def job(on_audio, stop):
        return app.generate_job(
            holder, tmp_path, "x", duration=2.5, seed=4, cancelled=stop, on_audio=on_audio
        )

    items = list(app.stream_job(job))
    chunks, results = items[:-1], items[-1]
    assert len(chunks) >= 2 and all(not isinstance(c, list) for c in chunks)
    assert isinstance(results, list) and results[0]["seed"] == 4
    previews = [app.preview_pcm(c) for c in chunks]
    assert all(rate == holder.get().sample_rate and pcm.dtype == np.int16 for rate, pcm in previews)
    streamed = np.concatenate([pcm for _, pcm in previews])  # [n, C]
    mix, _ = sf.read(results[0]["mix"], dtype="int16", always_2d=True)
    assert streamed.shape == mix.shape
    # the preview is the written mix up to the export's shared gain and 16-bit rounding
    gain = float(results[0]["gain"])
    assert np.abs(streamed.astype(np.float64) * gain - mix).max() <= 2 + 1e-3 * 32767


def test_stream_job_stops_when_closed_and_raises_errors(holder: app.ModelHolder, tmp_path: Path):
    stream = app.stream_job(
        lambda on_audio, stop: app.generate_job(
            holder, tmp_path, "x", duration=20.0, seed=1, cancelled=stop, on_audio=on_audio
        )
    )
    next(stream)  # audio arrives before the 20 s are generated
    stream.close()  # stops the job (its thread is joined)
    with pytest.raises(GenerationError, match="variations"):
        next(
            app.stream_job(
                lambda on_audio, stop: app.generate_job(holder, tmp_path, "x", duration=1, variations=99)
            )
        )


# ---------------------------------------------------------------------------- trust boundaries


def test_sessions_are_private_unguessable_and_cleaned_up(tmp_path: Path):
    store = app.SessionStore(tmp_path / "sessions", ttl=60)
    a, b = store.folder("alice"), store.folder("bob")
    assert a != b and store.folder("alice") == a and a.parent == b.parent == store.root
    assert len(a.name) >= 22 and a.stat().st_mode & 0o077 == 0  # 128 random bits, private
    (a / "result.wav").write_bytes(b"x")
    assert store.check_owned("alice", a / "result.wav") == (a / "result.wav").resolve()
    for who, path in (("bob", a / "result.wav"), ("alice", a / ".." / b.name), ("carol", a)):
        with pytest.raises(MusicGenStemError, match="not one of this session's results"):
            store.check_owned(who, path)
    assert store.sweep() == 0 and a.is_dir()
    import time

    assert store.sweep(now=time.monotonic() + 61) == 2 and not a.exists() and not b.exists()
    c = store.folder("alice")
    assert c != a  # a new folder, a new name
    store.drop("alice")
    assert not c.exists()
    d = store.folder("dave")
    store.close()
    assert not d.exists() and list(store.root.iterdir()) == []


def test_edit_job_refuses_another_sessions_files(
    holder: app.ModelHolder, generated: list[dict], tmp_path: Path
):
    other_session = tmp_path / "someone-else"
    other_session.mkdir()
    for last in (generated[0], {**generated[0], "kind": "edit"}):
        with pytest.raises(AudioError, match="not one of this session's results"):
            app.edit_job(holder, other_session, regenerate=["bass"], last=last)
    forged = {"kind": "generate", "codes": "/etc/passwd"}
    with pytest.raises(AudioError, match="not one of this session's results"):
        app.edit_job(holder, other_session, regenerate=["bass"], last=forged)


def test_logins_and_exposure(tmp_path: Path):
    from musicgen_stem.app.sessions import check_exposure, parse_auth

    (tmp_path / "logins").write_text("# team\nann:pw1\nbob:p:w2\n")
    env = {"MUSICGEN_STEM_AUTH": "eve:pw3, fay:pw4"}
    logins = parse_auth(["joe:secret"], str(tmp_path / "logins"), env)
    assert logins == [("joe", "secret"), ("ann", "pw1"), ("bob", "p:w2"), ("eve", "pw3"), ("fay", "pw4")]
    for bad in (["nocolon"], [":pw"], ["user:"]):
        with pytest.raises(MusicGenStemError, match="USER:PASS"):
            parse_auth(bad, env={})
    assert check_exposure("127.0.0.1", [], insecure=False) is None
    with pytest.raises(MusicGenStemError, match="refusing to listen on every network interface"):
        check_exposure("0.0.0.0", [], insecure=False)
    assert "log in" in check_exposure("192.168.1.5", logins, insecure=False)
    assert "WARNING" in check_exposure("::", [], insecure=True)


def test_app_refuses_to_expose_itself_without_a_login(tiny_model_dir: Path, tmp_path: Path):
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    args = parser.parse_args(
        ["--model", str(tiny_model_dir), "--host", "0.0.0.0", "--output-dir", str(tmp_path)]
    )
    with pytest.raises(MusicGenStemError, match="--auth"):
        app.run(args)
    assert list(tmp_path.iterdir()) == []  # refused before anything was loaded or written


def test_jam_job_hands_out_cycles_on_the_clock_and_ends_in_a_result(holder, tmp_path: Path, clicks):
    loop = clicks(tmp_path / "drums.wav")
    from musicgen_stem.app.jams import Cycle, JamRegistry

    registry = JamRegistry()
    assert "no jam is playing" in registry.command("s", "mute drums")
    job = app.jam_job(
        holder,
        tmp_path / "work",
        loop={"drums": str(loop), "other": None},
        prompt="funk",
        bpm=240,
        seed=3,
        on_player=lambda p: registry.set("s", p),
        max_cycles=3,
    )
    items = list(job)
    cycles, result = items[:-1], items[-1]
    assert [c.index for c in cycles] == [0, 1, 2] and all(isinstance(c, Cycle) for c in cycles)
    wav, sr = sf.read(cycles[1].path)
    assert sr == 32000 and len(wav) == 32000  # a cycle: one bar at 240 bpm
    assert result["kind"] == "jam" and result["regenerated"] == ["bass", "other"] and result["seed"] == 3
    assert Path(result["zip"]).is_file() and len(result["cycles"]) == 3 and result["cycles"][0]["count_in"]
    drums, _ = sf.read(result["stems"]["drums"], dtype="int16")
    assert np.array_equal(drums, np.tile(sf.read(loop, dtype="int16")[0], 3))  # the loop, as uploaded


def test_jam_job_stops_when_asked_and_refuses_bad_loops(holder, tmp_path: Path, clicks):
    loop = clicks(tmp_path / "drums.wav")
    played: list[int] = []
    job = app.jam_job(
        holder, tmp_path / "w", loop={"drums": str(loop)}, bpm=240, stopped=lambda: len(played) >= 2
    )
    for item in job:
        if isinstance(item, dict):
            assert 2 <= len(item["cycles"]) <= 4  # stops at the end of the cycle playing
        else:
            played.append(item.index)
    for loops, kw, message in (
        ({}, {}, "upload at least one stem"),
        ({"drums": str(loop)}, {"bpm": 90}, "whole bars"),
        ({"drums": str(loop)}, {"bpm": 240, "vary": 3}, "vary"),
    ):
        with pytest.raises(MusicGenStemError, match=message):
            list(app.jam_job(holder, tmp_path / "w", loop=loops, **kw))


def _chunk(start: object, pcm: np.ndarray | bytes, **extra: object) -> str:
    import base64
    import json

    raw = pcm if isinstance(pcm, bytes) else (np.asarray(pcm) * 32768).round().astype("<i2").tobytes()
    return json.dumps({"start": start, "pcm": base64.b64encode(raw).decode(), **extra})


def test_microphone_chunks_land_where_they_were_played_and_bad_ones_are_counted():
    import types

    from musicgen_stem.app.jam_tab import JamHandlers
    from musicgen_stem.app.jams import LiveInput
    from musicgen_stem.jam.live import Recording

    sr = 32000
    live = LiveInput("other", Recording(2), sr)
    handlers = JamHandlers(base=None, area_size=0, stems=["bass", "drums", "other"])
    handlers.registry.set_live("s", live)
    page = types.SimpleNamespace(session_hash="s")
    wave = np.sin(np.arange(8000) / 10.0) * 0.5
    handlers.on_jam_mic(_chunk(8000, wave, latency=21.5), page)  # the second quarter second
    handlers.on_jam_mic(_chunk(0, wave[:4000]), page)  # an earlier one, come late
    assert (live.chunks, live.ignored, live.latency_ms) == (2, 0, 21.5)
    got = live.recording.segment(0, 16000)
    assert got.shape == (2, 16000) and np.abs(got[1, 8000:] - wave).max() < 1 / 32768
    assert np.abs(got[0, :4000] - wave[:4000]).max() < 1 / 32768 and not got[:, 4000:8000].any()
    for bad in (
        "not json",
        '{"start": 0}',
        '["start", 0]',
        _chunk(0, b"\x00\x01\x02"),  # odd bytes
        _chunk(0, np.zeros(sr + 2)),  # over a second: too long
        _chunk(-5, np.zeros(10)),
        _chunk(True, np.zeros(10)),
        _chunk(0, np.zeros(10), latency=-3),
        _chunk(60 * sr, np.zeros(10)),  # a minute on: beyond the jam's clock
        '{"start": 0, "pcm": "@@@"}',
        "x" * 1_000_000,
    ):
        handlers.on_jam_mic(bad, page)
    assert (live.chunks, live.ignored) == (2, 11) and live.meta()["ignored"] == 11
    handlers.on_close("s")
    assert live.closed
    handlers.registry.drop("s")  # the jam ended: later chunks go nowhere
    handlers.on_jam_mic(_chunk(0, wave), page)
    assert live.chunks == 2


def test_jam_job_plays_along_live_and_keeps_the_live_stem_as_played(holder, tmp_path: Path, clicks):
    from musicgen_stem.app.jams import LiveInput
    from musicgen_stem.jam.live import Recording

    loop = clicks(tmp_path / "drums.wav")  # one bar at 240 bpm: 1 s cycles
    model = holder.get()
    sr = model.sample_rate
    played = 0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * sr) / sr).astype(np.float32)
    live = LiveInput("other", Recording(model.codec.channels), sr)
    live.recording.write(0, played[None])  # as if the page had sent it all
    job = app.jam_job(holder, tmp_path / "w", loop={"drums": str(loop)}, bpm=240, max_cycles=3, live=live)
    result = list(job)[-1]
    assert result["regenerated"] == ["bass"] and result["live"]["stem"] == "other"
    assert result["live"]["answer_cycles"] == 4  # 1 s cycles: the page's chunks arrive 1.5 s late
    other, rate = sf.read(result["stems"]["other"], dtype="float32", always_2d=True)
    assert rate == sr and len(other) == 3 * sr
    assert np.abs(other[:, 0] - played).max() < 1e-3  # the live stem as it was played
    for stem, message in (("drums", "loop does not hold"), ("piano", "not piano")):
        bad = LiveInput(stem, Recording(1), sr)
        with pytest.raises(AudioError, match=message):
            list(app.jam_job(holder, tmp_path / "w", loop={"drums": str(loop)}, bpm=240, live=bad))
