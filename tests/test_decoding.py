"""GPU inference fixed by construction, checked on CPU: one decoding cache per model and shape,
reused across calls and windows (a compiled step compiles once); codes from any device; the CUDA
dtype default; one decoding thread for a model compiled on CUDA."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from torch.utils._pytree import tree_leaves

from musicgen_stem import presets
from musicgen_stem.api import MusicGenStem, auto_dtype
from musicgen_stem.lm import model as lm_model


def _tiny() -> MusicGenStem:
    """Tiny model with a 1 s window: a 2.2 s generation runs 3 windows."""
    cfg = dataclasses.replace(presets.tiny(), max_duration=1.0, edit_window=1.0)
    m = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    m.set_generation_params(duration=0.4)
    return m


@pytest.fixture()
def model() -> MusicGenStem:
    return _tiny()


@pytest.fixture()
def allocations(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of every KVCache allocated (k: [L, B, H, S, Dh])."""
    shapes: list[tuple[int, ...]] = []
    real = lm_model.KVCache.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        shapes.append(tuple(self.k.shape))

    monkeypatch.setattr(lm_model.KVCache, "__init__", init)
    return shapes


def test_one_cache_per_shape_across_calls_and_windows(model, allocations):
    a = model.generate(["x"], seed=0).codes
    cache = model.lm.decode_cache
    assert len(allocations) == 1 and cache is not None
    ptr = cache.k.data_ptr()
    assert torch.equal(model.generate(["x"], seed=0).codes, a)  # the same tokens from a reused cache
    assert len(allocations) == 1 and model.lm.decode_cache is cache and cache.k.data_ptr() == ptr
    long = model.generate(["x"], seed=1, duration=2.2).codes  # 3 windows of the same shape
    assert long.shape[-1] == 110 and len(allocations) == 2
    for _ in range(2):  # edits: every window (prefix + window) in one more cache
        model.regenerate_from_codes(long, ["drums"], ["y"], seed=2)
    assert len(allocations) == 3
    model.generate(["x"], seed=1, duration=2.2)
    assert len(allocations) == 4  # one cache per model: a new shape replaces the last one


def test_compiled_step_compiles_once_for_every_call_and_window(model, allocations):
    graphs = []

    def backend(gm, example_inputs):  # counts graph captures, runs them eagerly
        graphs.append(gm)
        return gm.forward

    ref = model.generate(["x"], seed=0).codes
    eager_long = model.generate(["x"], seed=1, duration=2.2).codes
    compiled = _tiny()  # the same weights
    compiled.lm.compile_decoding(backend=backend)
    allocations.clear()
    assert torch.equal(compiled.generate(["x"], seed=0).codes, ref)
    assert torch.equal(compiled.generate(["x"], seed=1, duration=2.2).codes, eager_long)
    compiled.generate(["a longer description"], seed=3, duration=0.8)
    assert len(graphs) == 1  # one capture: shapes and addresses never change
    assert len(allocations) == 1 and allocations[0][3] == 256  # steps rounded up once for all calls


def test_compiled_step_is_one_graph_with_and_without_step_conditions():
    """A prompt naming a tempo gives the LM a beat grid, one that does not gives none: the
    compiled step reads zeros then, so one capture serves both."""
    from musicgen_stem.conditioning.steps import StepConfig

    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    cfg = dataclasses.replace(presets.tiny(), max_duration=1.0, steps=StepConfig(beat=True))
    eager = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    compiled = MusicGenStem.from_config(cfg, seed=0, device="cpu")
    compiled.lm.compile_decoding(backend=backend)
    for prompt in ("x", "x at 120 bpm"):
        ref = eager.generate([prompt], seed=0, duration=0.4)
        out = compiled.generate([prompt], seed=0, duration=0.4)
        assert torch.equal(out.codes, ref.codes), prompt
    assert compiled.generate(["x at 120 bpm"], seed=0, duration=0.4).params["step_conditions"][0]
    assert len(graphs) == 1


def _flat(args, kwargs) -> list:
    return tree_leaves((args, kwargs or {}))


class OnOtherDevice(torch.Tensor):
    """Simulates a tensor on another device (a GPU here): an op mixing it with ordinary tensors
    raises, as it would between CUDA and CPU tensors (0-dim tensors excepted); `.cpu()` and
    `.to("cpu")` give an ordinary tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu or (func is torch.Tensor.to and _to_cpu(args[1:], kwargs)):
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone()  # an ordinary tensor, a copy as from another device
        tensors = [t for t in _flat(args, kwargs) if isinstance(t, torch.Tensor)]
        mixed = any(type(t) is torch.Tensor and t.dim() > 0 for t in tensors)
        if mixed and any(isinstance(t, cls) for t in tensors):
            raise RuntimeError(f"Expected all tensors to be on the same device ({func.__name__})")
        return super().__torch_function__(func, types, args, kwargs)


def _to_cpu(args, kwargs) -> bool:
    targets = [a for a in (*args, kwargs.get("device")) if isinstance(a, (str, torch.device))]
    return any(torch.device(t).type == "cpu" for t in targets)


def test_the_device_simulation_catches_mixing():
    other = torch.zeros(2, 3, dtype=torch.long).as_subclass(OnOtherDevice)
    with pytest.raises(RuntimeError, match="same device"):
        torch.cat([other, torch.zeros(2, 1, dtype=torch.long)], dim=-1)
    assert type(other.cpu()) is torch.Tensor and type(other.to("cpu")) is torch.Tensor
    assert type(other + 1) is OnOtherDevice and type(other.long()) is OnOtherDevice


def test_every_task_accepts_codes_on_any_device(model):
    codes = model.generate(["x"], seed=0).codes  # [1, 6, 20]
    other = codes.clone().as_subclass(OnOtherDevice)
    calls = [
        lambda c: model.generate_continuation_from_codes(c, ["x"], seed=1, duration=0.6).codes,
        lambda c: model.regenerate_from_codes(c, ["bass"], ["y"], seed=2).codes,
        lambda c: model.regenerate_range(c, ["other"], ["y"], start=0.1, end=0.3, seed=3, duration=0.6).codes,
        lambda c: model.decode(c).stems["drums"],
        lambda c: model.compute_logits(c, ["x"])[0],
    ]
    for call in calls:
        out = call(other)
        assert type(out) is torch.Tensor and out.device.type == "cpu"
        assert torch.equal(out.nan_to_num(), call(codes).nan_to_num())
    stems = {"bass": torch.zeros(1, 1, 3200).as_subclass(OnOtherDevice)}
    out = model.regenerate_instruments_from_stems(stems, 32000, ["drums"], ["z"], seed=4)
    assert out.codes.shape[-1] == 5


def test_auto_dtype(monkeypatch):
    assert auto_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_dtype(torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_dtype(torch.device("cuda", 0)) == torch.float32  # no fp16 unless asked for


def test_compiled_cuda_model_decodes_on_one_thread(model):
    """CUDA graph trees are per thread: a model compiled on CUDA runs every decoding on its own
    thread, whichever thread calls (streams and the app call from fresh ones)."""
    model.lm.compiled_step = object()  # as after compile()
    model.device = torch.device("cuda")  # only the decision is exercised: the job needs no GPU
    names: list[str] = []
    job = lambda: names.append(threading.current_thread().name) or torch.zeros(())  # noqa: E731
    model._decoding(job, threading.Event())
    caller = threading.Thread(target=model._decoding, args=(job, threading.Event()))
    caller.start()
    caller.join()
    assert len(names) == 2 and names[0] == names[1] and names[0].startswith("musicgen-stem-decode")
    cancel = threading.Event()
    with pytest.raises(ValueError):
        model._decoding(lambda: (_ for _ in ()).throw(ValueError("boom")), cancel)
    assert cancel.is_set()
