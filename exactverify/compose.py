"""Composition of a generator and a classifier into one network C∘G.

Queries over a generator's latent space (e.g. "is every generated digit classified as a
7?") need the classifier applied to the generator's output as one network, so that bounds
and encoders see a single chain of layers. An optional affine map ``between`` adapts the
generator's range to the classifier's input range, e.g. ``(g + 1) / 2`` maps tanh output
in [-1, 1] to pixels in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InvalidInputError, ShapeMismatchError
from .ir import ElementwiseAffine, Layer, Network, Shape
from .loaders import load
from .loaders._chain import reshape_layers


def _as_network(model) -> Network:
    """``model`` as a Network: Networks pass through, anything else goes to :func:`load`."""
    return model if isinstance(model, Network) else load(model)


def _load_classifier(classifier, feed_shape: Shape) -> Network:
    """Load the classifier, inferring its input shape from what feeds it when needed."""
    if isinstance(classifier, Network):
        return classifier
    try:
        return load(classifier)
    except InvalidInputError as exc:
        if "input_shape is required" not in str(exc):
            raise
    return load(classifier, feed_shape)


def _between_layers(between) -> tuple[list[Layer], Shape | None]:
    """The layers of ``between`` and the input shape it requires (None: any broadcastable shape)."""
    if between is None:
        return [], None
    if isinstance(between, ElementwiseAffine):
        return [between], None
    if isinstance(between, Network):
        not_affine = [layer.kind for layer in between.layers if not layer.affine]
        if not_affine:
            raise InvalidInputError(f"between must consist of affine layers; it contains {', '.join(not_affine)}")
        return list(between.layers), between.input_shape
    if isinstance(between, (tuple, list)) and len(between) == 2:
        scale, shift = between
        return [ElementwiseAffine(np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64))], None
    raise InvalidInputError(
        "between must be None, an ElementwiseAffine, a (scale, shift) pair or a Network of affine layers, "
        f"got {type(between).__name__}"
    )


def _connect(layers: list[Layer], from_shape: Shape, to_shape: Shape, what: str) -> None:
    """Append a Reshape from ``from_shape`` to ``to_shape`` when sizes agree; raise otherwise."""
    if math.prod(from_shape) != math.prod(to_shape):
        raise ShapeMismatchError(
            f"compose: {what}: shape {tuple(from_shape)} ({math.prod(from_shape)} values) cannot feed "
            f"shape {tuple(to_shape)} ({math.prod(to_shape)} values)"
        )
    layers.extend(reshape_layers(from_shape, to_shape))


def _output_shape(layers: list[Layer], shape: Shape) -> Shape:
    for layer in layers:
        shape = tuple(layer.output_shape(shape))
    return shape


def compose(generator, classifier, between=None, *, name: str | None = None) -> Network:
    """The network ``x -> classifier(between(generator(x)))`` with the generator's input domain.

    ``generator``/``classifier``: Networks or anything :func:`exactverify.load` accepts
    (a torch classifier whose input shape cannot be inferred gets the generator's output
    shape). ``between``: None, an ElementwiseAffine, a ``(scale, shift)`` pair, or a
    Network of affine layers. A Reshape is inserted where shapes differ but sizes agree;
    otherwise ShapeMismatchError.
    """
    gen = _as_network(generator)
    middle, middle_shape = _between_layers(between)
    layers: list[Layer] = list(gen.layers)
    shape = gen.output_shape
    if middle and middle_shape is not None:
        _connect(layers, shape, middle_shape, "generator output -> between input")
        shape = middle_shape
    if middle and middle_shape is None:
        feed_shape = shape
    else:
        feed_shape = _output_shape(middle, shape)
    cls = _load_classifier(classifier, feed_shape)
    if middle and middle_shape is None:
        # an element-wise map applies at the generator output, or else at the classifier input
        try:
            shape = _output_shape(middle, shape)
        except ShapeMismatchError:
            _connect(layers, shape, cls.input_shape, "generator output -> classifier input")
            shape = cls.input_shape
            try:
                shape = _output_shape(middle, shape)
            except ShapeMismatchError as exc:
                raise ShapeMismatchError(f"compose: between does not fit the generator output: {exc}") from exc
    elif middle:
        shape = _output_shape(middle, shape)
    layers.extend(middle)
    _connect(layers, shape, cls.input_shape, "generator output -> classifier input")
    layers.extend(cls.layers)
    return Network(gen.input_shape, tuple(layers), gen.input_domain, name or f"{cls.name}∘{gen.name}")
