"""Sound linear relaxations of the non-affine layers, given bounds on their input.

For an element-wise activation ``y = f(x)`` with ``l <= x <= u`` (tensors of any
batched shape) :func:`relax_elementwise` returns slopes and intercepts of two lines

    al * x + bl  <=  f(x)  <=  au * x + bu     for every x in [l, u],

used by CROWN's back-substitution (:mod:`.crown`) and by the LP relaxation
(:mod:`.lp`). :func:`maxpool_relaxation` gives the DeepPoly relaxation of a max-pool.
Every function here is pure torch and batched, so it runs unchanged on CPU or CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ir import Clamp, Layer, LeakyReLU, MaxPool2d, ReLU, Sigmoid, Tanh

Lines = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

#: Bound intervals narrower than this are relaxed by constants ``[f(l), f(u)]`` for
#: Sigmoid/Tanh, where chords and tangents would divide by a vanishing width.
NARROW_WIDTH = 1e-12


def clamp_cases(l, u, lo: float, hi: float):
    """Masks of the six cases of ``clamp(x, lo, hi)`` over ``[l, u]`` (torch or numpy arrays):
    constant low, constant high, identity, only the low kink, only the high kink, both kinks."""
    const_lo = u <= lo
    const_hi = (l >= hi) & ~const_lo
    identity = (l >= lo) & (u <= hi) & ~const_lo & ~const_hi
    kink_lo = (l < lo) & (u > lo) & (u <= hi)
    kink_hi = (l >= lo) & (l < hi) & (u > hi)
    both = (l < lo) & (u > hi)
    return const_lo, const_hi, identity, kink_lo, kink_hi, both


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, 0 elsewhere (callers mask those entries)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def _relu_like(l: torch.Tensor, u: torch.Tensor, slope: float) -> Lines:
    """``max(x, 0) + slope * min(x, 0)`` (``0 <= slope <= 1``, so convex): chord above,
    adaptive line through the origin below (slope 1 if ``u > -l`` else ``slope``)."""
    zero, one = torch.zeros_like(l), torch.ones_like(l)
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    chord = _safe_div(u - slope * l, u - l)
    au = torch.where(active, one, torch.where(inactive, one * slope, chord))
    bu = torch.where(unstable, u - chord * u, zero)
    al = torch.where(active, one, torch.where(inactive, one * slope, torch.where(u > -l, one, one * slope)))
    return al, zero, au, bu


def _clamp(l: torch.Tensor, u: torch.Tensor, lo: float, hi: float) -> Lines:
    """``clamp(x, lo, hi)``: exact where the interval meets no kink, ReLU-like with one
    kink (convex at ``lo``, concave at ``hi``), and with both kinks the chords through
    ``(l, lo), (hi, hi)`` (above) and ``(lo, lo), (u, hi)`` (below)."""
    zero, one = torch.zeros_like(l), torch.ones_like(l)
    const_lo, const_hi, identity, kink_lo, kink_hi, both = clamp_cases(l, u, lo, hi)

    # kink at lo: f = lo + relu(x - lo); upper chord (l, lo)-(u, u); lower x or lo
    s_lo = _safe_div(u - lo, u - l)
    lo_lower_x = (u - lo) > (lo - l)
    # kink at hi: f = hi - relu(hi - x); lower chord (l, l)-(u, hi); upper x or hi
    s_hi = _safe_div(hi - l, u - l)
    hi_upper_x = (hi - l) > (u - hi)
    # both kinks
    s_up = _safe_div(one * (hi - lo), hi - l)
    s_dn = _safe_div(one * (hi - lo), u - lo)

    al = torch.where(identity, one, zero)
    bl = torch.where(const_lo, one * lo, torch.where(const_hi, one * hi, zero))
    au, bu = al.clone(), bl.clone()
    al = torch.where(kink_lo, torch.where(lo_lower_x, one, zero), al)
    bl = torch.where(kink_lo, torch.where(lo_lower_x, zero, one * lo), bl)
    au = torch.where(kink_lo, s_lo, au)
    bu = torch.where(kink_lo, lo - s_lo * l, bu)
    al = torch.where(kink_hi, s_hi, al)
    bl = torch.where(kink_hi, l - s_hi * l, bl)
    au = torch.where(kink_hi, torch.where(hi_upper_x, one, zero), au)
    bu = torch.where(kink_hi, torch.where(hi_upper_x, zero, one * hi), bu)
    au = torch.where(both, s_up, au)
    bu = torch.where(both, hi - s_up * hi, bu)
    al = torch.where(both, s_dn, al)
    bl = torch.where(both, lo - s_dn * lo, bl)
    return al, bl, au, bu


def _s_shaped(l: torch.Tensor, u: torch.Tensor, f, df) -> Lines:
    """Sigmoid/Tanh (increasing, convex below 0, concave above 0).

    Convex piece (``u <= 0``): chord above, tangent at the midpoint below; concave piece
    mirrored. Mixed case: DeepPoly's lines through ``(l, f(l))`` below and ``(u, f(u))``
    above with slope ``min(f'(l), f'(u))``, sound because ``f'`` is unimodal with its peak
    at 0, so ``f' >= min(f'(l), f'(u))`` on ``[l, u]``. Narrow intervals: constants.
    """
    fl, fu = f(l), f(u)
    mid = (l + u) / 2
    fm, dm = f(mid), df(mid)
    chord = _safe_div(fu - fl, u - l)
    lam = torch.minimum(df(l), df(u))
    convex, concave = u <= 0, l >= 0
    narrow = (u - l) <= NARROW_WIDTH

    al = torch.where(convex, dm, torch.where(concave, chord, lam))
    bl = torch.where(convex, fm - dm * mid, torch.where(concave, fl - chord * l, fl - lam * l))
    au = torch.where(convex, chord, torch.where(concave, dm, lam))
    bu = torch.where(convex, fu - chord * u, torch.where(concave, fm - dm * mid, fu - lam * u))
    zero = torch.zeros_like(l)
    return (torch.where(narrow, zero, al), torch.where(narrow, fl, bl),
            torch.where(narrow, zero, au), torch.where(narrow, fu, bu))


def _sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _tanh_grad(x: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(x) ** 2


def relax_elementwise(layer: Layer, l: torch.Tensor, u: torch.Tensor) -> Lines:
    """Lines ``(al, bl, au, bu)`` with ``al x + bl <= layer(x) <= au x + bu`` on ``[l, u]``."""
    if isinstance(layer, ReLU):
        return _relu_like(l, u, 0.0)
    if isinstance(layer, LeakyReLU):
        return _relu_like(l, u, layer.negative_slope)
    if isinstance(layer, Clamp):
        return _clamp(l, u, layer.low, layer.high)
    if isinstance(layer, Sigmoid):
        return _s_shaped(l, u, torch.sigmoid, _sigmoid_grad)
    if isinstance(layer, Tanh):
        return _s_shaped(l, u, torch.tanh, _tanh_grad)
    raise NotImplementedError(f"no linear relaxation for layer {layer.kind}")


@dataclass(frozen=True)
class MaxPoolRelaxation:
    """DeepPoly relaxation of a max-pool, per region and output unit (flat indices).

    Lower: ``y >= x[argmax_lower]``. Upper: ``y <= x[argmax_lower]`` where that input's
    lower bound dominates every other input's upper bound (then ``y`` equals it), else
    ``y <= max upper``. Padding never wins, so it is left out of every window.
    """

    index: torch.Tensor  # (B, out) flat input index with the largest lower bound
    dominated: torch.Tensor  # (B, out) bool: that input is the max on the whole region
    upper: torch.Tensor  # (B, out) max of the window's upper bounds
    lower: torch.Tensor  # (B, out) max of the window's lower bounds


def window_table(layer: MaxPool2d, shape: tuple[int, ...], device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, valid)``: each output's window of flat input indices (padding: index 0, invalid)."""
    table = torch.as_tensor(layer.window_indices(tuple(shape)), device=device)
    valid = table >= 0
    return table.clamp_min(0), valid


def maxpool_relaxation(layer: MaxPool2d, shape: tuple[int, ...], l: torch.Tensor, u: torch.Tensor) -> MaxPoolRelaxation:
    """The :class:`MaxPoolRelaxation` of ``layer`` on input bounds ``l, u`` of shape (B, *shape)."""
    table, valid = window_table(layer, shape, l.device)
    batch = l.shape[0]
    lw = l.reshape(batch, -1)[:, table]  # (B, out, k)
    uw = u.reshape(batch, -1)[:, table]
    lw = torch.where(valid, lw, torch.full_like(lw, -torch.inf))
    uw = torch.where(valid, uw, torch.full_like(uw, -torch.inf))
    best_l, pos = lw.max(dim=-1)
    index = table[torch.arange(table.shape[0], device=l.device).unsqueeze(0), pos]
    others = uw.scatter(-1, pos.unsqueeze(-1), -torch.inf)
    dominated = best_l >= others.max(dim=-1).values
    return MaxPoolRelaxation(index, dominated, uw.max(dim=-1).values, best_l)
