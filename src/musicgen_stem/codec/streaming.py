"""Streaming decode: the audio of the frames received so far, while later frames are still coming.

`StreamingDecoder` wraps one `StemCodec`: `push(codes)` returns the audio that no later frame
can change, `flush()` the rest; concatenated, they equal `codec.decode(all codes)` up to float
rounding. The SEANet decoder is split at its LSTM:

- the convolutions before the LSTM (at frame rate) and the upsampling stack after it run on
  slices of their input: each keeps the tail of its input that the next outputs need as left
  context, and holds back the output frames whose right receptive field has not arrived yet;
- the LSTM (unidirectional) carries its (h, c) state from one push to the next.

The state is bounded (a few frames per stage and the LSTM state), and so is the cost of a push:
it does not grow with the length of the song.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import nn

from ..layout import StemLayout
from .context import CHUNK_SECONDS, receptive_field
from .seanet import ResidualUnit, SkipLSTM, StreamableConv1d, StreamableConvTranspose1d

__all__ = ["StreamingDecoder", "MultiStemStreamingDecoder", "context_frames"]


class StemCodec(Protocol):
    """What streaming reads of a `codec.model.StemCodec`."""

    cfg: Any
    decoder: nn.Module
    hop_length: int
    channels: int
    frame_rate: float

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor: ...


class MultiStemCodec(Protocol):
    """What streaming reads of a `codec.model.MultiStemCodec`."""

    layout: StemLayout

    def codec(self, stem: str) -> StemCodec: ...


def _needs(m: nn.Module, a: int, b: int) -> tuple[int, int] | None:
    """Input positions [a', b'] that outputs [a, b] of `m` read (None: a module we cannot bound)."""
    if isinstance(m, nn.Sequential):
        for layer in reversed(m):
            span = _needs(layer, a, b)
            if span is None:
                return None
            a, b = span
        return a, b
    if isinstance(m, (nn.ELU, nn.Identity)):
        return a, b
    if hasattr(m, "needs"):  # the iSTFT decoder's modules bound themselves
        return m.needs(a, b)
    if isinstance(m, StreamableConv1d):
        if m.conv.stride != 1:
            return None  # a strided convolution would tie the slices to its stride
        k_eff = (m.conv.kernel_size - 1) * m.conv.dilation + 1
        total = k_eff - 1
        left = total if m.causal else total - total // 2
        return a - left, b - left + k_eff - 1
    if isinstance(m, StreamableConvTranspose1d):
        s, k = m.convtr.stride, m.convtr.kernel_size
        total = k - s
        right = math.ceil(total * m.trim_right_ratio) if m.causal else total // 2
        trim = total - right  # output m is position m + trim of the untrimmed output
        return -(-(a + trim - k + 1) // s), (b + trim) // s
    if isinstance(m, ResidualUnit):
        block, short = _needs(m.block, a, b), _needs(m.shortcut, a, b)
        if block is None or short is None:
            return None
        return min(block[0], short[0]), max(block[1], short[1])
    return None


def context_frames(net: nn.Module, up: int) -> tuple[int, int]:
    """Input frames (left, right) beyond its own that one output frame of the stateless stack
    `net` (`up` output steps per input frame) reads: exact for SEANet decoder layers."""
    return _context(net, up)


def _context(net: nn.Module, up: int) -> tuple[int, int]:
    """Input frames (left, right) that one output frame (`up` output steps) of `net` depends on
    beyond its own: exact for SEANet decoder layers, else the `receptive_field` bound."""
    span = _needs(net, 0, up - 1)
    if span is None:
        bound = receptive_field(net, upsampling=True) + 1
        return bound, bound
    return max(0, -span[0]), max(0, span[1])


class _SliceStage:
    """A stack of convolutions on frame-rate input [B, C_in, F] -> [B, C_out, F * up], streamed.

    Keeps its input from `left` frames before the first output frame not yet returned; an output
    frame is returned once `right` input frames after it have arrived (or at the end).
    """

    def __init__(self, net: nn.Module, up: int, out_channels: int) -> None:
        self.net, self.up, self.out_channels = net, up, out_channels
        self.left, self.right = _context(net, up)
        self.reset()

    def reset(self) -> None:
        self._buf: torch.Tensor | None = None  # input frames [_start, _received)
        self._start = 0
        self._received = 0
        self._done = 0  # output frames returned

    def push(self, x: torch.Tensor, final: bool = False) -> torch.Tensor:
        """x: [B, C_in, n] the next input frames -> [B, C_out, m * up], the m output frames now
        final (every remaining frame when `final`)."""
        self._buf = x if self._buf is None else torch.cat([self._buf, x], dim=-1)
        self._received += x.shape[-1]
        upto = self._received if final else max(self._done, self._received - self.right)
        if upto == self._done:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        y = self.net(self._buf)  # [B, C_out, (received - start) * up]
        out = y[..., (self._done - self._start) * self.up : (upto - self._start) * self.up]
        keep = max(0, upto - self.left)
        self._buf = self._buf[..., keep - self._start :]
        self._start, self._done = keep, upto
        return out


class _LSTMStage:
    """A `SkipLSTM` run push by push, carrying its (h, c) state: [B, C, n] -> [B, C, n]."""

    def __init__(self, lstm: SkipLSTM) -> None:
        self.lstm = lstm.lstm
        self.reset()

    def reset(self) -> None:
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None

    def push(self, x: torch.Tensor, final: bool = False) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x
        seq = x.permute(2, 0, 1)  # [n, B, C]
        y, self._state = self.lstm(seq, self._state)
        return (y + seq).permute(1, 2, 0)


class _StateStage:
    """A stateful frame-rate module (`stream(x, state) -> (y, state)`, e.g. `PhaseIntegrator`)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.reset()

    def reset(self) -> None:
        self._state: torch.Tensor | None = None

    def push(self, x: torch.Tensor, final: bool = False) -> torch.Tensor:
        y, self._state = self.module.stream(x, self._state)  # also for no frames: its channels may differ
        return y


def _stateful(m: nn.Module) -> bool:
    return isinstance(m, SkipLSTM) or bool(getattr(m, "stateful", False))


@torch.no_grad()
def _out_channels(net: nn.Module, in_channels: int) -> int:
    """Channels a frame-rate stack outputs (a dry run on a few zero frames)."""
    param = next(net.parameters(), None)
    x = torch.zeros(1, in_channels, 8, device=None if param is None else param.device)
    return int(net(x).shape[1])


class StreamingDecoder:
    """Decode the codes of one `StemCodec` as they arrive.

    `push(codes [B, n_q, f])` returns the audio [B, C, n] now final, `flush()` the rest; the
    concatenation of every output equals `codec.decode(all codes)` (to float rounding). `lag`
    frames are held back at most between pushes. After `flush` the decoder starts a new stream.
    """

    def __init__(self, codec: StemCodec, chunk_seconds: float = CHUNK_SECONDS) -> None:
        self.codec = codec
        self._max_frames = max(1, round(chunk_seconds * codec.frame_rate))
        hop, channels = codec.hop_length, codec.channels
        if any(getattr(m, "pad_mode", "constant") == "circular" for m in codec.decoder.modules()):
            raise ValueError("a decoder with circular padding cannot be streamed (its start reads its end)")
        # the layers split at every stateful one (LSTM, phase integrator): slices of the stateless
        # runs between them at frame rate, the last one up to the audio rate
        self._stages: list[_SliceStage | _LSTMStage | _StateStage] = []
        run: list[nn.Module] = []
        width = codec.cfg.dimension
        for m in codec.decoder.model:
            if not _stateful(m):
                run.append(m)
                continue
            if run:
                net = nn.Sequential(*run)
                width = _out_channels(net, width)
                self._stages.append(_SliceStage(net, 1, width))
                run = []
            self._stages.append(_LSTMStage(m) if isinstance(m, SkipLSTM) else _StateStage(m))
        self._stages.append(_SliceStage(nn.Sequential(*run), hop, channels))
        self.reset()

    @property
    def lag(self) -> int:
        """Frames after the last one returned that a push may need before returning it."""
        return sum(s.right for s in self._stages if isinstance(s, _SliceStage))

    @property
    def frames_pushed(self) -> int:
        """Frames pushed since the start of this stream."""
        return self._frames

    @property
    def samples_returned(self) -> int:
        """Samples returned since the start of this stream."""
        return self._samples

    def reset(self) -> None:
        """Forget the current stream."""
        for stage in self._stages:
            stage.reset()
        self._frames = self._samples = 0
        self._batch: int | None = None

    def _run(self, latent: torch.Tensor, final: bool) -> torch.Tensor:
        x = latent
        for stage in self._stages:
            x = stage.push(x, final)
        self._samples += x.shape[-1]
        return x

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n_q, f] the next frames -> wav [B, C, n]: the audio now final (n may be 0)."""
        device = next(self.codec.decoder.parameters()).device
        latent = self.codec.decode_latent(codes.to(device))  # [B, D, f]
        if self._batch is not None and latent.shape[0] != self._batch:
            raise ValueError(f"codes of batch {latent.shape[0]} pushed into a stream of batch {self._batch}")
        self._batch = latent.shape[0]
        self._frames += latent.shape[-1]
        if latent.shape[-1] <= self._max_frames:
            return self._run(latent, final=False)
        # a long push runs in pieces: memory bounded as in `StemCodec.decode`
        return torch.cat([self._run(x, final=False) for x in latent.split(self._max_frames, dim=-1)], dim=-1)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """wav [B, C, n]: the audio of every frame pushed and not returned yet; then starts a new
        stream. Without any push: [0, C, 0]."""
        if self._batch is None:
            return torch.zeros(0, self.codec.channels, 0)
        w = next(self.codec.decoder.parameters())
        latent = w.new_zeros(self._batch, self.codec.cfg.dimension, 0)
        out = self._run(latent, final=True)
        self.reset()
        return out


class MultiStemStreamingDecoder:
    """`StreamingDecoder` for every stem of a `MultiStemCodec`, aligned across stems.

    `push(codes [B, K, f])` -> {stem: wav [B, C, n]}, the same n for every stem (a stem whose
    decoder returned more keeps the surplus for the next call); `flush()` -> {stem: the rest}.
    """

    def __init__(self, codec: MultiStemCodec) -> None:
        self.layout = codec.layout
        self.decoders = {stem: StreamingDecoder(codec.codec(stem)) for stem in self.layout.stems}
        self._pending: dict[str, torch.Tensor] = {}

    @property
    def samples_returned(self) -> int:
        """Samples per stem returned since the start of this stream."""
        stem = self.layout.stems[0]
        pending = self._pending.get(stem)
        return self.decoders[stem].samples_returned - (0 if pending is None else pending.shape[-1])

    def _align(self, new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        both = {s: torch.cat([self._pending[s], w], -1) if s in self._pending else w for s, w in new.items()}
        n = min(w.shape[-1] for w in both.values())
        self._pending = {s: w[..., n:] for s, w in both.items()}
        return {s: w[..., :n] for s, w in both.items()}

    def push(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """codes: [B, K, f] (streams in stem order) -> {stem: wav [B, C, n]} now final."""
        k = self.layout.num_streams
        if codes.dim() != 3 or codes.shape[1] != k:
            raise ValueError(f"expected codes of shape [B, {k}, f] (B, K, f), got {tuple(codes.shape)}")
        return self._align(
            {s: self.decoders[s].push(codes[:, sl]) for s, sl in self.layout.stream_slices().items()}
        )

    def flush(self) -> dict[str, torch.Tensor]:
        """{stem: wav [B, C, n]}: the rest of every stem; then starts a new stream."""
        out = self._align({s: d.flush() for s, d in self.decoders.items()})
        self._pending = {}
        return out

    def reset(self) -> None:
        """Forget the current stream."""
        for d in self.decoders.values():
            d.reset()
        self._pending = {}
