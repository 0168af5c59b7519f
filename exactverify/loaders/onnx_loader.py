"""ONNX graph -> IR.

The graph must be a chain: one network tensor flows from the single graph input to the
single graph output, every other operand is a constant (initializer, ``Constant`` node,
or a subgraph of constants such as ``Shape -> Gather -> Concat`` feeding a ``Reshape``).
Constant subgraphs are folded with ``onnx.reference`` (pure numpy; nothing from the file
is executed). The leading dimension of the graph input is the batch dimension; ``Shape``
of the network tensor is evaluated with a batch of one. Initializers may also be listed
as graph inputs (as in the VNN-COMP ACAS Xu files): those are constants, not inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidInputError, ShapeMismatchError
from ..ir import AvgPool2d, Conv2d, Dense, Layer, LeakyReLU, MaxPool2d, Network, ReLU, Sigmoid, Tanh
from ..transforms import batchnorm_scale_shift, channel_affine
from ._chain import (
    ChainBuilder,
    OperandMismatch,
    Unsupported,
    arithmetic_layer,
    check_variance,
    clamp_layers,
    reshape_layers,
)

#: onnxruntime's message prefix and C++ source location, dropped from the reasons it gives.
_RUNTIME_NOISE = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (/\S+:\d+ [^(]*\([^)]*\) )?")
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_ARITH = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def read_model(source) -> onnx.ModelProto:
    """Parse an ONNX file (or pass a ModelProto through); malformed files raise InvalidInputError."""
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        return onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on garbage
        raise InvalidInputError(f"could not parse ONNX file {str(source)!r}: {exc}") from exc


def graph_input(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real inputs (not initializers listed as inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _input_shape(value: onnx.ValueInfoProto, input_shape, source: str) -> tuple[int, ...]:
    if len(_dims(value)) == 1:  # the first dimension is read as the batch: nothing would be left
        raise InvalidInputError(
            f"{source}: graph input {value.name!r} has shape {_dims(value)}, a single dimension and no batch "
            "dimension; exactverify reads the first dimension as the batch, so re-export the model with a "
            f"leading batch dimension (e.g. [1, {_dims(value)[0] or 'n'}])")
    dims = _dims(value)[1:]  # drop the batch dimension
    if input_shape is not None:
        given = tuple(int(s) for s in input_shape)
        if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given, strict=True)):
            raise ShapeMismatchError(
                f"{source}: input_shape {given} does not match the graph input shape "
                f"{tuple('?' if d is None else d for d in dims)} (batch dimension excluded)"
            )
        return given
    if not dims or any(d is None for d in dims):
        raise InvalidInputError(
            f"{source}: graph input {value.name!r} has shape {_dims(value)} with unknown non-batch "
            "dimensions; pass input_shape (without the batch dimension)"
        )
    return tuple(dims)  # type: ignore[arg-type]


def _attrs(node: onnx.NodeProto) -> dict:
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _live_tensors(graph: onnx.GraphProto) -> set[str]:
    """Names of tensors the graph outputs depend on."""
    needed = {out.name for out in graph.output}
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            needed.update(name for name in node.input if name)
    return needed


class _OnnxConverter:
    """Translates one ONNX graph; see the module docstring."""

    def __init__(self, model: onnx.ModelProto, input_shape, name: str) -> None:
        self.model = model
        self.graph = model.graph
        self.name = name
        self.source = f"ONNX model {name}"
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        inputs = graph_input(model)
        if not inputs:
            raise InvalidInputError(f"{self.source} has no graph input")
        self.input = inputs[0]
        self.extra_inputs = inputs[1:]
        if self.input.type.tensor_type.elem_type not in _FLOAT_TYPES:
            raise InvalidInputError(f"{self.source}: graph input {self.input.name!r} is not a float tensor")
        self.input_shape = _input_shape(self.input, input_shape, self.source)
        self.consts: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)

    def convert(self) -> Network:
        builder = ChainBuilder(self.input_shape, self.source)
        for extra in self.extra_inputs:
            builder.mark_unsupported(extra.name, "second graph input")
        live = _live_tensors(self.graph)
        head, shape = self.input.name, self.input_shape
        data = {head}
        for index, node in enumerate(self.graph.node):
            name = node.name or f"{node.op_type}_{index}"
            if not any(out in live for out in node.output):
                continue
            if node.domain not in ("", "ai.onnx"):
                builder.mark_unsupported(name, f"{node.op_type} (domain {node.domain!r})")
                continue
            data_inputs = [i for i in dict.fromkeys(node.input) if i in data]
            if node.op_type == "Shape" and data_inputs:
                if shape is not None:
                    self.consts[node.output[0]] = np.array((1, *shape), dtype=np.int64)
                continue
            if not data_inputs:
                if builder.unsupported:  # the walk only looks for more unsupported nodes now
                    try:
                        self._fold_constant(node)
                    except Unsupported:
                        pass
                else:
                    builder.convert(name, node.op_type, lambda node=node: self._fold_constant(node))
                continue
            extra = [o for o in node.output[1:] if o and o in live]
            if len(data_inputs) > 1:
                builder.mark_unsupported(name, f"{node.op_type} combining {len(data_inputs)} network tensors")
            elif data_inputs[0] != head:
                builder.mark_unsupported(name, f"{node.op_type} on a branch of the network tensor")
            elif extra:
                builder.mark_unsupported(name, f"{node.op_type} with extra outputs used ({', '.join(extra)})")
            elif builder.unsupported or shape is None:
                if node.op_type not in _HANDLERS:
                    builder.mark_unsupported(name, node.op_type)
            else:
                layers = builder.convert(name, node.op_type, lambda node=node, shape=shape: self._layers(node, shape))
                if layers is not None and not builder.unsupported:
                    head, shape = node.output[0], self._propagate(shape, layers)
                    data.add(head)
                    continue
            shape = None
            head = node.output[0]
            data.add(head)
        outputs = [out.name for out in self.graph.output]
        if len(outputs) != 1 or outputs[0] != head:
            builder.mark_unsupported("output", f"graph outputs {outputs} are not the single network tensor")
        return builder.finish(self.name)

    @staticmethod
    def _propagate(shape, layers: list[Layer]):
        for layer in layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    def _fold_constant(self, node: onnx.NodeProto) -> list:
        """Evaluate a node whose inputs are all constants; its outputs become constants."""
        if node.op_type == "Constant":
            attrs = _attrs(node)
            if "value" in attrs:
                value = numpy_helper.to_array(attrs["value"])
            elif "value_float" in attrs or "value_floats" in attrs:
                value = np.array(attrs.get("value_float", attrs.get("value_floats")), dtype=np.float32)
            elif "value_int" in attrs or "value_ints" in attrs:
                value = np.array(attrs.get("value_int", attrs.get("value_ints")), dtype=np.int64)
            else:
                raise Unsupported(f"Constant with attributes {sorted(attrs)}")
            self.consts[node.output[0]] = value
            return []
        missing = [i for i in node.input if i and i not in self.consts]
        if missing:
            raise Unsupported(f"inputs {missing} are neither constants nor the network tensor")
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
            values = evaluator.run(None, {i: self.consts[i] for i in node.input if i})
        except Exception as exc:  # noqa: BLE001 - report any failure as an unsupported node
            raise Unsupported(f"could not fold constant node ({type(exc).__name__}: {exc})") from exc
        for out, value in zip(node.output, values, strict=False):
            self.consts[out] = np.asarray(value)
        return []

    def _const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise Unsupported(f"{what} must be a constant")
        return self.consts[name]

    def _layers(self, node: onnx.NodeProto, shape: tuple[int, ...]) -> list[Layer]:
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            raise Unsupported("")
        return handler(self, node, _attrs(node), shape)

    # --------------------------------------------------------------- handlers
    def _gemm(self, node, attrs, shape):
        if len(shape) != 1:
            raise Unsupported(f"input of shape {shape} is not flat")
        if attrs.get("transA", 0):
            raise Unsupported("transA=1 on the network tensor")
        weight = self._const(node.input[1], "B")
        weight = weight if attrs.get("transB", 0) else weight.T
        weight = float(attrs.get("alpha", 1.0)) * np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2 or weight.shape[1] != shape[0]:
            raise OperandMismatch(f"weight B of shape {weight.shape} (after transB) does not fit an input of "
                                  f"size {shape[0]}")
        bias = np.zeros(weight.shape[0])
        if len(node.input) > 2 and node.input[2]:
            bias = float(attrs.get("beta", 1.0)) * np.broadcast_to(
                np.asarray(self._const(node.input[2], "C"), dtype=np.float64), (1, weight.shape[0])
            )[0]
        return [Dense(weight, bias)]

    def _matmul(self, node, attrs, shape):
        if node.input[1] not in self.consts:
            raise Unsupported("constant @ network tensor (only network tensor @ constant)")
        weight = np.asarray(self._const(node.input[1], "B"), dtype=np.float64)
        if weight.ndim != 2 or len(shape) != 1:
            raise Unsupported(f"network tensor of shape {shape} @ constant of shape {weight.shape}")
        if weight.shape[0] != shape[0]:
            raise OperandMismatch(f"weight B of shape {weight.shape} does not fit an input of size {shape[0]}")
        return [Dense(weight.T, np.zeros(weight.shape[1]))]

    def _arith(self, node, attrs, shape):
        data_first = node.input[0] not in self.consts
        const = self._const(node.input[1] if data_first else node.input[0], "the other operand")
        return [arithmetic_layer(_ARITH[node.op_type], const, shape, data_first)]

    def _conv(self, node, attrs, shape):
        weight = self._const(node.input[1], "W")
        if weight.ndim != 4 or len(shape) != 3:
            raise Unsupported("only 2-D convolutions on (C, H, W) inputs")
        bias = self._const(node.input[2], "B") if len(node.input) > 2 and node.input[2] else np.zeros(weight.shape[0])
        group = int(attrs.get("group", 1))
        if weight.shape[1] * group != shape[0]:
            raise OperandMismatch(f"weight W of shape {weight.shape} with group={group} expects "
                                  f"{weight.shape[1] * group} input channels, the input has shape {shape}")
        kernel = weight.shape[2:]
        strides = tuple(attrs.get("strides", (1, 1)))
        dilations = tuple(attrs.get("dilations", (1, 1)))
        padding = _pads(attrs, shape[1:], kernel, strides, dilations)
        return [Conv2d(weight, bias, strides, padding, dilations, group)]

    def _maxpool(self, node, attrs, shape):
        kernel = tuple(attrs["kernel_shape"])
        if len(kernel) != 2 or len(shape) != 3:
            raise Unsupported("only 2-D pooling on (C, H, W) inputs")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))) or attrs.get("ceil_mode", 0):
            raise Unsupported("dilations != 1 or ceil_mode=1 is not supported")
        strides = tuple(attrs.get("strides", (1, 1)))
        padding = _pads(attrs, shape[1:], kernel, strides, (1, 1))
        if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
            raise Unsupported(f"pads {padding} larger than half the kernel {kernel}")
        return [MaxPool2d(kernel, strides, padding)]

    def _avgpool(self, node, attrs, shape):
        kernel = tuple(attrs["kernel_shape"])
        if len(kernel) != 2 or len(shape) != 3:
            raise Unsupported("only 2-D pooling on (C, H, W) inputs")
        if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise Unsupported("dilations != 1 or ceil_mode=1 is not supported")
        strides = tuple(attrs.get("strides", (1, 1)))
        padding = _pads(attrs, shape[1:], kernel, strides, (1, 1))
        if any(padding) and not attrs.get("count_include_pad", 0):
            raise Unsupported("padding with count_include_pad=0 is not supported")
        return [AvgPool2d(kernel, strides, padding)]

    def _global_avgpool(self, node, attrs, shape):
        if len(shape) != 3:
            raise Unsupported("only (C, H, W) inputs")
        return [AvgPool2d(shape[1:], shape[1:], (0, 0))]

    def _flatten(self, node, attrs, shape):
        axis = int(attrs.get("axis", 1))
        axis = axis + len(shape) + 1 if axis < 0 else axis
        if axis == 0 or math.prod(shape[: axis - 1]) != 1:
            raise Unsupported(f"axis={attrs.get('axis', 1)} mixes the batch dimension")
        return reshape_layers(shape, (math.prod(shape),))

    def _reshape(self, node, attrs, shape):
        target = [int(d) for d in self._const(node.input[1], "shape")]
        full = (1, *shape)
        if not attrs.get("allowzero", 0):
            target = [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(target)]
        try:
            out = np.empty(full).reshape(target).shape
        except ValueError as exc:
            raise Unsupported(f"cannot reshape {full} to {target}") from exc
        if not out or out[0] != 1:
            raise Unsupported(f"reshape to {target} does not keep the batch dimension")
        return reshape_layers(shape, out[1:])

    def _squeeze(self, node, attrs, shape):
        axes = self._axes(node, attrs)
        if axes is None:
            raise Unsupported("Squeeze without axes would drop the batch dimension")
        full = (1, *shape)
        axes = sorted({a + len(full) if a < 0 else a for a in axes})
        if 0 in axes or any(full[a] != 1 for a in axes):
            raise Unsupported(f"axes {axes} touch the batch dimension or a non-unit dimension")
        return reshape_layers(shape, tuple(d for i, d in enumerate(full) if i not in axes)[1:])

    def _unsqueeze(self, node, attrs, shape):
        axes = self._axes(node, attrs)
        rank = len(shape) + 1 + len(axes or ())
        axes = sorted({a + rank if a < 0 else a for a in axes or ()})
        if 0 in axes:
            raise Unsupported("Unsqueeze at axis 0 moves the batch dimension")
        out = list(shape)
        for a in axes:
            out.insert(a - 1, 1)
        return reshape_layers(shape, tuple(out))

    def _axes(self, node, attrs):
        if "axes" in attrs:
            return list(attrs["axes"])
        if len(node.input) > 1 and node.input[1]:
            return [int(a) for a in self._const(node.input[1], "axes")]
        return None

    def _transpose(self, node, attrs, shape):
        perm = list(attrs.get("perm", range(len(shape), -1, -1)))
        full = (1, *shape)
        if perm[0] != 0:
            raise Unsupported(f"perm {perm} moves the batch dimension")
        moved = [p for p in perm if full[p] != 1]
        if moved != sorted(moved):
            raise Unsupported(f"perm {perm} reorders data (only unit-dimension permutations are supported)")
        return reshape_layers(shape, tuple(full[p] for p in perm[1:]))

    def _batchnorm(self, node, attrs, shape):
        if attrs.get("training_mode", 0):
            raise Unsupported("training_mode=1 uses batch statistics")
        scale, bias, mean, var = (self._const(name, "statistics") for name in node.input[1:5])
        epsilon = float(attrs.get("epsilon", 1e-5))
        check_variance(var, epsilon)
        scale, shift = batchnorm_scale_shift(mean, var, scale, bias, epsilon)
        return [channel_affine(scale, shift, shape)]

    def _clip(self, node, attrs, shape):
        low, high = attrs.get("min"), attrs.get("max")
        if len(node.input) > 1 and node.input[1]:
            low = float(self._const(node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            high = float(self._const(node.input[2], "max"))
        return clamp_layers(low, high)

    def _dropout(self, node, attrs, shape):
        if len(node.input) > 2 and node.input[2] and bool(self._const(node.input[2], "training_mode")):
            raise Unsupported("training_mode=True is random")
        return []

    def _cast(self, node, attrs, shape):
        if attrs.get("to") not in _FLOAT_TYPES:
            raise Unsupported(f"cast to non-float type {attrs.get('to')}")
        return []


def _pads(attrs: dict, spatial, kernel, strides, dilations) -> tuple[int, int]:
    """Symmetric (pad_h, pad_w) from ``pads``/``auto_pad``; asymmetric padding is unsupported.

    Strides and dilations below 1 and negative pads are invalid (InvalidInputError naming them).
    """
    for what, values, minimum in (("strides", strides, 1), ("dilations", dilations, 1),
                                  ("pads", attrs.get("pads", ()), 0)):
        if any(int(v) < minimum for v in values):
            raise InvalidInputError(f"{what} must be >= {minimum}, got {list(values)}")
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        if any(p % 2 for p in pads):
            raise Unsupported(f"auto_pad={auto} needs asymmetric padding {pads}")
        return (pads[0] // 2, pads[1] // 2)
    if auto == "VALID":
        return (0, 0)
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise Unsupported(f"asymmetric pads {list(pads)}")
    return (int(pads[0]), int(pads[1]))


def _simple(layer_type):
    return lambda self, node, attrs, shape: [layer_type()]


_HANDLERS = {
    "Gemm": _OnnxConverter._gemm,
    "MatMul": _OnnxConverter._matmul,
    "Add": _OnnxConverter._arith,
    "Sub": _OnnxConverter._arith,
    "Mul": _OnnxConverter._arith,
    "Div": _OnnxConverter._arith,
    "Neg": lambda self, node, attrs, shape: [arithmetic_layer("mul", -1.0, shape, True)],
    "Conv": _OnnxConverter._conv,
    "Relu": _simple(ReLU),
    "LeakyRelu": lambda self, node, attrs, shape: [LeakyReLU(float(attrs.get("alpha", 0.01)))],
    "Sigmoid": _simple(Sigmoid),
    "Tanh": _simple(Tanh),
    "MaxPool": _OnnxConverter._maxpool,
    "AveragePool": _OnnxConverter._avgpool,
    "GlobalAveragePool": _OnnxConverter._global_avgpool,
    "Flatten": _OnnxConverter._flatten,
    "Reshape": _OnnxConverter._reshape,
    "Squeeze": _OnnxConverter._squeeze,
    "Unsqueeze": _OnnxConverter._unsqueeze,
    "Transpose": _OnnxConverter._transpose,
    "BatchNormalization": _OnnxConverter._batchnorm,
    "Clip": _OnnxConverter._clip,
    "Identity": lambda self, node, attrs, shape: [],
    "Dropout": _OnnxConverter._dropout,
    "Cast": _OnnxConverter._cast,
}


def from_onnx(source, input_shape=None) -> tuple[Network, onnx.ModelProto]:
    """Translate an ONNX file or ModelProto; returns the network and the parsed model."""
    model = read_model(source)
    name = Path(str(source)).stem if not isinstance(source, onnx.ModelProto) else (model.graph.name or "onnx")
    return _OnnxConverter(model, input_shape, name).convert(), model


def onnx_runner(model: onnx.ModelProto, name: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The model's own evaluation: ``run(x)`` gives outputs (B, ...) as float64 from onnxruntime
    (else ``onnx.reference``) on float inputs ``x``, cast to the model's input type. The session
    is made once, on the first call, so repeated re-checks of counterexamples cost a forward pass each.

    A model the runtime refuses or fails on raises InvalidInputError naming the model (``name``,
    else the graph's name) and the runtime's reason.
    """
    value = graph_input(model)[0]
    dtype = {onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.FLOAT16: np.float16}.get(
        value.type.tensor_type.elem_type, np.float32
    )
    dims = _dims(value)
    per_sample = bool(dims) and dims[0] is not None
    try:
        import onnxruntime as ort
    except ImportError:
        ort, runtime = None, "onnx.reference"
    else:
        runtime = "onnxruntime"

    def failed(exc: Exception) -> InvalidInputError:
        reason = _RUNTIME_NOISE.sub("", str(exc).strip()) or type(exc).__name__
        return InvalidInputError(
            f"{runtime} cannot run ONNX model {name or model.graph.name or 'onnx'}: {reason} "
            "(it checks the loaded network; load(..., check=False) skips the check)"
        )

    evaluate: list[Callable] = []  # made on the first call (a load with check=False never runs the model)

    def make_evaluator() -> Callable:
        if ort is not None:
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return lambda batch: session.run(None, {value.name: batch.astype(dtype)})[0]
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda batch: evaluator.run(None, {value.name: batch.astype(dtype)})[0]

    def run(x: np.ndarray) -> np.ndarray:
        batches = [x[i:i + 1] for i in range(len(x))] if per_sample else [x]
        try:
            if not evaluate:
                evaluate.append(make_evaluator())
            outputs = [np.asarray(evaluate[0](batch), dtype=np.float64) for batch in batches]
        except Exception as exc:  # noqa: BLE001 - the runtimes raise their own types (e.g. onnxruntime's Fail)
            raise failed(exc) from exc
        return np.concatenate([o.reshape(o.shape[0], -1) for o in outputs])

    return run


def run_onnx(model: onnx.ModelProto, x: np.ndarray, name: str | None = None) -> np.ndarray:
    """Outputs (B, ...) of ``model`` on ``x`` through :func:`onnx_runner` (one session per call)."""
    return onnx_runner(model, name)(x)
