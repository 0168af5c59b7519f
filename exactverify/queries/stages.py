"""The stages a query runs through: attack, bounds, exact MILP/SMT solve.

Each stage returns a :class:`Finding` for one eps: a validated counterexample, a proof,
or nothing; the entry points in :mod:`.verify` and :mod:`.distortion` chain them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..bounds import BoundsResult, bounds
from ..bounds.crown import crown_bounds
from ..ir import Dense, Flatten
from ..regions import ball
from ..specs import Conjunction, OutputSpec
from .checks import REGION_TOLERANCE, Query, distance, excess, misclassified, project, recheck
from .results import SolveRecord
from .split import padded_known, solve_split, split_depth, split_region, supports_split

log = logging.getLogger(__name__)

#: Slack subtracted from a solver's dual bound before it is reported as a proved lower bound
#: on the minimal distortion (covers the solver's feasibility/optimality tolerances).
DUAL_BOUND_SLACK = 1e-6
#: Share of a query's time limit the PGD attacks may use (the warm start, and each
#: bisection step's attack of the remaining time) before exact solving.
ATTACK_TIME_SHARE = 0.15
#: Share of a query's remaining time that LP or MILP bound tightening may use before the MILP.
LP_TIME_SHARE = 0.3
#: A decision whose CROWN bounds leave more unstable ReLUs than this (and a live spec) first
#: tries alpha-CROWN bounds before the MILP. On a 784-input MNIST CNN (conv 16, conv 32,
#: dense 100; ~2,000 unstable ReLUs at L-inf 0.035-0.05) no SCIP MILP decided within 60 s (its
#: root LP alone took ~50 s), while alpha proved some of the regions CROWN left open
#: (``benchmarks/results/conv_verify_s22.md``). The MNIST and digits MLPs of the
#: other benchmarks (at most 72 unstable ReLUs) stay below it and keep the measured CROWN path.
ALPHA_ESCALATION_UNSTABLE = 200
#: Share of a decision's remaining time that this alpha pass may use (the rest is the MILP's).
#: The pass first optimises slopes for the spec rows alone on CROWN's intermediate bounds
#: (0.06 s on that CNN, and it proved one region that CROWN left open), then, if that does not
#: prove the region, slopes for every layer's unstable neurons (8-19 s there).
ALPHA_TIME_SHARE = 0.5
#: Raw statuses of the two alpha passes of an escalated decision, in its history.
ALPHA_SPEC_ROWS = "alpha bounds on the spec rows (escalated from crown)"
ALPHA_ALL_LAYERS = "alpha bounds on every layer (escalated from crown)"
#: Seconds per LP in bound tightening.
LP_TIME_LIMIT = 10.0
#: A search (the probes of one minimal-distortion bisection) reuses MILP-tightened bounds
#: computed at radius ``eps'`` for a probe at ``eps`` in ``[MILP_REUSE_FRACTION * eps', eps']``,
#: intersected with CROWN at ``eps``: sound (the eps-region lies inside the eps'-region), and
#: the closing probes sit within a few ``tol`` of each other. The midpoint probes after a
#: closing probe timed out (0.6-0.8 eps') reuse them too: tightening again would cost the
#: anytime lower bound the seconds it has left; further down it tightens again.
MILP_REUSE_FRACTION = 0.5
#: Backends whose decision MILPs, for a spec of one disjunct (targeted queries), maximise
#: the spec's slack ``s`` (>= 0 exactly on the spec) with an objective cutoff instead of
#: constraining ``s >= 0``: the solver then prunes every node whose bound cannot reach the
#: cutoff and stops at the first ``s >= 0``. On targeted verify MILPs of the 784-24-24-24-10
#: MNIST net near the minimal L-inf distortion (CROWN bounds, 60 s): 2.5 / 9.4 / 10.2 / 11.1 s
#: against 24.6 / 32.3 / timeout / timeout for the constraint form; ``benchmarks/
#: slack_objective.py`` (image 0, 9 targets, 2 radii, 20 s): 16/18 decided against 13/18,
#: no disagreement, 3.0x less time where both decided. With several disjuncts (one binary each) it was
#: slower: MNIST-FC 256x2/256x4 untargeted MILPs took 30 / 7.7 / 48 s as constraints and
#: 58+ / 30 / 113 s as a slack, so those keep the constraint form (:func:`slack_form`).
SLACK_OBJECTIVE_BACKENDS = ("scip",)
#: The cutoff is ``-SLACK_CUTOFF``: a point with slack >= 0 is never cut off by the
#: limit's own tolerance; any point found (slack > -SLACK_CUTOFF) is re-checked, and only
#: "no point above the cutoff" (infeasible) proves robustness.
SLACK_CUTOFF = 1e-6
#: SCIP's primal-heuristics setting for those slack-form decisions (and their split sub-MILPs).
#: Measured neutral on the 6 hardest closing probes of the MNIST 784-24-24-24-10 benchmark
#: (``benchmarks/results/split_heuristics.md``, all infeasible): one MILP 283.6 s off vs 276.8 s
#: on, the 2-thread split 170.7 vs 169.3 s. It is "off" because the session-10 reruns of the
#: minimal-distortion and attack-gap benchmarks ran with it (their commands then reproduce the
#: default engine); counterexamples come from the attacks first, and SCIP without heuristics
#: still finds integral LP points (the oracle tests decide satisfiable queries without attacks).
DECISION_HEURISTICS = "off"


#: Raw SCIP parameters of those decisions, over the backend's ``DEFAULT_PARAMS`` (which allow 3
#: rounds of cuts at the root): no cut rounds at all. Under the fixed cutoff the proof of a
#: closing probe is a search of many cheap nodes, and the root cuts cost more than they save. On
#: 12 closing probes of the MNIST 784-24-24-24-10 benchmark (6 L-inf, 6 L1; CROWN bounds, one
#: thread) it took 17% less time than 3 rounds, faster on 10 of 12 (``benchmarks/results/decision_params.md``);
#: for scale, another random seed of SCIP moved the same 12 by 11% (``decision_params_s16.md``). On
#: all 180 benchmark queries the default engine proved 160 with it against 153 before, with 22% less
#: time on the 153 (``minimal_distortion_crown60b.md`` vs ``minimal_distortion_crown60.md``, same host).
DECISION_PARAMS: dict[str, object] = {"separating/maxroundsroot": 0}


def slack_options() -> dict:
    """Solve options of a slack-form decision: the cutoff, stop at the first ``s >= 0``,
    heuristics and parameters (:data:`DECISION_HEURISTICS`, :data:`DECISION_PARAMS`)."""
    return {"cutoff": -SLACK_CUTOFF, "stop_at": 0.0, "heuristics": DECISION_HEURISTICS,
            "params": dict(DECISION_PARAMS)}


#: A MILP solver decides its rows up to tolerances relative to the values in them (SCIP: zero
#: tolerance 1e-9, LP feasibility 1e-9 and 1e-6 relative to ``max(1, |value|)``), so its
#: "infeasible" and its dual bounds resolve the spec's ``margin`` only where the margin is large
#: against the encoding's values. On a net whose values reached 2e4, SCIP's slack-form decision
#: called a ball robust whose best adversarial lead was 3e-4 (margin 1e-5; OR-Tools and z3 found
#: the point, session-20 fuzz). Where ``margin < MARGIN_RESOLUTION * v``, ``v`` the largest
#: ``|bound|`` of any value of the network on the region, a MILP's infeasible or dual bound is no
#: proof: the answer is ``unknown`` (z3 decides in exact rational arithmetic and is not affected;
#: bound-based proofs are sound in float64). A heuristic floor, not a rigorous bound (a
#: floating-point MILP solver gives none): in that failure SCIP's slack was off by 2.9e-4 =
#: 1.45e-8 ``v``, so a lead above the margin by less than about that can still be missed; a
#: larger floor would approach the MNIST benchmark's proofs, whose regions reach ``v`` <= 286
#: under CROWN (a floor of 2.9e-6 against the default margin 1e-5; tested).
MARGIN_RESOLUTION = 1e-8


def largest_value(net_bounds: BoundsResult) -> float:
    """The largest ``|bound|`` of any value of the network (input included) on the region."""
    return max(float(t.abs().max()) for t in (*net_bounds.lower, *net_bounds.upper) if t.numel())


def unresolvable_margin(query: Query, net_bounds: BoundsResult) -> str | None:
    """Why a MILP's infeasible cannot prove the query at these bounds (:data:`MARGIN_RESOLUTION`), or None."""
    value = largest_value(net_bounds)
    if query.margin >= MARGIN_RESOLUTION * value:
        return None
    return (f"not a proof: the network's values reach {value:.3g} on this region, where a MILP solver's relative "
            f"tolerances exceed the margin {query.margin:g} (MARGIN_RESOLUTION {MARGIN_RESOLUTION:g}); pass "
            f"margin >= {MARGIN_RESOLUTION * value:.3g}, use backend='z3', or rescale the network")


#: Callback of the query entry points' ``progress`` option: gets every step of the history as it is
#: recorded, and in-flight "running" steps while a MILP solves (those are not kept in the history).
StepCallback = Callable[[SolveRecord], None]


def running_reporter(progress: StepCallback, eps: float, mode: str, where: str = ""):
    """The backend's ``progress`` solve option for one MILP: its reports as ``running`` steps.

    ``mode`` says what the solver's numbers mean: ``"slack"`` (a decision maximising the spec's
    slack: robust once the bound is below the cutoff ``-SLACK_CUTOFF``), ``"distortion"``
    (direct minimisation: the bound and the best point bracket the distortion) or
    ``"feasibility"`` (a decision by constraints: no bound to show)."""

    def report(update) -> None:
        if mode == "distortion":
            low = "?" if update.bound is None else f"{update.bound:.6g}"
            high = "no point yet" if update.objective is None else f"{update.objective:.6g}"
            what = f"distortion in [{low}, {high}]"
        elif mode == "slack":
            what = ("no bound yet" if update.bound is None else
                    f"spec slack <= {update.bound:.4g} (robust once below {-SLACK_CUTOFF:g})")
        else:
            what = "no counterexample found yet"
        progress(SolveRecord("milp", eps, "running", update.seconds, f"{where}{what}", update.objective,
                             update.bound, update.nodes))

    return report


#: Largest value (``|bound|`` of any value of the network on the region) at which a decision
#: still takes the slack form. Beyond it the slack objective's tolerances swamp small leads: on
#: a net whose values reached 7.5e4, SCIP's slack-form decision at a radius 0.0115 above the
#: minimal distortion (margin 1e-3, a lead that grows by 8e-8 per unit distance) said infeasible
#: even with the cutoff at -1e-3, so the search reported a lower bound above the minimum; the
#: constraint form found the point at 18750.00002 (``tests/test_solver_numerics.py``). The MNIST
#: and digits networks stay below 300 on the benchmarks' regions, so their decisions keep the
#: faster slack form.
SLACK_FORM_MAX_VALUE = 1e3


def slack_form(backend: str, spec: OutputSpec, net_bounds: BoundsResult | None = None) -> bool:
    """Whether a decision MILP on ``backend`` for ``spec`` maximises the slack (see above): one
    disjunct, and the network's values on the region (``net_bounds``) within :data:`SLACK_FORM_MAX_VALUE`."""
    if net_bounds is not None and largest_value(net_bounds) > SLACK_FORM_MAX_VALUE:
        return False
    return backend in SLACK_OBJECTIVE_BACKENDS and len(spec.disjuncts) == 1


@dataclass
class Finding:
    """What one stage established at one eps."""

    outcome: str  # "robust", "not_robust", "unknown"
    reason: str
    point: np.ndarray | None = None
    distortion: float | None = None
    ir_ok: bool | None = None
    model_ok: bool | None = None
    logits: np.ndarray | None = None
    lower_bound: float | None = None  # direct minimisation: proved lower bound on the distortion


def accept_point(query: Query, raw_point, eps: float, source: str) -> Finding:
    """Project a candidate into the eps-region and re-check it; a failed check is ``unknown``.

    A candidate that lay more than ``REGION_TOLERANCE`` outside the region says so in the reason.
    """
    outside = excess(query, raw_point, eps)
    if outside > REGION_TOLERANCE:
        log.warning("%s point lay %.3g outside the eps=%g region; projected before the re-check", source, outside, eps)
        source = f"{source} (projected from {outside:.3g} outside the region)"
    point = project(query, raw_point, eps)
    ir_ok, model_ok, logits = recheck(query, point)
    dist = distance(query, point)
    if ir_ok and model_ok is not False:
        also = " and on the user's model" if model_ok else ""
        return Finding("not_robust", f"{source} counterexample re-checked in float64{also}",
                       point, dist, ir_ok, model_ok, logits)
    where = "the IR" if not ir_ok else "the user's model"
    return Finding("unknown", f"{source} point failed the float64 re-check on {where}",
                   point, dist, ir_ok, model_ok, logits)


def margin_shortfall(query: Query, finding: Finding | None) -> float:
    """By how much a re-checked counterexample's float64 lead falls short of the query's margin
    (0 when it meets the margin; inf when it is no counterexample)."""
    if finding is None or finding.outcome != "not_robust" or finding.logits is None:
        return math.inf
    logits = torch.as_tensor(np.asarray(finding.logits, dtype=np.float64).reshape(1, -1))
    return max(-float(query.spec().slack(logits)[0]), 0.0)


def meets_margin(query: Query, finding: Finding | None) -> bool:
    """Whether a re-checked counterexample beats the other classes by the query's margin in float64.

    ``accept_point`` takes any strictly misclassified point (what ``verify`` reports), but the
    lower bounds of a minimal-distortion search are proofs that no point beats them by
    ``margin``; so only points that do are upper bounds on the same quantity. A PGD point in
    between (a random 4-8-3 net near a logit tie: float64 lead 8.6e-8 at margin 1e-5) gave an
    upper bound below the CROWN-certified radius before this check existed. No tolerance either:
    SCIP's points may fall short by its feasibility tolerance, and on a net with flat logits
    (last layer scaled by 0.01) a point short by 6e-7 lay 1.1e-4 below the minimum at the
    margin, so an "optimal" bracket missed it; polishing lifts such points (:mod:`.polish`).
    """
    return margin_shortfall(query, finding) == 0.0


def _score(query: Query):
    spec = query.spec()
    return lambda logits: spec.slack(logits)


def attack(query: Query, eps_values: list[float], steps: int = 60, restarts: int = 2,
           deadline: float | None = None) -> list[Finding | None]:
    """Batched PGD at several eps at once; a validated counterexample per eps, or None.

    ``deadline`` (a ``time.perf_counter()`` value) cuts the attack short."""
    from ..attacks import pgd

    if not eps_values:
        return []
    center = torch.as_tensor(query.x)[None].expand(len(eps_values), *query.x.shape).clone()
    domain = None if query.domain is None else tuple(torch.as_tensor(d) for d in query.domain)
    eps_t = torch.tensor([e if math.isfinite(e) else 1e6 for e in eps_values], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    points, _ = pgd(query.network, center, eps_t, _score(query), norm=query.norm, domain=domain,
                    steps=steps, restarts=restarts, generator=generator, deadline=deadline)
    ok = misclassified(query, query.network.forward(points))
    findings: list[Finding | None] = []
    for k in range(len(eps_values)):
        if not bool(ok[k]):
            findings.append(None)
            continue
        finding = accept_point(query, points[k].numpy(), float(eps_t[k]), "attack")
        findings.append(finding if finding.outcome == "not_robust" else None)
    return findings


def _with_spec_rows(query: Query, spec: OutputSpec):
    """The network with the spec rows ``A y - b`` appended as one more dense layer."""
    net = query.network
    rows = np.concatenate([c.A for c in spec.disjuncts])
    rhs = np.concatenate([c.b for c in spec.disjuncts])
    extra = ([Flatten()] if len(net.output_shape) != 1 else []) + [Dense(rows, -rhs)]
    return net.with_layers(net.layers + tuple(extra))


def refine_attack(query: Query, eps_high: float, iterations: int = 8,
                  deadline: float | None = None) -> Finding | None:
    """Bisect PGD's budget below ``eps_high`` (where it already succeeded); the best re-checked point."""
    from ..attacks import pgd_min_distortion

    center = torch.as_tensor(query.x)[None]
    domain = None if query.domain is None else tuple(torch.as_tensor(d) for d in query.domain)
    best, points, found = pgd_min_distortion(
        query.network, center, _score(query), lambda logits: misclassified(query, logits),
        torch.tensor([eps_high], dtype=torch.float64), norm=query.norm, domain=domain, iterations=iterations,
        deadline=deadline)
    if not bool(found[0]):
        return None
    finding = accept_point(query, points[0].numpy(), float(best[0]), "attack")
    return finding if finding.outcome == "not_robust" else None


def spec_bounds(query: Query, spec: OutputSpec, eps: float, method: str,
                time_budget: float | None = None, threads: int = 1,
                reuse: dict | None = None, stats: dict | None = None,
                progress: StepCallback | None = None) -> tuple[BoundsResult, np.ndarray]:
    """Bounds of the network on the eps-region plus lower bounds of every spec row ``A y - b``.

    The spec rows are appended as one more dense layer, so CROWN/LP bound them directly
    (tighter than bounding them from the output box). ``time_budget`` caps LP and MILP
    tightening (neurons not reached keep their CROWN bounds, which stay sound); ``threads``
    MILP-tightening solves run side by side. ``reuse`` (a dict one search keeps across its
    probes) holds the last MILP-tightened bounds: a probe at a radius within
    ``[MILP_REUSE_FRACTION * eps', eps']`` of the radius ``eps'`` they were computed at uses
    them instead of tightening again (they hold for every region inside that one).
    ``stats`` receives the MILP tightening's counts (:func:`~exactverify.bounds.milp.milp_bounds`),
    or ``reused_from`` (the radius of the bounds reused). ``progress`` hears how the MILP
    tightening goes, as ``running`` steps of the ``bounds`` stage.
    """
    net = query.network
    full = _with_spec_rows(query, spec)
    region = query.region(eps)
    n = len(net.layers)
    if method == "milp" and reuse and reuse["eps"] >= eps >= MILP_REUSE_FRACTION * reuse["eps"]:
        tick = time.perf_counter()
        plain_low, plain_up = crown_bounds(full, region)  # CROWN on the probe's own region, then both
        cached_low, cached_up = padded_known(full, reuse["lower"], reuse["upper"])
        known = ([torch.maximum(a, b) for a, b in zip(plain_low, cached_low, strict=True)],
                 [torch.minimum(a, b) for a, b in zip(plain_up, cached_up, strict=True)])
        lowers, uppers = crown_bounds(full, region, known=known)
        result = BoundsResult(full, "milp", tuple(lowers), tuple(uppers), time.perf_counter() - tick)
        if stats is not None:
            stats["reused_from"] = reuse["eps"]
    else:
        options = {}
        if method == "lp" and time_budget is not None:
            options = {"time_budget": time_budget, "time_limit": max(min(LP_TIME_LIMIT, time_budget), 0.01)}
        elif method == "alpha":
            options = {"time_budget": time_budget}
        elif method == "milp":
            options = {"time_budget": time_budget, "threads": threads, "stats": stats}
            if progress is not None:
                options["progress"] = lambda done, total, seconds: progress(SolveRecord(
                    "bounds", eps, "running", seconds, f"milp tightening: {done} of {total} neuron MILPs ended"))
        result = bounds(full, region, method=method, **options)
        if method == "milp" and reuse is not None:
            reuse.update(eps=eps, lower=result.lower[: n + 1], upper=result.upper[: n + 1])
    own = BoundsResult(net, method, result.lower[: n + 1], result.upper[: n + 1], result.seconds)
    return own, result.lower[-1][0].cpu().numpy()


def describe_bounds(method: str, stats: dict) -> str:
    """A bound pass's raw status: the method, plus what MILP tightening did."""
    if "reused_from" in stats:
        return f"{method} (tightened bounds reused from eps={stats['reused_from']:.6g})"
    if "milps" in stats:
        checked = "" if stats["tightened"] >= 0 else ", failed the sampling check: CROWN kept"
        return (f"{method} ({stats['milps']} MILPs, unstable ReLUs {stats['unstable_before']} -> "
                f"{stats['unstable_after']}, {stats['seconds']:.1f} s{checked})")
    return method


def certified_radius(query: Query, eps_values: list[float], method: str = "crown") -> float:
    """The largest of ``eps_values`` (sorted ascending) at which ``method`` bounds prove robustness,
    with every smaller value proved too; 0.0 if none. One batched bound pass for all of them.
    """
    if not eps_values:
        return 0.0
    spec = query.spec()
    batch = len(eps_values)
    centers = np.broadcast_to(query.x, (batch, *query.x.shape))
    radii = np.asarray(eps_values, dtype=np.float64)
    region = ball(centers, radii, query.norm, query.domain, query.network.input_shape)
    result = bounds(_with_spec_rows(query, spec), region, method=method)
    row_lower = result.lower[-1].cpu().numpy()
    proved = 0.0
    for k, eps in enumerate(eps_values):
        if live_disjuncts(spec, row_lower[k]) is not None:
            break
        proved = float(eps)
    return proved


def live_disjuncts(spec: OutputSpec, row_lower: np.ndarray) -> OutputSpec | None:
    """The disjuncts the bounds cannot rule out (a row with ``A y - b > 0`` everywhere), or None."""
    keep, start = [], 0
    for conj in spec.disjuncts:
        rows = row_lower[start: start + conj.A.shape[0]]
        start += conj.A.shape[0]
        if not np.any(rows > 0):
            keep.append(Conjunction(conj.A, conj.b))
    if not keep:
        return None
    return OutputSpec(tuple(keep), spec.num_outputs, spec.description)


def solve_exact(query: Query, eps: float, *, backend: str, bounds_method: str, time_limit: float | None,
                minimise: bool, history: list[SolveRecord], encoder_options: dict | None = None,
                known_lower: float = 0.0, threads: int = 1, bound_cache: dict | None = None,
                progress: StepCallback | None = None) -> Finding:
    """Decide (or, with ``minimise``, minimise the distortion over) the eps-region exactly.

    ``known_lower`` is a proved lower bound on the minimal distortion (e.g. a certified
    radius); the minimising MILP gets it as a constraint, which helps its dual bound.
    With ``threads > 1`` a decision is split into ReLU-phase sub-domains whose MILPs run
    side by side (:mod:`.split`) where the network and backend allow it. ``bound_cache``
    is the ``reuse`` dict of :func:`spec_bounds` (a search passes one to all its probes).
    ``progress`` gets the MILP's in-flight reports (:func:`running_reporter`; SCIP only) and
    those of a MILP tightening of the bounds.
    """
    if time_limit is not None and time_limit <= 0:
        return Finding("unknown", "time limit reached before the exact solve")
    spec = query.spec()
    start = time.perf_counter()
    lp_budget = None if time_limit is None else LP_TIME_SHARE * time_limit
    stats: dict = {}
    net_bounds, row_lower = spec_bounds(query, spec, eps, bounds_method, lp_budget, threads, bound_cache, stats,
                                        progress)
    unstable = net_bounds.unstable_per_layer()
    live = live_disjuncts(spec, row_lower)
    history.append(SolveRecord("bounds", eps, "robust" if live is None else "unknown",
                               time.perf_counter() - start, raw_status=describe_bounds(bounds_method, stats),
                               unstable=unstable))
    if live is None:
        return Finding("robust", f"proved by {bounds_method} bounds")
    if bounds_method == "crown" and sum(unstable) > ALPHA_ESCALATION_UNSTABLE:
        net_bounds, live = _escalate_to_alpha(query, spec, eps, net_bounds, row_lower, time_limit, start, history)
        unstable = net_bounds.unstable_per_layer()
        if live is None:
            return Finding("robust", f"proved by {history[-1].raw_status}")
    if time_limit is not None:
        time_limit = max(time_limit - (time.perf_counter() - start), 0.01)
    if backend == "z3" and not minimise:
        return _solve_smt(query, eps, live, net_bounds, time_limit, history)
    unresolvable = unresolvable_margin(query, net_bounds)
    if threads > 1 and not minimise and supports_split(query.network, backend):
        return _solve_split(query, eps, live, net_bounds, backend, threads, time_limit, history, encoder_options,
                            progress, unresolvable)
    from encoders.backends import Status, make_backend
    from encoders.milp import encode_query

    solver = make_backend(backend)
    by_slack = not minimise and slack_form(backend, live, net_bounds)
    encoding = encode_query(solver, query.network, query.region(eps), live, net_bounds,
                            distortion=minimise, slack=by_slack, **(encoder_options or {}))
    options = {}
    if minimise:
        solver.set_objective([encoding.distortion], [1.0], minimize=True)
        if known_lower > 0:
            solver.add_constraint([encoding.distortion], [1.0], ">=", known_lower)
    elif by_slack:
        solver.set_objective([encoding.slack], [1.0], minimize=False)
        options = slack_options()
    if progress is not None:
        mode = "distortion" if minimise else "slack" if by_slack else "feasibility"
        options["progress"] = running_reporter(progress, eps, mode)
    result = solver.solve(time_limit=time_limit, **options)
    history.append(SolveRecord("milp", eps, result.status.value, result.seconds, result.raw_status,
                               result.objective, result.bound, result.node_count, unstable))
    if result.status == Status.INFEASIBLE:
        finding = Finding("robust", f"MILP infeasible ({backend}: {result.raw_status})", lower_bound=math.inf)
        return _unproved(finding, unresolvable) if unresolvable else finding
    lower = None
    if minimise and result.bound is not None and math.isfinite(result.bound) and not unresolvable:
        lower = max(result.bound - DUAL_BOUND_SLACK, 0.0)
    if result.status.has_solution and result.values is not None:
        finding = accept_point(query, result.values[encoding.input], eps, f"{backend} MILP")
        finding.lower_bound = lower
        if result.status != Status.OPTIMAL:
            finding.reason += f" (solver stopped: {result.raw_status})"
        return finding
    return Finding("unknown", f"{backend} returned {result.status.value} ({result.raw_status})", lower_bound=lower)


def _escalate_to_alpha(query: Query, spec: OutputSpec, eps: float, crown: BoundsResult, crown_rows: np.ndarray,
                       time_limit: float | None, start: float,
                       history: list[SolveRecord]) -> tuple[BoundsResult, OutputSpec | None]:
    """alpha-CROWN bounds on a region CROWN left with many unstable ReLUs, within
    :data:`ALPHA_TIME_SHARE` of the time left: first on the spec rows alone (cheap), then on
    every layer; they may prove it, and the second shrinks the MILP. Every pass is sound, so
    each bound is the tightest of them."""
    def budget() -> float | None:
        """Seconds this pass may take: ALPHA_TIME_SHARE of what the decision has left."""
        return None if time_limit is None else ALPHA_TIME_SHARE * max(time_limit - (time.perf_counter() - start), 0.0)

    tick = time.perf_counter()
    seconds = budget()
    deadline = None if seconds is None else tick + seconds
    rows = np.maximum(crown_rows, _alpha_spec_rows(query, spec, eps, crown, deadline))
    live = live_disjuncts(spec, rows)
    history.append(SolveRecord("bounds", eps, "robust" if live is None else "unknown", time.perf_counter() - tick,
                               raw_status=ALPHA_SPEC_ROWS, unstable=crown.unstable_per_layer()))
    if live is None:
        return crown, None
    tick = time.perf_counter()
    alpha, alpha_rows = spec_bounds(query, spec, eps, "alpha", budget())
    lowers = tuple(torch.maximum(a, b) for a, b in zip(crown.lower, alpha.lower, strict=True))
    uppers = tuple(torch.minimum(a, b) for a, b in zip(crown.upper, alpha.upper, strict=True))
    net_bounds = BoundsResult(crown.network, "alpha", lowers, uppers, crown.seconds + alpha.seconds)
    live = live_disjuncts(spec, np.maximum(rows, alpha_rows))
    history.append(SolveRecord("bounds", eps, "robust" if live is None else "unknown", time.perf_counter() - tick,
                               raw_status=ALPHA_ALL_LAYERS, unstable=net_bounds.unstable_per_layer()))
    return net_bounds, live


def _alpha_spec_rows(query: Query, spec: OutputSpec, eps: float, crown: BoundsResult,
                     deadline: float | None) -> np.ndarray:
    """Lower bounds of the spec rows with slopes optimised for them alone, on CROWN's bounds of
    every value before them (as branch and bound does per sub-domain)."""
    from ..bounds.alpha import alpha_output_lower

    full = _with_spec_rows(query, spec)
    extra = len(full.layers) - len(query.network.layers)  # the appended Flatten / Dense values: no ReLU reads them
    lowers = list(crown.lower) + [crown.lower[-1]] * extra
    uppers = list(crown.upper) + [crown.upper[-1]] * extra
    rows = alpha_output_lower(full, query.region(eps), lowers, uppers, deadline=deadline)
    return rows[0].detach().cpu().numpy()


def _unproved(finding: Finding, why: str) -> Finding:
    """A MILP's "robust" that :func:`unresolvable_margin` does not accept: unknown, saying why."""
    log.warning("%s, %s", finding.reason, why)
    return Finding("unknown", f"{finding.reason}, {why}")


def _solve_split(query: Query, eps: float, spec: OutputSpec, net_bounds: BoundsResult, backend: str, threads: int,
                 time_limit: float | None, history: list[SolveRecord], encoder_options: dict | None,
                 progress: StepCallback | None = None, unresolvable: str | None = None) -> Finding:
    """Split the region on ReLU phases and decide each open sub-domain's MILP (:mod:`.split`); a
    "robust" that needed MILPs is no proof when ``unresolvable`` says why (:func:`unresolvable_margin`)."""
    start = time.perf_counter()
    domains, closed = split_region(query, spec, _with_spec_rows(query, spec), query.region(eps),
                                   split_depth(threads), known=net_bounds)
    history.append(SolveRecord("bounds", eps, "unknown" if domains else "robust", time.perf_counter() - start,
                               raw_status=f"crown with ReLU splits: {len(domains)} sub-domains open, {closed} closed"))
    if not domains:
        return Finding("robust", "proved by CROWN bounds on every ReLU-split sub-domain")
    if time_limit is not None:
        time_limit = max(time_limit - (time.perf_counter() - start), 0.01)
    finding = solve_split(query, eps, domains, backend=backend, threads=threads, time_limit=time_limit,
                          history=history, encoder_options=encoder_options, progress=progress)
    return _unproved(finding, unresolvable) if finding.outcome == "robust" and unresolvable else finding


def _solve_smt(query: Query, eps: float, spec: OutputSpec, net_bounds: BoundsResult,
               time_limit: float | None, history: list[SolveRecord]) -> Finding:
    from encoders.backends import Status
    from encoders.smt import encode_smt, solve_smt

    encoding = encode_smt(query.network, query.region(eps), spec, net_bounds)
    result = solve_smt(encoding, time_limit=time_limit)
    history.append(SolveRecord("smt", eps, result.status.value, result.seconds, result.raw_status))
    if result.status == Status.INFEASIBLE:
        return Finding("robust", f"SMT unsat (z3: {result.raw_status})")
    if result.status.has_solution and result.values is not None:
        return accept_point(query, result.values[: query.network.input_size], eps, "z3 SMT")
    return Finding("unknown", f"z3 returned {result.status.value} ({result.raw_status})")
