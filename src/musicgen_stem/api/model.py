"""`MusicGenStem`: the model and its generation tasks (text, continuation, stem edits, streaming)."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import __version__
from ..audio import convert_audio
from ..devices import resolve_device
from ..errors import GenerationError, ModelError
from ..generation import PREFIX_STRIDE, SamplingParams, Task, continuation_task, edit_task, text_task
from ..inputs import stem_audio
from ..layout import compose_order
from ..lm.packing import pack_for_decoding, unpack
from ..lm.quantize import is_quantized, quantization_of
from ..modeldir import ModelConfig, ModelParts, build_parts, save_model
from ..presets import preset
from .checks import (
    DTYPES,
    MAX_SECONDS,
    Progress,
    Texts,
    auto_dtype,
    check_codes,
    check_duration,
    draw_seed,
    model_sampling,
    texts_of,
    time_range,
)
from .decoding import DecodingThread, Filled, fill
from .loading import default_parts, load_parts
from .options import ALL, NO_STREAMING, Options, options_of

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11
from .results import AudioCallback, StemAudio, in_input_format
from .streaming import AudioStream


class MusicGenStem:
    """A multi-stem model: text conditioner, LM and one codec per stem.

    Built from `ModelParts`, it takes their modules over: on CPU the LM's projections are laid out
    for decoding in place (`lm.packing`; `cpu_layout` "auto" probes this machine, or one of
    `lm.packing.LAYOUTS`; `state_dict()` is unchanged, training code should keep its own modules
    out of it)."""

    def __init__(
        self,
        parts: ModelParts,
        device: str | torch.device | None = None,
        name: str | None = None,
        cpu_layout: str = "auto",
    ):
        self.device = resolve_device(device)
        self.config: ModelConfig = parts.config
        self.lm = parts.lm.to(self.device).eval()
        if self.device.type == "cpu" and not is_quantized(self.lm):
            pack_for_decoding(self.lm, cpu_layout)
        self.text = parts.text.to(self.device).eval()
        self.steps = None if parts.steps is None else parts.steps.to(self.device).eval()
        self.codec = parts.codec.to(self.device).eval()
        self.name = name or parts.config.name
        self.layout = parts.config.layout
        self.defaults = model_sampling(parts.config)  # the model's own sampling settings
        self.params = dataclasses.replace(self.defaults)
        self.duration = min(10.0, self.max_duration)
        self.extend_stride = 0.6 * self.max_duration
        self._silence: list[int] | None = parts.config.silence_tokens
        self._thread = DecodingThread()  # decodings of a model compiled on CUDA run there

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike[str], device: str | None = None, text_encoder: str | None = None
    ) -> MusicGenStem:
        """Load a model: a folder of ours, a folder in the released (reference) format, or a hub id
        of either (e.g. `facebook/musicgen-stem-6cb`).

        text_encoder: for T5-conditioned models, a local T5 folder (or hub id) to use instead of
        the one named in the model's config.
        """
        dev = resolve_device(device)  # refused before any weights load
        return cls(load_parts(name_or_path, text_encoder), device=dev, name=str(name_or_path))

    get_pretrained = from_pretrained

    @classmethod
    def default(cls, device: str | None = None) -> MusicGenStem:
        """The small model shipped with the package (`mini`), which works offline."""
        dev = resolve_device(device)
        return cls(default_parts(), device=dev, name="mini")

    @classmethod
    def from_config(cls, config: ModelConfig | str, seed: int = 0, device: str | None = None) -> MusicGenStem:
        """A freshly initialised (random) model from a config or a preset name."""
        cfg = preset(config) if isinstance(config, str) else config
        torch.manual_seed(seed)
        dev = resolve_device(device)
        return cls(build_parts(cfg), device=dev)

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        """Write this model as a model folder (a quantized LM as its int8/int4 weights: the folder
        loads quantized, with no float weights to quantize again)."""
        return save_model(
            ModelParts(self.config, self.lm, self.text, self.codec, self.steps), path, force=force
        )

    def quantize(self, mode: str = "int8") -> MusicGenStem:
        """Quantize the LM's projections for CPU decoding, in place (inference only; embeddings and
        norms stay float32). `mode`: "int8" (int8 weights, one scale per output channel), "int4"
        (groups of 32 inputs share a scale and offset: half of int8's weight bytes, less accurate)
        or "auto": the model's `cpu_quantization` (the shipped `mini`: int8, its figures measured
        so) when its float32 LM runs on CPU, else nothing (released models stay float32, as the
        reference runs them; an LM loaded quantized stays as it is). See `lm.quantize` (kernels),
        `benchmarks/decode.py --quantize` (speed), `benchmarks/quantize_quality.py` (agreement)."""
        from ..lm.quantize import MODES, quantize

        if mode == "auto":
            chosen = self.config.cpu_quantization
            on_cpu_fp32 = self.device.type == "cpu" and self.lm.dtype == torch.float32
            if chosen is None or not on_cpu_fp32 or quantization_of(self.lm) is not None:
                return self
            mode = chosen
        if mode not in MODES:
            raise ModelError(f"unknown quantization '{mode}': choose one of auto, {', '.join(MODES)}")
        if (held := quantization_of(self.lm)) is not None:
            if held == mode:
                return self
            raise ModelError(f"this model's LM is {held} already: load its float weights for {mode}")
        if self.device.type != "cpu":
            raise GenerationError(
                f"{mode} quantization runs on CPU; on a GPU the model runs in bf16/fp16 instead"
            )
        if self.lm.dtype != torch.float32:
            raise GenerationError(
                f"{mode} quantization starts from float32 weights: set_dtype('float32') first"
            )
        self.lm = quantize(self.lm, mode)
        return self

    def set_dtype(self, dtype: str | torch.dtype) -> MusicGenStem:
        """Run the LM in `dtype` ("float32", "float16", "bfloat16", or "auto": `auto_dtype`).
        Half precision halves the bytes each decoding step reads on a GPU; on CPU it is refused
        (4-130x slower than fp32 on the CPUs measured: use `quantize`)."""
        if dtype == "auto":
            dtype = auto_dtype(self.device)
        target = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
        if target not in DTYPES.values():
            raise GenerationError(f"unknown dtype {dtype!r}: choose one of auto, {', '.join(DTYPES)}")
        if target != torch.float32 and self.device.type == "cpu":
            raise GenerationError(
                f"{dtype} decoding is for GPUs: on CPU it is many times slower than float32; "
                "use float32, or int8 weights for speed (--quantize int8, model.quantize('int8'))"
            )
        if target != self.lm.dtype:
            self.lm.to(target)
        return self

    def compile(self, mode: str | None = None) -> MusicGenStem:
        """Decode through `torch.compile` (on CUDA with CUDA graphs, mode "reduce-overhead");
        the first steps of each new batch size or text length compile first (seconds to minutes).
        Results equal the eager ones to float rounding. For GPUs: on the CPUs measured the compiled
        step was 2.5x slower than the eager one (docs/experiments.md). Returns self."""
        unpack(self.lm)  # oneDNN-packed weights cannot be traced; inductor lays weights out itself
        self.lm.compile_decoding(mode)
        return self

    # --- facts -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.codec.frame_rate)

    @property
    def max_duration(self) -> float:
        return float(self.config.max_duration)

    @property
    def lm_precision(self) -> str:
        """How the LM's projections compute: "int8"/"int4" when quantized, else the dtype's name."""
        return quantization_of(self.lm) or str(self.lm.dtype).removeprefix("torch.")

    @property
    def edit_window_frames(self) -> int:
        """Frames of one edit window (a multiple of the prefix stride)."""
        frames = round(self.config.edit_window * self.frame_rate)
        return frames - frames % PREFIX_STRIDE

    @property
    def max_edit_duration(self) -> float:
        return self.edit_window_frames / self.frame_rate

    @property
    def stems(self) -> tuple[str, ...]:
        return self.layout.stems

    # --- parameters ------------------------------------------------------------------------
    def set_generation_params(
        self,
        use_sampling: bool | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        duration: float | None = None,
        cfg_coef: float | None = None,
        extend_stride: float | None = None,
        greedy_streams: Sequence[int] | None = None,
        chord_guide: float | None = None,
    ) -> None:
        """Defaults for the following calls (as in audiocraft): each sampling setting not given is
        the model's own default (`self.defaults`, from its config.json; for most models sampling,
        top-k 250, temperature 1, CFG 3).

        extend_stride: seconds each new window adds when generating beyond one window (default
        60 % of the window, so 40 % of each window is context from the previous one).
        greedy_streams: streams always taken by argmax (`SamplingParams.greedy_streams`; mini: the
        two streams its LM does not read back).
        chord_guide: how far codes playing notes outside the known chords are lowered
        (`SamplingParams.chord_guide`; models whose codes name pitches).
        """
        d = self.defaults
        params = SamplingParams(
            d.use_sampling if use_sampling is None else bool(use_sampling),
            d.temperature if temperature is None else float(temperature),
            d.top_k if top_k is None else int(top_k),
            d.top_p if top_p is None else float(top_p),
            d.cfg_coef if cfg_coef is None else float(cfg_coef),
            d.greedy_streams if greedy_streams is None else tuple(greedy_streams),
            d.chord_guide if chord_guide is None else float(chord_guide),
        )
        params.validate(self.layout.card, self.layout.num_streams)
        if extend_stride is not None and not 0 < extend_stride < self.max_duration:
            raise GenerationError(
                f"extend_stride must be in (0, {self.max_duration:g}) seconds, got {extend_stride}"
            )
        self.params = params
        if extend_stride is not None:
            self.extend_stride = float(extend_stride)
        if duration is not None:
            self.duration = check_duration(duration, self.frame_rate)

    def _frames(self, duration: float | None) -> int:
        d = self.duration if duration is None else check_duration(duration, self.frame_rate)
        return max(1, round(d * self.frame_rate))

    def _decoding(self, job: Callable[[], torch.Tensor], cancel: threading.Event) -> torch.Tensor:
        """Run a decoding job: on the model's own thread when compiled on CUDA (`DecodingThread`)."""
        own = self.lm.compiled_step is not None and self.device.type == "cuda"
        return self._thread.run(job, cancel, own)

    def decode(self, codes: torch.Tensor, seed: int | None = None) -> StemAudio:
        """Frame tokens [B, K, F] -> StemAudio."""
        if codes.dim() == 2:
            codes = codes[None]
        with torch.inference_mode():
            stems = self.codec.decode_stems(codes.to(self.device))
        return StemAudio(
            {s: w.float().cpu() for s, w in stems.items()},
            self.sample_rate,
            codes.cpu(),
            seed,
            {**self.params.to_dict(), "model": self.name, "version": __version__},
        )

    def encode_stems(
        self, stems: Mapping[str, torch.Tensor], sample_rate: int, num_samples: int | None = None
    ) -> torch.Tensor:
        """Stem audio {stem: [C, T] or [B, C, T]} at `sample_rate` -> codes [B, K, F].

        Stems not given are digital silence. All stems are padded to the longest.
        """
        wavs = self.at_model_rate(stems, sample_rate)
        B = max(w.shape[0] for w in wavs.values())
        T = num_samples or max(w.shape[-1] for w in wavs.values())
        C = self.codec.channels
        batch = torch.zeros(B, self.layout.num_stems, C, T)
        for s, w in wavs.items():
            n = min(T, w.shape[-1])
            batch[:, self.layout.stem_index(s), :, :n] = w[..., :n]
        with torch.inference_mode():
            return self.codec.encode(batch.to(self.device)).cpu()

    def at_model_rate(self, stems: Mapping[str, torch.Tensor], sample_rate: int) -> dict[str, torch.Tensor]:
        """Stem audio {stem: [C, T] or [B, C, T]} at `sample_rate` -> {stem: [B, C, T]} float32 at
        the model's rate and channels (julius; unchanged where they already are)."""
        unknown = [s for s in stems if s not in self.layout.stems]
        if unknown:
            raise GenerationError(
                f"unknown stem(s) {unknown}: this model's stems are {', '.join(self.stems)}"
            )
        if not stems:
            raise GenerationError("no stems given to encode")
        C = self.codec.channels
        return {
            s: convert_audio(stem_audio(s, w), sample_rate, self.sample_rate, C) for s, w in stems.items()
        }

    def compute_logits(self, codes: torch.Tensor, descriptions: Texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits [B, K, T, card] for codes [B, K, T] (NaN where the delay pattern
        gives no prediction) and the mask [K, T] of valid positions."""
        codes = check_codes(codes, self.layout)
        with torch.inference_mode():
            memory, _ = self.text(texts_of(descriptions, len(codes)))
            logits, mask = self.lm.frame_logits(codes.to(self.device), memory)
        return logits.float().cpu(), mask.cpu()

    def silence_tokens(self) -> list[int]:
        """Codes of digital silence per stream (from the config, else measured on the codecs)."""
        if self._silence is None:
            self._silence = self.codec.silence_codes()
        return list(self._silence)

    # --- tasks (keyword options: `api.options.Options`) ------------------------------------
    def _text_task(self, descriptions: Texts, duration: float | None) -> tuple[list[str | None], Task]:
        """Texts and the task of text -> stems."""
        descriptions = texts_of(descriptions)
        return descriptions, text_task(len(descriptions), self.layout, self._frames(duration))

    def generate(
        self,
        descriptions: Texts,
        progress: Progress = False,
        return_tokens: bool = False,
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Text -> all stems, one item per description (None: unconditional). Longer than the
        model's window, windows slide on with `extend_stride` seconds each."""
        opts = options_of("generate", options)
        descriptions, task = self._text_task(descriptions, opts.get("duration"))
        done = fill(self, task, descriptions, progress, opts, downbeat=True)
        return self._result(done, return_tokens)

    def generate_stream(
        self, descriptions: Texts, progress: Progress = False, **options: Unpack[Options]
    ) -> AudioStream:
        """Text -> all stems as an iterator of `AudioChunk`s of about `stream_seconds`, yielded
        while the later frames are still generated (on a worker thread, started at once); the
        last chunk has `last` True and the codes. The chunks join into the audio `generate`
        returns with the same seed (`on_audio` is not an option here).

        Errors of the generation are raised by the iterator. `close()` it (or use it in a `with`
        block, or drop it) to stop early: the generation stops at its next step.
        """
        opts = options_of("generate_stream", options, ALL - {"on_audio"})
        descriptions, task = self._text_task(descriptions, opts.get("duration"))
        opts["seed"] = draw_seed(opts.get("seed"))

        def job(on_audio: AudioCallback, stop: Callable[[], bool]) -> None:
            run = Options(opts, on_audio=on_audio)  # type: ignore[typeddict-item]
            fill(self, task, descriptions, progress, run, stop, downbeat=True)

        return AudioStream(job)

    def generate_continuation_from_codes(
        self,
        codes: torch.Tensor,
        descriptions: Texts | None = None,
        progress: Progress = False,
        return_tokens: bool = False,
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Continue prompt codes [B, K, P] up to `duration` seconds in total."""
        opts = options_of("generate_continuation_from_codes", options)
        codes = check_codes(codes, self.layout)
        descriptions = texts_of(descriptions, len(codes))
        codes = codes.expand(len(descriptions), -1, -1) if len(codes) == 1 else codes
        frames, P = self._frames(opts.get("duration")), codes.shape[-1]
        if P >= frames:
            raise GenerationError(
                f"the prompt ({P / self.frame_rate:.2f} s) is as long as the requested duration: ask for more"
            )
        task = continuation_task(codes, frames, self.layout)
        done = fill(self, task, descriptions, progress, opts)
        return self._result(done, return_tokens)

    def generate_continuation(
        self,
        stems: Mapping[str, torch.Tensor],
        sample_rate: int,
        descriptions: Texts | None = None,
        progress: Progress = False,
        return_tokens: bool = False,
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Continue stem audio {stem: [C, T]} (missing stems are silence)."""
        opts = options_of("generate_continuation", options)
        codes = self.encode_stems(stems, sample_rate)
        return self.generate_continuation_from_codes(codes, descriptions, progress, return_tokens, **opts)

    def regenerate_from_codes(
        self,
        codes: torch.Tensor,
        which_instruments_regenerate: Sequence[str],
        descriptions: Texts | None = None,
        progress: Progress = False,
        return_tokens: bool = False,
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Regenerate some stems under the others, which come out bit-identical to `codes`.

        codes: [B, K, F] or [K, F], any length (windows of the model's edit window slide over
        longer material, each with its own masked-stem prefix). The output has `duration`
        seconds (default: as long as `codes`); past the end of `codes` every stream is generated.
        Regenerating every stem is plain text -> stems.
        """
        opts = options_of("regenerate_from_codes", options)
        regen = which_instruments_regenerate
        return self.regenerate_range(codes, regen, descriptions, progress, return_tokens, **opts)

    def regenerate_range(
        self,
        codes: torch.Tensor,
        which_instruments_regenerate: Sequence[str],
        descriptions: Texts | None = None,
        progress: Progress = False,
        return_tokens: bool = False,
        *,
        start: float | None = None,
        end: float | None = None,
        heard: Mapping[str, torch.Tensor] | None = None,
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Regenerate stems only between `start` and `end` seconds (default: everywhere); every
        token outside that range, and of every other stem, is kept bit-exact.

        heard: the kept stems' audio as given, {stem: [C, T] or [B, C, T]} at the model's rate
        (`at_model_rate`): their tempo, beat and chords are read from it, not from their codes
        decoded (the codec blurs the onsets a tempo is read from); stems given neither here nor
        to regenerate are silence and read as nothing."""
        opts = options_of("regenerate_range", options)
        codes = check_codes(codes, self.layout)
        descriptions = texts_of(descriptions, len(codes))
        codes = codes.expand(len(descriptions), -1, -1) if len(codes) == 1 else codes
        kept = codes.shape[-1]
        duration = opts.get("duration")
        frames = kept if duration is None else self._frames(duration)
        if frames > MAX_SECONDS * self.frame_rate:
            raise GenerationError(
                f"the material lasts {frames / self.frame_rate:.0f} s; edits hold {MAX_SECONDS} s at most"
            )
        a, b = time_range(start, end, frames, self.frame_rate)
        regen = which_instruments_regenerate
        task = edit_task(codes, self.layout, regen, frames, self.silence_tokens(), a, b)
        done = fill(self, task, descriptions, progress, opts, heard=heard)
        return self._result(done, return_tokens, done.texts != list(descriptions))

    def regenerate_instruments_from_stems(
        self,
        stems: Mapping[str, torch.Tensor],
        stems_sample_rate: int,
        which_instruments_regenerate: Sequence[str],
        descriptions: Texts | None = None,
        progress: Progress = False,
        return_tokens: bool = False,
        *,
        output_format: str = "input",
        **options: Unpack[Options],
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Regenerate some stems under given stem audio {stem: [C, T]} at any sample rate.

        Stems neither given nor regenerated are kept as silence. output_format "input" (as the
        command line): the result has the given stems' channels, the given stems returned exactly
        as passed (as float32) at `stems_sample_rate`, the others at it too, or at the model's
        rate where `stems_sample_rate` is lower (new stems are never below the model's rate: the
        result's `sample_rate` is then the model's, `rates` names the given stems' own);
        "model": everything decoded at the model's rate and channels. `on_audio` chunks are at the
        model's rate either way.
        """
        opts = options_of("regenerate_instruments_from_stems", options)
        if output_format not in ("input", "model"):
            raise GenerationError(f"output_format must be 'input' or 'model', got {output_format!r}")
        both = sorted(set(stems) & set(which_instruments_regenerate))
        if both:
            raise GenerationError(f"stem(s) {both} are both given to keep and asked to be regenerated")
        heard = self.at_model_rate(stems, stems_sample_rate)
        codes = self.encode_stems(heard, self.sample_rate)
        regen = which_instruments_regenerate
        out = self.regenerate_range(codes, regen, descriptions, progress, heard=heard, **opts)
        assert isinstance(out, StemAudio)
        if output_format == "input":
            given = {s: stem_audio(s, w) for s, w in stems.items()}
            out = in_input_format(out, given, stems_sample_rate)
        return (out, out.codes) if return_tokens else out

    def compose(
        self,
        descriptions: Texts,
        order: Sequence[str] | None = None,
        progress: Progress = False,
        **options: Unpack[Options],
    ) -> list[StemAudio]:
        """Iterative composition: one stem at a time, each generated under the ones before
        (stems not yet composed are kept silent). Returns the result after every stage (options:
        seed and duration)."""
        opts = options_of("compose", options, NO_STREAMING)
        order = list(compose_order(self.stems) if order is None else order)
        if not order:
            raise GenerationError(f"order must list at least one stem of {', '.join(self.stems)}")
        if sorted(order) != sorted(self.layout.check_stems(order)) or len(set(order)) != len(order):
            raise GenerationError(f"order must list distinct stems of {', '.join(self.stems)}")
        descriptions = texts_of(descriptions)
        frames = self._frames(opts.get("duration"))
        silence = torch.tensor(self.silence_tokens())[None, :, None]
        codes = silence.expand(len(descriptions), -1, frames).clone()
        seed = draw_seed(opts.get("seed"))
        stages = []
        for i, stem in enumerate(order):
            out = self.regenerate_from_codes(
                codes, [stem], descriptions, progress, seed=seed + i, duration=frames / self.frame_rate
            )
            assert isinstance(out, StemAudio)
            codes = out.codes
            stages.append(out)
        return stages

    # --- helpers ---------------------------------------------------------------------------
    def _result(
        self, done: Filled, return_tokens: bool, changed: bool = False
    ) -> StemAudio | tuple[StemAudio, torch.Tensor]:
        """Decoded stems; with `changed`, the descriptions as the model read them (an edit's tempo)
        in `params["model_descriptions"]`; the per-step conditions read (beat grid, chords) in
        `params["step_conditions"]`, one per item."""
        audio = self.decode(done.codes, done.seed)
        if changed:
            audio.params["model_descriptions"] = done.texts
        if done.conds is not None:
            audio.params["step_conditions"] = [done.conds.to_json(i) for i in range(len(done.conds))]
        return (audio, audio.codes) if return_tokens else audio
