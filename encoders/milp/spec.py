"""Output specifications (unions of polyhedra ``A y <= b``) as MILP constraints."""

from __future__ import annotations

import numpy as np

from encoders.backends.base import Backend
from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.specs import OutputSpec


def _flat(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def row_range(A: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of every row ``A_r . y`` over the box ``lower <= y <= upper``."""
    pos, neg = np.maximum(A, 0.0), np.minimum(A, 0.0)
    return pos @ lower + neg @ upper, pos @ upper + neg @ lower


def _checked(output_vars, spec: OutputSpec, output_lower, output_upper):
    """Output variables and bounds as flat arrays, checked against ``spec``."""
    if not isinstance(spec, OutputSpec):
        raise InvalidInputError(f"spec must be an OutputSpec, got {type(spec).__name__}")
    y = np.asarray(output_vars, dtype=np.int64).reshape(-1)
    lower, upper = _flat(output_lower), _flat(output_upper)
    if not (len(y) == len(lower) == len(upper) == spec.num_outputs):
        raise ShapeMismatchError(
            f"spec has {spec.num_outputs} outputs; got {len(y)} output vars and bounds of "
            f"{len(lower)}/{len(upper)} entries"
        )
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise InvalidInputError("output bounds must be finite (they give the disjunction's big-M)")
    return y, lower, upper


def encode_output_spec_counted(backend: Backend, output_vars, spec: OutputSpec, output_lower,
                               output_upper) -> int:
    """:func:`encode_output_spec` that returns the number of binaries it added."""
    y, lower, upper = _checked(output_vars, spec, output_lower, output_upper)
    if len(spec.disjuncts) == 1:
        conj = spec.disjuncts[0]
        for A_r, b_r in zip(conj.A, conj.b, strict=True):
            backend.add_constraint(y, A_r, "<=", float(b_r))
        return 0
    zs = []
    for j, conj in enumerate(spec.disjuncts):
        low, high = row_range(conj.A, lower, upper)
        impossible = bool(np.any(low > conj.b))  # some row fails everywhere on the output box
        z = backend.add_var(0.0, 0.0 if impossible else 1.0, integer=True, name=f"disjunct{j}")
        zs.append(z)
        if impossible:
            continue
        for r, (A_r, b_r) in enumerate(zip(conj.A, conj.b, strict=True)):
            big_m = float(high[r] - b_r)  # the row's largest violation on the output box
            if big_m <= 0.0:
                continue  # the row holds on the whole box
            # A_r y <= b_r + M (1 - z)
            backend.add_constraint(np.r_[y, z], np.r_[A_r, big_m], "<=", float(b_r) + big_m, name=f"d{j}_{r}")
    backend.add_constraint(zs, np.ones(len(zs)), "==", 1.0, name="one_disjunct")
    return len(zs)


def encode_spec_slack(backend: Backend, output_vars, spec: OutputSpec, output_lower, output_upper) -> tuple[int, int]:
    """A variable ``s <= max_j min_r (b_r - A_r y)`` over the disjuncts j and their rows r:
    maximised, it is the spec's largest slack, ``>= 0`` exactly where ``y`` is in the spec.

    Returns ``(s, binaries added)``. One disjunct: ``s <= b_r - A_r y`` per row. Several:
    one binary per disjunct, exactly one selected, and the rows of the others relaxed by
    their big-M ``s_max - (b_r - max A_r y)`` (``s_max`` the largest slack on the output box).
    Deciding "is some ``y`` in the spec" as "is ``max s >= 0``" lets the solver prune by the
    objective bound instead of searching for a feasible point blindly (see ``solve_exact``).
    """
    y, lower, upper = _checked(output_vars, spec, output_lower, output_upper)
    ranges = [row_range(conj.A, lower, upper) for conj in spec.disjuncts]
    row_low = [conj.b - high for conj, (_, high) in zip(spec.disjuncts, ranges, strict=True)]  # least slack per row
    row_high = [conj.b - low for conj, (low, _) in zip(spec.disjuncts, ranges, strict=True)]
    s_max = max(float(np.min(high)) if len(high) else 0.0 for high in row_high)
    s_min = min(float(np.min(low)) if len(low) else 0.0 for low in row_low)
    s = backend.add_var(s_min, s_max, name="spec_slack")
    single = len(spec.disjuncts) == 1
    zs = []
    for j, conj in enumerate(spec.disjuncts):
        z = None if single else backend.add_var(0.0, 1.0, integer=True, name=f"disjunct{j}")
        if z is not None:
            zs.append(z)
        for r, (A_r, b_r) in enumerate(zip(conj.A, conj.b, strict=True)):
            if single:  # s + A_r y <= b_r
                backend.add_constraint(np.r_[y, s], np.r_[A_r, 1.0], "<=", float(b_r), name=f"slack_{r}")
                continue
            big_m = max(s_max - float(row_low[j][r]), 0.0)
            # s + A_r y <= b_r + M (1 - z)
            backend.add_constraint(np.r_[y, s, z], np.r_[A_r, 1.0, big_m], "<=", float(b_r) + big_m,
                                   name=f"slack{j}_{r}")
    if zs:
        backend.add_constraint(zs, np.ones(len(zs)), "==", 1.0, name="one_disjunct")
    return s, len(zs)


def encode_output_spec(backend: Backend, output_vars, spec: OutputSpec, output_lower, output_upper) -> None:
    """Constrain the output variables to lie in ``spec`` (a union of polyhedra).

    One disjunct: its rows as plain constraints. Several: one binary per disjunct,
    exactly one selected, and each row relaxed by its own big-M = max of ``A_r . y - b_r``
    over the output bounds. Disjuncts that no point of the output box satisfies get
    their binary fixed to 0.
    """
    encode_output_spec_counted(backend, output_vars, spec, output_lower, output_upper)
