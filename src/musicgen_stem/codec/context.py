"""How far a codec network looks: the chunk length of long inputs and the receptive field that
chunked and streamed encoding/decoding must carry as margin."""

from __future__ import annotations

from torch import nn

from .seanet import SkipLSTM, StreamableConv1d, StreamableConvTranspose1d

#: Audio longer than this is encoded/decoded in chunks (same result, bounded memory), seconds.
CHUNK_SECONDS = 30.0


def split_at_lstm(net: nn.Module, after: bool = False) -> tuple[nn.Sequential, nn.Sequential]:
    """A SEANet encoder/decoder's layers split before its LSTM (or after it, `after=True`)."""
    layers = list(net.model)
    idx = next((i for i, m in enumerate(layers) if isinstance(m, SkipLSTM)), None)
    if idx is None:  # no LSTM: the whole stack is convolutional
        idx = 0 if after else len(layers)
    elif after:
        idx += 1
    return nn.Sequential(*layers[:idx]), nn.Sequential(*layers[idx:])


def receptive_field(net: nn.Module, upsampling: bool = False) -> int:
    """Input steps one output step depends on, on either side (an upper bound, in input units).

    Downsampling stacks (the encoder) grow the field by (k - 1) * dilation * stride-so-far input
    samples per convolution; for upsampling stacks (the decoder) every layer works at a rate at
    least the input's, so summing the kernel extents bounds the field in input frames.
    """
    field, jump = 1, 1
    for m in net.modules():
        if hasattr(m, "needs") and not isinstance(m, nn.Sequential):  # frame-rate modules (`istft.py`)
            lo, hi = m.needs(0, 0)
            field += max(-lo, hi) * jump
            jump *= getattr(m, "stride", 1)
        elif isinstance(m, StreamableConv1d):
            extent = (m.conv.kernel_size - 1) * m.conv.dilation
            field += extent if upsampling else extent * jump
            jump *= m.conv.stride
        elif isinstance(m, StreamableConvTranspose1d):
            field += m.convtr.kernel_size
    return field
