"""Per-stem EnCodec-style codec (`StemCodec`) and the multi-stem wrapper (`MultiStemCodec`).

`StemCodec` reproduces the released checkpoints' module tree (`encoder`, `decoder`, `quantizer`),
so `StemCodec(cfg).load_state_dict(best_state, strict=True)` works on the released files. There is
no input renormalisation and no quantizer dropout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layout import StemLayout
from .config import CodecConfig
from .context import CHUNK_SECONDS, receptive_field, split_at_lstm
from .harmonic import HarmonicDecoder, PitchEncoder
from .istft import ISTFTDecoder, STFTEncoder
from .kinds import SEANetConfig
from .quantizer import ResidualVectorQuantizer
from .seanet import SEANetDecoder, SEANetEncoder, SkipLSTM
from .streaming import StreamingDecoder, context_frames
from .tonal import ChromaEncoder, TonalDecoder

__all__ = ["CodecConfig", "CodecOutput", "StemCodec", "MultiStemCodec"]

#: SEANet decoding runs the upsampling stack on pieces of this length (seconds): its largest
#: activations (n_filters x 64 k samples at 32 kHz, 16 MB for medium) then stay in the CPU's
#: caches. Medium, 10 s x 3 stems, 2 threads: pieces of 0.5 s 2.81 s, 1 s 2.42, 2 s 2.22, 4 s 2.68.
PIECE_SECONDS = 2.0


def _describe(x: object) -> object:
    """Shape of a tensor (for error messages), else the type name."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


@dataclass
class CodecOutput:
    """Result of `StemCodec.forward` (training).

    recon: [B, C, T] reconstruction trimmed to the input length; codes: [B, n_q, F];
    commit_loss: [] mean commitment loss over codebooks (0 in eval mode);
    latent: [B, D, F] encoder output before quantization; quantized: [B, D, F] quantized latent
    (straight-through gradient to `latent` in training mode).
    """

    recon: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    latent: torch.Tensor
    quantized: torch.Tensor


def _seanet(s: SEANetConfig, cfg: CodecConfig) -> dict[str, Any]:
    """The SEANet encoder/decoder arguments of `s` in the codec `cfg`."""
    return {
        "channels": cfg.channels,
        "dimension": cfg.dimension,
        "n_filters": s.n_filters,
        "n_residual_layers": s.n_residual_layers,
        "ratios": cfg.ratios,
        "alpha": s.elu_alpha,
        "kernel_size": s.kernel_size,
        "last_kernel_size": s.last_kernel_size,
        "residual_kernel_size": s.residual_kernel_size,
        "dilation_base": s.dilation_base,
        "causal": cfg.causal,
        "pad_mode": s.pad_mode,
        "true_skip": s.true_skip,
        "compress": s.compress,
        "lstm": s.lstm,
    }


def _lstm(layers: int, width: int) -> SkipLSTM | None:
    return SkipLSTM(width, layers) if layers else None


#: encoder kind (`codec/kinds.py`) -> its builder (its config, the codec's) -> the encoder
#: (waveform -> latent [B, dimension, F]).
ENCODERS: dict[str, Callable[[Any, CodecConfig], nn.Module]] = {
    "seanet": lambda e, cfg: SEANetEncoder(**_seanet(e, cfg)),
    "stft": lambda e, cfg: STFTEncoder(
        cfg.channels,
        cfg.dimension,
        cfg.hop_length,
        e.width,
        e.layers,
        e.n_ffts,
        e.down,
        lstm=_lstm(e.lstm, e.width),
    ),
    "pitch": lambda e, cfg: PitchEncoder(cfg.sample_rate, cfg.hop_length, e.fmin, e.fmax, e.detail),
    "chroma": lambda e, cfg: ChromaEncoder(cfg.sample_rate, cfg.hop_length, e.detail),
}

#: decoder kind -> its builder (its config, the codec's) -> the decoder (latent -> waveform).
DECODERS: dict[str, Callable[[Any, CodecConfig], nn.Module]] = {
    "seanet": lambda d, cfg: SEANetDecoder(**_seanet(d, cfg), trim_right_ratio=d.trim_right_ratio),
    "istft": lambda d, cfg: ISTFTDecoder(
        cfg.channels,
        cfg.dimension,
        cfg.hop_length,
        d.width,
        d.layers,
        d.n_fft,
        d.hop,
        lstm=_lstm(d.lstm, d.width),
        phase=d.phase,
    ),
    "harmonic": lambda d, cfg: HarmonicDecoder(
        cfg.channels,
        cfg.dimension,
        cfg.sample_rate,
        cfg.hop_length,
        d.width,
        d.layers,
        d.harmonics,
        d.noise_bands,
    ),
    "tonal": lambda d, cfg: TonalDecoder(
        cfg.channels, cfg.dimension, cfg.sample_rate, cfg.hop_length, d.width, d.layers, d.noise_bands
    ),
}


class StemCodec(nn.Module):
    """EnCodec-style codec for one stem: an encoder and a decoder of the kinds its config names
    (`ENCODERS`, `DECODERS`) around a residual VQ."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ENCODERS[cfg.encoder.kind](cfg.encoder, cfg)
        self.decoder = DECODERS[cfg.decoder.kind](cfg.decoder, cfg)
        self.quantizer = ResidualVectorQuantizer(
            dimension=cfg.dimension,
            n_q=cfg.n_q,
            bins=cfg.bins,
            decay=cfg.decay,
            epsilon=cfg.epsilon,
            kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.threshold_ema_dead_code,
            commitment_weight=cfg.commitment_weight,
        )

    # --- facts -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def channels(self) -> int:
        return self.cfg.channels

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def n_q(self) -> int:
        """Number of codebooks (token streams) of this codec."""
        return self.cfg.n_q

    @property
    def card(self) -> int:
        """Codebook size (token cardinality)."""
        return self.cfg.bins

    def num_frames(self, num_samples: int) -> int:
        """Frames produced by `encode` for `num_samples` samples: ceil(T / hop_length)."""
        return -(-num_samples // self.hop_length)

    # --- checks ----------------------------------------------------------------------------
    def _check_wav(self, wav: torch.Tensor) -> None:
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != self.channels:
            shape = _describe(wav)
            raise ValueError(f"expected a waveform of shape [B, {self.channels}, T] (B, C, T), got {shape}")
        if wav.shape[-1] < 1:
            raise ValueError("cannot encode an empty waveform (T = 0)")
        if not wav.is_floating_point():
            raise ValueError(f"expected a floating-point waveform, got dtype {wav.dtype}")

    def _check_codes(self, codes: torch.Tensor) -> None:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.shape[1] != self.n_q:
            shape = _describe(codes)
            raise ValueError(f"expected codes of shape [B, {self.n_q}, F] (B, n_q, F), got {shape}")
        if codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.card):
            raise ValueError(
                f"codes must lie in [0, {self.card}), got values in [{int(codes.min())}, {int(codes.max())}]"
            )

    # --- inference -------------------------------------------------------------------------
    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, C, T] -> latent [B, D, F] before quantization."""
        self._check_wav(wav)
        return self.encoder(wav)

    def quantize(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: [B, D, F] -> codes [B, n_q, F] (int64); never changes buffers."""
        return self.quantizer.encode(latent)

    def encode(self, wav: torch.Tensor, chunk_seconds: float = CHUNK_SECONDS) -> torch.Tensor:
        """wav: [B, C, T] -> codes [B, n_q, F] int64, F = ceil(T / hop_length).

        Long inputs run the convolutional front end (everything before the LSTM) on chunks of
        `chunk_seconds` with margins wider than its receptive field, and the LSTM on the joined
        latent: the codes of encoding at once, in memory bounded by the chunk.
        """
        self._check_wav(wav)
        hop, length = self.hop_length, wav.shape[-1]
        chunk = max(hop, round(chunk_seconds * self.sample_rate) // hop * hop)
        if length <= chunk or isinstance(self.encoder, PitchEncoder):  # YIN reads the whole input
            return self.quantize(self.encoder(wav))
        front, back = split_at_lstm(self.encoder)
        margin = -(-receptive_field(front) // hop) * hop + hop  # samples, multiple of hop
        latents = []  # [B, W, frames of each chunk]
        for start in range(0, length, chunk):
            end = min(length, start + chunk)
            lo, hi = max(0, start - margin), min(length, end + margin)
            lat = front(wav[..., lo:hi])
            first = (start - lo) // hop
            latents.append(lat[..., first : first + -(-(end - start) // hop)])
        return self.quantize(back(torch.cat(latents, dim=-1)))

    def code_chroma(self) -> torch.Tensor | None:
        """The pitch classes each code of the first codebook plays, [card, 12] (`chroma_of` of
        the pitch and chroma encoders), or None where codes name no pitches (waveform codecs)."""
        chroma_of = getattr(self.encoder, "chroma_of", None)
        if chroma_of is None:
            return None
        first = self.quantizer.vq.layers[0]
        codes = torch.arange(self.card, device=first._codebook.embed.device)[None]  # [1, card]
        with torch.no_grad():
            entries = first.decode(codes)  # [1, D, card]
        return chroma_of(entries[0].float().cpu())

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, n_q, F] -> quantized latent [B, D, F]."""
        self._check_codes(codes)
        return self.quantizer.decode(codes.long())

    def decode(self, codes: torch.Tensor, chunk_seconds: float = CHUNK_SECONDS) -> torch.Tensor:
        """codes: [B, n_q, F] -> wav [B, C, F * hop_length].

        SEANet decoders run the LSTM (and what precedes it) at once on the latent, then the
        upsampling convolutions on pieces of `PIECE_SECONDS` with the context they read
        (`_decode_in_pieces`). Other decoders do the same for inputs longer than
        `chunk_seconds`, with margins wider than their receptive field. Either way: the audio
        of decoding at once (to float rounding), in memory bounded by the piece.
        """
        latent = self.decode_latent(codes)
        hop, frames = self.hop_length, latent.shape[-1]
        chunk = max(1, round(chunk_seconds * self.frame_rate))
        if isinstance(self.decoder, SEANetDecoder):
            return self._decode_in_pieces(latent)
        if frames <= chunk:
            return self.decoder(latent)
        if any(getattr(m, "stateful", False) for m in self.decoder.modules()):
            # state carried from chunk to chunk
            stream = StreamingDecoder(self, chunk_seconds=chunk_seconds)
            return torch.cat([stream.push(codes), stream.flush()], dim=-1)
        front, back = split_at_lstm(self.decoder, after=True)
        hidden = front(latent)  # [B, W, F]
        margin = receptive_field(back, upsampling=True) + 1  # frames
        pieces = []
        for start in range(0, frames, chunk):
            end = min(frames, start + chunk)
            lo, hi = max(0, start - margin), min(frames, end + margin)
            out = back(hidden[..., lo:hi])  # [B, C, (hi - lo) * hop]
            pieces.append(out[..., (start - lo) * hop : (end - lo) * hop])
        return torch.cat(pieces, dim=-1)

    def _decode_in_pieces(self, latent: torch.Tensor) -> torch.Tensor:
        """SEANet decode: the layers up to the LSTM at once, the upsampling stack after it on
        pieces of `PIECE_SECONDS` with the exact context they read (`context_frames`: one frame
        each side for SEANet). The same audio to float rounding; the activations stay in the CPU
        caches (medium, 10 s: the upsampling stack about 1.7x faster than on the whole signal)."""
        front, back = split_at_lstm(self.decoder, after=True)
        hidden = front(latent)  # [B, W, F]
        hop, frames = self.hop_length, hidden.shape[-1]
        piece = max(1, round(PIECE_SECONDS * self.frame_rate))
        if frames <= piece:
            return back(hidden)
        left, right = context_frames(back, hop)
        out = hidden.new_empty(hidden.shape[0], self.channels, frames * hop)
        for start in range(0, frames, piece):
            end = min(frames, start + piece)
            lo, hi = max(0, start - left), min(frames, end + right)
            y = back(hidden[..., lo:hi])  # [B, C, (hi - lo) * hop]
            out[..., start * hop : end * hop] = y[..., (start - lo) * hop : (end - lo) * hop]
        return out

    # --- training --------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor) -> CodecOutput:
        """Full pass for training: wav [B, C, T] -> CodecOutput (recon trimmed to T).

        In training mode the quantizer initialises (k-means) and updates its codebooks.
        """
        self._check_wav(wav)
        length = wav.shape[-1]
        latent = self.encoder(wav)
        quantized, codes, commit_loss = self.quantizer(latent)
        recon = self.decoder(quantized)[..., :length]
        return CodecOutput(
            recon=recon, codes=codes, commit_loss=commit_loss, latent=latent, quantized=quantized
        )


class MultiStemCodec(nn.Module):
    """One `StemCodec` per stem of a `StemLayout`; token streams concatenated in stem order."""

    def __init__(self, layout: StemLayout, configs: dict[str, CodecConfig]) -> None:
        super().__init__()
        missing = [s for s in layout.stems if s not in configs]
        extra = sorted(set(configs) - set(layout.stems))
        if missing or extra:
            raise ValueError(
                f"codec configs must match the layout's stems {list(layout.stems)}: "
                f"missing {missing}, unexpected {extra}"
            )
        first = configs[layout.stems[0]]
        for stem, n_cb in zip(layout.stems, layout.codebooks, strict=True):
            cfg = configs[stem]
            if cfg.n_q != n_cb:
                raise ValueError(
                    f"codec for stem '{stem}' has n_q={cfg.n_q} but the layout gives it {n_cb} codebook(s)"
                )
            if cfg.bins != layout.card:
                raise ValueError(
                    f"codec for stem '{stem}' has bins={cfg.bins} but the layout's card is {layout.card}"
                )
            for attr in ("sample_rate", "hop_length", "channels"):
                if getattr(cfg, attr) != getattr(first, attr):
                    raise ValueError(
                        f"all stem codecs must share {attr}: '{stem}' has {getattr(cfg, attr)}, "
                        f"'{layout.stems[0]}' has {getattr(first, attr)}"
                    )
        self._layout = layout
        self.codecs = nn.ModuleDict({stem: StemCodec(configs[stem]) for stem in layout.stems})

    @property
    def layout(self) -> StemLayout:
        return self._layout

    @property
    def _first(self) -> StemCodec:
        return self.codecs[self._layout.stems[0]]  # type: ignore[return-value]

    @property
    def sample_rate(self) -> int:
        return self._first.sample_rate

    @property
    def channels(self) -> int:
        return self._first.channels

    @property
    def hop_length(self) -> int:
        return self._first.hop_length

    @property
    def frame_rate(self) -> float:
        return self._first.frame_rate

    def codec(self, stem: str) -> StemCodec:
        """The codec of `stem` (clear error for unknown stems)."""
        self._layout.stem_index(stem)
        return self.codecs[stem]  # type: ignore[return-value]

    def encode_stem(self, stem: str, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, C, T] -> codes [B, K_s, F] for one stem."""
        return self.codec(stem).encode(wav)

    def encode(self, stems_wav: torch.Tensor) -> torch.Tensor:
        """stems_wav: [B, S, C, T] (S in layout order) -> codes [B, K, F], streams in stem order."""
        n_stems = len(self._layout.stems)
        if not isinstance(stems_wav, torch.Tensor) or stems_wav.dim() != 4 or stems_wav.shape[1] != n_stems:
            shape = _describe(stems_wav)
            raise ValueError(
                f"expected stems of shape [B, {n_stems}, {self.channels}, T] (B, S, C, T) with stems "
                f"{list(self._layout.stems)}, got {shape}"
            )
        codes = [self.encode_stem(stem, stems_wav[:, i]) for i, stem in enumerate(self._layout.stems)]
        return torch.cat(codes, dim=1)

    def decode_stems(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """codes: [B, K, F] -> {stem: wav [B, C, F * hop_length]} in layout order."""
        k = self._layout.num_streams
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.shape[1] != k:
            shape = _describe(codes)
            raise ValueError(f"expected codes of shape [B, {k}, F] (B, K, F), got {shape}")
        return {
            stem: self.codec(stem).decode(codes[:, sl]) for stem, sl in self._layout.stream_slices().items()
        }

    def code_chroma(self, stems: Sequence[str]) -> dict[int, torch.Tensor]:
        """{stream: the pitch classes of its codes [card, 12]} for the first stream of each of
        `stems` whose codec names pitches (`StemCodec.code_chroma`)."""
        slices = self._layout.stream_slices()
        tables = {slices[s].start: self.codec(s).code_chroma() for s in stems}
        return {k: t for k, t in tables.items() if t is not None}

    @torch.inference_mode()
    def silence_codes(self) -> list[int]:
        """The code of digital silence for each of the K streams (the most frequent code of one
        second of zeros), used to pad masked-stem prefixes."""
        device = next(self.parameters()).device
        silent = torch.zeros(1, len(self._layout.stems), self.channels, self.sample_rate, device=device)
        return [int(torch.mode(c).values) for c in self.encode(silent)[0]]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K, F] -> wav [B, S, C, F * hop_length] (stems in layout order)."""
        return torch.stack(list(self.decode_stems(codes).values()), dim=1)
