"""Forward symbolic bounds: every neuron between two linear functions of the input.

Backward CROWN (:mod:`.crown`) starts a back-substitution at every neuron it bounds, so its
cost grows with (neurons) x (network size). When the input is low-dimensional, as a
generator's latent code is (10 numbers feeding 2500 neurons), it is far cheaper to carry
forward, for every neuron, a lower and an upper linear function of the input,

    A_l x + b_l  <=  neuron(x)  <=  A_u x + b_u      on the region,

at a cost of about ``2 (input size + 1)`` forward passes. Affine layers map the pair exactly
(positive weights take the lower function for the lower bound, negative weights the upper
one); monotone activations go through the same linear relaxations as CROWN
(:func:`.linearize.relax_elementwise`), built from concretised bounds. Each concretised
bound is intersected with interval propagation, so it is never looser than interval bounds.

Small values (at most ``backward_rows`` neurons, e.g. the classifier's layers and the output)
are also bounded by backward CROWN with the forward bounds of the layers below, and the
tighter end is kept. Layers without a forward rule (convolutions, pooling) restart the
symbolic functions from their interval bounds, which stays sound but loses precision.
"""

from __future__ import annotations

import math

import torch

from ..errors import InvalidInputError
from ..ir import Dense, ElementwiseAffine, Flatten, Network, Reshape
from ..regions import Region
from .crown import DEFAULT_MAX_ELEMENTS, ROUNDING_SLACK, _Context, _crown_value, _ordered, concretize
from .interval import interval_layer
from .linearize import relax_elementwise

#: Values with at most this many neurons are also bounded by backward CROWN (see module doc).
DEFAULT_BACKWARD_ROWS = 64


class _Symbolic:
    """Lower/upper linear functions of the flat input: coefficients (B or 1, d, n), offsets (B or 1, n).

    The input dimension ``d`` comes before the neurons ``n`` so that a dense layer is one
    matrix product ``(B d, n) x (n, m)``."""

    def __init__(self, a_low, b_low, a_up, b_up) -> None:
        self.a_low, self.b_low, self.a_up, self.b_up = a_low, b_low, a_up, b_up

    @classmethod
    def identity(cls, size: int, like: torch.Tensor) -> "_Symbolic":
        eye = torch.eye(size, dtype=like.dtype, device=like.device)[None]  # (1, d, d)
        zero = torch.zeros(1, size, dtype=like.dtype, device=like.device)
        return cls(eye, zero, eye, zero)

    @classmethod
    def constant(cls, low: torch.Tensor, up: torch.Tensor, size: int) -> "_Symbolic":
        batch = low.shape[0]
        zero = torch.zeros(batch, size, low[0].numel(), dtype=low.dtype, device=low.device)
        return cls(zero, low.reshape(batch, -1), zero, up.reshape(batch, -1))

    def dense(self, weight: torch.Tensor, bias: torch.Tensor) -> "_Symbolic":
        """``W v + c``: W A_l + W^- (A_u - A_l) for the lower function, W A_u - W^- (A_u - A_l) above."""
        negative = weight.clamp(max=0)
        gap_a, gap_b = self.a_up - self.a_low, self.b_up - self.b_low
        shift_a = gap_a @ negative.T
        shift_b = gap_b @ negative.T
        a_low = self.a_low @ weight.T + shift_a
        a_up = self.a_up @ weight.T - shift_a
        b_low = self.b_low @ weight.T + bias + shift_b
        b_up = self.b_up @ weight.T + bias - shift_b
        return _Symbolic(a_low, b_low, a_up, b_up)

    def scale(self, scale: torch.Tensor, shift: torch.Tensor) -> "_Symbolic":
        """Element-wise ``s v + t`` (flat ``s``, ``t``); negative ``s`` swaps the two functions."""
        pos, neg = scale.clamp(min=0), scale.clamp(max=0)
        pos_a, neg_a = pos.unsqueeze(-2), neg.unsqueeze(-2)  # broadcast over the input dimension
        a_low = pos_a * self.a_low + neg_a * self.a_up
        a_up = pos_a * self.a_up + neg_a * self.a_low
        return _Symbolic(a_low, pos * self.b_low + neg * self.b_up + shift, a_up,
                         pos * self.b_up + neg * self.b_low + shift)

    def relax(self, lines) -> "_Symbolic":
        """Through ``al v + bl <= f(v) <= au v + bu`` (lines flat, (B, n))."""
        al, bl, au, bu = lines
        low = _Symbolic(self.a_low, self.b_low, self.a_up, self.b_up).scale(al, bl)
        up = _Symbolic(self.a_low, self.b_low, self.a_up, self.b_up).scale(au, bu)
        return _Symbolic(low.a_low, low.b_low, up.a_up, up.b_up)

    def concretize(self, region: Region) -> tuple[torch.Tensor, torch.Tensor]:
        batch = region.batch_size
        low = concretize(region, self.a_low.transpose(1, 2), self.b_low.expand(batch, -1))
        neg_up = concretize(region, -self.a_up.transpose(1, 2), -self.b_up.expand(batch, -1))
        return low - ROUNDING_SLACK * (1 + low.abs()), -neg_up + ROUNDING_SLACK * (1 + neg_up.abs())


def forward_bounds(network: Network, region: Region, *, backward_rows: int = DEFAULT_BACKWARD_ROWS,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Forward symbolic bounds on the value entering every layer and on the output.

    ``backward_rows``: values of at most this many neurons also get backward CROWN
    (0 turns it off); ``max_elements`` caps one CROWN back-substitution tensor."""
    if not (isinstance(backward_rows, int) and backward_rows >= 0):
        raise InvalidInputError(f"backward_rows must be an int >= 0, got {backward_rows!r}")
    like = region.lower
    size = math.prod(network.input_shape)
    symbolic = _Symbolic.identity(size, like)
    lowers, uppers = [region.lower], [region.upper]
    context = _Context(network, lowers, uppers, like)
    count = len(network.layers)
    for target in range(1, count + 1):
        layer = network.layers[target - 1]
        shape = network.shapes[target]
        batch = region.batch_size
        low, up = interval_layer(layer, lowers[-1], uppers[-1])
        if isinstance(layer, Dense):
            symbolic = symbolic.dense(layer.tensor("weight", like), layer.tensor("bias", like))
        elif isinstance(layer, (Flatten, Reshape)):
            pass  # flat symbolic functions are unchanged by reshaping
        elif isinstance(layer, ElementwiseAffine):
            scale, shift = layer.full(tuple(network.shapes[target - 1]))
            symbolic = symbolic.scale(torch.as_tensor(scale, dtype=like.dtype, device=like.device).reshape(-1),
                                      torch.as_tensor(shift, dtype=like.dtype, device=like.device).reshape(-1))
        elif layer.elementwise and not layer.affine:
            lines = relax_elementwise(layer, lowers[-1].reshape(batch, -1), uppers[-1].reshape(batch, -1))
            symbolic = symbolic.relax(lines)
        else:
            symbolic = None  # no forward rule: restart from this layer's interval bounds below
        if symbolic is not None:
            s_low, s_up = symbolic.concretize(region)
            low = torch.maximum(low, s_low.reshape(batch, *shape))
            up = torch.minimum(up, s_up.reshape(batch, *shape))
        needs_bounds = target == count or not network.layers[target].affine
        if layer.affine and needs_bounds and 0 < math.prod(shape) <= backward_rows:
            c_low, c_up = _crown_value(network, target, region, context, max_elements)
            low, up = torch.maximum(low, c_low), torch.minimum(up, c_up)
        low, up = _ordered(low, up)
        if symbolic is None:
            symbolic = _Symbolic.constant(low, up, size)
        lowers.append(low)
        uppers.append(up)
    return lowers, uppers
