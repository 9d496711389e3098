"""Tensors in memory mappings of their own, so that memory dropped while loading goes back at once."""

from __future__ import annotations

import math
import mmap

import torch

__all__ = ["OWN_MAPPING_BYTES", "fresh_tensor"]

#: Tensors of at least this many bytes get memory mappings of their own (`fresh_tensor`, `_map_tensor`).
OWN_MAPPING_BYTES = 1 << 20


def fresh_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor; one of OWN_MAPPING_BYTES or more lives in an anonymous memory
    mapping of its own, which goes back to the system as soon as the tensor is dropped.

    Allocated by malloc, a tensor below glibc's mmap threshold (which rises up to 32 MiB once a
    large block has been freed, e.g. by converting float16 weights one at a time) lands on the
    heap, and when `pack_for_decoding` replaces the loaded weights by their packed copies, the
    freed heap blocks stay resident: up to +1.6 GB (0.2x the weights) of peak memory for medium.
    """
    numel = math.prod(shape)
    if numel * dtype.itemsize < OWN_MAPPING_BYTES or not hasattr(mmap, "MAP_PRIVATE"):
        return torch.empty(shape, dtype=dtype)
    buffer = mmap.mmap(-1, numel * dtype.itemsize, flags=mmap.MAP_PRIVATE)  # anonymous, private
    return torch.frombuffer(buffer, dtype=dtype, count=numel).view(shape)
