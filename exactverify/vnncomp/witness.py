"""Re-checking counterexamples on the ONNX file itself with onnxruntime (float32).

A "sat" verdict is only reported for a point that (a) lies in the sub-problem's box
after rounding to float32 (the bounds are rounded inwards, so the float32 point is in
the exact box) and (b) whose onnxruntime outputs satisfy the unsafe constraints up to
:data:`ONNX_SAT_TOLERANCE`. This is independent of the IR the search ran on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ShapeMismatchError
from ..specs import OutputSpec

#: Absolute tolerance on the spec slack of onnxruntime's float32 outputs: a point counts as
#: a counterexample if every row of some disjunct has ``A y - b <= ONNX_SAT_TOLERANCE``.
#: float32 rounding of ACAS/MNIST-sized outputs is ~1e-6; the competition's own checker
#: is looser (1e-4), so a point accepted here is accepted there.
ONNX_SAT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Witness:
    """A counterexample re-checked with onnxruntime: float32 input, outputs, spec slack."""

    x: np.ndarray  # flat float32 values (as float64)
    y: np.ndarray  # flat onnxruntime outputs (as float64)
    slack: float  # spec slack of y: >= -ONNX_SAT_TOLERANCE to be accepted
    ok: bool


@lru_cache(maxsize=4)
def _session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return session, inp.name, tuple(shape)


def onnx_outputs(path: str, x: np.ndarray) -> np.ndarray:
    """Flat outputs of the ONNX model at ``path`` for each row of the flat float32 inputs ``x``."""
    session, name, shape = _session(str(path))
    x = np.asarray(x, dtype=np.float32).reshape(x.shape[0] if np.ndim(x) > 1 else 1, -1)
    if int(np.prod(shape)) != x.shape[1]:
        raise ShapeMismatchError(f"ONNX input {name!r} has shape {shape}, the property has {x.shape[1]} inputs")
    rows = [np.asarray(session.run(None, {name: row.reshape(shape)})[0], dtype=np.float64).reshape(-1)
            for row in x]
    return np.stack(rows)


def float32_in_box(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``x`` rounded to float32 and clipped to the box with bounds rounded inwards in float32.

    Where no float32 lies in ``[lower, upper]`` (a box narrower than float32 spacing), the
    nearest float32 to ``lower`` is used: the check then tests a point just outside the box.
    """
    up = np.float32(np.inf)
    low32 = lower.astype(np.float32)
    low32 = np.where(low32.astype(np.float64) < lower, np.nextafter(low32, up), low32)
    high32 = upper.astype(np.float32)
    high32 = np.where(high32.astype(np.float64) > upper, np.nextafter(high32, -up), high32)
    high32 = np.maximum(high32, low32)
    return np.clip(np.asarray(x, dtype=np.float64).astype(np.float32), low32, high32)


def check_witness(onnx_path: str, x, lower: np.ndarray, upper: np.ndarray, spec: OutputSpec) -> Witness:
    """Re-check the candidate ``x`` (flat) on the ONNX file; see the module docstring."""
    x32 = float32_in_box(np.asarray(x, dtype=np.float64).reshape(-1), lower, upper)
    y = onnx_outputs(onnx_path, x32[None])[0]
    slack = float(spec.slack(y[None])[0])
    return Witness(x32.astype(np.float64), y, slack, slack >= -ONNX_SAT_TOLERANCE)
