"""Shared pieces of the graph loaders: a layer-chain builder and constant handling.

Both the torch.fx and the ONNX loader walk a graph that must be a chain (one network
tensor flowing from the input to the output) and translate each node into zero or more IR
layers. :class:`ChainBuilder` collects those layers, folds an affine map into the
Dense/Conv2d layer right before it (batch norm, MatMul + Add), merges consecutive
element-wise affines and drops identities; it also collects every unsupported node so
that one :class:`UnsupportedLayerError` can list them all.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInputError, ShapeMismatchError, UnsupportedLayerError
from ..ir import ElementwiseAffine, Flatten, Layer, Network, Reshape, Shape
from ..transforms import fold_into_previous, is_identity, merge_affine


class Unsupported(Exception):
    """Raised inside a node handler: the node cannot be represented (reason in the message)."""


class OperandMismatch(Exception):
    """Raised inside a node handler: the node's constant operands do not fit its input shape."""


class ChainBuilder:
    """Accumulates IR layers for a chain, tracking the per-sample shape."""

    def __init__(self, input_shape: Shape, source: str) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.source = source
        self.layers: list[Layer] = []
        self.shapes: list[Shape] = [self.input_shape]
        self.unsupported: list[tuple[str, str]] = []

    @property
    def shape(self) -> Shape:
        return self.shapes[-1]

    def convert(self, name: str, kind: str, handler) -> list[Layer] | None:
        """Run ``handler()`` for node ``name`` and add the layers it returns.

        Returns those layers, or None when the node is unsupported (recorded, so that the
        walk can go on and find every other unsupported node). Invalid parameters (NaN
        weights, ...) are re-raised naming the node, and so are weights whose shape does
        not fit the node's input (:class:`OperandMismatch`, as a ShapeMismatchError).
        """
        try:
            layers = list(handler())
            if not self.unsupported:  # after a failure the chain is no longer meaningful
                for layer in layers:
                    self.add(layer)
            return layers
        except OperandMismatch as exc:
            raise ShapeMismatchError(f"{self.source}: layer {name!r} ({kind}): {exc}") from exc
        except (Unsupported, ShapeMismatchError) as exc:
            self.unsupported.append((name, f"{kind}: {exc}" if str(exc) else kind))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{self.source}: layer {name!r} ({kind}): {exc}") from exc
        return None

    def mark_unsupported(self, name: str, kind: str) -> None:
        self.unsupported.append((name, kind))

    def add(self, layer: Layer) -> None:
        """Append ``layer``, folding/merging element-wise affines with the previous layer."""
        shape = tuple(layer.output_shape(self.shape))
        if is_identity(layer, self.shape):
            return
        if isinstance(layer, ElementwiseAffine) and self.layers:
            previous = self.layers[-1]
            if isinstance(previous, ElementwiseAffine):
                self._replace_last(merge_affine(previous, layer))
                return
            folded = fold_into_previous(previous, layer, self.shape)
            if folded is not None:
                self._replace_last(folded)
                return
        if isinstance(layer, (Flatten, Reshape)) and self.layers and isinstance(self.layers[-1], (Flatten, Reshape)):
            self.layers.pop()
            self.shapes.pop()
            if is_identity(layer, self.shape):
                return
        self.layers.append(layer)
        self.shapes.append(shape)

    def _replace_last(self, layer: Layer) -> None:
        self.layers.pop()
        self.shapes.pop()
        if not is_identity(layer, self.shape):
            self.layers.append(layer)
            self.shapes.append(tuple(layer.output_shape(self.shape)))

    def finish(self, name: str, input_domain=None) -> Network:
        """The network, or one UnsupportedLayerError naming every unsupported node."""
        if self.unsupported:
            raise UnsupportedLayerError(self.unsupported, source=self.source)
        return Network(self.input_shape, tuple(self.layers), input_domain, name)


def check_variance(var, eps: float) -> None:
    """Refuse batch-norm statistics whose ``var + eps`` is not positive (the scale would be NaN)."""
    var = np.asarray(var, dtype=np.float64)
    bad = var + float(eps) <= 0
    if np.any(bad):
        raise InvalidInputError(
            f"negative variance: {int(bad.sum())} channel(s) have variance + epsilon <= 0 "
            f"(smallest variance {float(var.min()):g}, epsilon {float(eps):g})"
        )


def reshape_layers(in_shape: Shape, out_shape: Shape) -> list[Layer]:
    """The IR layers for a per-sample reshape (none, a Flatten, or a Reshape)."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if math.prod(in_shape) != math.prod(out_shape):
        raise Unsupported(f"changes the per-sample size from {in_shape} to {out_shape} (mixes the batch dimension?)")
    if in_shape == out_shape:
        return []
    return [Flatten()] if len(out_shape) == 1 else [Reshape(out_shape)]


def sample_constant(value, sample_shape: Shape) -> np.ndarray:
    """A constant operand as an array that broadcasts to one sample of ``sample_shape``.

    Constants written against the batched tensor (e.g. a mean of shape (1, C, 1, 1)) lose
    their leading unit dimensions. Constants that would broadcast the sample to another
    shape, or that vary along the batch dimension, are unsupported.
    """
    array = np.array(value, dtype=np.float64)
    extra = array.ndim - len(sample_shape)
    if extra > 0:
        if any(d != 1 for d in array.shape[:extra]):
            raise Unsupported(f"constant of shape {array.shape} varies along the batch dimension")
        array = array.reshape(array.shape[extra:])
    try:
        if tuple(np.broadcast_shapes(tuple(sample_shape), array.shape)) != tuple(sample_shape):
            raise Unsupported(f"constant of shape {array.shape} would change the tensor shape {tuple(sample_shape)}")
    except ValueError as exc:
        raise Unsupported(f"constant of shape {array.shape} does not broadcast to {tuple(sample_shape)}") from exc
    return array


def arithmetic_layer(op: str, const, sample_shape: Shape, data_first: bool) -> ElementwiseAffine:
    """``x op c`` (or ``c op x``) with a constant ``c`` as an ElementwiseAffine.

    ``op`` is one of ``add``, ``sub``, ``mul``, ``div``; ``c / x`` is not affine.
    """
    c = sample_constant(const, sample_shape)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == "add":
        return ElementwiseAffine(one, c)
    if op == "sub":
        return ElementwiseAffine(one, -c) if data_first else ElementwiseAffine(-one, c)
    if op == "mul":
        return ElementwiseAffine(c, zero)
    if op == "div":
        if not data_first:
            raise Unsupported("constant divided by the network tensor is not affine")
        if np.any(c == 0):
            raise Unsupported("division by a constant containing zeros")
        return ElementwiseAffine(1.0 / c, zero)
    raise Unsupported(f"arithmetic operator {op!r}")


def clamp_layers(low: float | None, high: float | None) -> list[Layer]:
    """``clamp(x, low, high)`` with either side optional, as exact IR layers.

    ``max(x, a) = relu(x - a) + a`` and ``min(x, b) = b - relu(b - x)``.
    """
    from ..ir import Clamp, ReLU

    low = None if low is None or low == -math.inf else float(low)
    high = None if high is None or high == math.inf else float(high)
    if low is not None and high is not None:
        return [Clamp(low, high)]
    if low is not None:
        return [ElementwiseAffine(1.0, -low), ReLU(), ElementwiseAffine(1.0, low)]
    if high is not None:
        return [ElementwiseAffine(-1.0, high), ReLU(), ElementwiseAffine(-1.0, high)]
    return []
