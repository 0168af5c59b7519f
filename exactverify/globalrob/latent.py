"""Latent samples for a generator: standard normal noise, reproducible by seed, on any device.

Fijalkow and Gupta draw the latent code of their generators from N(0, I); so does every
sampler in this package. Batches are drawn from one seeded torch generator on the CPU and
then moved, so the same seed gives the same samples on CPU and CUDA.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError


def latent_stream(seed: int) -> torch.Generator:
    """A seeded CPU random stream for :func:`sample_latent`."""
    if not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def sample_latent(count: int, dim: int, stream: torch.Generator, device="cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``count`` draws of N(0, I_dim), shape (count, dim), on ``device``."""
    if not (isinstance(count, int) and count >= 0):
        raise InvalidInputError(f"count must be a non-negative int, got {count!r}")
    if not (isinstance(dim, int) and dim >= 1):
        raise InvalidInputError(f"latent dim must be a positive int, got {dim!r}")
    return torch.randn(count, dim, generator=stream, dtype=torch.float64).to(device=device, dtype=dtype)


def latent_dim_of(generator: torch.nn.Module) -> int:
    """The input width of ``generator``: the ``in_features`` of its first Linear layer."""
    for module in generator.modules():
        if isinstance(module, torch.nn.Linear):
            return int(module.in_features)
    raise InvalidInputError("cannot infer the latent dimension: the generator has no nn.Linear layer")
