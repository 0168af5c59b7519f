"""Loaders: PyTorch modules, ONNX files and .nnet files into the network IR.

:func:`load` is the one entry point. Every load is checked by default: the IR's float64
forward pass is compared with an independent evaluation of the source on random inputs
and a :class:`LoadMismatchError` names the deviation when they disagree.

Tolerances (deviation allowed: ``atol + rtol * max |reference output|``):

* torch: the reference is a float64 copy of the module, so only summation order and
  batch-norm folding differ: ``TORCH_RTOL = TORCH_ATOL = 1e-8``.
* ONNX: onnxruntime computes in the model's type, usually float32 (about 7 significant
  digits, with rounding growing with depth and width): ``ONNX_RTOL = 1e-4``,
  ``ONNX_ATOL = 1e-5``. Structural errors (wrong transpose, padding, axis) give O(1)
  deviations and are still caught. A float16 model (about 3 significant digits) gets
  ``ONNX_FLOAT16_RTOL = 1e-2``, ``ONNX_FLOAT16_ATOL = 1e-3`` and float16 check inputs.
* .nnet: the reference is a numpy float64 pass of the parsed file: ``NNET_RTOL = NNET_ATOL = 1e-9``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInputError, LoadMismatchError
from ..ir import Network

TORCH_RTOL = 1e-8
TORCH_ATOL = 1e-8
ONNX_RTOL = 1e-4
ONNX_ATOL = 1e-5
ONNX_FLOAT16_RTOL = 1e-2
ONNX_FLOAT16_ATOL = 1e-3
NNET_RTOL = 1e-9
NNET_ATOL = 1e-9
#: Seed of the random check inputs, so that a load is reproducible.
CHECK_SEED = 0
#: Check inputs in a known input domain lie within this distance of the domain's midpoint, so
#: that a domain too wide for float64 arithmetic (e.g. .nnet bounds of +-1e308) is still checkable.
CHECK_MAX_HALF_WIDTH = 1e6

_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}


def load(
    source,
    input_shape=None,
    *,
    normalized: bool = False,
    check: bool = True,
    check_samples: int = 64,
    rtol: float | None = None,
    atol: float | None = None,
) -> Network:
    """Load ``source`` into a :class:`Network`.

    ``source``: an ``nn.Module`` (traced with torch.fx, eval semantics: a module in training
    mode with BatchNorm or Dropout gets a UserWarning), a path to a
    ``.onnx`` or ``.nnet`` file, an ``onnx.ModelProto``, or a Network (returned as is).
    ``input_shape``: per-sample shape without the batch dimension; needed for modules
    whose first layer is not ``nn.Linear``; for ONNX taken from the graph input.
    ``normalized``: for .nnet, keep the normalised input/output units (the default maps
    raw inputs to raw outputs and sets ``input_domain`` to the raw min/max).
    ``check``: compare with the source on ``check_samples`` random inputs (standard
    normal, or uniform in the input domain when known) and raise LoadMismatchError when
    the deviation exceeds ``atol + rtol * max|reference|``; ``rtol``/``atol`` default to
    the per-format constants of this module.
    """
    return load_source(source, input_shape, normalized=normalized, check=check, check_samples=check_samples,
                       rtol=rtol, atol=atol)[0]


@dataclass(frozen=True)
class SourceModel:
    """A model file's own evaluation, kept beside its IR: onnxruntime on the ONNX model (in its
    own precision) or an independent numpy float64 pass of the parsed ``.nnet`` file. The
    queries re-check every counterexample on it, as on a user's torch module."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, n) as float64 for inputs ``x`` (B, ...)."""
        return np.asarray(self.run(np.asarray(x, dtype=np.float64)), dtype=np.float64).reshape(len(x), -1)


def load_source(source, input_shape=None, *, normalized: bool = False, check: bool = True, check_samples: int = 64,
                rtol: float | None = None, atol: float | None = None) -> tuple[Network, SourceModel | None]:
    """:func:`load` (same arguments), plus the source's own evaluation for a model file or ``onnx.ModelProto``
    (None for a torch module, whose module is the user's model, or a Network)."""
    _validate(check_samples, rtol, atol)
    input_shape = _shape_argument(input_shape)
    if isinstance(source, Network):
        return source, None
    source_model = None
    if isinstance(source, torch.nn.Module):
        from .torch_loader import from_torch, run_torch

        network, reference = from_torch(source, input_shape)
        reference_fn, tolerances, dtype = (lambda x: run_torch(reference, x)), (TORCH_RTOL, TORCH_ATOL), np.float64
    else:
        import onnx

        if isinstance(source, onnx.ModelProto):
            kind = ".onnx"
        elif isinstance(source, (str, Path)):
            kind = _file_kind(Path(source))
        else:
            raise InvalidInputError(
                f"source must be an nn.Module, a Network, an onnx.ModelProto or a path to a .onnx/.nnet file, "
                f"got {type(source).__name__}"
            )
        if kind == ".onnx":
            from .onnx_loader import from_onnx, onnx_runner

            network, model = from_onnx(source, input_shape)
            reference_fn = onnx_runner(model, network.name)
            tolerances, dtype = _onnx_check_precision(model)
        else:
            from .nnet import from_nnet, run_nnet

            if input_shape is not None:
                raise InvalidInputError("input_shape is not used for .nnet files (their header gives it)")
            network, parsed = from_nnet(source, normalized=normalized)
            reference_fn = lambda x: run_nnet(parsed, x, normalized=normalized)  # noqa: E731
            tolerances, dtype = (NNET_RTOL, NNET_ATOL), np.float64
        source_model = SourceModel(network.name, reference_fn)
    if check:
        check_against(
            network, reference_fn, samples=check_samples,
            rtol=tolerances[0] if rtol is None else rtol, atol=tolerances[1] if atol is None else atol, dtype=dtype,
        )
    return network, source_model


def _onnx_check_precision(model) -> tuple[tuple[float, float], type]:
    """(rtol, atol) and the check inputs' dtype for an ONNX model, by its input's element type:
    onnxruntime computes in that type, so a float16 model needs float16 tolerances."""
    import onnx

    from .onnx_loader import graph_input

    elem_type = graph_input(model)[0].type.tensor_type.elem_type
    if elem_type == onnx.TensorProto.FLOAT16:
        return (ONNX_FLOAT16_RTOL, ONNX_FLOAT16_ATOL), np.float16
    if elem_type == onnx.TensorProto.DOUBLE:
        return (ONNX_RTOL, ONNX_ATOL), np.float64
    return (ONNX_RTOL, ONNX_ATOL), np.float32


def _validate(check_samples, rtol, atol) -> None:
    if isinstance(check_samples, bool) or not isinstance(check_samples, int) or check_samples < 1:
        raise InvalidInputError(f"check_samples must be a positive int, got {check_samples!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")


def _shape_argument(input_shape) -> tuple[int, ...] | None:
    """``input_shape`` as a tuple of positive ints (an int means a flat input), or None."""
    if input_shape is None:
        return None
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"input_shape must be a tuple of ints, got {input_shape!r}") from exc
    if not shape or any(s <= 0 for s in shape):
        raise InvalidInputError(
            f"input_shape must be a non-empty tuple of positive ints (without the batch dimension), got {shape}"
        )
    return shape


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise InvalidInputError(
            f"refusing to load {str(path)!r}: {suffix} files are pickles and unpickling can run code. "
            "Build the module yourself, load its weights with "
            "module.load_state_dict(torch.load(path, weights_only=True)), and pass the nn.Module"
        )
    if suffix not in (".onnx", ".nnet"):
        raise InvalidInputError(f"unknown model file type {suffix!r} for {str(path)!r} (expected .onnx or .nnet)")
    if not path.is_file():
        raise InvalidInputError(f"model file {str(path)!r} does not exist")
    return suffix


def check_inputs(network: Network, samples: int, dtype=np.float64) -> np.ndarray:
    """Random check inputs (samples, *input_shape): uniform in the input domain (within
    :data:`CHECK_MAX_HALF_WIDTH` of its midpoint), else standard normal."""
    rng = np.random.default_rng(CHECK_SEED)
    shape = (samples, *network.input_shape)
    if network.input_domain is not None:
        low, high = network.input_domain
        middle = low / 2 + high / 2  # halves first: high - low may overflow
        wide = high / 2 - low / 2 > CHECK_MAX_HALF_WIDTH
        low = np.where(wide, middle - CHECK_MAX_HALF_WIDTH, low)
        high = np.where(wide, middle + CHECK_MAX_HALF_WIDTH, high)
        x = rng.uniform(size=shape) * (high - low) + low
    else:
        x = rng.standard_normal(shape)
    return x.astype(dtype)


def check_against(network: Network, reference, *, samples: int, rtol: float, atol: float, dtype=np.float64) -> float:
    """Max deviation between ``network`` and ``reference(x)`` on random inputs; raises on mismatch.

    ``dtype`` is the type fed to the reference (the IR gets the same values in float64).
    """
    x = check_inputs(network, samples, dtype)
    expected = np.asarray(reference(x), dtype=np.float64)
    with torch.no_grad():
        ours = network.forward(torch.as_tensor(x.astype(np.float64))).numpy()
    if expected.size != ours.size or expected.shape[0] != ours.shape[0]:
        raise LoadMismatchError(
            f"{network.name}: loaded network gives outputs of shape {ours.shape}, the source {expected.shape}"
        )
    ours, expected = ours.reshape(len(x), -1), expected.reshape(len(x), -1)
    for who, values in (("source", expected), ("loaded network", ours)):
        if not np.all(np.isfinite(values)):
            raise LoadMismatchError(
                f"{network.name}: the {who} gives NaN or infinite outputs on the random check inputs "
                f"(|x| up to {float(np.max(np.abs(x), initial=0.0)):.3g}), so the load cannot be checked; "
                "if the input domain or the weights are too large for float64, pass check=False"
            )
    deviation = float(np.max(np.abs(ours - expected)))
    allowed = atol + rtol * float(np.max(np.abs(expected), initial=0.0))
    if not deviation <= allowed:  # also catches NaN
        raise LoadMismatchError(
            f"{network.name}: loaded network deviates from the source by max |diff| = {deviation:.3e} "
            f"on {samples} random inputs (allowed {allowed:.3e} = atol {atol:g} + rtol {rtol:g} * max|output|)"
        )
    return deviation


__all__ = [
    "CHECK_MAX_HALF_WIDTH", "CHECK_SEED", "NNET_ATOL", "NNET_RTOL", "ONNX_ATOL", "ONNX_FLOAT16_ATOL",
    "ONNX_FLOAT16_RTOL", "ONNX_RTOL", "TORCH_ATOL",
    "TORCH_RTOL", "SourceModel", "check_against", "check_inputs", "load", "load_source",
]
