"""Per-neuron LP tightening on top of CROWN (MIPVerify's progressive tightening).

For each region, the network prefix is relaxed to a linear program layer by layer:
the input region (box; L1 ball via epigraph variables ``t >= |x - c|``, ``sum t <= eps``),
affine layers as equalities (convolutions as sparse matrices), ReLU/LeakyReLU/Clamp by
the convex hull of their graph over the current bounds (the triangle for ReLU), MaxPool by
``y >= x_j``, ``y <= max u``, ``y <= sum_j (x_j - l_j) + max l`` and Sigmoid/Tanh by chords
and tangents. Before a non-affine layer is added, each of its *undecided* input neurons
(whose relaxation depends on the bounds) is minimised and maximised with HiGHS
(``scipy.optimize.linprog``); the output neurons are tightened last.

Soundness: an LP's optimal value is floating point, so it is not used as a bound. The
bound is recomputed from HiGHS's dual solution (Neumaier-Shcherbina): for any ``lam >= 0``
and ``mu``, ``c.x >= -lam.b_ub - mu.b_eq + min over the variable box of
(c + A_ub' lam + A_eq' mu).x`` holds for every feasible ``x``, whatever the solver's
accuracy. That value is then moved outward by :data:`LP_BOUND_SLACK`. A failed, timed-out
or non-optimal LP keeps the previous bound, and every result is intersected with it.
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from ..errors import InvalidInputError
from ..ir import Clamp, Layer, LeakyReLU, MaxPool2d, Network, ReLU, Sigmoid, Tanh
from ..regions import Region
from .affine import affine_matrix
from .crown import crown_bounds
from .interval import interval_layer
from .linearize import NARROW_WIDTH, clamp_cases, maxpool_relaxation, relax_elementwise

#: Default wall-clock limit of one LP, seconds.
DEFAULT_TIME_LIMIT = 10.0

#: Default ``linprog`` method. HiGHS's interior point (with crossover) is ~40x faster than
#: its simplex on the dense MNIST-sized layers (1.3 s vs 55 s for one 1552-column LP);
#: any dual it returns gives a valid certificate. ``"highs"`` / ``"highs-ds"`` also work.
DEFAULT_LP_METHOD = "highs-ipm"
LP_METHODS = ("highs", "highs-ds", "highs-ipm")

#: Outward slack on every LP-derived bound, relative to ``1 + |bound|``: covers the float64
#: rounding in evaluating the dual certificate (the certificate itself is exact math).
LP_BOUND_SLACK = 1e-9


class _Program:
    """A growing LP in the form ``A_ub x <= b_ub``, ``A_eq x = b_eq``, ``lb <= x <= ub``."""

    def __init__(self) -> None:
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.size = 0
        self.ub_parts: list[tuple[sp.coo_matrix, np.ndarray]] = []
        self.eq_parts: list[tuple[sp.coo_matrix, np.ndarray]] = []
        self.ub_rows = 0
        self.eq_rows = 0

    def variables(self, low: np.ndarray, up: np.ndarray) -> np.ndarray:
        """New variables with bounds ``[low, up]``; returns their column indices."""
        start = self.size
        self.lb.append(np.array(low, dtype=np.float64))
        self.ub.append(np.array(up, dtype=np.float64))
        self.size += len(low)
        return np.arange(start, self.size)

    def set_bounds(self, cols: np.ndarray, low: np.ndarray, up: np.ndarray) -> None:
        """Intersect the bounds of existing columns ``cols`` with ``[low, up]``."""
        lb, ub = np.concatenate(self.lb), np.concatenate(self.ub)
        lb[cols] = np.maximum(lb[cols], low)
        ub[cols] = np.minimum(ub[cols], up)
        self.lb, self.ub = [lb], [ub]

    def rows(self, rows, cols, vals, rhs, equal: bool) -> None:
        """Add constraints ``sum vals[k] x[cols[k]]`` (grouped by ``rows``) ``<=`` / ``==`` ``rhs``."""
        rhs = np.asarray(rhs, dtype=np.float64)
        if rhs.size == 0:
            return
        parts = self.eq_parts if equal else self.ub_parts
        base = self.eq_rows if equal else self.ub_rows
        block = sp.coo_matrix((np.asarray(vals, np.float64), (np.asarray(rows) + base, np.asarray(cols))))
        parts.append((block, rhs))
        if equal:
            self.eq_rows += rhs.size
        else:
            self.ub_rows += rhs.size

    def matrices(self):
        """``(A_ub, b_ub, A_eq, b_eq, lb, ub)`` of the current program (CSR)."""
        def stack(parts, count):
            if not parts:
                return None, None
            rows = np.concatenate([p[0].row for p in parts])
            cols = np.concatenate([p[0].col for p in parts])
            vals = np.concatenate([p[0].data for p in parts])
            return sp.csr_matrix((vals, (rows, cols)), shape=(count, self.size)), np.concatenate([p[1] for p in parts])

        a_ub, b_ub = stack(self.ub_parts, self.ub_rows)
        a_eq, b_eq = stack(self.eq_parts, self.eq_rows)
        return a_ub, b_ub, a_eq, b_eq, np.concatenate(self.lb), np.concatenate(self.ub)


def _lines(prog: _Program, x: np.ndarray, y: np.ndarray, slope, intercept, mask, sense: str) -> None:
    """``y >= slope x + intercept`` (sense ``">"``), ``<=`` (``"<"``) or ``==`` (``"="``) on ``mask``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return
    slope = np.broadcast_to(np.asarray(slope, np.float64), mask.shape)[idx]
    intercept = np.broadcast_to(np.asarray(intercept, np.float64), mask.shape)[idx]
    k = np.arange(idx.size)
    rows = np.concatenate([k, k])
    cols = np.concatenate([x[idx], y[idx]])
    if sense == ">":  # slope x - y <= -intercept
        prog.rows(rows, cols, np.concatenate([slope, -np.ones(idx.size)]), -intercept, equal=False)
    else:  # y - slope x  <= / == intercept
        prog.rows(rows, cols, np.concatenate([-slope, np.ones(idx.size)]), intercept, equal=sense == "=")


def _chord(x0, y0, x1, y1):
    """Slope and intercept of the line through two points (``x1 > x0`` where used)."""
    width = np.where(x1 > x0, x1 - x0, 1.0)
    slope = (y1 - y0) / width
    return slope, y0 - slope * x0


def _add_relu_like(prog, x, y, l, u, slope: float) -> None:
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    _lines(prog, x, y, 1.0, 0.0, active, "=")
    _lines(prog, x, y, slope, 0.0, inactive, "=")
    _lines(prog, x, y, 1.0, 0.0, unstable, ">")
    _lines(prog, x, y, slope, 0.0, unstable, ">")
    _lines(prog, x, y, *_chord(l, slope * l, u, u), unstable, "<")


def _add_clamp(prog, x, y, l, u, lo: float, hi: float) -> None:
    """Convex hull of the graph of ``clamp(x, lo, hi)`` over ``[l, u]``."""
    const_lo, const_hi, identity, kink_lo, kink_hi, both = clamp_cases(l, u, lo, hi)
    _lines(prog, x, y, 0.0, lo, const_lo, "=")
    _lines(prog, x, y, 0.0, hi, const_hi, "=")
    _lines(prog, x, y, 1.0, 0.0, identity, "=")
    _lines(prog, x, y, 0.0, lo, kink_lo | both, ">")
    _lines(prog, x, y, 0.0, hi, kink_hi | both, "<")
    _lines(prog, x, y, 1.0, 0.0, kink_lo, ">")
    _lines(prog, x, y, *_chord(l, lo, u, u), kink_lo, "<")
    _lines(prog, x, y, 1.0, 0.0, kink_hi, "<")
    _lines(prog, x, y, *_chord(l, l, u, hi), kink_hi, ">")
    _lines(prog, x, y, *_chord(l, lo, np.full_like(l, hi), hi), both, "<")
    _lines(prog, x, y, *_chord(np.full_like(u, lo), lo, u, hi), both, ">")


def _add_s_shaped(prog, x, y, l, u, layer: Layer) -> None:
    """CROWN's lines plus tangents at both ends on the convex (``u <= 0``) or concave side."""
    lt, ut = torch.as_tensor(l), torch.as_tensor(u)
    al, bl, au, bu = (t.numpy() for t in relax_elementwise(layer, lt, ut))
    everywhere = np.ones(l.shape, dtype=bool)
    _lines(prog, x, y, al, bl, everywhere, ">")
    _lines(prog, x, y, au, bu, everywhere, "<")
    f = torch.sigmoid if isinstance(layer, Sigmoid) else torch.tanh
    wide = (u - l) > NARROW_WIDTH
    for point in (lt, ut):
        value = f(point)
        grad = (value * (1 - value) if isinstance(layer, Sigmoid) else 1 - value**2).numpy()
        intercept = value.numpy() - grad * point.numpy()
        _lines(prog, x, y, grad, intercept, wide & (u <= 0), ">")
        _lines(prog, x, y, grad, intercept, wide & (l >= 0), "<")


def _add_maxpool(prog, x, y, l, u, layer: MaxPool2d, shape) -> None:
    low_t, up_t = torch.as_tensor(l).reshape(1, *shape), torch.as_tensor(u).reshape(1, *shape)
    relax = maxpool_relaxation(layer, shape, low_t, up_t)
    table = layer.window_indices(tuple(shape))
    best = relax.index[0].numpy()
    dominated = relax.dominated[0].numpy()
    max_l = relax.lower[0].numpy()
    _lines(prog, x[best], y, 1.0, 0.0, dominated, "=")
    open_windows = np.flatnonzero(~dominated)
    rows_ge, cols_ge, rows_sum, cols_sum, vals_sum, rhs_sum = [], [], [], [], [], []
    for k, out in enumerate(open_windows):
        window = table[out][table[out] >= 0]
        rows_ge.append(np.full(window.size, k))
        cols_ge.append(window)
        chosen = window[u[window] > max_l[out]]
        rows_sum.append(np.full(chosen.size + 1, k))
        cols_sum.append(np.concatenate([[y[out]], x[chosen]]))
        vals_sum.append(np.concatenate([[1.0], -np.ones(chosen.size)]))
        rhs_sum.append(max_l[out] - l[chosen].sum())
    if open_windows.size:
        # x_j - y <= 0 for every input of an undecided window
        rows = np.concatenate(rows_ge)
        cols = np.concatenate(cols_ge)
        prog.rows(np.arange(rows.size).repeat(2), np.column_stack([x[cols], y[open_windows][rows]]).reshape(-1),
                  np.tile([1.0, -1.0], rows.size), np.zeros(rows.size), equal=False)
        prog.rows(np.concatenate(rows_sum), np.concatenate(cols_sum), np.concatenate(vals_sum),
                  np.array(rhs_sum), equal=False)


def _add_layer(prog: _Program, layer: Layer, shape, x: np.ndarray, low_in, up_in, low_out, up_out) -> np.ndarray:
    """Add ``layer`` from columns ``x`` (bounds ``low_in, up_in``); returns the output columns."""
    if type(layer).__name__ in ("Flatten", "Reshape"):
        prog.set_bounds(x, low_out, up_out)
        return x
    y = prog.variables(low_out, up_out)
    if layer.affine:
        matrix, bias = affine_matrix(layer, tuple(shape))
        coo = sp.hstack([sp.identity(y.size, format="coo"), -matrix.tocoo()]).tocoo()
        cols = np.concatenate([y, x])[coo.col]
        prog.rows(coo.row, cols, coo.data, bias, equal=True)
    elif isinstance(layer, ReLU):
        _add_relu_like(prog, x, y, low_in, up_in, 0.0)
    elif isinstance(layer, LeakyReLU):
        _add_relu_like(prog, x, y, low_in, up_in, layer.negative_slope)
    elif isinstance(layer, Clamp):
        _add_clamp(prog, x, y, low_in, up_in, layer.low, layer.high)
    elif isinstance(layer, (Sigmoid, Tanh)):
        _add_s_shaped(prog, x, y, low_in, up_in, layer)
    elif isinstance(layer, MaxPool2d):
        _add_maxpool(prog, x, y, low_in, up_in, layer, shape)
    else:
        raise NotImplementedError(f"LP relaxation does not support layer {layer.kind}")
    return y


def undecided(layer: Layer | None, shape, low: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Flat mask of the input neurons of ``layer`` whose relaxation depends on their bounds
    (``layer=None``: the output, all neurons)."""
    if layer is None:
        return up > low
    if isinstance(layer, (ReLU, LeakyReLU)):
        return (low < 0) & (up > 0)
    if isinstance(layer, Clamp):
        return ((low < layer.low) & (up > layer.low)) | ((low < layer.high) & (up > layer.high))
    if isinstance(layer, (Sigmoid, Tanh)):
        return (up - low) > NARROW_WIDTH
    if isinstance(layer, MaxPool2d):
        relax = maxpool_relaxation(layer, shape, torch.as_tensor(low).reshape(1, *shape),
                                   torch.as_tensor(up).reshape(1, *shape))
        table = layer.window_indices(tuple(shape))[~relax.dominated[0].numpy()]
        mask = np.zeros(low.size, dtype=bool)
        mask[table[table >= 0]] = True
        return mask & (up > low)
    return np.zeros(low.size, dtype=bool)


def safe_minimum(c: np.ndarray, matrices, time_limit: float, method: str = DEFAULT_LP_METHOD) -> float | None:
    """A proved lower bound on ``min c.x`` over the program, or None if HiGHS gives none."""
    a_ub, b_ub, a_eq, b_eq, lb, ub = matrices
    try:
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([lb, ub]),
                      method=method, options={"time_limit": float(time_limit)})
    except (ValueError, RuntimeError):
        return None
    if res.status != 0:
        return None
    reduced = np.array(c, dtype=np.float64)
    value = 0.0
    if a_ub is not None:
        lam = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=np.float64), 0.0)
        reduced += a_ub.T @ lam
        value -= lam @ b_ub
    if a_eq is not None:
        mu = -np.asarray(res.eqlin.marginals, dtype=np.float64)
        reduced += a_eq.T @ mu
        value -= mu @ b_eq
    value += np.minimum(reduced * lb, reduced * ub).sum()
    if not np.isfinite(value):
        return None
    return float(value - LP_BOUND_SLACK * (1 + abs(value)))


class _Budget:
    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.perf_counter() + seconds

    def left(self) -> bool:
        return self.deadline is None or time.perf_counter() < self.deadline


def _tighten(prog: _Program, cols: np.ndarray, low: np.ndarray, up: np.ndarray, mask: np.ndarray,
             max_neurons: int | None, time_limit: float, budget: _Budget, method: str) -> None:
    """Minimise and maximise the neurons ``mask`` (widest first); updates ``low, up`` in place."""
    chosen = np.flatnonzero(mask)
    chosen = chosen[np.argsort(-(up[chosen] - low[chosen]), kind="stable")]
    if max_neurons is not None:
        chosen = chosen[:max_neurons]
    if chosen.size == 0:
        return
    matrices = prog.matrices()
    c = np.zeros(prog.size)
    for k in chosen:
        for sign in (1.0, -1.0):
            if not budget.left():
                return
            c[cols[k]] = sign
            bound = safe_minimum(c, matrices, time_limit, method)
            c[cols[k]] = 0.0
            if bound is None:
                continue
            if sign > 0:
                low[k] = max(low[k], bound)
            else:
                up[k] = min(up[k], -bound)


def _validate(time_limit, max_neurons, layers, network: Network, time_budget, lp_method) -> set[int]:
    if lp_method not in LP_METHODS:
        raise InvalidInputError(f"lp_method must be one of {LP_METHODS}, got {lp_method!r}")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise InvalidInputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if max_neurons is not None and (not isinstance(max_neurons, int) or max_neurons < 0):
        raise InvalidInputError(f"max_neurons must be a non-negative int or None, got {max_neurons!r}")
    if time_budget is not None and not (isinstance(time_budget, (int, float)) and time_budget >= 0):
        raise InvalidInputError(f"time_budget must be a non-negative number of seconds or None, got {time_budget!r}")
    count = len(network.layers)
    if layers is None:
        return set(range(1, count + 1))
    chosen = set(int(i) for i in layers)
    if any(i < 1 or i > count for i in chosen):
        raise InvalidInputError(f"layers must be value indices in 1..{count}, got {sorted(chosen)}")
    return chosen


def lp_bounds(network: Network, region: Region, *, time_limit: float = DEFAULT_TIME_LIMIT,
              max_neurons: int | None = None, layers: Iterable[int] | None = None,
              time_budget: float | None = None, max_elements: int | None = None,
              lp_method: str = DEFAULT_LP_METHOD) -> tuple[
        list[torch.Tensor], list[torch.Tensor]]:
    """LP-tightened bounds on the value entering every layer and on the output.

    ``time_limit``: seconds per LP. ``max_neurons``: at most this many neurons (the widest
    undecided ones) tightened per value and region. ``layers``: value indices to tighten
    (default: every value entering a non-affine layer, and the output). ``time_budget``:
    total seconds, after which the remaining bounds stay at CROWN's. ``max_elements`` is
    passed to CROWN. ``lp_method``: the ``linprog`` HiGHS method.
    """
    targets = _validate(time_limit, max_neurons, layers, network, time_budget, lp_method)
    budget = _Budget(time_budget)
    crown_options = {} if max_elements is None else {"max_elements": max_elements}
    c_low, c_up = crown_bounds(network, region, **crown_options)
    batch = region.batch_size
    lows = [t.detach().cpu().reshape(batch, -1).numpy().copy() for t in c_low]
    ups = [t.detach().cpu().reshape(batch, -1).numpy().copy() for t in c_up]
    cpu = region.to("cpu")
    for b in range(batch):
        _tighten_region(network, cpu[b], [t[b] for t in lows], [t[b] for t in ups], targets, max_neurons,
                        time_limit, budget, lp_method)
    device = region.lower.device
    shapes = network.shapes
    return ([torch.as_tensor(t).reshape(batch, *s).to(device) for t, s in zip(lows, shapes, strict=True)],
            [torch.as_tensor(t).reshape(batch, *s).to(device) for t, s in zip(ups, shapes, strict=True)])


def input_columns(prog: _Program, region: Region, low: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The input variables of one (CPU) region, bounds ``[low, up]``; an L1 ball adds ``t >= |x - c|``
    and ``sum t <= eps``. Returns the input columns."""
    cols = prog.variables(low, up)
    if region.norm == "l1":
        center = region.center.reshape(-1).numpy()
        eps = float(region.eps[0])
        reach = np.maximum(np.maximum(center - low, up - center), 0.0)
        t = prog.variables(np.zeros(cols.size), reach)
        k = np.arange(cols.size)
        # x - t <= c,  -x - t <= -c,  sum t <= eps
        prog.rows(np.concatenate([k, k]), np.concatenate([cols, t]),
                  np.concatenate([np.ones(k.size), -np.ones(k.size)]), center, equal=False)
        prog.rows(np.concatenate([k, k]), np.concatenate([cols, t]),
                  np.concatenate([-np.ones(k.size), -np.ones(k.size)]), -center, equal=False)
        prog.rows(np.zeros(k.size, dtype=int), t, np.ones(k.size), [eps], equal=False)
    return cols


def _tighten_region(network: Network, region: Region, lows: list[np.ndarray], ups: list[np.ndarray],
                    targets: set[int], max_neurons, time_limit: float, budget: _Budget, method: str) -> None:
    """Tighten one region's flat bounds ``lows[i], ups[i]`` in place, value by value."""
    prog = _Program()
    cols = input_columns(prog, region, lows[0], ups[0])
    count = len(network.layers)
    for index, layer in enumerate(network.layers):
        shape = network.shapes[index]
        after_affine = index > 0 and network.layers[index - 1].affine
        if index in targets and after_affine and not layer.affine:
            mask = undecided(layer, shape, lows[index], ups[index])
            _tighten(prog, cols, lows[index], ups[index], mask, max_neurons, time_limit, budget, method)
            prog.set_bounds(cols, lows[index], ups[index])
        # bounds of the next value: CROWN's, intersected with the interval image of these
        low_t = torch.as_tensor(lows[index]).reshape(1, *shape)
        up_t = torch.as_tensor(ups[index]).reshape(1, *shape)
        i_low, i_up = interval_layer(layer, low_t, up_t)
        nxt = index + 1
        low_n = np.maximum(lows[nxt], i_low.reshape(-1).numpy())
        up_n = np.minimum(ups[nxt], i_up.reshape(-1).numpy())
        kept = low_n <= up_n  # else: two enclosures of a (near-)constant value crossed by rounding
        lows[nxt][kept], ups[nxt][kept] = low_n[kept], up_n[kept]
        cols = _add_layer(prog, layer, shape, cols, lows[index], ups[index], lows[nxt], ups[nxt])
    if count in targets and count > 0 and network.layers[-1].affine:
        mask = undecided(None, network.shapes[-1], lows[count], ups[count])
        _tighten(prog, cols, lows[count], ups[count], mask, max_neurons, time_limit, budget, method)
