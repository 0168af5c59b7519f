"""``minimal_distortion``: provably minimal adversarial distortion, by bisection or directly.

Bisection follows Carlini et al.: an upper bound from a batched PGD warm start (refined by
bisecting PGD's budget), a lower bound from the largest radius that one batched CROWN pass
certifies, and exact robustness queries until ``upper - lower <= tol``. Every counterexample
is first polished to the smallest one in its linear region and the regions next to it
(:mod:`.polish`), which usually leaves the upper bound within ``tol`` of the optimum; so
the first probe is just below it (:func:`next_probe`), and the probes fall back to the
midpoint when they keep finding counterexamples; a probe that times out makes the next
ones bisect below it. Direct minimises the distortion in one MILP over the ball of the
(polished) warm start's radius and reports the solver's dual bound (less
``DUAL_BOUND_SLACK``) as the lower bound. Both are anytime: on a time limit they return
the bounds proved so far with status ``unknown``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..errors import Interrupted, InvalidInputError
from ..specs import DEFAULT_MARGIN
from .checks import check_eps, check_threads, make_query, warn_unbounded_z3
from .polish import polish
from .results import DistortionResult, SolveRecord
from .stages import (
    ATTACK_TIME_SHARE,
    Finding,
    accept_point,
    attack,
    certified_radius,
    meets_margin,
    refine_attack,
    solve_exact,
)
from .verify import check_options

#: The warm start tries PGD at eps_max * 2**-k for k < WARM_START_LEVELS (one batch).
WARM_START_LEVELS = 16
#: The certified lower bound tries CROWN at upper * k / CERTIFY_LEVELS, k = 1..CERTIFY_LEVELS.
CERTIFY_LEVELS = 32
#: Without an input domain, the largest radius the search considers.
UNBOUNDED_RADIUS = 1e3
METHODS = ("bisection", "direct")
#: The finest ``tol`` accepted: the solvers decide the eps-ball constraints up to their
#: feasibility tolerance (1e-6 for SCIP and OR-Tools), so a finer bracket means nothing, and
#: below float resolution the closing probe ``upper - tol`` would be ``upper`` itself.
MIN_TOL = 1e-6
#: The first probe below a (polished) upper bound is ``upper - CLOSING_STEP_FACTOR * tol``
#: (just inside ``tol``, so that one robust answer there ends the search despite rounding).
CLOSING_STEP_FACTOR = 0.99
#: Probes in a row that may find a counterexample just below them before the step below the
#: upper bound starts doubling. A closing probe's counterexample, polished, is usually a new
#: upper bound within ``tol`` of the optimum, so the next probe closes in at one ``tol`` again
#: (MNIST image 9 target 6 L-inf: doubling after the first such probe sent the search to a
#: probe 2 tol down that timed out, while the probe 1 tol down is decided in 28 s).
FREE_MISSES = 1
#: An exact probe may use this share of the time left (the rest goes to probes nearer the
#: lower bound if it times out, which keeps the anytime lower bound moving)... A search can
#: only end with a proof once a probe within ``tol`` of the upper bound is proved robust, and
#: such a closing probe is the hardest MILP of the search; with 0.6 the closing probes of
#: MNIST image 2 target 3 L-inf got 29-32 s of the 43 s they need.
PROBE_TIME_SHARE = 0.85
#: ...unless less than this many seconds are left, which the probe then gets whole.
PROBE_TIME_FLOOR = 10.0
#: MILP backends that can polish a counterexample (z3 queries polish with the first).
POLISH_BACKENDS = ("scip", "ortools")


def upper_or(default: float, upper: float) -> float:
    return upper if math.isfinite(upper) else default


def minimal_distortion(network, x, norm: str = "linf", target: int | None = None, *, label: int | None = None,
                       domain=None, method: str = "bisection", tol: float = 1e-3,
                       margin: float = DEFAULT_MARGIN, backend: str = "scip", bounds_method: str = "crown",
                       time_limit: float | None = None, model=None, threads: int = 1,
                       progress: Callable[[float, float, SolveRecord | None], None] | None = None) -> DistortionResult:
    """Bounds ``lower <= d* <= upper`` on the smallest ``norm`` distortion of ``x`` that makes
    the network misclassify it (as ``target``, if given) by at least ``margin``.

    ``counterexample`` is the re-checked point at distance ``upper``; ``history`` lists every
    attack, bound pass and solver call. See :func:`exactverify.verify` for the arguments
    (``threads`` splits each decision MILP of the bisection; direct minimisation and
    polishing stay one MILP). ``progress(lower, upper, last_step)``, if given, is called
    with the anytime bounds once the attack and the certified radius have set them, after
    every exact probe of the bisection, and every few seconds while a SCIP MILP runs (then
    ``last_step`` has outcome ``running`` and the solver's nodes and bounds so far, and is not
    kept in the history); the command line prints these lines.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    tol = check_eps(tol, "tol")
    threads = check_threads(threads)
    if tol < MIN_TOL:
        raise InvalidInputError(f"tol must be >= {MIN_TOL:g} (the solvers' feasibility tolerance), got {tol!r}")
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a callable (lower, upper, last_step), got {type(progress).__name__}")
    time_limit = check_options(backend, bounds_method, time_limit)
    if backend == "z3" and method == "direct":
        raise InvalidInputError("method='direct' needs a MILP backend ('scip' or 'ortools'); z3 supports bisection")
    query = make_query(network, x, norm, target, label, domain, margin, model)
    warn_unbounded_z3(query.network, backend, time_limit)
    snapshot: list = []  # set by _search: the result it would return now (bounds proved so far)
    try:
        return _search(query, norm, method, tol, backend, bounds_method, time_limit, threads, progress, start,
                       snapshot)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted) or not snapshot:
            raise
        raise Interrupted(snapshot[0](f"interrupted by Ctrl-C after {time.perf_counter() - start:.1f} s; "
                                      "the bounds are those proved before it")) from exc


def _search(query, norm: str, method: str, tol: float, backend: str, bounds_method: str, time_limit: float | None,
            threads: int, progress, start: float, snapshot: list) -> DistortionResult:
    """The body of :func:`minimal_distortion` on a validated query; ``snapshot[0](reason)`` gives
    the ``unknown`` result with the bounds proved so far (for an interruption)."""
    history: list[SolveRecord] = []

    def remaining() -> float | None:
        if time_limit is None:
            return None
        return time_limit - (time.perf_counter() - start)

    def result(lower, upper, point, status, reason, attack_distortion=None) -> DistortionResult:
        return DistortionResult(float(lower), float(upper), point, status, norm, query.label, query.target,
                                method, tol, reason, attack_distortion, time.perf_counter() - start, history)

    lower, upper, point, attack_distortion = 0.0, math.inf, None, None
    snapshot.append(lambda reason: result(lower, upper, point, "unknown", reason, attack_distortion))

    centre = accept_point(query, query.x, 0.0, "centre")
    if meets_margin(query, centre):  # (a centre the other class wins by less is searched from like any)
        return result(0.0, 0.0, centre.point, "optimal", "the centre itself is adversarial")

    eps_max = query.max_radius()
    search_max = eps_max if math.isfinite(eps_max) else UNBOUNDED_RADIUS
    tick = time.perf_counter()
    grid = [search_max * 2.0 ** -k for k in range(WARM_START_LEVELS)]
    attack_deadline = None if time_limit is None else start + ATTACK_TIME_SHARE * time_limit
    found = [f for f in attack(query, grid, deadline=attack_deadline) if f is not None]
    best: Finding | None = min(found, key=lambda f: f.distortion) if found else None
    if best is not None:
        refined = refine_attack(query, best.distortion, deadline=attack_deadline)
        if refined is not None and refined.distortion < best.distortion:
            best = refined
    attack_distortion = None if best is None else best.distortion
    history.append(SolveRecord("attack", None, "not_robust" if best else "unknown", time.perf_counter() - tick,
                               objective=attack_distortion))
    polish_backend = backend if backend in POLISH_BACKENDS else POLISH_BACKENDS[0]

    def deadline() -> float | None:
        return None if time_limit is None else start + time_limit

    best = polish(query, best, backend=polish_backend, history=history, deadline=deadline())
    if best is not None and not meets_margin(query, best):  # misclassified, but by less than the margin
        history.append(SolveRecord("attack", None, "unknown", 0.0, raw_status=(
            f"attack point at {best.distortion:.6g} beats the other classes by less than the margin "
            f"{query.margin:g}, also after polishing: not an upper bound")))
        best = None
    lower, upper = 0.0, math.inf if best is None else best.distortion
    point = None if best is None else best.point
    # A certified radius from one batched CROWN pass over a grid of radii: a proved lower bound.
    tick = time.perf_counter()
    lower = certified_radius(query, [upper_or(search_max, upper) * k / CERTIFY_LEVELS
                                     for k in range(1, CERTIFY_LEVELS + 1)])
    history.append(SolveRecord("bounds", lower, "robust" if lower > 0 else "unknown", time.perf_counter() - tick,
                               raw_status="crown certified radius"))

    def tell() -> None:
        if progress is not None:
            progress(float(lower), float(upper), history[-1] if history else None)

    tell()
    if lower >= upper:  # cannot happen with sound bounds and a re-checked point; never hide it
        return result(0.0, upper, point, "unknown", "certified radius exceeds a re-checked counterexample",
                      attack_distortion)
    running = None if progress is None else (lambda step: progress(float(lower), float(upper), step))
    solve = dict(backend=backend, bounds_method=bounds_method, history=history, bound_cache={}, progress=running)

    if best is None:
        # No attack succeeded: decide the largest region exactly first.
        budget = remaining()
        if budget is not None and budget <= 0:
            return result(0.0, math.inf, None, "unknown", "time limit before any exact query")
        finding = solve_exact(query, search_max, time_limit=budget, minimise=(method == "direct"),
                              known_lower=lower, threads=threads, **solve)
        if finding.outcome == "robust":
            if math.isfinite(eps_max):
                return result(eps_max, math.inf, None, "no_counterexample",
                              f"no adversarial example in the domain ({finding.reason})", attack_distortion)
            return result(search_max, math.inf, None, "unknown",
                          f"no adversarial example within {search_max} ({finding.reason}); the domain is unbounded")
        if finding.outcome == "unknown":
            return result(max(finding.lower_bound or 0.0, lower), math.inf, None, "unknown", finding.reason,
                          attack_distortion)
        solved_lower = finding.lower_bound  # the MILP's dual bound (a polished point carries none)
        finding = polish(query, finding, backend=polish_backend, history=history, deadline=deadline())
        if not meets_margin(query, finding):
            return result(max(solved_lower or 0.0, lower), math.inf, None, "unknown", "the exact solve's "
                          f"counterexample beats the other classes by less than the margin {query.margin:g}, "
                          "also after polishing", attack_distortion)
        upper, point = finding.distortion, finding.point
        if method == "direct":
            lower = min(max(solved_lower or 0.0, lower), upper)
            status = "optimal" if upper - lower <= tol else "unknown"
            return result(lower, upper, point, status, finding.reason, attack_distortion)

    if method == "direct":
        budget = remaining()
        if budget is not None and budget <= 0:
            return result(lower, upper, point, "unknown", "time limit before the MILP", attack_distortion)
        finding = solve_exact(query, upper, time_limit=budget, minimise=True, known_lower=lower, **solve)
        if finding.outcome == "robust":
            return result(lower, upper, point, "unknown",
                          "MILP infeasible although a re-checked counterexample exists in the region: "
                          "solver tolerance problem; bounds are the attack's", attack_distortion)
        solved_lower = finding.lower_bound  # the MILP's dual bound (a polished point carries none)
        if finding.outcome == "not_robust":
            finding = polish(query, finding, backend=polish_backend, history=history, deadline=deadline())
            if meets_margin(query, finding) and finding.distortion < upper:
                upper, point = finding.distortion, finding.point
        lower = min(max(solved_lower or 0.0, lower), upper)
        status = "optimal" if upper - lower <= tol else "unknown"
        return result(lower, upper, point, status, finding.reason, attack_distortion)

    misses = 0  # probes in a row that found a counterexample only just below them (the step doubles)
    ceiling = math.inf  # the smallest radius whose exact query timed out: probes stay below it
    last_reason = "time limit reached during bisection"
    while upper - lower > tol:
        budget = remaining()
        if budget is not None and budget <= 0:
            return result(lower, upper, point, "unknown", last_reason, attack_distortion)
        if ceiling - lower <= tol:  # nothing left to bisect below a probe that ended unknown
            return result(lower, upper, point, "unknown", last_reason, attack_distortion)
        probe = next_probe(lower, min(upper, ceiling), tol, misses if ceiling > upper else math.inf)
        tick = time.perf_counter()
        step_deadline = None if time_limit is None else time.perf_counter() + ATTACK_TIME_SHARE * budget
        quick = None
        if probe <= (lower + upper) / 2:  # a closing probe sits below a polished point: PGD rarely helps there
            (quick,) = attack(query, [probe], deadline=step_deadline)
            quick = quick if meets_margin(query, quick) else None
            history.append(SolveRecord("attack", probe, "not_robust" if quick else "unknown",
                                       time.perf_counter() - tick))
        left = remaining()
        probe_limit = None if left is None else PROBE_TIME_SHARE * left if left > PROBE_TIME_FLOOR else left
        finding = quick or solve_exact(query, probe, time_limit=probe_limit, minimise=False, threads=threads,
                                       **solve)
        if finding.outcome == "robust":
            lower, misses = probe, 0
        elif finding.outcome == "not_robust":
            finding = polish(query, finding, backend=polish_backend, history=history, deadline=deadline())
            step = upper - probe
            if not meets_margin(query, finding) or finding.distortion >= upper:
                # nothing that bounds the distortion (a point short of the margin, which polishing
                # could not lift to it within the probe's reach): bisect below the probe as after a timeout
                ceiling = min(ceiling, probe)
                last_reason = (f"the counterexample at eps={probe:.6g} gave no point below the upper bound that "
                               "beats the other classes by the margin")
                tell()
                continue
            upper, point = finding.distortion, finding.point
            # a polished point far below the probe is a fresh upper bound: close in on it again
            misses = 0 if upper <= probe - step else misses + 1
        else:
            ceiling, last_reason = min(ceiling, probe), finding.reason
        tell()
    return result(lower, upper, point, "optimal", "bisection converged", attack_distortion)


def next_probe(lower: float, upper: float, tol: float, misses: float) -> float:
    """The radius the next exact query decides.

    With a polished upper bound the optimum is usually within ``tol`` of it, so the first
    probe is ``upper - tol``: one robust answer there ends the search. Each probe in a row
    that finds a counterexample only just below it, after the first ``FREE_MISSES``, doubles
    the step, so a poor upper bound falls back to plain bisection (the midpoint) after a few
    probes; ``misses=inf`` asks for the midpoint (after a timeout, ``upper`` is the probe
    that timed out).
    """
    if math.isinf(misses):
        return (lower + upper) / 2
    return upper - min(tol * CLOSING_STEP_FACTOR * 2.0 ** max(misses - FREE_MISSES, 0), (upper - lower) / 2)
