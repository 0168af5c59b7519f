"""The network IR: a small, immutable description of a feed-forward network.

A :class:`Network` is an input shape (without batch dimension) and a tuple of layers,
each an immutable dataclass holding float64 numpy arrays (made read-only). The float64
forward pass in torch defined here is the reference semantics that every loader is
checked against and that every counterexample is re-checked on.

Layers act on one sample's shape; the forward pass takes a batch ``(B, *shape)``.
Piecewise-linear layers can be encoded exactly by the MILP/SMT encoders; ``Sigmoid``
and ``Tanh`` are marked ``piecewise_linear = False`` so that queries may only relax them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError, ShapeMismatchError

Shape = tuple[int, ...]


def _frozen_array(value, name: str, ndim: int | None = None) -> np.ndarray:
    """Copy ``value`` to a read-only float64 array, refusing NaN/inf and wrong rank."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.array(value, dtype=np.float64, copy=True)
    if ndim is not None and array.ndim != ndim:
        raise ShapeMismatchError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    array.setflags(write=False)
    return array


def _pair(value, name: str, minimum: int | None = None) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair, each entry at least ``minimum`` if given."""
    try:
        pair = (int(value),) * 2 if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be an int or a pair of ints, got {value!r}") from exc
    if len(pair) != 2:
        raise InvalidInputError(f"{name} must be an int or a pair, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value!r}")
    return pair  # type: ignore[return-value]


class Layer:
    """Base class of IR layers: shape inference and the float64 reference forward pass."""

    piecewise_linear: ClassVar[bool] = True
    #: True for layers applied independently to every element (activations).
    elementwise: ClassVar[bool] = False
    #: True for layers that are affine maps (their output is A x + b).
    affine: ClassVar[bool] = False

    def output_shape(self, input_shape: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        return type(self).__name__

    def tensor(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Array attribute ``name`` as a tensor of ``like``'s dtype and device, cached.

        IR arrays are read-only, so one conversion per (dtype, device) suffices.
        """
        cache = self.__dict__.setdefault("_tensors", {})
        key = (name, like.dtype, like.device)
        if key not in cache:
            cache[key] = torch.tensor(getattr(self, name), dtype=like.dtype, device=like.device)
        return cache[key]


# ----------------------------------------------------------------- affine layers
@dataclass(frozen=True, eq=False)
class Dense(Layer):
    """``y = W x + b`` on a flat vector: ``weight`` is (out, in), ``bias`` is (out,)."""

    weight: np.ndarray
    bias: np.ndarray
    affine: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _frozen_array(self.weight, "Dense.weight", 2))
        bias = _frozen_array(self.bias, "Dense.bias", 1)
        if bias.shape[0] != self.weight.shape[0]:
            raise ShapeMismatchError(
                f"Dense.bias has {bias.shape[0]} entries but weight has {self.weight.shape[0]} rows"
            )
        object.__setattr__(self, "bias", bias)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1 or input_shape[0] != self.weight.shape[1]:
            raise ShapeMismatchError(
                f"Dense expects a flat input of size {self.weight.shape[1]}, got shape {input_shape}"
            )
        return (self.weight.shape[0],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.tensor("weight", x).T + self.tensor("bias", x)


@dataclass(frozen=True, eq=False)
class Conv2d(Layer):
    """2-D convolution on (C, H, W) with zero padding, kept as a conv so bounds stay cheap."""

    weight: np.ndarray  # (C_out, C_in / groups, kh, kw)
    bias: np.ndarray  # (C_out,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    affine: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _frozen_array(self.weight, "Conv2d.weight", 4))
        bias = _frozen_array(self.bias, "Conv2d.bias", 1)
        if bias.shape[0] != self.weight.shape[0]:
            raise ShapeMismatchError(
                f"Conv2d.bias has {bias.shape[0]} entries but weight has {self.weight.shape[0]} channels"
            )
        object.__setattr__(self, "bias", bias)
        if min(self.weight.shape) < 1:
            raise InvalidInputError(f"Conv2d.weight must have a kernel of at least 1x1 and at least one "
                                    f"channel, got shape {self.weight.shape}")
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, "Conv2d.padding", 0))
        object.__setattr__(self, "dilation", _pair(self.dilation, "Conv2d.dilation", 1))
        if isinstance(self.groups, bool) or not isinstance(self.groups, (int, np.integer)):
            raise InvalidInputError(f"Conv2d.groups must be an int, got {self.groups!r}")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise InvalidInputError(f"Conv2d.groups={self.groups} does not divide the output channels")

    def output_shape(self, input_shape: Shape) -> Shape:
        c_out, c_in_g, kh, kw = self.weight.shape
        if len(input_shape) != 3 or input_shape[0] != c_in_g * self.groups:
            raise ShapeMismatchError(
                f"Conv2d expects input (C={c_in_g * self.groups}, H, W), got shape {input_shape}"
            )
        _, h, w = input_shape
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise ShapeMismatchError(f"Conv2d kernel does not fit input shape {input_shape}")
        return (c_out, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.tensor("weight", x), self.tensor("bias", x), self.stride, self.padding, self.dilation, self.groups
        )


@dataclass(frozen=True, eq=False)
class ElementwiseAffine(Layer):
    """``y = scale * x + shift`` with arrays broadcastable to the input shape.

    Represents input normalisation ``(x - mean) / std`` and batch-norm layers that could
    not be folded into a neighbouring dense/conv layer.
    """

    scale: np.ndarray
    shift: np.ndarray
    affine: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _frozen_array(self.scale, "ElementwiseAffine.scale"))
        object.__setattr__(self, "shift", _frozen_array(self.shift, "ElementwiseAffine.shift"))

    def output_shape(self, input_shape: Shape) -> Shape:
        try:
            out = np.broadcast_shapes(tuple(input_shape), self.scale.shape, self.shift.shape)
        except ValueError as exc:
            raise ShapeMismatchError(
                f"ElementwiseAffine scale {self.scale.shape} / shift {self.shift.shape} "
                f"do not broadcast to input shape {input_shape}"
            ) from exc
        if tuple(out) != tuple(input_shape):
            raise ShapeMismatchError(
                f"ElementwiseAffine scale/shift would change input shape {input_shape} to {out}"
            )
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.tensor("scale", x) + self.tensor("shift", x)

    def full(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """Scale and shift broadcast to ``shape`` (copies)."""
        return (np.broadcast_to(self.scale, shape).copy(), np.broadcast_to(self.shift, shape).copy())


# ------------------------------------------------------------ shape-only layers
@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """Flatten one sample to a vector (row-major, as torch and ONNX do)."""

    affine: ClassVar[bool] = True

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(math.prod(input_shape)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@dataclass(frozen=True, eq=False)
class Reshape(Layer):
    """Reshape one sample (row-major) to ``shape``."""

    shape: tuple[int, ...]
    affine: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def output_shape(self, input_shape: Shape) -> Shape:
        if math.prod(input_shape) != math.prod(self.shape):
            raise ShapeMismatchError(f"Reshape cannot turn shape {input_shape} into {self.shape}")
        return self.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


# ----------------------------------------------------------------- activations
@dataclass(frozen=True, eq=False)
class ReLU(Layer):
    """``max(x, 0)`` element-wise."""

    elementwise: ClassVar[bool] = True

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


@dataclass(frozen=True, eq=False)
class LeakyReLU(Layer):
    """``max(x, 0) + negative_slope * min(x, 0)`` element-wise, ``0 <= negative_slope <= 1``."""

    negative_slope: float = 0.01
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        slope = float(self.negative_slope)
        if not (0.0 <= slope <= 1.0):
            raise InvalidInputError(f"LeakyReLU.negative_slope must lie in [0, 1], got {slope}")
        object.__setattr__(self, "negative_slope", slope)

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


@dataclass(frozen=True, eq=False)
class Clamp(Layer):
    """``min(max(x, low), high)`` element-wise (torch clamp / hardtanh, ONNX Clip)."""

    low: float
    high: float
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        low, high = float(self.low), float(self.high)
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise InvalidInputError(f"Clamp needs finite low <= high, got low={low}, high={high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.low, self.high)


@dataclass(frozen=True, eq=False)
class Sigmoid(Layer):
    """Logistic sigmoid; not piecewise linear, so exact queries may only relax it."""

    piecewise_linear: ClassVar[bool] = False
    elementwise: ClassVar[bool] = True

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


@dataclass(frozen=True, eq=False)
class Tanh(Layer):
    """Hyperbolic tangent; not piecewise linear, so exact queries may only relax it."""

    piecewise_linear: ClassVar[bool] = False
    elementwise: ClassVar[bool] = True

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


# ----------------------------------------------------------------------- pools
@dataclass(frozen=True, eq=False)
class MaxPool2d(Layer):
    """Max-pool on (C, H, W); padding counts as -inf (never wins), as in torch and ONNX."""

    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "MaxPool2d.kernel", 1))
        stride = self.kernel if self.stride is None else _pair(self.stride, "MaxPool2d.stride", 1)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "padding", _pair(self.padding, "MaxPool2d.padding", 0))
        if any(2 * p > k for p, k in zip(self.padding, self.kernel, strict=True)):
            raise InvalidInputError("MaxPool2d.padding must be at most half the kernel size")

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ShapeMismatchError(f"MaxPool2d expects input (C, H, W), got shape {input_shape}")
        c, h, w = input_shape
        ho = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise ShapeMismatchError(f"MaxPool2d kernel does not fit input shape {input_shape}")
        return (c, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)

    def window_indices(self, input_shape: Shape) -> np.ndarray:
        """Flat input indices of each output's window, shape ``(out_size, k)``; -1 marks padding."""
        c, h, w = input_shape
        _, ho, wo = self.output_shape(input_shape)
        kh, kw = self.kernel
        sh, sw = self.stride
        ph, pw = self.padding
        index = np.full((c, ho, wo, kh * kw), -1, dtype=np.int64)
        for i in range(ho):
            for j in range(wo):
                for a in range(kh):
                    for b in range(kw):
                        r, s = i * sh - ph + a, j * sw - pw + b
                        if 0 <= r < h and 0 <= s < w:
                            index[:, i, j, a * kw + b] = np.arange(c) * h * w + r * w + s
        return index.reshape(c * ho * wo, kh * kw)


@dataclass(frozen=True, eq=False)
class AvgPool2d(Layer):
    """Average pool on (C, H, W); an affine map (``count_include_pad=True`` semantics)."""

    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    affine: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "AvgPool2d.kernel", 1))
        stride = self.kernel if self.stride is None else _pair(self.stride, "AvgPool2d.stride", 1)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "padding", _pair(self.padding, "AvgPool2d.padding", 0))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ShapeMismatchError(f"AvgPool2d expects input (C, H, W), got shape {input_shape}")
        c, h, w = input_shape
        ho = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise ShapeMismatchError(f"AvgPool2d kernel does not fit input shape {input_shape}")
        return (c, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=True)

    def as_conv(self, channels: int) -> Conv2d:
        """The same map as a depthwise convolution (used by bounds and encoders)."""
        kh, kw = self.kernel
        weight = np.zeros((channels, 1, kh, kw))
        weight[:] = 1.0 / (kh * kw)
        return Conv2d(weight, np.zeros(channels), self.stride, self.padding, (1, 1), channels)


LAYER_TYPES: tuple[type[Layer], ...] = (
    Dense, Conv2d, ElementwiseAffine, Flatten, Reshape, ReLU, LeakyReLU, Clamp,
    Sigmoid, Tanh, MaxPool2d, AvgPool2d,
)


# --------------------------------------------------------------------- network
@dataclass(frozen=True, eq=False)
class Network:
    """An immutable feed-forward network: ``input_shape`` plus a chain of layers.

    ``shapes[i]`` is the per-sample shape entering layer ``i``; ``shapes[-1]`` is the
    output shape. ``input_domain`` is an optional ``(lower, upper)`` pair of arrays of
    the input shape (e.g. pixel range [0, 1]) used to clip counterexamples.
    """

    input_shape: Shape
    layers: tuple[Layer, ...]
    input_domain: tuple[np.ndarray, np.ndarray] | None = None
    name: str = "network"
    shapes: tuple[Shape, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.input_shape)
        if not shape or any(s <= 0 for s in shape):
            raise ShapeMismatchError(f"input_shape must be a non-empty tuple of positive ints, got {shape}")
        object.__setattr__(self, "input_shape", shape)
        layers = tuple(self.layers)
        shapes = [shape]
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise InvalidInputError(f"layers[{index}] is {type(layer).__name__}, not an IR layer")
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except ShapeMismatchError as exc:
                raise ShapeMismatchError(f"layer {index} ({layer.kind}): {exc}") from exc
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "shapes", tuple(shapes))
        if self.input_domain is not None:
            low = np.broadcast_to(_frozen_array(self.input_domain[0], "input_domain lower"), shape).copy()
            high = np.broadcast_to(_frozen_array(self.input_domain[1], "input_domain upper"), shape).copy()
            if np.any(low > high):
                raise InvalidInputError("input_domain lower bound exceeds upper bound")
            low.setflags(write=False)
            high.setflags(write=False)
            object.__setattr__(self, "input_domain", (low, high))

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1]

    @property
    def input_size(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(math.prod(self.output_shape))

    @property
    def piecewise_linear(self) -> bool:
        return all(layer.piecewise_linear for layer in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x, *, upto: int | None = None) -> torch.Tensor:
        """Float64 forward pass of a batch ``(B, *input_shape)`` (flat ``(B, n)`` accepted).

        ``upto`` stops after that many layers (the value entering layer ``upto``).
        """
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x) or x.dtype != torch.float64:
            x = x.to(torch.float64)
        x = self.batch_inputs(x)
        for layer in self.layers[: len(self.layers) if upto is None else upto]:
            x = layer.forward(x)
        return x

    __call__ = forward

    def batch_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Reshape a batch given flat or in the input shape to ``(B, *input_shape)``."""
        if tuple(x.shape[1:]) == self.input_shape:
            return x
        if x.dim() == 2 and x.shape[1] == self.input_size:
            return x.reshape(x.shape[0], *self.input_shape)
        raise ShapeMismatchError(
            f"input batch has shape {tuple(x.shape)}; expected (B, {', '.join(map(str, self.input_shape))})"
            f" or (B, {self.input_size})"
        )

    def with_layers(self, layers: Sequence[Layer], name: str | None = None) -> "Network":
        """A new network with the same input shape and domain and other layers."""
        return Network(self.input_shape, tuple(layers), self.input_domain, name or self.name)

    def summary(self) -> str:
        """One line per layer: index, kind, output shape."""
        lines = [f"{self.name}: input {self.input_shape}"]
        for index, layer in enumerate(self.layers):
            lines.append(f"  [{index}] {layer.kind:<18} -> {self.shapes[index + 1]}")
        return "\n".join(lines)
