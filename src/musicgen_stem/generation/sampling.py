"""Sampling parameters and next-token selection (greedy, temperature, top-k, top-p, CFG)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import GenerationError


@dataclass
class SamplingParams:
    """How tokens are chosen. `use_sampling=False` is greedy (argmax).

    greedy_streams: streams always chosen by argmax. For streams the LM does not read back (a zero
    embedding, as `mini`'s bass attack and other third codebooks, grown after its LM was trained),
    a draw per frame is noise that no later step sees: frame-to-frame flicker in the decoded audio.
    chord_guide: how far (in logits) codes that play notes outside the chord sounding are lowered,
    where the chords are known and the codes name pitches (`generation.harmony`); 0: off.
    """

    use_sampling: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0
    greedy_streams: tuple[int, ...] = ()
    chord_guide: float = 0.0

    def __post_init__(self) -> None:
        self.greedy_streams = tuple(self.greedy_streams)  # config.json gives a list

    def validate(self, card: int, num_streams: int | None = None) -> None:
        if not self.temperature >= 0:
            raise GenerationError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.top_k <= card:
            raise GenerationError(f"top-k must be between 0 (off) and {card}, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise GenerationError(f"top-p must be between 0 (off) and 1, got {self.top_p}")
        if not self.cfg_coef >= 0:
            raise GenerationError(f"the guidance coefficient (--cfg) must be >= 0, got {self.cfg_coef}")
        if not self.chord_guide >= 0:
            raise GenerationError(f"the chord guidance (--chord-guide) must be >= 0, got {self.chord_guide}")
        top = num_streams if num_streams is not None else float("inf")
        if not all(isinstance(k, int) and 0 <= k < top for k in self.greedy_streams):
            below = "" if num_streams is None else f" below {num_streams}"
            got = list(self.greedy_streams)
            raise GenerationError(f"greedy streams must be stream indices{below}, got {got}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guide(cond: torch.Tensor, null: torch.Tensor, coef: float) -> torch.Tensor:
    """Classifier-free guidance: null + coef * (cond - null)."""
    return null + (cond - null) * coef


def _multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of probs [..., card] -> [...]."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose tokens from logits [B, K, card] -> [B, K]. The draws of the sampled streams do not
    depend on `greedy_streams` (every stream is drawn, then those are replaced by their argmax)."""
    if not params.use_sampling or params.temperature == 0:
        return logits.argmax(dim=-1)
    tokens = _draw(logits, params, generator)
    if params.greedy_streams:
        greedy = list(params.greedy_streams)
        tokens[:, greedy] = logits[:, greedy].argmax(dim=-1)
    return tokens


def _draw(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """A draw per stream from logits [B, K, card] at the temperature, within top-k or top-p."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p > 0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(dim=-1) - sorted_p > params.top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        sorted_p = sorted_p / sorted_p.sum(dim=-1, keepdim=True)
        picked = _multinomial(sorted_p, generator)
        return order.gather(-1, picked[..., None])[..., 0]
    if params.top_k > 0:
        kth = probs.topk(params.top_k, dim=-1).values[..., -1:]
        probs = probs * (probs >= kth).float()
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return _multinomial(probs, generator)
