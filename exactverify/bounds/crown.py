"""CROWN/DeepPoly backward linear bounds, batched over regions, in public torch.

For every value that enters a non-affine layer (and for the output) the bound on each
neuron is found by back-substitution: start from the neuron as a linear function of
that value, walk the layers backwards (affine layers exactly, non-affine layers through
the linear relaxations of :mod:`.linearize` built from their already computed bounds)
down to a linear function ``a . x + d`` of the input, and minimise it over the region:
box and L-infinity boxes by centre/radius, L1 balls exactly (a fractional knapsack, see
:func:`concretize`). Lower and upper bounds are both computed as minima, the upper one
of the negated neuron. Every result is intersected with interval propagation of the
previous value's bounds, so it is never looser than interval bounds.

The coefficient tensor has shape (batch, rows, *value shape); it is kept with batch 1
while only affine layers have been crossed and is chunked over regions and neurons so
that one such tensor holds at most ``max_elements`` numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..ir import AvgPool2d, Conv2d, Dense, ElementwiseAffine, Flatten, Layer, MaxPool2d, Network, Reshape
from ..regions import Region
from .interval import interval_layer
from .linearize import MaxPoolRelaxation, maxpool_relaxation, relax_elementwise

#: Default cap on the entries of one back-substitution tensor (2**24 float64 = 128 MiB);
#: with the few temporaries of one step, peak memory stays well below 1 GiB.
DEFAULT_MAX_ELEMENTS = 2**24

#: Outward slack on every back-substituted bound, relative to ``1 + |bound|``: covers the
#: float64 rounding of the matrix products and sums (each exact to ~1e-16 relative).
ROUNDING_SLACK = 1e-10


def _t(array, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(array, dtype=like.dtype, device=like.device)  # copies: IR arrays are read-only


def _bias_of(coef: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``sum over value dims of coef * shift``: (Ba, M, *s) x (Bs or none, *s) -> (Ba', M)."""
    batch, rows = coef.shape[0], coef.shape[1]
    flat = coef.reshape(batch, rows, -1)
    if shift.dim() == coef.dim() - 2:  # no batch dimension
        return flat @ shift.reshape(-1)
    shift = shift.reshape(shift.shape[0], -1, 1)
    return torch.matmul(flat, shift).squeeze(-1)


# ------------------------------------------------------------------ backward steps
def affine_params(layer: Layer, in_shape, like: torch.Tensor) -> dict:
    """The tensors ``backward_affine`` needs for ``layer``, on ``like``'s device (convert once)."""
    if isinstance(layer, Dense):
        return {"weight": _t(layer.weight, like), "bias": _t(layer.bias, like)}
    if isinstance(layer, (Conv2d, AvgPool2d)):
        conv = layer if isinstance(layer, Conv2d) else layer.as_conv(in_shape[0])
        return {"conv": conv, "weight": _t(conv.weight, like), "bias": _t(conv.bias, like)}
    if isinstance(layer, ElementwiseAffine):
        scale, shift = layer.full(tuple(in_shape))
        return {"scale": _t(scale, like), "shift": _t(shift, like)}
    return {}


def _conv_backward(conv: Conv2d, weight: torch.Tensor, coef: torch.Tensor, in_shape) -> torch.Tensor:
    """Transpose of the linear part of ``conv`` applied to every row of ``coef``; the
    ``output_padding`` restores the input rows/columns the forward stride skipped."""
    batch, rows = coef.shape[:2]
    out_shape = coef.shape[2:]
    kh, kw = conv.weight.shape[2:]
    pads = []
    for axis, k in enumerate((kh, kw)):
        covered = ((out_shape[axis + 1] - 1) * conv.stride[axis] - 2 * conv.padding[axis]
                   + conv.dilation[axis] * (k - 1) + 1)
        pads.append(in_shape[axis + 1] - covered)
    flat = coef.reshape(batch * rows, *out_shape)
    back = F.conv_transpose2d(flat, weight, None, conv.stride, conv.padding, tuple(pads), conv.groups, conv.dilation)
    return back.reshape(batch, rows, *in_shape)


def backward_affine(layer: Layer, params: dict, coef: torch.Tensor, bias: torch.Tensor, in_shape) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Express ``coef . layer(x) + bias`` as ``coef' . x + bias'`` (exact); ``params`` from
    :func:`affine_params`."""
    batch, rows = coef.shape[:2]
    if isinstance(layer, Dense):
        return coef @ params["weight"], bias + coef @ params["bias"]
    if isinstance(layer, (Conv2d, AvgPool2d)):
        shift = coef.sum(dim=(-2, -1)) @ params["bias"]
        return _conv_backward(params["conv"], params["weight"], coef, in_shape), bias + shift
    if isinstance(layer, ElementwiseAffine):
        return coef * params["scale"], bias + _bias_of(coef, params["shift"])
    if isinstance(layer, (Flatten, Reshape)):
        return coef.reshape(batch, rows, *in_shape), bias
    raise NotImplementedError(f"CROWN does not support affine layer {layer.kind}")


def backward_elementwise(lines, coef: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower-bound ``coef . f(x) + bias`` by a linear function of ``x``: positive
    coefficients take the lower line, negative ones the upper line."""
    al, bl, au, bu = (t.unsqueeze(1) for t in lines)
    positive = coef >= 0
    new = torch.where(positive, al, au).mul_(coef)  # fresh tensors, updated in place: fewer allocations
    shift = torch.where(positive, bl, bu).mul_(coef)
    return new, bias + shift.reshape(shift.shape[0], shift.shape[1], -1).sum(-1)


def backward_maxpool(relax: MaxPoolRelaxation, coef: torch.Tensor, bias: torch.Tensor, in_shape) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Lower-bound ``coef . maxpool(x) + bias``: positive coefficients (and dominated
    windows) go to the input with the largest lower bound, negative ones of undecided
    windows to the constant max of the upper bounds."""
    batch = relax.index.shape[0]
    rows = coef.shape[1]
    flat = coef.reshape(coef.shape[0], rows, -1).expand(batch, rows, -1)
    to_input = (flat >= 0) | relax.dominated.unsqueeze(1)
    moved = torch.where(to_input, flat, torch.zeros_like(flat))
    new = torch.zeros(batch, rows, math.prod(in_shape), dtype=coef.dtype, device=coef.device)
    new.scatter_add_(2, relax.index.unsqueeze(1).expand(batch, rows, -1), moved)
    shift = ((flat - moved) * relax.upper.unsqueeze(1)).sum(-1)
    return new.reshape(batch, rows, *in_shape), bias + shift


# ------------------------------------------------------------------ concretisation
def _apply(coef: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``coef (Ba, M, n) . vector (B, n) -> (B, M)`` with Ba in {1, B}."""
    if coef.shape[0] == 1:
        return (vector @ coef[0].T)
    return torch.bmm(coef, vector.unsqueeze(-1)).squeeze(-1)


def concretize(region: Region, coef: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Minimum of ``coef . x + bias`` over each region, shape (B, M).

    Box / L-infinity: ``coef . mid - |coef| . radius``. L1 ball ``||x - c||_1 <= eps``
    within the box ``[lower, upper]``: moving coordinate ``i`` away from ``c`` lowers the
    objective by ``|a_i|`` per unit up to its box limit, so the exact minimum spends the
    budget ``eps`` greedily on the largest ``|a_i|`` first (a fractional knapsack, via a
    sort and a cumulative sum). This is at least as tight as ``a . c - eps ||a||_inf``.
    """
    batch = region.batch_size
    rows = coef.shape[1]
    flat = coef.reshape(coef.shape[0], rows, -1)
    low, up = region.lower.reshape(batch, -1), region.upper.reshape(batch, -1)
    if region.norm != "l1":
        value = _apply(flat, (low + up) / 2)
        return value - _apply(flat.abs(), (up - low) / 2) + bias
    center = region.center.reshape(batch, -1)
    flat = flat.expand(batch, rows, -1)
    room = torch.where(flat > 0, (center - low).unsqueeze(1), (up - center).unsqueeze(1)).clamp_min(0)
    size, order = flat.abs().sort(dim=-1, descending=True)
    room = room.gather(-1, order)
    before = room.cumsum(-1) - room
    spent = torch.minimum((region.eps.reshape(batch, 1, 1) - before).clamp_min(0), room)
    return _apply(flat, center) - (size * spent).sum(-1) + bias


# ------------------------------------------------------------------ driver
class _Context:
    """Per-call state: the network, its final bounds so far, and what is built from them
    once (relaxations of non-affine layers, affine parameters as tensors), by layer index."""

    def __init__(self, network: Network, lowers, uppers, like: torch.Tensor) -> None:
        self.network, self.lowers, self.uppers, self.like = network, lowers, uppers, like
        self.relaxations: dict[int, object] = {}
        self.params: dict[int, dict] = {}

    def relaxation(self, index: int):
        if index not in self.relaxations:
            layer = self.network.layers[index]
            low, up = self.lowers[index], self.uppers[index]
            if isinstance(layer, MaxPool2d):
                self.relaxations[index] = maxpool_relaxation(layer, self.network.shapes[index], low, up)
            else:
                self.relaxations[index] = relax_elementwise(layer, low, up)
        return self.relaxations[index]

    def affine(self, index: int) -> dict:
        if index not in self.params:
            self.params[index] = affine_params(self.network.layers[index], self.network.shapes[index], self.like)
        return self.params[index]


def _pick(relax, batch: slice):
    if isinstance(relax, MaxPoolRelaxation):
        return MaxPoolRelaxation(relax.index[batch], relax.dominated[batch], relax.upper[batch], relax.lower[batch])
    return tuple(t[batch] for t in relax)


def _start(network: Network, target: int, rows: slice, context: _Context) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Rows ``+e_k`` and ``-e_k`` for neurons ``rows`` of value ``target``, carried back
    through the affine layers just below it (batch-free); returns the value index reached."""
    like = context.like
    count = rows.stop - rows.start
    eye = torch.zeros(count, math.prod(network.shapes[target]), dtype=like.dtype, device=like.device)
    eye[torch.arange(count, device=like.device), torch.arange(rows.start, rows.stop, device=like.device)] = 1.0
    coef = torch.cat([eye, -eye]).reshape(1, 2 * count, *network.shapes[target])
    bias = torch.zeros(1, 2 * count, dtype=like.dtype, device=like.device)
    index = target
    while index > 0 and network.layers[index - 1].affine:
        index -= 1
        coef, bias = backward_affine(network.layers[index], context.affine(index), coef, bias, network.shapes[index])
    return coef, bias, index


def _finish(network: Network, coef: torch.Tensor, bias: torch.Tensor, reached: int, region: Region,
            context: _Context, batch: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry ``coef . value[reached] + bias`` back to the input for regions ``batch`` and
    concretise; rows are ``[+e; -e]`` so the result splits into lower and upper bounds."""
    for index in range(reached - 1, -1, -1):
        layer = network.layers[index]
        in_shape = network.shapes[index]
        if layer.affine:
            coef, bias = backward_affine(layer, context.affine(index), coef, bias, in_shape)
        elif isinstance(layer, MaxPool2d):
            coef, bias = backward_maxpool(_pick(context.relaxation(index), batch), coef, bias, in_shape)
        else:
            coef, bias = backward_elementwise(_pick(context.relaxation(index), batch), coef, bias)
    value = concretize(region[batch], coef, bias)
    count = value.shape[1] // 2
    low, neg_up = value[:, :count], value[:, count:]
    return low - ROUNDING_SLACK * (1 + low.abs()), -neg_up + ROUNDING_SLACK * (1 + neg_up.abs())


def _ordered(low: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sound enclosures of a (near-)constant value may cross by rounding; keep both ends."""
    return torch.minimum(low, up), torch.maximum(low, up)


def _chunks(total: int, step: int):
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def _crown_value(network: Network, target: int, region: Region, context: _Context,
                 max_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substituted bounds of every neuron of value ``target``, chunked over neurons
    (outer) and regions (inner) so one coefficient tensor has at most ``max_elements``."""
    batch = region.batch_size
    size = math.prod(network.shapes[target])
    per_row = 2 * max(math.prod(network.shapes[i]) for i in range(target + 1))  # lower and upper row
    if region.norm == "l1":  # the knapsack's sort keeps about twice as many temporaries alive
        max_elements = max(1, max_elements // 2)
    row_step = min(size, max(1, max_elements // per_row))
    batch_step = max(1, max_elements // (row_step * per_row))
    lows, ups = [], []
    for rows in _chunks(size, row_step):
        coef, bias, reached = _start(network, target, rows, context)
        parts = [_finish(network, coef, bias, reached, region, context, part) for part in _chunks(batch, batch_step)]
        lows.append(torch.cat([p[0] for p in parts]))
        ups.append(torch.cat([p[1] for p in parts]))
    shape = (batch, *network.shapes[target])
    return torch.cat(lows, dim=1).reshape(shape), torch.cat(ups, dim=1).reshape(shape)


def apply_splits(low: torch.Tensor, up: torch.Tensor, split: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Restrict bounds to a ReLU split: +1 neurons are >= 0 on the sub-domain, -1 neurons <= 0."""
    low = torch.where(split > 0, low.clamp_min(0.0), low)
    up = torch.where(split < 0, up.clamp_max(0.0), up)
    return low, up


def crown_bounds(network: Network, region: Region, *, max_elements: int = DEFAULT_MAX_ELEMENTS,
                 splits: dict[int, torch.Tensor] | None = None,
                 known: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> tuple[
        list[torch.Tensor], list[torch.Tensor]]:
    """CROWN bounds on the value entering every layer and on the output (see module doc).

    ``max_elements`` caps the size of one back-substitution tensor (memory knob).
    ``splits`` (branch and bound on ReLUs) maps a value index to a tensor of that value's
    batched shape holding +1 (neuron >= 0), -1 (neuron <= 0) or 0 (free): the bounds are
    those of the sub-domain of the region where the split neurons have these signs. Where
    a split contradicts the region, its bounds come back crossed (``lower > upper``): the
    sub-domain is empty (see :func:`empty_subdomains`).
    ``known`` holds bounds already proved for every value on a region that contains each
    of these (e.g. a parent's alpha-CROWN bounds); they are intersected in layer by layer,
    so every later relaxation uses the tighter of the two.
    """
    if not isinstance(max_elements, int) or max_elements < 1:
        raise InvalidInputError(f"max_elements must be a positive int, got {max_elements!r}")
    splits = splits or {}
    for index, split in splits.items():
        if not 1 <= index <= len(network.layers) or tuple(split.shape) != (region.batch_size, *network.shapes[index]):
            raise InvalidInputError(f"splits[{index}] must be a value index with shape "
                                    f"(batch, *value shape); got shape {tuple(split.shape)}")
    lowers, uppers = [region.lower], [region.upper]
    context = _Context(network, lowers, uppers, region.lower)
    count = len(network.layers)
    for target in range(1, count + 1):
        previous = network.layers[target - 1]
        low, up = interval_layer(previous, lowers[-1], uppers[-1])
        needs_bounds = target == count or not network.layers[target].affine
        if previous.affine and needs_bounds:
            c_low, c_up = _crown_value(network, target, region, context, max_elements)
            low, up = torch.maximum(low, c_low), torch.minimum(up, c_up)
            low, up = _ordered(low, up)
        if known is not None:  # two sound enclosures: only rounding can make them cross
            low, up = _ordered(torch.maximum(low, known[0][target]), torch.minimum(up, known[1][target]))
        if target in splits:
            low, up = apply_splits(low, up, splits[target])
        lowers.append(low)
        uppers.append(up)
    return lowers, uppers


def empty_subdomains(lowers, uppers) -> torch.Tensor:
    """(B,) bool: regions whose bounds crossed somewhere, i.e. split sub-domains with no point."""
    crossed = [(low > up).reshape(low.shape[0], -1).any(1) for low, up in zip(lowers, uppers, strict=True)]
    return torch.stack(crossed, 1).any(1)
