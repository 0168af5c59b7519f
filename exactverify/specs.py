"""Output specifications: a set of outputs given as a union of polyhedra.

An :class:`OutputSpec` is the set ``Y = union_j {y : A_j y <= b_j}`` over flat outputs,
which is what a VNNLIB file expresses. Queries ask whether some input of a region is
mapped *into* ``Y`` (for robustness, ``Y`` is the set of misclassified outputs); a
point of ``Y`` is a counterexample, and proving ``Y`` unreachable proves the property.

Margins in the helpers are strict-inequality substitutes: "class t beats class j" is
encoded as ``y_t - y_j >= margin`` with ``margin > 0`` so that logit ties (where argmax
is arbitrary) never count as misclassifications.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidInputError

#: Default margin by which an adversarial class must beat the others (see module doc).
DEFAULT_MARGIN = 1e-5


@dataclass(frozen=True, eq=False)
class Conjunction:
    """The polyhedron ``{y : A y <= b}``; ``A`` is (k, num_outputs), ``b`` is (k,)."""

    A: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        A = np.array(self.A, dtype=np.float64, ndmin=2)
        b = np.array(self.b, dtype=np.float64).reshape(-1)
        if A.shape[0] != b.shape[0]:
            raise InvalidInputError(f"Conjunction has {A.shape[0]} rows in A but {b.shape[0]} in b")
        if not (np.isfinite(A).all() and np.isfinite(b).all()):
            raise InvalidInputError("Conjunction A and b must be finite")
        A.setflags(write=False)
        b.setflags(write=False)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)

    def slack(self, y: torch.Tensor) -> torch.Tensor:
        """``min_i (b - A y)_i`` per sample: >= 0 inside, > 0 strictly inside."""
        A = torch.tensor(self.A, dtype=y.dtype, device=y.device)
        b = torch.tensor(self.b, dtype=y.dtype, device=y.device)
        if A.shape[0] == 0:
            return torch.full((y.shape[0],), float("inf"), dtype=y.dtype, device=y.device)
        return (b - y @ A.T).min(dim=1).values


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """A union of :class:`Conjunction` over ``num_outputs`` flat outputs."""

    disjuncts: tuple[Conjunction, ...]
    num_outputs: int
    description: str = ""

    def __post_init__(self) -> None:
        disjuncts = tuple(self.disjuncts)
        if not disjuncts:
            raise InvalidInputError("OutputSpec needs at least one disjunct")
        for index, conj in enumerate(disjuncts):
            if conj.A.shape[1] != self.num_outputs:
                raise InvalidInputError(
                    f"disjunct {index} has {conj.A.shape[1]} columns for {self.num_outputs} outputs"
                )
        object.__setattr__(self, "disjuncts", disjuncts)

    def slack(self, y) -> torch.Tensor:
        """Per-sample ``max_j slack_j(y)``: >= 0 iff ``y`` lies in the set."""
        y = torch.as_tensor(y, dtype=torch.float64)
        y = y.reshape(y.shape[0], -1)
        if y.shape[1] != self.num_outputs:
            raise InvalidInputError(f"outputs have {y.shape[1]} entries, spec expects {self.num_outputs}")
        return torch.stack([c.slack(y) for c in self.disjuncts], 1).max(1).values

    def contains(self, y, tol: float = 0.0) -> torch.Tensor:
        """Per-sample membership with absolute tolerance ``tol`` (>= 0 widens the set)."""
        return self.slack(y) >= -tol


def _check_class(index: int, num_classes: int, name: str) -> int:
    if not (0 <= int(index) < num_classes):
        raise InvalidInputError(f"{name}={index} is not a class index in [0, {num_classes})")
    return int(index)


def _check_margin(margin: float) -> float:
    if not (np.isfinite(margin) and margin >= 0):
        raise InvalidInputError(f"margin must be finite and >= 0, got {margin}")
    return float(margin)


def class_wins(target: int, num_classes: int, margin: float = DEFAULT_MARGIN) -> OutputSpec:
    """Outputs where class ``target`` beats every other class by at least ``margin``."""
    target = _check_class(target, num_classes, "target")
    margin = _check_margin(margin)
    rows = []
    for j in range(num_classes):
        if j != target:
            row = np.zeros(num_classes)
            row[j], row[target] = 1.0, -1.0  # y_j - y_t <= -margin
            rows.append(row)
    conj = Conjunction(np.array(rows).reshape(-1, num_classes), np.full(len(rows), -margin))
    return OutputSpec((conj,), num_classes, f"class {target} wins by {margin}")


def other_class_wins(label: int, num_classes: int, margin: float = DEFAULT_MARGIN) -> OutputSpec:
    """Outputs where some class ``j != label`` beats ``label`` by at least ``margin``.

    One disjunct per ``j``: ``y_j - y_label >= margin``. (Beating only ``label``, not every
    class, is what changes the argmax away from ``label``.)
    """
    label = _check_class(label, num_classes, "label")
    margin = _check_margin(margin)
    disjuncts = []
    for j in range(num_classes):
        if j != label:
            row = np.zeros((1, num_classes))
            row[0, label], row[0, j] = 1.0, -1.0  # y_label - y_j <= -margin
            disjuncts.append(Conjunction(row, np.array([-margin])))
    return OutputSpec(tuple(disjuncts), num_classes, f"some class other than {label} wins by {margin}")
