"""MILP formulations, one small function per layer type, and the registry that maps to them.

A formulation ``f(backend, layer, x, ctx) -> y`` adds the constraints of one layer to
``backend``: ``x`` holds the variable indices of the flat value entering the layer,
``ctx`` (:class:`LayerContext`) its pre-activation bounds and the bounds of its output,
and ``y`` the indices of the flat output. Every new variable is bounded, and every
big-M is taken from the bounds of the neuron it belongs to, never a constant.

Piecewise-linear units are split by their bounds before any binary is added: stable
pieces pass through or become constants; only undecided units get binaries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from encoders.backends.base import Backend
from exactverify.errors import UnsupportedLayerError
from exactverify.ir import (
    AvgPool2d,
    Clamp,
    Conv2d,
    Dense,
    ElementwiseAffine,
    Flatten,
    Layer,
    LeakyReLU,
    MaxPool2d,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
)

from .linear import affine_rows


@dataclass
class LayerContext:
    """Bounds around one layer (flat float64 arrays) plus counters the formulation fills in."""

    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    lower: np.ndarray  # bounds of the value entering the layer (pre-activation)
    upper: np.ndarray
    out_lower: np.ndarray  # bounds of the value leaving the layer
    out_upper: np.ndarray
    binaries: int = 0
    counts: Counter = field(default_factory=Counter)

    def binary(self, backend: Backend, name: str) -> int:
        """A new binary variable, counted."""
        self.binaries += 1
        return backend.add_binary(name)


Formulation = Callable[[Backend, Layer, np.ndarray, LayerContext], np.ndarray]


def constant(backend: Backend, value: float, name: str) -> int:
    """A variable fixed to ``value``."""
    return backend.add_var(value, value, name=name)


def relu_of(backend: Backend, ctx: LayerContext, index, coef, const: float, lo: float, up: float, name: str) -> int:
    """``r = max(0, coef . x[index] + const)`` given ``lo <= expression <= up``.

    Stable inactive (``up <= 0``): a zero. Stable active (``lo >= 0``): the expression
    itself (the input variable when it is a plain variable). Otherwise one binary ``z``
    with big-M from the bounds: ``r >= e``, ``r <= e - lo (1 - z)``, ``r <= up z``.
    """
    index = np.asarray(index, dtype=np.int64)
    coef = np.asarray(coef, dtype=np.float64)
    if up <= 0.0:
        ctx.counts["inactive"] += 1
        return constant(backend, 0.0, f"{name}_zero")
    if lo >= 0.0:
        ctx.counts["active"] += 1
        if len(index) == 1 and coef[0] == 1.0 and const == 0.0:
            return int(index[0])
        r = backend.add_var(lo, up, name=name)
        backend.add_constraint(np.r_[r, index], np.r_[1.0, -coef], "==", const)
        return r
    ctx.counts["unstable"] += 1
    r = backend.add_var(0.0, up, name=name)
    z = ctx.binary(backend, f"{name}_z")
    backend.add_constraint(np.r_[r, index], np.r_[1.0, -coef], ">=", const)
    backend.add_constraint(np.r_[r, index, z], np.r_[1.0, -coef, -lo], "<=", const - lo)
    backend.add_constraint([r, z], [1.0, -up], "<=", 0.0)
    return r


# ------------------------------------------------------------------ affine / shape
def affine(backend: Backend, layer: Layer, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """Dense / Conv2d / AvgPool2d / ElementwiseAffine: one bounded variable and one equality per output."""
    out = np.empty(len(ctx.out_lower), dtype=np.int64)
    for j, (index, coef, const) in enumerate(affine_rows(layer, ctx.in_shape)):
        y = backend.add_var(ctx.out_lower[j], ctx.out_upper[j], name=f"a{ctx.index}_{j}")
        backend.add_constraint(np.r_[y, x[index]], np.r_[1.0, -coef], "==", const)
        out[j] = y
    ctx.counts["affine"] += len(out)
    return out


def reshape(backend: Backend, layer: Layer, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """Flatten / Reshape: flat row-major order is unchanged, so the variables are reused."""
    return x


# ------------------------------------------------------------------- activations
def relu(backend: Backend, layer: Layer, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """ReLU split by bounds: pass-through, zero, or one binary with this neuron's big-M."""
    return np.array([relu_of(backend, ctx, [x[k]], [1.0], 0.0, ctx.lower[k], ctx.upper[k], f"r{ctx.index}_{k}")
                     for k in range(len(x))], dtype=np.int64)


def leaky_relu(backend: Backend, layer: LeakyReLU, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """``y = max(x, a x)`` (``0 <= a <= 1``); unstable units get one binary.

    ``y >= x``, ``y >= a x``, ``y <= x - (1 - a) l (1 - z)``, ``y <= a x + (1 - a) u z``.
    """
    a = layer.negative_slope
    out = np.empty(len(x), dtype=np.int64)
    for k in range(len(x)):
        lo, up, name = ctx.lower[k], ctx.upper[k], f"lr{ctx.index}_{k}"
        if lo >= 0.0 or a == 1.0:
            ctx.counts["active"] += 1
            out[k] = x[k]
        elif up <= 0.0:
            ctx.counts["inactive"] += 1
            if a == 0.0:
                out[k] = constant(backend, 0.0, name)
            else:
                out[k] = backend.add_var(a * lo, a * up, name=name)
                backend.add_constraint([out[k], x[k]], [1.0, -a], "==", 0.0)
        else:
            ctx.counts["unstable"] += 1
            y = backend.add_var(a * lo, up, name=name)
            z = ctx.binary(backend, f"{name}_z")
            backend.add_constraint([y, x[k]], [1.0, -1.0], ">=", 0.0)
            backend.add_constraint([y, x[k]], [1.0, -a], ">=", 0.0)
            backend.add_constraint([y, x[k], z], [1.0, -1.0, -(1.0 - a) * lo], "<=", -(1.0 - a) * lo)
            backend.add_constraint([y, x[k], z], [1.0, -a, -(1.0 - a) * up], "<=", 0.0)
            out[k] = y
    return out


def _clamp_stable(backend: Backend, layer: Clamp, xk: int, lo: float, up: float, ctx: LayerContext, name: str):
    """The clamp of one unit when its bounds decide it (constant or identity), else None."""
    low, high = layer.low, layer.high
    if up <= low or low == high:
        ctx.counts["const"] += 1
        return constant(backend, low, name)
    if lo >= high:
        ctx.counts["const"] += 1
        return constant(backend, high, name)
    if lo >= low and up <= high:
        ctx.counts["identity"] += 1
        return xk
    return None


def clamp_chain(backend: Backend, layer: Clamp, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """``clamp(x) = hi - ReLU(hi - lo - ReLU(x - lo))``: two ReLUs, each split by its own bounds."""
    low, high = layer.low, layer.high
    out = np.empty(len(x), dtype=np.int64)
    for k in range(len(x)):
        lo, up, name = ctx.lower[k], ctx.upper[k], f"c{ctx.index}_{k}"
        fixed = _clamp_stable(backend, layer, int(x[k]), lo, up, ctx, name)
        if fixed is not None:
            out[k] = fixed
            continue
        r1 = relu_of(backend, ctx, [x[k]], [1.0], -low, lo - low, up - low, f"{name}_r1")
        r1_lo, r1_up = max(lo - low, 0.0), max(up - low, 0.0)
        r2 = relu_of(backend, ctx, [r1], [-1.0], high - low, high - low - r1_up, high - low - r1_lo, f"{name}_r2")
        y = backend.add_var(min(max(lo, low), high), min(max(up, low), high), name=name)
        backend.add_constraint([y, r2], [1.0, 1.0], "==", high)
        out[k] = y
    return out


def clamp_direct(backend: Backend, layer: Clamp, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """Clamp with at most two binaries per unit, written directly on ``x`` and ``y``.

    One kink inside the bounds: the shifted-ReLU form (one binary). Both kinks: binaries
    ``z1 = [x >= lo]``, ``z2 = [x >= hi]`` with ``z2 <= z1`` and big-Ms from ``[l, u]``.
    """
    low, high = layer.low, layer.high
    out = np.empty(len(x), dtype=np.int64)
    for k in range(len(x)):
        lo, up, name = ctx.lower[k], ctx.upper[k], f"c{ctx.index}_{k}"
        xk = int(x[k])
        fixed = _clamp_stable(backend, layer, xk, lo, up, ctx, name)
        if fixed is not None:
            out[k] = fixed
            continue
        if up <= high:  # only the lower kink: y = max(x, low)
            ctx.counts["unstable"] += 1
            y = backend.add_var(low, up, name=name)
            z = ctx.binary(backend, f"{name}_z")
            backend.add_constraint([y, xk], [1.0, -1.0], ">=", 0.0)
            backend.add_constraint([y, xk, z], [1.0, -1.0, low - lo], "<=", low - lo)
            backend.add_constraint([y, z], [1.0, -(up - low)], "<=", low)
        elif lo >= low:  # only the upper kink: y = min(x, high)
            ctx.counts["unstable"] += 1
            y = backend.add_var(lo, high, name=name)
            z = ctx.binary(backend, f"{name}_z")  # z = 1: x <= high, y = x
            backend.add_constraint([y, xk], [1.0, -1.0], "<=", 0.0)
            backend.add_constraint([y, xk, z], [1.0, -1.0, high - up], ">=", high - up)
            backend.add_constraint([y, z], [1.0, high - lo], ">=", high)
        else:  # both kinks
            ctx.counts["unstable2"] += 1
            y = backend.add_var(low, high, name=name)
            z1 = ctx.binary(backend, f"{name}_z1")
            z2 = ctx.binary(backend, f"{name}_z2")
            backend.add_constraint([z2, z1], [1.0, -1.0], "<=", 0.0)
            backend.add_constraint([xk, z1], [1.0, -(up - low)], "<=", low)
            backend.add_constraint([xk, z1], [1.0, -(low - lo)], ">=", lo)
            backend.add_constraint([xk, z2], [1.0, -(up - high)], "<=", high)
            backend.add_constraint([xk, z2], [1.0, -(high - lo)], ">=", lo)
            backend.add_constraint([y, z1], [1.0, -(high - low)], "<=", low)
            backend.add_constraint([y, z2], [1.0, -(high - low)], ">=", low)
            backend.add_constraint([y, xk, z1], [1.0, -1.0, low - lo], "<=", low - lo)
            backend.add_constraint([y, xk, z2], [1.0, -1.0, up - high], ">=", 0.0)
        out[k] = y
    return out


def refuse(backend: Backend, layer: Layer, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """Sigmoid / Tanh are not piecewise linear: an exact encoder cannot represent them."""
    raise unsupported(layer, ctx.index, "the exact MILP encoder")


def unsupported(layer: Layer, index: int, encoder: str) -> UnsupportedLayerError:
    """The error for a layer an exact encoder cannot represent, saying why."""
    why = "not piecewise linear; use a relaxing query" if not layer.piecewise_linear else "no formulation registered"
    return UnsupportedLayerError([(f"layer {index}", f"{layer.kind}: {why}")], source=encoder)


# ------------------------------------------------------------------------- pools
def _window_candidates(layer: MaxPool2d, ctx: LayerContext):
    """Per output: the window's input positions that can be the max (padding and dominated ones dropped)."""
    for window in layer.window_indices(ctx.in_shape):
        cand = window[window >= 0]
        lows, ups = ctx.lower[cand], ctx.upper[cand]
        keep = ups >= lows.max()  # u_i < max_j l_j: never the max
        yield cand[keep], lows[keep], ups[keep]


def maxpool_direct(backend: Backend, layer: MaxPool2d, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """``y = max_i x_i`` with one binary per surviving candidate.

    ``y >= x_i``; ``y <= x_i + (max_{j != i} u_j - l_i)(1 - z_i)``; ``sum z_i = 1``.
    """
    out = np.empty(len(ctx.out_lower), dtype=np.int64)
    for j, (cand, lows, ups) in enumerate(_window_candidates(layer, ctx)):
        name = f"mp{ctx.index}_{j}"
        if len(cand) == 1:
            ctx.counts["decided"] += 1
            out[j] = x[cand[0]]
            continue
        ctx.counts["undecided"] += 1
        y = backend.add_var(lows.max(), ups.max(), name=name)
        zs = []
        for i, c in enumerate(cand):
            others_up = np.delete(ups, i).max()
            big_m = max(others_up - lows[i], 0.0)
            z = ctx.binary(backend, f"{name}_z{i}")
            zs.append(z)
            backend.add_constraint([y, x[c]], [1.0, -1.0], ">=", 0.0)
            backend.add_constraint([y, x[c], z], [1.0, -1.0, big_m], "<=", big_m)
        backend.add_constraint(zs, np.ones(len(zs)), "==", 1.0)
        out[j] = y
    return out


def maxpool_relu_chain(backend: Backend, layer: MaxPool2d, x: np.ndarray, ctx: LayerContext) -> np.ndarray:
    """``max(a, b) = ReLU(b - a) + a`` folded over the window (the seed paper's encoding)."""
    out = np.empty(len(ctx.out_lower), dtype=np.int64)
    for j, (cand, lows, ups) in enumerate(_window_candidates(layer, ctx)):
        name = f"mp{ctx.index}_{j}"
        m, m_lo, m_up = int(x[cand[0]]), lows[0], ups[0]
        for i in range(1, len(cand)):
            xi, lo_i, up_i = int(x[cand[i]]), lows[i], ups[i]
            if lo_i >= m_up:  # x_i always wins so far
                m, m_lo, m_up = xi, lo_i, up_i
                continue
            if up_i <= m_lo:  # the running max always wins
                continue
            r = relu_of(backend, ctx, [xi, m], [1.0, -1.0], 0.0, lo_i - m_up, up_i - m_lo, f"{name}_r{i}")
            new_lo, new_up = max(m_lo, lo_i), max(m_up, up_i)
            m_next = backend.add_var(new_lo, new_up, name=f"{name}_m{i}")
            backend.add_constraint([m_next, r, m], [1.0, -1.0, -1.0], "==", 0.0)
            m, m_lo, m_up = m_next, new_lo, new_up
        out[j] = m
    return out


MAXPOOL: dict[str, Formulation] = {"direct": maxpool_direct, "relu_chain": maxpool_relu_chain}
CLAMP: dict[str, Formulation] = {"chain": clamp_chain, "direct": clamp_direct}

#: Default formulation per layer type; ``encode_network(registry=...)`` overrides entries.
#: Defaults among alternatives were picked by ``benchmarks/encodings.py``.
FORMULATIONS: dict[type[Layer], Formulation] = {
    Dense: affine,
    Conv2d: affine,
    AvgPool2d: affine,
    ElementwiseAffine: affine,
    Flatten: reshape,
    Reshape: reshape,
    ReLU: relu,
    LeakyReLU: leaky_relu,
    Clamp: clamp_direct,  # faster than clamp_chain on benchmarks/results/encodings.md
    MaxPool2d: maxpool_direct,
    Sigmoid: refuse,
    Tanh: refuse,
}
