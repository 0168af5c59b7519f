"""``verify``: is a point robust within eps? A proof, a re-checked counterexample, or unknown."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import Interrupted, InvalidInputError
from ..specs import DEFAULT_MARGIN
from .checks import BACKENDS, BOUND_METHODS, check_eps, check_flag, check_threads, make_query, warn_unbounded_z3
from .results import ReportingHistory, SolveRecord, Verdict, VerdictStatus
from .stages import ATTACK_TIME_SHARE, Finding, accept_point, attack, solve_exact


def check_options(backend: str, bounds_method: str, time_limit) -> float | None:
    """Validate the solver options shared by the query entry points."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if bounds_method not in BOUND_METHODS:
        raise InvalidInputError(f"bounds_method must be one of {BOUND_METHODS}, got {bounds_method!r}")
    if time_limit is not None:
        time_limit = check_eps(time_limit, "time_limit")
        if time_limit == 0:
            raise InvalidInputError("time_limit must be > 0 (or None for no limit)")
    return time_limit


def verify(network, x, eps, norm: str = "linf", target: int | None = None, *, label: int | None = None,
           domain=None, margin: float = DEFAULT_MARGIN, backend: str = "scip", bounds_method: str = "crown",
           time_limit: float | None = None, model=None, attack_first: bool = True, threads: int = 1,
           progress: Callable[[SolveRecord], None] | None = None) -> Verdict:
    """Decide whether every point within ``eps`` of ``x`` (norm ``linf``/``l1``, clipped to the
    domain) keeps the label (untargeted) or avoids class ``target`` (targeted).

    An adversarial point is one where the other class beats the label (or every other class,
    for a target) by at least ``margin`` > 0 in the encoding, and strictly in the float64
    re-check. ``robust`` is only returned when proved (by bounds or an infeasible MILP/SMT);
    ``not_robust`` only with a counterexample that passed the re-check; otherwise ``unknown``.
    ``network`` may be a Network, a torch module or a model path; ``model`` an extra torch
    module to re-check counterexamples on (defaults to ``network`` when that is a module).
    ``threads > 1`` splits the MILP into ReLU-phase sub-domains solved side by side
    (SCIP, dense ReLU networks; :mod:`exactverify.queries.split`). ``progress``, if given, gets
    every step as it is recorded and, every few seconds while a SCIP MILP runs, a step with
    outcome ``running`` (elapsed time, nodes, bounds so far; not kept in ``history``).
    """
    start = time.perf_counter()
    eps = check_eps(eps)
    threads = check_threads(threads)
    attack_first = check_flag(attack_first, "attack_first")
    time_limit = check_options(backend, bounds_method, time_limit)
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a callable taking a SolveRecord, got {type(progress).__name__}")
    query = make_query(network, x, norm, target, label, domain, margin, model)
    warn_unbounded_z3(query.network, backend, time_limit)
    history: list[SolveRecord] = [] if progress is None else ReportingHistory(progress)

    try:
        finding = _decide(query, eps, backend, bounds_method, time_limit, attack_first, history, threads, progress)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        seconds = time.perf_counter() - start
        raise Interrupted(Verdict(status=VerdictStatus.UNKNOWN, reason=f"interrupted by Ctrl-C after {seconds:.1f} s",
                                  label=query.label, target=query.target, eps=eps, norm=norm, seconds=seconds,
                                  history=list(history))) from exc
    return Verdict(
        status=VerdictStatus(finding.outcome), reason=finding.reason, label=query.label, target=query.target,
        eps=eps, norm=norm, counterexample=finding.point if finding.outcome == "not_robust" else None,
        validated=finding.ir_ok if finding.point is not None else None,
        model_validated=finding.model_ok, distortion=finding.distortion if finding.point is not None else None,
        logits=finding.logits, seconds=time.perf_counter() - start, history=list(history),
    )


def _decide(query, eps, backend, bounds_method, time_limit, attack_first, history, threads=1,
            progress=None) -> Finding:
    start = time.perf_counter()
    centre = accept_point(query, query.x, eps, "centre")
    if centre.outcome == "not_robust":
        history.append(SolveRecord("centre", eps, "not_robust", time.perf_counter() - start))
        centre.reason = "the centre itself is adversarial"
        return centre
    if attack_first and eps > 0:
        tick = time.perf_counter()
        deadline = None if time_limit is None else start + ATTACK_TIME_SHARE * time_limit
        (found,) = attack(query, [eps], deadline=deadline)
        history.append(SolveRecord("attack", eps, "not_robust" if found else "unknown", time.perf_counter() - tick))
        if found is not None:
            return found
    remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - start), 0.01)
    return solve_exact(query, eps, backend=backend, bounds_method=bounds_method, time_limit=remaining,
                       minimise=False, history=history, threads=threads, progress=progress)
