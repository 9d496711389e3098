"""Residual vector quantizer with EMA codebooks (EnCodec-style), ready for training.

Module tree (matches the released checkpoints):
    vq.layers.{i}._codebook.{inited [1], cluster_size [bins], embed [bins, D], embed_avg [bins, D]}

Training-mode behaviour of each codebook, per forward:
  1. if not `inited`: k-means on the (flattened) batch initialises `embed`, `embed_avg`, `cluster_size`;
  2. nearest codes by squared euclidean distance, using the current codebook;
  3. codes whose `cluster_size` EMA is below `threshold_ema_dead_code` are replaced by random
     vectors of the batch (their `embed_avg`/`cluster_size` are reset to match, so that the
     replacement survives the EMA renormalisation of step 4);
  4. EMA update of `cluster_size` and `embed_avg` (decay), then `embed = embed_avg / smoothed size`
     (Laplace smoothing with `epsilon`).
With torch.distributed initialised, batch statistics are all-reduced (summed) and the results of
random steps (k-means init, dead-code replacement) are broadcast from rank 0, so every rank holds
the same buffers. In eval mode no buffer changes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["EuclideanCodebook", "VectorQuantizer", "ResidualVQStack", "ResidualVectorQuantizer", "kmeans"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> None:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def _broadcast(tensors: list[torch.Tensor]) -> None:
    if _distributed():
        for t in tensors:
            dist.broadcast(t, src=0)


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """A context with autocast off on x's device type."""
    return torch.autocast(x.device.type, enabled=False)


def _sample_rows(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` random rows of samples [N, D] (without replacement when N >= num)."""
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num,), device=samples.device)
    return samples[idx]


def _nearest(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of embed [K, D] for each row of x [N, D] -> [N] int64.

    Maximises `-(|x|^2 - 2 x.e + |e|^2)`, the same expression (and float rounding) as the reference.
    """
    e_t = embed.t()
    score = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e_t + e_t.pow(2).sum(0, keepdim=True))
    return score.max(dim=-1).indices


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on samples [N, D]. Returns (means [K, D], counts [K] of the last assignment).

    Empty clusters keep their previous mean.
    """
    dim = samples.shape[-1]
    means = _sample_rows(samples, num_clusters)
    counts = torch.zeros(num_clusters, dtype=samples.dtype, device=samples.device)
    for _ in range(num_iters):
        assign = _nearest(samples, means)
        counts = torch.bincount(assign, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros(num_clusters, dim, dtype=samples.dtype, device=samples.device)
        sums.index_add_(0, assign, samples)
        empty = counts == 0
        new_means = sums / counts.clamp(min=1).unsqueeze(1)
        means = torch.where(empty.unsqueeze(1), means, new_means)
    return means, counts


class EuclideanCodebook(nn.Module):
    """One EMA codebook. Works on flat vectors x: [N, D]."""

    def __init__(
        self,
        dim: int,
        bins: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        threshold_ema_dead_code: float = 2.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.bins = bins
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        if kmeans_init:
            embed = torch.zeros(bins, dim)
        else:
            embed = torch.empty(bins, dim)
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.tensor([0.0 if kmeans_init else 1.0]))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    @property
    def is_inited(self) -> bool:
        return bool(self.inited.item())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, D] -> codes [N] (int64), searched in the codebook's dtype even under autocast."""
        with _no_autocast(x):
            return _nearest(x.to(self.embed.dtype), self.embed)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [...] -> vectors [..., D]."""
        return F.embedding(codes, self.embed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, D] -> (quantized [N, D], codes [N]). Updates buffers in training mode only.

        k-means, the nearest-code search and the EMA sums run in the codebook's dtype (float32)
        with autocast off: under bf16 autocast they would round the distances and the sums."""
        with _no_autocast(x):
            if self.training and not self.is_inited:
                self._kmeans_init(x.detach().to(self.embed.dtype))
            codes = self.encode(x)
            quantized = self.decode(codes)
            if self.training:
                self._ema_update(x.detach().to(self.embed.dtype), codes)
        return quantized, codes

    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        means, counts = kmeans(x.float(), self.bins, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)
        _broadcast([self.embed, self.embed_avg, self.cluster_size])

    @torch.no_grad()
    def _expire_dead_codes(self, x: torch.Tensor) -> None:
        if self.threshold_ema_dead_code <= 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code  # [bins]
        if not bool(dead.any()):
            return
        fresh = _sample_rows(x, self.bins).to(self.embed.dtype)  # [bins, D]
        mask = dead.unsqueeze(1)
        self.embed.copy_(torch.where(mask, fresh, self.embed))
        self.embed_avg.copy_(torch.where(mask, fresh * self.threshold_ema_dead_code, self.embed_avg))
        self.cluster_size.masked_fill_(dead, float(self.threshold_ema_dead_code))
        _broadcast([self.embed, self.embed_avg, self.cluster_size])

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        self._expire_dead_codes(x)
        onehot = F.one_hot(codes, self.bins).to(x.dtype)  # [N, bins]
        counts = onehot.sum(0)  # [bins]
        sums = onehot.t() @ x  # [bins, D]
        _all_reduce_sum(counts)
        _all_reduce_sum(sums)
        self.cluster_size.mul_(self.decay).add_(counts.to(self.cluster_size.dtype), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums.to(self.embed_avg.dtype), alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.bins * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))


class VectorQuantizer(nn.Module):
    """One quantizer layer in conv layout: x [B, D, T] <-> codes [B, T]."""

    def __init__(self, dim: int, bins: int, commitment_weight: float = 1.0, **codebook_kwargs: float) -> None:
        super().__init__()
        self.commitment_weight = commitment_weight
        self._codebook = EuclideanCodebook(dim, bins, **codebook_kwargs)  # type: ignore[arg-type]

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> [B*T, D] in the codebook's dtype (e.g. float32 under autocast)."""
        return x.transpose(1, 2).reshape(-1, x.shape[1]).to(self._codebook.embed.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T] -> codes [B, T]."""
        b, _, t = x.shape
        return self._codebook.encode(self._flatten(x)).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, T] -> [B, D, T] (codebook dtype)."""
        return self._codebook.decode(codes).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, D, T] -> (quantized [B, D, T], codes [B, T], commitment loss []).

        In training mode the output carries a straight-through gradient to `x`.
        """
        b, d, t = x.shape
        flat = self._flatten(x)
        q_flat, codes = self._codebook(flat)
        if self.training:
            loss = F.mse_loss(q_flat.detach(), flat) * self.commitment_weight
            q_flat = flat + (q_flat - flat).detach()
        else:
            loss = x.new_zeros(())
        quantized = q_flat.view(b, t, d).transpose(1, 2).to(x.dtype)
        return quantized, codes.view(b, t), loss


class ResidualVQStack(nn.Module):
    """Stack of `VectorQuantizer` layers, each quantizing the residual left by the previous ones."""

    def __init__(self, n_q: int, **layer_kwargs: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantizer(**layer_kwargs) for _ in range(n_q)])  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, D, T] -> (quantized [B, D, T], codes [B, K, T], losses [K])."""
        residual = x
        total = torch.zeros_like(x)
        codes, losses = [], []
        for layer in self.layers:
            q, c, loss = layer(residual)
            q = q.detach()
            residual = residual - q
            total = total + q
            codes.append(c)
            losses.append(loss)
        if self.training:
            total = x + (total - x).detach()  # straight-through for the whole stack
        return total, torch.stack(codes, dim=1), torch.stack(losses)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T] -> codes [B, K, T]."""
        residual = x
        codes = []
        for layer in self.layers:
            c = layer.encode(residual)
            residual = residual - layer.decode(c)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K, T] (K <= number of layers) -> [B, D, T]."""
        out = self.layers[0].decode(codes[:, 0])
        for k in range(1, codes.shape[1]):
            out = out + self.layers[k].decode(codes[:, k])
        return out


class ResidualVectorQuantizer(nn.Module):
    """Residual VQ with `n_q` EMA codebooks of `bins` entries of size `dimension` (no dropout)."""

    def __init__(
        self,
        dimension: int,
        n_q: int,
        bins: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        threshold_ema_dead_code: float = 2.0,
        commitment_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.dimension = dimension
        self.n_q = n_q
        self.bins = bins
        self.vq = ResidualVQStack(
            n_q,
            dim=dimension,
            bins=bins,
            commitment_weight=commitment_weight,
            decay=decay,
            epsilon=epsilon,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
        )

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """latent: [B, D, T] -> (quantized [B, D, T], codes [B, n_q, T], commit_loss [] (mean of layers))."""
        quantized, codes, losses = self.vq(latent)
        return quantized, codes, losses.mean()

    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent: [B, D, T] -> codes [B, n_q, T] (int64)."""
        return self.vq.encode(latent)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K, T] -> quantized latent [B, D, T]."""
        return self.vq.decode(codes)
