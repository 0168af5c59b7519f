"""Random small affine distortions of digit images (rotation, shear, shift) for augmented training.

The augmented classifiers of Fijalkow and Gupta are trained on rotated, sheared and
shifted digits. There is no torchvision here, so the warp is ``affine_grid`` +
``grid_sample`` (bilinear, zero padding: the digits' background is 0). Parameters are
drawn uniformly per image from a seeded torch generator, so an augmented test set is
reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError

#: Defaults for MNIST: rotation +-15 degrees, shear factor +-0.2, shift +-2 pixels.
MAX_ROTATION_DEG = 15.0
MAX_SHEAR = 0.2
MAX_SHIFT_PX = 2.0


def _uniform(count: int, half_width: float, stream: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(count, generator=stream, dtype=torch.float64) * 2.0 - 1.0) * half_width


def affine_matrices(rotation_deg: torch.Tensor, shear: torch.Tensor, shift_px: torch.Tensor, side: int) -> torch.Tensor:
    """The (N, 2, 3) ``affine_grid`` matrices for per-image rotation, shear and shift (in pixels).

    ``shift_px`` is (N, 2); a shift of ``d`` pixels is ``2 d / side`` in normalised coordinates."""
    angle = rotation_deg * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.zeros_like(rotation)
    shearing[:, 0, 0] = 1.0
    shearing[:, 1, 1] = 1.0
    shearing[:, 0, 1] = shear
    linear = rotation @ shearing
    return torch.cat([linear, (2.0 * shift_px / side).unsqueeze(-1)], dim=-1)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Apply the (N, 2, 3) matrices ``theta`` to images (N, H*W flat with H = W, or N, 1, H, W)."""
    flat = images.dim() == 2
    if flat:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise InvalidInputError(f"images: flat rows must hold a square image, got {images.shape[1]} pixels")
        batch = images.reshape(-1, 1, side, side)
    elif images.dim() == 4:
        batch = images
    else:
        raise InvalidInputError(f"images must be (N, H*W) or (N, C, H, W), got shape {tuple(images.shape)}")
    theta = theta.to(dtype=batch.dtype, device=batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(images.shape) if flat else out


def random_affine(images: torch.Tensor, stream: torch.Generator | None = None,
                  max_rotation_deg: float = MAX_ROTATION_DEG, max_shear: float = MAX_SHEAR,
                  max_shift_px: float = MAX_SHIFT_PX) -> torch.Tensor:
    """Each image rotated, sheared and shifted by amounts drawn uniformly in +-the given maxima.

    Shapes are kept (flat rows or N, C, H, W); pixels stay in the input's range up to
    bilinear interpolation (a convex combination, so [0, 1] stays [0, 1])."""
    for name, value in (("max_rotation_deg", max_rotation_deg), ("max_shear", max_shear),
                        ("max_shift_px", max_shift_px)):
        if not (isinstance(value, (int, float)) and value >= 0.0 and math.isfinite(value)):
            raise InvalidInputError(f"{name} must be a finite non-negative number, got {value!r}")
    count = images.shape[0]
    side = images.shape[-1] if images.dim() == 4 else math.isqrt(images.shape[1])
    theta = affine_matrices(
        _uniform(count, max_rotation_deg, stream),
        _uniform(count, max_shear, stream),
        torch.stack([_uniform(count, max_shift_px, stream), _uniform(count, max_shift_px, stream)], -1),
        side,
    )
    return warp(images, theta)
