"""Input regions (box, L-infinity ball, L1 ball) as MILP constraints on the input variables."""

from __future__ import annotations

import numpy as np

from encoders.backends.base import Backend
from exactverify.errors import InvalidInputError
from exactverify.regions import Region

from .formulations import LayerContext, relu_of

L1_ENCODINGS = ("epigraph", "relu")


def check_region(region: Region) -> None:
    if not isinstance(region, Region):
        raise InvalidInputError(f"region must be an exactverify Region, got {type(region).__name__}")
    if region.batch_size != 1:
        raise InvalidInputError(f"region must be a batch of one region, got {region.batch_size}")
    if region.norm not in ("box", "linf", "l1"):
        raise InvalidInputError(f"region.norm must be 'box', 'linf' or 'l1', got {region.norm!r}")


def _flat(t) -> np.ndarray:
    return t[0].detach().cpu().reshape(-1).numpy().astype(np.float64)


def encode_region_counted(backend: Backend, region: Region, *, l1: str = "epigraph",
                          distortion: bool = False) -> tuple[np.ndarray, int | None, int]:
    """:func:`encode_region` that also returns the number of binaries it added."""
    check_region(region)
    if l1 not in L1_ENCODINGS:
        raise InvalidInputError(f"l1 must be one of {L1_ENCODINGS}, got {l1!r}")
    if distortion and region.norm == "box":
        raise InvalidInputError("distortion=True needs a ball region (linf or l1) with a center; got a box")
    lower, upper = _flat(region.lower), _flat(region.upper)
    x = backend.add_vars(lower, upper, prefix="x")
    if region.norm == "box":
        return x, None, 0
    center = _flat(region.center)
    eps = float(region.eps[0])
    d_lo, d_up = lower - center, upper - center
    radius = np.maximum(np.abs(d_lo), np.abs(d_up))  # bound on |x_i - c_i|
    if region.norm == "linf":
        if not distortion:
            return x, None, 0
        t = backend.add_var(0.0, float(radius.max(initial=0.0)), name="dist_linf")
        for i in range(len(x)):
            backend.add_constraint([t, x[i]], [1.0, -1.0], ">=", -center[i])
            backend.add_constraint([t, x[i]], [1.0, 1.0], ">=", center[i])
        return x, t, 0
    # l1: ||x - c||_1 = sum_i |d_i| written as a linear expression in (index, coef, const)
    ctx = LayerContext(-1, (len(x),), (len(x),), d_lo, d_up, d_lo, d_up)
    index: list[int] = []
    coef: list[float] = []
    const = 0.0
    for i in range(len(x)):
        if radius[i] == 0.0:
            continue  # x_i is fixed at c_i
        if l1 == "epigraph":  # t_i >= |d_i|: exact for <= constraints and for minimisation
            t = backend.add_var(0.0, radius[i], name=f"abs{i}")
            backend.add_constraint([t, x[i]], [1.0, -1.0], ">=", -center[i])
            backend.add_constraint([t, x[i]], [1.0, 1.0], ">=", center[i])
            index.append(t)
            coef.append(1.0)
        elif d_lo[i] >= 0.0:  # |d_i| = d_i
            index.append(int(x[i]))
            coef.append(1.0)
            const -= center[i]
        elif d_up[i] <= 0.0:  # |d_i| = -d_i
            index.append(int(x[i]))
            coef.append(-1.0)
            const += center[i]
        else:  # |d| = ReLU(2d) - d, exact, one binary with big-M from the box
            r = relu_of(backend, ctx, [x[i]], [2.0], -2.0 * center[i], 2.0 * d_lo[i], 2.0 * d_up[i], f"abs{i}")
            index += [r, int(x[i])]
            coef += [1.0, -1.0]
            const += center[i]
    if index:
        backend.add_constraint(index, coef, "<=", eps - const, name="l1_ball")
    if not distortion:
        return x, None, ctx.binaries
    total = backend.add_var(0.0, min(eps, float(radius.sum())) if index else 0.0, name="dist_l1")
    if index:
        backend.add_constraint([total, *index], [1.0, *(-np.asarray(coef))], "==", const)
    return x, total, ctx.binaries


def encode_region(backend: Backend, region: Region, *, l1: str = "epigraph",
                  distortion: bool = False) -> tuple[np.ndarray, int | None]:
    """Input variables of the flat input constrained to ``region`` (a batch of one).

    Every input variable is bounded by ``region.lower/upper``. With ``distortion=True``
    a variable ``t`` is returned with ``t >= ||x - center||`` in the region's norm, exact
    at a minimum (the caller minimises it); ``l1="relu"`` makes ``t`` equal to the L1
    norm by writing ``|d| = ReLU(2d) - d`` (one binary per coordinate that can change sign).
    """
    x, t, _ = encode_region_counted(backend, region, l1=l1, distortion=distortion)
    return x, t
