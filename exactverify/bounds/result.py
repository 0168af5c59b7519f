"""The result of a bound computation: sound boxes on every intermediate value."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..ir import LeakyReLU, Network, ReLU


@dataclass(frozen=True)
class Stability:
    """ReLU stability counts of one ReLU/LeakyReLU layer, one entry per region of the batch."""

    layer: int
    active: torch.Tensor  # (B,) lower >= 0: the unit is the identity on the region
    inactive: torch.Tensor  # (B,) upper <= 0: the unit is constant (zero) on the region
    unstable: torch.Tensor  # (B,) lower < 0 < upper: needs a binary in the MILP


@dataclass(frozen=True)
class BoundsResult:
    """Sound lower/upper bounds on every value of ``network`` over a batch of regions.

    ``lower[i]``/``upper[i]`` bound the value *entering* layer ``i`` (shape
    ``(B, *network.shapes[i])``): index 0 is the input box, index ``len(network)`` the
    output. For an activation layer ``i`` these are its pre-activation bounds.
    """

    network: Network
    method: str
    lower: tuple[torch.Tensor, ...]
    upper: tuple[torch.Tensor, ...]
    seconds: float = 0.0
    stability: tuple[Stability, ...] = field(init=False)

    def __post_init__(self) -> None:
        counts = []
        for index, layer in enumerate(self.network.layers):
            if isinstance(layer, (ReLU, LeakyReLU)):
                low = self.lower[index].reshape(self.lower[index].shape[0], -1)
                up = self.upper[index].reshape(low.shape)
                counts.append(Stability(
                    index,
                    (low >= 0).sum(1),
                    (up <= 0).sum(1),
                    ((low < 0) & (up > 0)).sum(1),
                ))
        object.__setattr__(self, "stability", tuple(counts))

    @property
    def batch_size(self) -> int:
        return int(self.lower[0].shape[0])

    def pre_activation(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds of the value entering layer ``layer``."""
        return self.lower[layer], self.upper[layer]

    @property
    def output(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower[-1], self.upper[-1]

    def unstable_per_layer(self) -> list[int]:
        """Unstable ReLUs per ReLU layer, summed over the batch."""
        return [int(s.unstable.sum()) for s in self.stability]

    def region(self, index: int) -> "BoundsResult":
        """The bounds of one region of the batch (kept as a batch of one)."""
        pick = slice(index, index + 1)
        return BoundsResult(
            self.network, self.method,
            tuple(t[pick] for t in self.lower), tuple(t[pick] for t in self.upper), self.seconds,
        )
