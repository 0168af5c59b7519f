"""Result types of the exact queries: verdicts, distortion bounds, solver-call records."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np


class VerdictStatus(str, Enum):
    """The only three answers :func:`exactverify.verify` gives."""

    ROBUST = "robust"  # proved: no point of the region reaches the adversarial set
    NOT_ROBUST = "not_robust"  # a counterexample that passed the float64 re-check
    UNKNOWN = "unknown"  # timeout, failed validation or solver error; see ``reason``


@dataclass
class SolveRecord:
    """One step of a query: a bound pass, an attack or a solver call, and what it gave."""

    stage: str  # "attack", "bounds", "milp", "smt", "polish" (:mod:`.polish`)
    eps: float | None
    outcome: str  # robust / not_robust / unknown / optimal / ...
    seconds: float
    raw_status: str = ""
    objective: float | None = None
    bound: float | None = None
    nodes: int | None = None
    unstable: list[int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class ReportingHistory(list):
    """A query's history that also hands every step to ``report`` as it is recorded."""

    def __init__(self, report) -> None:
        super().__init__()
        self.report = report

    def append(self, step: SolveRecord) -> None:
        super().append(step)
        self.report(step)


@dataclass
class Verdict:
    """Answer of :func:`exactverify.verify`.

    ``validated`` is True when the counterexample passed the float64 re-check on the IR
    (and on the user's model: ``model_validated``, for a torch module or a model file given;
    None when the network was given as a Network and no ``model``); a counterexample
    that fails it never becomes a ``not_robust`` verdict, and never a ``robust`` one.
    """

    status: VerdictStatus
    reason: str
    label: int
    target: int | None
    eps: float
    norm: str
    counterexample: np.ndarray | None = None
    validated: bool | None = None
    model_validated: bool | None = None
    distortion: float | None = None
    logits: np.ndarray | None = None
    seconds: float = 0.0
    history: list[SolveRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "status": self.status.value, "reason": self.reason, "label": self.label, "target": self.target,
            "eps": self.eps, "norm": self.norm, "validated": self.validated,
            "model_validated": self.model_validated, "distortion": self.distortion,
            "counterexample": None if self.counterexample is None else self.counterexample.reshape(-1).tolist(),
            "logits": None if self.logits is None else self.logits.reshape(-1).tolist(),
            "seconds": self.seconds, "history": [r.to_dict() for r in self.history],
        }


@dataclass
class DistortionResult:
    """Answer of :func:`exactverify.minimal_distortion`: proved ``lower <= d* <= upper``.

    ``status`` is ``"optimal"`` when ``upper - lower <= tol`` was reached,
    ``"no_counterexample"`` when it was proved that no adversarial example exists in the
    domain (``upper`` is inf), and ``"unknown"`` otherwise (time limit, failed check):
    the bounds are then the best proved so far.
    """

    lower: float
    upper: float
    counterexample: np.ndarray | None
    status: str
    norm: str
    label: int
    target: int | None
    method: str
    tol: float
    reason: str = ""
    attack_distortion: float | None = None
    seconds: float = 0.0
    history: list[SolveRecord] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.upper - self.lower

    def to_dict(self) -> dict:
        finite = (lambda v: v if v is None or math.isfinite(v) else None)  # noqa: E731
        return {
            "lower": self.lower, "upper": finite(self.upper), "status": self.status, "norm": self.norm,
            "label": self.label, "target": self.target, "method": self.method, "tol": self.tol,
            "reason": self.reason, "attack_distortion": self.attack_distortion, "seconds": self.seconds,
            "counterexample": None if self.counterexample is None else self.counterexample.reshape(-1).tolist(),
            "history": [r.to_dict() for r in self.history],
        }
