"""PyTorch ``nn.Module`` -> IR, through a torch.fx symbolic trace.

The module is deep-copied, cast to float64 and put in eval mode (the caller's module is
never touched), traced with torch.fx, and run once on a random batch of one sample with
an fx interpreter that keeps every intermediate value: that gives the shape of every
tensor and the value of every constant (buffers, ``mean.view(1, 3, 1, 1)``, ...). Each
node on the chain from the input to the output is then translated into IR layers; nodes
that cannot be translated are all collected into one UnsupportedLayerError.
"""

from __future__ import annotations

import copy
import operator
import warnings

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InvalidInputError, ShapeMismatchError, UnsupportedLayerError
from ..ir import (
    AvgPool2d,
    Clamp,
    Conv2d,
    Dense,
    Layer,
    LeakyReLU,
    MaxPool2d,
    Network,
    ReLU,
    Sigmoid,
    Tanh,
)
from ..transforms import batchnorm_scale_shift, channel_affine
from ._chain import ChainBuilder, Unsupported, arithmetic_layer, check_variance, clamp_layers, reshape_layers

_DATA, _CONST, _META = "data", "const", "meta"
_NO_RUNNING_STATS = "batch norm without running statistics (track_running_stats=False) uses batch statistics"

_RELU_FUNCS = {torch.relu, F.relu, torch.relu_}
_SIGMOID_FUNCS = {torch.sigmoid, F.sigmoid}
_TANH_FUNCS = {torch.tanh, F.tanh}
_SHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "view_as", "reshape_as"}
_ARITH = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
}
_ARITH_METHODS = {"add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul", "mul_": "mul",
                  "div": "div", "div_": "div"}
_META_METHODS = {"size", "dim"}
#: Leaf modules :func:`_module_layers` can translate (others are unsupported whatever the input shape).
_SUPPORTED_MODULES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Identity,
                      nn.modules.dropout._DropoutNd, nn.Flatten, nn.Unflatten, nn.MaxPool2d, nn.AvgPool2d,
                      nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Identity,
                        nn.modules.dropout._DropoutNd, nn.BatchNorm1d)


def _arg(node: torch.fx.Node, index: int, name: str, default=None):
    """Argument ``name`` of a call node, given positionally at ``index`` or as a keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _kind(node: torch.fx.Node, modules: dict) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


class _TorchConverter:
    """Translates one traced module; see the module docstring."""

    def __init__(self, model: nn.Module, input_shape, name: str) -> None:
        self.name = name
        self.root = model
        try:
            self.graph_module = torch.fx.symbolic_trace(model)
        except Exception as exc:  # noqa: BLE001 - fx raises many types; report them uniformly
            raise InvalidInputError(
                f"module {name}: torch.fx could not trace it ({type(exc).__name__}: {exc}); "
                "avoid data-dependent control flow or express the model as nn.Sequential"
            ) from exc
        self.modules = dict(self.graph_module.named_modules())
        self.nodes = list(self.graph_module.graph.nodes)
        self.category = self._classify()
        self._check_single_input()
        self.input_shape = self._input_shape(input_shape)
        self.values = self._interpret()

    # -------------------------------------------------------------- analysis
    def _classify(self) -> dict:
        category: dict = {}
        for node in self.nodes:
            inputs = node.all_input_nodes
            if node.op == "placeholder":
                category[node] = _DATA
            elif node.op == "get_attr":
                category[node] = _CONST
            elif any(category.get(n) == _DATA for n in inputs):
                is_meta = (node.op == "call_method" and node.target in _META_METHODS) or (
                    node.op == "call_function" and node.target is getattr and node.args[1] == "shape"
                )
                category[node] = _META if is_meta else _DATA
            elif any(category.get(n) == _META for n in inputs):
                category[node] = _META
            else:
                category[node] = _CONST
        return category

    def _live(self) -> set:
        """Nodes the output depends on (dead code left by tracing is ignored)."""
        output = next(n for n in self.nodes if n.op == "output")
        live, stack = {output}, [output]
        while stack:
            for parent in stack.pop().all_input_nodes:
                if parent not in live:
                    live.add(parent)
                    stack.append(parent)
        return live

    def _check_single_input(self) -> None:
        """Refuse a module whose forward needs more than one tensor (before the run would fail on it)."""
        required = [n.target for n in self.nodes if n.op == "placeholder" and not n.args]  # args: a default
        if len(required) > 1:
            raise UnsupportedLayerError(
                [(name, f"second network input: forward takes {len(required)} inputs ({', '.join(required)}), "
                        "only modules with one input tensor are supported") for name in required[1:]],
                source=f"module {self.name}",
            )

    def _unsupported_modules(self) -> list[tuple[str, str]]:
        """Leaf modules on the data path that cannot be translated whatever the input shape."""
        found, live = [], self._live()
        for node in self.nodes:
            if node.op != "call_module" or self.category[node] != _DATA or node not in live:
                continue
            module = self.modules[node.target]
            if not isinstance(module, _SUPPORTED_MODULES):
                found.append((node.name, type(module).__name__))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is None:
                found.append((node.name, f"{type(module).__name__}: {_NO_RUNNING_STATS}"))
        return found

    def _raise_unsupported_modules(self) -> None:
        """Raise UnsupportedLayerError when :meth:`_unsupported_modules` finds any: a failure to
        infer the input shape or to run the module is then their doing, not the input shape's."""
        found = self._unsupported_modules()
        if found:
            raise UnsupportedLayerError(found, source=f"module {self.name}")

    def _input_shape(self, input_shape) -> tuple[int, ...]:
        if input_shape is not None:
            return tuple(input_shape)
        inferred = self._infer_input_size()
        if inferred is None:
            self._raise_unsupported_modules()
            raise InvalidInputError(
                f"module {self.name}: input_shape is required (per sample, without the batch dimension) "
                "unless the first layer is nn.Linear"
            )
        return (inferred,)

    def _infer_input_size(self) -> int | None:
        """in_features of the first Linear, if only element-wise nodes come before it."""
        if isinstance(self.root, nn.Linear):  # traced as one F.linear call
            return int(self.root.in_features)
        for node in self.nodes:
            if self.category[node] != _DATA or node.op == "placeholder":
                continue
            if node.op == "call_module":
                module = self.modules[node.target]
                if isinstance(module, nn.Linear):
                    return int(module.in_features)
                if isinstance(module, _ELEMENTWISE_MODULES):
                    continue
            if node.op == "call_function" and (node.target in _ARITH or node.target in _RELU_FUNCS):
                continue
            return None
        return None

    def _interpret(self) -> dict:
        sample = torch.randn((1, *self.input_shape), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        interpreter = torch.fx.Interpreter(self.graph_module, garbage_collect_values=False)
        try:
            with torch.no_grad():
                interpreter.run(sample)
        except Exception as exc:  # noqa: BLE001 - any failure here means the shape does not fit
            self._raise_unsupported_modules()
            reason = str(exc).split("\n\nWhile executing")[0].strip()  # torch.fx appends the node and a traceback
            raise ShapeMismatchError(
                f"module {self.name}: input_shape {self.input_shape} does not fit the module "
                f"({type(exc).__name__}: {reason})"
            ) from exc
        return dict(interpreter.env)

    # ------------------------------------------------------------ conversion
    def convert(self) -> Network:
        builder = ChainBuilder(self.input_shape, f"module {self.name}")
        live = self._live()
        placeholders = [n for n in self.nodes if n.op == "placeholder" and n in live]
        for extra in placeholders[1:]:
            builder.mark_unsupported(extra.name, "second network input")
        for node in self.nodes:
            if node not in live or self.category[node] != _DATA or node.op in ("placeholder", "output"):
                continue
            data_inputs = [n for n in node.all_input_nodes if self.category[n] == _DATA]
            kind = _kind(node, self.modules)
            if len(data_inputs) != 1:
                builder.mark_unsupported(node.name, f"{kind} combining {len(data_inputs)} network tensors")
                continue
            builder.convert(node.name, kind, lambda node=node, src=data_inputs[0]: self._node(node, src))
        output = next(n for n in self.nodes if n.op == "output")
        if not isinstance(output.args[0], torch.fx.Node) or self.category[output.args[0]] != _DATA:
            builder.mark_unsupported("output", "output is not a single network tensor")
        return builder.finish(self.name)

    def _shape(self, node: torch.fx.Node) -> tuple[int, ...]:
        value = self.values[node]
        if not isinstance(value, torch.Tensor):
            raise Unsupported(f"produces {type(value).__name__}, not a tensor")
        if value.shape[0:1] != (1,):
            raise Unsupported(f"output shape {tuple(value.shape)} does not keep the batch dimension")
        return tuple(value.shape[1:])

    def _const(self, arg):
        """The value of a constant argument (python number or tensor) as numpy."""
        if isinstance(arg, torch.fx.Node):
            if self.category[arg] != _CONST:
                raise Unsupported("operand depends on the network input (not affine)")
            value = self.values[arg]
        else:
            value = arg
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().double().numpy()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return np.float64(value)
        raise Unsupported(f"constant operand of type {type(value).__name__}")

    def _node(self, node: torch.fx.Node, src: torch.fx.Node) -> list[Layer]:
        in_shape, out_shape = self._shape(src), self._shape(node)
        if node.op == "call_module":
            return _module_layers(self.modules[node.target], in_shape, out_shape)
        target = node.target
        if node.op == "call_method":
            if target in ("relu", "relu_"):
                return [ReLU()]
            if target == "sigmoid":
                return [Sigmoid()]
            if target == "tanh":
                return [Tanh()]
            if target in ("clamp", "clip", "clamp_"):
                return clamp_layers(self._scalar(_arg(node, 1, "min")), self._scalar(_arg(node, 2, "max")))
            if target in _SHAPE_METHODS:
                return reshape_layers(in_shape, out_shape)
            if target in _ARITH_METHODS:
                return self._arith(node, _ARITH_METHODS[target], src)
            if target in ("neg", "neg_"):
                return [arithmetic_layer("mul", -1.0, in_shape, True)]
            raise Unsupported("")
        if target in _RELU_FUNCS:
            return [ReLU()]
        if target is F.leaky_relu:
            return [LeakyReLU(float(_arg(node, 1, "negative_slope", 0.01)))]
        if target in _SIGMOID_FUNCS:
            return [Sigmoid()]
        if target in _TANH_FUNCS:
            return [Tanh()]
        if target is F.hardtanh:
            return [Clamp(float(_arg(node, 1, "min_val", -1.0)), float(_arg(node, 2, "max_val", 1.0)))]
        if target is F.relu6:
            return [Clamp(0.0, 6.0)]
        if target in (torch.clamp, torch.clip):
            return clamp_layers(self._scalar(_arg(node, 1, "min")), self._scalar(_arg(node, 2, "max")))
        if target in _SHAPE_FUNCS:
            return reshape_layers(in_shape, out_shape)
        if target is F.dropout:
            if _arg(node, 2, "training", True):
                raise Unsupported("dropout with training=True is random")
            return []
        if target in _ARITH:
            return self._arith(node, _ARITH[target], src)
        if target in (operator.neg, torch.neg):
            return [arithmetic_layer("mul", -1.0, in_shape, True)]
        if target is F.linear:
            weight = self._const(_arg(node, 1, "weight"))
            bias = _arg(node, 2, "bias")
            if len(in_shape) != 1:
                raise Unsupported(f"linear on a non-flat input of shape {in_shape}")
            return [Dense(weight, np.zeros(weight.shape[0]) if bias is None else self._const(bias))]
        if target is F.max_pool2d:
            return [_max_pool(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                              _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False),
                              _arg(node, 6, "return_indices", False))]
        if target is F.avg_pool2d:
            return [_avg_pool(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                              _arg(node, 4, "ceil_mode", False), _arg(node, 5, "count_include_pad", True),
                              _arg(node, 6, "divisor_override"))]
        raise Unsupported("")

    def _scalar(self, arg) -> float | None:
        if arg is None:
            return None
        value = self._const(arg)
        if np.ndim(value) != 0:
            raise Unsupported("clamp bounds must be scalars")
        return float(value)

    def _arith(self, node: torch.fx.Node, op: str, src: torch.fx.Node) -> list[Layer]:
        in_shape = self._shape(src)
        if node.target is torch.div and node.kwargs.get("rounding_mode") is not None:
            raise Unsupported("division with rounding_mode")
        first, second = node.args[0], _arg(node, 1, "other")
        data_first = first is src
        const = self._const(second if data_first else first)
        alpha = node.kwargs.get("alpha", 1)
        if op in ("add", "sub") and alpha != 1:
            if not data_first:
                raise Unsupported("alpha scaling of the network tensor")
            const = const * alpha
        return [arithmetic_layer(op, const, in_shape, data_first)]


def _max_pool(kernel, stride, padding, dilation, ceil_mode, return_indices) -> MaxPool2d:
    problems = []
    if dilation not in (1, (1, 1), [1, 1]):
        problems.append(f"dilation={dilation}")
    if ceil_mode:
        problems.append("ceil_mode=True")
    if return_indices:
        problems.append("return_indices=True")
    if problems:
        raise Unsupported(f"{', '.join(problems)} is not supported (only dilation=1, ceil_mode=False)")
    return MaxPool2d(kernel, stride if stride not in (None, [], ()) else None, padding)


def _avg_pool(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override) -> AvgPool2d:
    padded = padding not in (0, (0, 0), [0, 0])
    problems = []
    if ceil_mode:
        problems.append("ceil_mode=True")
    if divisor_override is not None:
        problems.append(f"divisor_override={divisor_override}")
    if padded and not count_include_pad:
        problems.append("count_include_pad=False with padding")
    if problems:
        raise Unsupported(f"{', '.join(problems)} is not supported")
    return AvgPool2d(kernel, stride if stride not in (None, [], ()) else None, padding)


def _conv_padding(module: nn.Conv2d) -> tuple[int, int]:
    if module.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={module.padding_mode!r} (only 'zeros')")
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise Unsupported("padding='same' with asymmetric padding")
        return (total[0] // 2, total[1] // 2)
    return tuple(module.padding)  # type: ignore[return-value]


def _module_layers(module: nn.Module, in_shape, out_shape) -> list[Layer]:
    """IR layers for one leaf module (eval semantics)."""
    if isinstance(module, nn.Linear):
        if len(in_shape) != 1:
            raise Unsupported(f"Linear on a non-flat input of shape {in_shape} (input_shape excludes the batch dim)")
        bias = module.bias if module.bias is not None else np.zeros(module.out_features)
        return [Dense(module.weight, bias)]
    if isinstance(module, nn.Conv2d):
        bias = module.bias if module.bias is not None else np.zeros(module.out_channels)
        return [Conv2d(module.weight, bias, module.stride, _conv_padding(module), module.dilation, module.groups)]
    if isinstance(module, nn.ReLU):
        return [ReLU()]
    if isinstance(module, nn.LeakyReLU):
        return [LeakyReLU(module.negative_slope)]
    if isinstance(module, nn.Hardtanh):  # includes ReLU6
        return [Clamp(module.min_val, module.max_val)]
    if isinstance(module, nn.Sigmoid):
        return [Sigmoid()]
    if isinstance(module, nn.Tanh):
        return [Tanh()]
    if isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd)):
        return []
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return reshape_layers(in_shape, out_shape)
    if isinstance(module, nn.MaxPool2d):
        return [_max_pool(module.kernel_size, module.stride, module.padding, module.dilation,
                          module.ceil_mode, module.return_indices)]
    if isinstance(module, nn.AvgPool2d):
        return [_avg_pool(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                          module.count_include_pad, module.divisor_override)]
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if module.running_mean is None or module.running_var is None:
            raise Unsupported(_NO_RUNNING_STATS)
        weight = module.weight if module.affine else None
        bias = module.bias if module.affine else None
        check_variance(_np(module.running_var), module.eps)
        scale, shift = batchnorm_scale_shift(
            _np(module.running_mean), _np(module.running_var), _np(weight), _np(bias), module.eps
        )
        return [channel_affine(scale, shift, in_shape)]
    raise Unsupported("")


def _np(value):
    return None if value is None else value.detach().cpu().double().numpy()


def from_torch(module: nn.Module, input_shape=None) -> tuple[Network, nn.Module]:
    """Translate ``module``; returns the network and the float64 eval copy used as reference."""
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"source must be an nn.Module, got {type(module).__name__}")
    name = type(module).__name__
    if module.training:
        moded = sorted({type(m).__name__ for m in module.modules()
                        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))})
        if moded:
            warnings.warn(f"module {name} is in training mode; it is verified (and counterexamples are "
                          f"re-checked) in eval mode, where {', '.join(moded)} behave differently: "
                          "call .eval() on it to say that is what you mean", UserWarning, stacklevel=3)
    reference = copy.deepcopy(module).cpu().double().eval()
    converter = _TorchConverter(reference, input_shape, name)
    return converter.convert(), reference


def run_torch(reference: nn.Module, x: np.ndarray) -> np.ndarray:
    """Reference outputs of the float64 eval copy on a batch (per sample if batching fails)."""
    inputs = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        try:
            out = reference(inputs)
            if isinstance(out, torch.Tensor) and out.shape[0] == inputs.shape[0]:
                return out.numpy()
        except Exception:  # noqa: BLE001 - modules written for batch size 1 only
            pass
        return np.concatenate([reference(inputs[i:i + 1]).numpy() for i in range(inputs.shape[0])])
