"""SEANet encoder/decoder (EnCodec-style) with weight-normalised, length-preserving convolutions.

The module tree (attribute names and `nn.Sequential` indices) follows the released MusicGen-Stem
codec checkpoints, so their `best_state` dicts load with `strict=True`:

    encoder.model.{i}.conv.conv.{bias, weight_g, weight_v}      plain convolutions
    encoder.model.{i}.block.{1,3}.conv.conv.*                   residual blocks
    encoder.model.{i}.lstm.*                                    LSTM with skip connection
    decoder.model.{i}.convtr.convtr.{bias, weight_g, weight_v}  upsampling convolutions

Padding convention (non-causal): a convolution with effective kernel `k` and stride `s` pads
`k - s` samples in total, the larger half on the left, plus extra zeros on the right so that the
last window is complete. With kernel `2 * r` and stride `r`, a length `L` becomes `ceil(L / r)`;
the matching transposed convolution turns `L` frames back into exactly `L * r` samples.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "WeightNormParams",
    "StreamableConv1d",
    "StreamableConvTranspose1d",
    "ResidualUnit",
    "SkipLSTM",
    "SEANetEncoder",
    "SEANetDecoder",
]

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------------------------
# Padding arithmetic
# --------------------------------------------------------------------------------------------
def extra_right_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Zeros to append on the right so that the last convolution window is complete.

    The number of output frames is `ceil((length - kernel_size + padding_total) / stride) + 1`;
    this returns how many samples are missing for that last frame to be covered entirely.
    """
    span = length - kernel_size + padding_total
    n_windows = -((-span) // stride)  # ceil(span / stride) with exact integer arithmetic
    needed = n_windows * stride + kernel_size - padding_total
    return needed - length


def pad_1d(
    x: torch.Tensor, left: int, right: int, mode: str = "constant", value: float = 0.0
) -> torch.Tensor:
    """`F.pad` on the last axis that also accepts reflect padding wider than the input.

    For `mode="reflect"` on a signal not longer than the padding, zeros are first appended so
    the reflection is defined, and removed again afterwards.
    """
    if left < 0 or right < 0:
        raise ValueError(f"paddings must be >= 0, got ({left}, {right})")
    if mode != "reflect":
        if mode == "constant":
            return F.pad(x, (left, right), mode, value)
        return F.pad(x, (left, right), mode)
    length = x.shape[-1]
    widest = max(left, right)
    fill = widest - length + 1 if length <= widest else 0
    if fill:
        x = F.pad(x, (0, fill))
    out = F.pad(x, (left, right), "reflect")
    return out[..., : out.shape[-1] - fill]


def trim_1d(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Remove `left` samples at the start and `right` at the end of the last axis."""
    if left < 0 or right < 0 or left + right > x.shape[-1]:
        raise ValueError(f"cannot trim ({left}, {right}) from a length-{x.shape[-1]} signal")
    return x[..., left : x.shape[-1] - right]


# --------------------------------------------------------------------------------------------
# Weight-normalised convolutions
# --------------------------------------------------------------------------------------------
class WeightNormParams(nn.Module):
    """Weight-norm reparametrisation `weight = g * v / ||v||` (norm over all axes but axis 0).

    Holds `weight_g: [shape[0], 1, 1]`, `weight_v: shape` and an optional `bias`, with the
    names the released checkpoints use. At initialisation `g = ||v||`, so `weight == v`.
    """

    def __init__(self, shape: tuple[int, int, int], bias_size: int | None, fan_in: int) -> None:
        super().__init__()
        v = torch.empty(shape)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # PyTorch's default convolution init
        self.weight_g = nn.Parameter(self._norm(v.detach()).clone())
        self.weight_v = nn.Parameter(v)
        if bias_size is None:
            self.register_parameter("bias", None)
        else:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            self.bias = nn.Parameter(torch.empty(bias_size).uniform_(-bound, bound))

    @staticmethod
    def _norm(v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)

    def weight(self) -> torch.Tensor:
        """The effective weight `g * v / ||v||`, shape of `weight_v`.

        Computed by `torch._weight_norm`, the fused op behind PyTorch's weight-norm utilities:
        it is mathematically `weight_v * (weight_g / ||weight_v||)` but rounds exactly like the
        reference, which keeps encoded codes identical at float-level near-ties. Where no
        gradient is wanted (inference), the result is kept and reused until `weight_g` or
        `weight_v` change (an in-place update, a new tensor, another device or dtype): a
        streamed decode no longer recomputes every weight of the decoder at each push.
        """
        if torch.is_grad_enabled() and (self.weight_g.requires_grad or self.weight_v.requires_grad):
            return self._weight()
        g, v = self.weight_g, self.weight_v
        key = (g.data_ptr(), v.data_ptr(), g._version, v._version, g.device, g.dtype, v.dtype)
        cached = self.__dict__.get("_cached_weight")
        if cached is None or cached[0] != key or cached[1]() is not g or cached[2]() is not v:
            # outside inference mode, so the kept tensor may be read by any later call
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, weakref.ref(g), weakref.ref(v), self._weight())
            self.__dict__["_cached_weight"] = cached
        return cached[3]

    def _weight(self) -> torch.Tensor:
        if hasattr(torch, "_weight_norm"):
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        return self.weight_reference()

    def weight_reference(self) -> torch.Tensor:
        """Plain-formula version of `weight()` (same values up to float rounding)."""
        return self.weight_v * (self.weight_g / self._norm(self.weight_v))


class _WNConv1d(nn.Module):
    """Conv1d whose parameters live in `self.conv` (a `WeightNormParams`)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int, dilation: int, bias: bool
    ) -> None:
        super().__init__()
        self.stride = stride
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.conv = WeightNormParams(
            (out_ch, in_ch, kernel_size), out_ch if bias else None, in_ch * kernel_size
        )

    def forward(self, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, T'], `padding` zeros on both sides."""
        w = self.conv.weight()
        return F.conv1d(x, w, self.conv.bias, stride=self.stride, padding=padding, dilation=self.dilation)


def conv_transpose_overlap_add(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int
) -> torch.Tensor:
    """`F.conv_transpose1d(x, weight, bias, stride)` for a kernel that is a multiple `n` of the
    stride, as one matrix product and an overlap-add of `n` blocks.

    x: [B, C_in, T], weight: [C_in, C_out, n * stride] -> [B, C_out, (T + n - 1) * stride].
    Output block `m` (samples `m * stride ...`) is the sum over `i` of kernel block `i` applied
    to input frame `m - i`: the product `weight^T x` gives every (kernel block, frame) at once.
    Equal to the convolution up to float rounding (another summation order); on the CPU here
    it is faster than PyTorch's transposed convolution for the SEANet decoder's shapes.
    """
    c_in, c_out, k = weight.shape
    n, B, T = k // stride, x.shape[0], x.shape[-1]
    z = torch.matmul(weight.reshape(c_in, c_out * k).t(), x)  # [B, C_out * k, T]
    z = z.view(B, c_out, n, stride, T).transpose(-1, -2)  # [B, C_out, n, T, stride]
    out = x.new_empty(B, c_out, T + n - 1, stride)
    b = None if bias is None else bias.view(1, c_out, 1, 1)
    if b is None:
        out[:, :, :T] = z[:, :, 0]
        out[:, :, T:] = 0.0
    else:
        torch.add(z[:, :, 0], b, out=out[:, :, :T])
        out[:, :, T:] = b
    for i in range(1, n):
        out[:, :, i : i + T] += z[:, :, i]
    return out.view(B, c_out, (T + n - 1) * stride)


class _WNConvTranspose1d(nn.Module):
    """ConvTranspose1d whose parameters live in `self.convtr`; weight is `[in, out, k]`."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size
        self.convtr = WeightNormParams(
            (in_ch, out_ch, kernel_size), out_ch if bias else None, out_ch * kernel_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.convtr
        grad = torch.is_grad_enabled() and (
            x.requires_grad or p.weight_v.requires_grad or p.weight_g.requires_grad
        )
        if not grad and self.kernel_size % self.stride == 0 and x.device.type == "cpu" and x.dim() == 3:
            return conv_transpose_overlap_add(x, p.weight(), p.bias, self.stride)  # inference on CPU
        return F.conv_transpose1d(x, p.weight(), p.bias, stride=self.stride)


class StreamableConv1d(nn.Module):
    """Weight-normalised Conv1d that pads its input so that `T -> ceil(T / stride)`.

    Keys: `conv.conv.{bias, weight_g, weight_v}`.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        causal: bool = False,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
        self.conv = _WNConv1d(in_ch, out_ch, kernel_size, stride, dilation, bias)
        self.causal = causal
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, ceil(T / stride)]."""
        stride = self.conv.stride
        k_eff = (self.conv.kernel_size - 1) * self.conv.dilation + 1
        total = k_eff - stride
        extra = extra_right_padding(x.shape[-1], k_eff, stride, total)
        if self.causal:
            left, right = total, extra
        else:
            right = total // 2
            left, right = total - right, right + extra
        if left == right and self.pad_mode == "constant":  # zeros padded by the convolution: no copy
            return self.conv(x, padding=left)
        return self.conv(pad_1d(x, left, right, self.pad_mode))


class StreamableConvTranspose1d(nn.Module):
    """Weight-normalised ConvTranspose1d trimmed so that `T -> T * stride` (for kernel 2*stride).

    Keys: `convtr.convtr.{bias, weight_g, weight_v}`. Non-causal: the `k - s` surplus samples are
    trimmed with the larger half on the left. Causal: `ceil(surplus * trim_right_ratio)` on the right.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        causal: bool = False,
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError(f"trim_right_ratio must be in [0, 1], got {trim_right_ratio}")
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        self.convtr = _WNConvTranspose1d(in_ch, out_ch, kernel_size, stride, bias)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, (T - 1) * stride + kernel - (kernel - stride)]."""
        y = self.convtr(x)
        total = self.convtr.kernel_size - self.convtr.stride
        if self.causal:
            right = math.ceil(total * self.trim_right_ratio)
        else:
            right = total // 2
        return trim_1d(y, total - right, right)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
class ResidualUnit(nn.Module):
    """SEANet residual block: `x + conv1x1(elu(conv_k(elu(x))))`, hidden width `dim // compress`.

    Keys: `block.1.conv.conv.*`, `block.3.conv.conv.*` (indices 0 and 2 are the ELUs), plus
    `shortcut.conv.conv.*` when `true_skip` is False.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 3,
        dilation: int = 1,
        alpha: float = 1.0,
        causal: bool = False,
        pad_mode: str = "constant",
        compress: int = 2,
        true_skip: bool = True,
    ) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(alpha),
            StreamableConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal, pad_mode=pad_mode),
            nn.ELU(alpha),
            StreamableConv1d(hidden, dim, 1, causal=causal, pad_mode=pad_mode),
        )
        self.shortcut: nn.Module = (
            nn.Identity() if true_skip else StreamableConv1d(dim, dim, 1, causal=causal, pad_mode=pad_mode)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SkipLSTM(nn.Module):
    """Multi-layer LSTM over time with a residual connection, in conv layout [B, C, T]."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, C]
        y, _ = self.lstm(seq)
        return (y + seq).permute(1, 2, 0)


# --------------------------------------------------------------------------------------------
# Encoder / decoder
# --------------------------------------------------------------------------------------------
class SEANetEncoder(nn.Module):
    """Waveform [B, channels, T] -> latent [B, dimension, ceil(T / hop)].

    `ratios` are given in decoder order (e.g. (8, 5, 4, 4)); the encoder downsamples with them
    reversed (4, 4, 5, 8), doubling the width after each stage.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 64,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 4),
        alpha: float = 1.0,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: str = "constant",
        true_skip: bool = True,
        compress: int = 2,
        lstm: int = 2,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.strides = tuple(reversed(tuple(ratios)))
        self.hop_length = math.prod(self.strides)
        common = {"causal": causal, "pad_mode": pad_mode}
        width = n_filters
        layers: list[nn.Module] = [StreamableConv1d(channels, width, kernel_size, **common)]
        for stride in self.strides:
            for j in range(n_residual_layers):
                layers.append(
                    ResidualUnit(
                        width,
                        residual_kernel_size,
                        dilation_base**j,
                        alpha,
                        compress=compress,
                        true_skip=true_skip,
                        **common,
                    )
                )
            layers += [nn.ELU(alpha), StreamableConv1d(width, 2 * width, 2 * stride, stride=stride, **common)]
            width *= 2
        if lstm:
            layers.append(SkipLSTM(width, lstm))
        layers += [nn.ELU(alpha), StreamableConv1d(width, dimension, last_kernel_size, **common)]
        self.model = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, C, T] -> latent: [B, D, ceil(T / hop_length)]."""
        return self.model(wav)


class SEANetDecoder(nn.Module):
    """Latent [B, dimension, F] -> waveform [B, channels, F * hop] (upsampling by `ratios` in order)."""

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 64,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 4),
        alpha: float = 1.0,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: str = "constant",
        true_skip: bool = True,
        compress: int = 2,
        lstm: int = 2,
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.strides = tuple(ratios)
        self.hop_length = math.prod(self.strides)
        common = {"causal": causal, "pad_mode": pad_mode}
        width = n_filters * 2 ** len(self.strides)
        layers: list[nn.Module] = [StreamableConv1d(dimension, width, kernel_size, **common)]
        if lstm:
            layers.append(SkipLSTM(width, lstm))
        for stride in self.strides:
            layers += [
                nn.ELU(alpha),
                StreamableConvTranspose1d(
                    width,
                    width // 2,
                    2 * stride,
                    stride=stride,
                    causal=causal,
                    trim_right_ratio=trim_right_ratio,
                ),
            ]
            width //= 2
            for j in range(n_residual_layers):
                layers.append(
                    ResidualUnit(
                        width,
                        residual_kernel_size,
                        dilation_base**j,
                        alpha,
                        compress=compress,
                        true_skip=true_skip,
                        **common,
                    )
                )
        layers += [nn.ELU(alpha), StreamableConv1d(width, channels, last_kernel_size, **common)]
        self.model = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: [B, D, F] -> wav: [B, C, F * hop_length]."""
        return self.model(latent)
