"""The exact queries (``verify``, ``minimal_distortion``) against the independent oracles.

Every answer is judged by ``oracles.py`` (activation-pattern enumeration + HiGHS LPs),
which shares no code with exactverify's bounds, encoders or queries:
- the oracle's minimal distortion lies in the proved bracket ``[lower, upper]``, and the
  bracket is within ``tol`` when the status is "optimal";
- every counterexample has the input shape, lies in the domain (exactly) and in the
  eps-ball, is misclassified by our own float64 forward pass, and its distance equals
  the reported distortion/upper bound;
- ``verify`` just below the oracle's radius proves "robust", just above finds a
  validated counterexample; SCIP, OR-Tools and z3 agree with the oracle;
- edge cases (no adversarial point in the domain, centre already misclassified),
  argument errors, and a tiny time limit (never a wrong "robust").

The default run covers each (norm, targeted, method) combination on every case at least
once (round robin); the full product is marked slow.
"""

from __future__ import annotations

import inspect
import itertools
import math
from functools import lru_cache

import numpy as np
import oracles
import pytest
from conftest import TINY_CONFIGS, TinyCase, cached_case, harder_net, no_adversarial_net, point_with_gap

import exactverify as ev

MARGIN = ev.DEFAULT_MARGIN
#: Default bisection/direct tolerance on upper - lower, as in the API.
TOL = 1e-3
#: Slack on "oracle in [lower, upper]" and on distortion equalities (solver/LP tolerances).
BOUND_TOL = 1e-6
#: Float rounding allowed when a counterexample sits on the eps-sphere (x + d - x != d).
SPHERE_TOL = 1e-12
#: Safety net per query so a hung solver fails the test instead of the whole run.
TIME_LIMIT = 60.0
BRACKET = 1e-2  # verify at oracle * (1 -+ BRACKET)

NORMS = ("linf", "l1")
METHODS = ("bisection", "direct")
#: verify's ``attack_first`` switch (lead's extension), when present: lets the backend decide.
NO_ATTACK = {"attack_first": False} if "attack_first" in inspect.signature(ev.verify).parameters else {}




def target_of(case: TinyCase, targeted: bool) -> int | None:
    return (case.label + 1) % case.num_classes if targeted else None


@lru_cache(maxsize=None)
def pieces(index: int) -> list[oracles.Piece]:
    case = cached_case(index)
    return oracles.enumerate_pieces(case.network, case.network.input_domain)


@lru_cache(maxsize=None)
def oracle_distance(index: int, norm: str, targeted: bool) -> float:
    case = cached_case(index)
    return oracles.min_distortion(case.network, case.x, norm, margin=MARGIN, target=target_of(case, targeted),
                                  pieces=pieces(index)).distance


def check_counterexample(network, x, point, norm: str, label: int, target: int | None,
                         eps: float | None = None, domain=None) -> float:
    """Assert ``point`` is a genuine counterexample (our own forward pass); return its distance."""
    assert point is not None
    point = np.asarray(point, dtype=np.float64)
    assert point.shape == network.input_shape, f"counterexample shape {point.shape} != {network.input_shape}"
    domain = network.input_domain if domain is None else domain
    if domain is not None:
        low, high = domain
        assert np.all(point >= low) and np.all(point <= high), "counterexample leaves the input domain"
    logits = oracles.evaluate(network, point.reshape(1, -1))[0]
    if target is None:
        assert np.delete(logits, label).max() > logits[label], f"not misclassified: logits {logits}, label {label}"
    else:
        assert logits[target] > np.delete(logits, target).max(), f"target {target} does not win: logits {logits}"
    dist = oracles.distance(point, x, norm)
    if eps is not None:
        assert dist <= eps + SPHERE_TOL, f"counterexample at distance {dist} > eps {eps}"
    return dist


# ------------------------------------------------------------- minimal distortion
COMBOS = list(itertools.product(NORMS, (False, True), METHODS))


def fast_combo(index: int) -> int:
    """The combination a case runs in the default (not slow) selection: every combo >= once.

    Cases 0-7 take combos 0-7 in turn; the rest take the cheaper "direct" combos again
    (bisection re-runs an attack at every midpoint, which is slow for L1).
    """
    return index if index < len(COMBOS) else 2 * (index - len(COMBOS)) % len(COMBOS) + 1


def _distortion_params():
    params = []
    for index, combo in itertools.product(range(len(TINY_CONFIGS)), range(len(COMBOS))):
        norm, targeted, method = COMBOS[combo]
        fast = combo == fast_combo(index)
        marks = () if fast else (pytest.mark.slow,)
        ident = f"tiny{TINY_CONFIGS[index][0]}-{norm}-{'targeted' if targeted else 'untargeted'}-{method}"
        params.append(pytest.param(index, norm, targeted, method, marks=marks, id=ident))
    return params


@pytest.mark.parametrize("index,norm,targeted,method", _distortion_params())
def test_minimal_distortion_brackets_oracle(index, norm, targeted, method):
    case = cached_case(index)
    target = target_of(case, targeted)
    d_star = oracle_distance(index, norm, targeted)
    res = ev.minimal_distortion(case.network, case.x, norm, target, method=method, tol=TOL, time_limit=TIME_LIMIT)
    assert res.history, "no solver-call records"
    if not math.isfinite(d_star):
        assert res.status == "no_counterexample", res.reason
        assert res.upper == math.inf and res.counterexample is None
        return
    assert res.status == "optimal", f"{res.status}: {res.reason}"
    assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL, \
        f"oracle {d_star} outside proved bracket [{res.lower}, {res.upper}]"
    assert 0 <= res.upper - res.lower <= TOL + 1e-9
    dist = check_counterexample(case.network, case.x, res.counterexample, norm, case.label, target)
    assert dist == pytest.approx(res.upper, abs=BOUND_TOL)


def near_tie_points(network, count: int, seed: int = 0, max_gap: float = 2e-3) -> list[np.ndarray]:
    """Points of [0, 1]^n whose top two logits differ by less than ``max_gap`` (but by > 1e-4):
    their minimal distortions are small enough that the margin band ``(0, MARGIN)`` matters."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0.0, 1.0, (20000, *network.input_shape))
    top = np.sort(network.forward(xs).numpy().reshape(len(xs), -1), axis=1)
    gap = top[:, -1] - top[:, -2]
    return [xs[k] for k in np.flatnonzero((gap < max_gap) & (gap > 1e-4))[:count]]


@pytest.mark.parametrize("norm", NORMS)
def test_minimal_distortion_near_a_logit_tie_brackets_the_oracle(norm):
    """Near a logit tie PGD finds points that win by less than the margin. They must not become
    the upper bound: the lower bounds are proofs for the margin, and such a point once left the
    bracket empty (``unknown``: "certified radius exceeds a re-checked counterexample"; a random
    4-8-3 net, distortion 1.5e-3). Every bracket must hold the oracle's minimum at the margin,
    and every counterexample must beat the other classes by the margin in float64."""
    from exactverify.queries.checks import make_query
    from exactverify.queries.stages import Finding, meets_margin

    network = tiny_net_4()
    for x in near_tie_points(network, 4):
        label = int(np.argmax(network.forward(x[None]).numpy()))
        d_star = oracles.min_distortion(network, x, norm, margin=MARGIN, domain=(np.zeros(4), np.ones(4))).distance
        res = ev.minimal_distortion(network, x, norm, domain=(0.0, 1.0), tol=1e-4, time_limit=TIME_LIMIT)
        assert res.status == "optimal", f"{res.status}: {res.reason}"
        assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL, (d_star, res.lower, res.upper)
        query = make_query(network, x, norm, None, None, (0.0, 1.0), MARGIN)
        logits = network.forward(np.asarray(res.counterexample)[None]).numpy()[0]
        assert meets_margin(query, Finding("not_robust", "", res.counterexample, res.upper, logits=logits))
        assert np.delete(logits, label).max() - logits[label] >= MARGIN


def flat_logit_net():
    """A 2-5-5-3 net with batch norm and a last layer scaled by ~0.01 (found by fuzzing): its logits
    change slowly, so a point short of the margin by SCIP's tolerance lies far below the minimum."""
    from exactverify.ir import Dense, ElementwiseAffine, Network, ReLU

    w1 = [[-1.12919282913208, -2.441866636276245], [0.7653914093971252, -0.759709358215332],
          [0.26699620485305786, 0.7017808556556702], [0.2921213209629059, -0.19809308648109436],
          [0.658771276473999, 0.519957423210144]]
    b1 = [-5.299505710601807, -5.8257904052734375, -5.196220397949219, -5.338658332824707, -6.468005180358887]
    w2 = [[-1.6811071634292603, -0.3995734751224518, -1.4327367544174194, 0.19294245541095734, 1.8133574724197388],
          [-0.8917145133018494, 0.7895488142967224, 0.7744269371032715, 0.6402848958969116, -0.22629012167453766],
          [-0.15511152148246765, 0.13576708734035492, 0.20712397992610931, 0.15661144256591797, 0.7790016531944275],
          [-0.1264176368713379, 0.546694815158844, 0.3043578565120697, -1.12174654006958, -0.9157117605209351],
          [0.5673601031303406, 0.48441872000694275, 1.0824052095413208, -2.2349722385406494, 0.6137257814407349]]
    b2 = [-1.2062408924102783, -0.028096243739128113, -1.240312099456787, 0.6741409301757812, -0.42940470576286316]
    gamma = np.array([0.870277464389801, 1.0776172876358032, 1.776484727859497, 0.1155872493982315, 0.724292516708374])
    beta = np.array([0.307877779006958, -0.31981825828552246, 0.3113285303115845, -0.1274401843547821,
                     -0.17547908425331116])
    mean = np.array([0.10510039329528809, 0.42164158821105957, 0.28675171732902527, 0.8987926840782166,
                     -0.014819194562733173])
    var = np.array([1.9438036680221558, 1.9195369482040405, 1.8759338855743408, 1.3473552465438843,
                    0.919979453086853])
    scale = gamma / np.sqrt(var + 1e-5)
    w3 = [[0.001727866679430008, -0.00341293066740036, 0.01519846796989441, -0.003604024946689606,
           0.01196805715560913],
          [0.01099738359451294, -0.0020128899812698366, 0.013971295356750488, 0.018472524881362914,
           0.0065932518243789675],
          [0.008903562426567077, -0.017331005334854127, 0.006095007658004761, 0.011320763826370239,
           0.018614751100540162]]
    b3 = [-0.002099974453449249, 0.0012133493274450301, 0.006168121099472046]
    return Network((2,), (Dense(np.array(w1), np.array(b1)), ReLU(), Dense(np.array(w2), np.array(b2)),
                          ElementwiseAffine(scale, beta - mean * scale), ReLU(), Dense(np.array(w3), np.array(b3))))


@pytest.mark.parametrize("backend", ["scip", "ortools"])
def test_flat_logits_bracket_the_minimum_at_the_margin(backend):
    """SCIP's optimum beat the other classes by 9.38e-6 < margin 1e-5 and, accepted as the upper
    bound, gave an "optimal" bracket [4.7446042, 4.7446052] 1.1e-4 below the oracle's minimum at
    the margin (4.7447159), disjoint from OR-Tools' bracket. Every bracket must hold it."""
    network = flat_logit_net()
    x = np.array([0.667, -2.898])
    d_star = oracles.min_distortion(network, x, "linf", margin=MARGIN).distance
    res = ev.minimal_distortion(network, x, "linf", method="direct", tol=1e-4, backend=backend,
                                time_limit=TIME_LIMIT)
    assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL, (d_star, res.lower, res.upper, res.status)
    logits = network.forward(np.asarray(res.counterexample)[None]).numpy()[0]
    assert np.delete(logits, res.label).max() - logits[res.label] >= MARGIN


@pytest.mark.parametrize("seed", range(4))
def test_scaled_down_logits_keep_every_bracket_around_the_oracle(seed):
    """Random nets whose last layer is scaled by 1e-3 (flat logits, where a solver's tolerance
    is a large distance): brackets of both methods and norms hold the oracle's minimum at the margin."""
    from conftest import point_with_gap, tiny_net

    from exactverify.ir import Dense, Network

    base = tiny_net(300 + seed, (2,), (5, 4), 3, (-1.0, 1.0))
    last = base.layers[-1]
    network = Network(base.input_shape, (*base.layers[:-1], Dense(last.weight * 1e-3, last.bias * 1e-3)),
                      base.input_domain, f"flat{seed}")
    x = point_with_gap(network, seed, min_gap=1e-4)
    for norm in NORMS:
        d_star = oracles.min_distortion(network, x, norm, margin=MARGIN).distance
        for method in ("direct", "bisection"):
            res = ev.minimal_distortion(network, x, norm, method=method, tol=1e-3, time_limit=TIME_LIMIT)
            assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL, (norm, method, d_star, res.lower,
                                                                             res.upper, res.status)


def tiny_net_4():
    """A 4-8-3 ReLU net (domain [0, 1]^4) with logit ties inside its domain."""
    from conftest import tiny_net

    return tiny_net(11, (4,), (8,), 3, (0.0, 1.0), name="near-tie")


def test_meets_margin_rejects_points_that_win_by_less_than_the_margin():
    from exactverify.queries.checks import make_query
    from exactverify.queries.stages import Finding, margin_shortfall, meets_margin

    network = tiny_net_4()
    x = near_tie_points(network, 1)[0]
    query = make_query(network, x, "linf", None, None, (0.0, 1.0), MARGIN)
    label = query.label
    for lead in (2 * MARGIN, MARGIN, MARGIN - 1e-9, MARGIN - 6e-7, MARGIN / 2, 1e-12):
        logits = np.zeros(3)
        logits[label] = 0.0
        logits[(label + 1) % 3] = lead
        finding = Finding("not_robust", "", x, 0.0, logits=logits)
        assert meets_margin(query, finding) is (lead >= MARGIN)
        assert margin_shortfall(query, finding) == pytest.approx(max(MARGIN - lead, 0.0), abs=1e-15)
    assert not meets_margin(query, None)
    assert not meets_margin(query, Finding("unknown", "", x, 0.0, logits=logits))


# ------------------------------------------------------------------ verify brackets
def _verify_params():
    params = []
    for index, combo in itertools.product(range(len(TINY_CONFIGS)), range(4)):
        norm, targeted = NORMS[combo // 2], bool(combo % 2)
        marks = () if combo == index % 4 else (pytest.mark.slow,)
        ident = f"tiny{TINY_CONFIGS[index][0]}-{norm}-{'targeted' if targeted else 'untargeted'}"
        params.append(pytest.param(index, norm, targeted, marks=marks, id=ident))
    return params


@pytest.mark.parametrize("index,norm,targeted", _verify_params())
def test_verify_brackets_oracle(index, norm, targeted):
    case = cached_case(index)
    target = target_of(case, targeted)
    d_star = oracle_distance(index, norm, targeted)
    if not math.isfinite(d_star):
        verdict = ev.verify(case.network, case.x, 1.0, norm, target, time_limit=TIME_LIMIT)
        assert verdict.status == "robust", verdict.reason
        return
    below = ev.verify(case.network, case.x, d_star * (1 - BRACKET), norm, target, time_limit=TIME_LIMIT)
    assert below.status == "robust", f"below the oracle radius {d_star}: {below.status} ({below.reason})"
    assert below.counterexample is None
    eps = d_star * (1 + BRACKET)
    above = ev.verify(case.network, case.x, eps, norm, target, time_limit=TIME_LIMIT)
    assert above.status == "not_robust", f"above the oracle radius {d_star}: {above.status} ({above.reason})"
    assert above.validated is True
    dist = check_counterexample(case.network, case.x, above.counterexample, norm, case.label, target, eps)
    assert above.distortion == pytest.approx(dist, abs=SPHERE_TOL)
    assert dist >= d_star * (1 - BOUND_TOL) - BOUND_TOL, "counterexample closer than the oracle minimum"


# --------------------------------------------------------------- backend agreement
def _random_queries(count: int = 24, seed: int = 7):
    """(case index, norm, target, eps, robust per oracle): eps 10-25% away from the oracle radius."""
    rng = np.random.default_rng(seed)
    queries = []
    for k in range(count):
        index = k % len(TINY_CONFIGS)
        norm, targeted = NORMS[k % 2], bool((k // 2) % 2)
        case = cached_case(index)
        d_star = oracle_distance(index, norm, targeted)
        factor = float(rng.choice([0.75, 0.9, 1.1, 1.25]))
        eps = 0.5 if not math.isfinite(d_star) else d_star * factor
        queries.append((index, norm, target_of(case, targeted), eps, not (math.isfinite(d_star) and factor > 1)))
    return queries


BACKEND_MODULES = {"scip": "pyscipopt", "ortools": "ortools", "z3": "z3"}


def decide_random_queries(**options) -> list:
    """``verify`` (no attack) on the random queries with ``options``; asserts every answer is
    the oracle's, with an independently re-checked counterexample; returns the verdicts."""
    verdicts = []
    for index, norm, target, eps, robust in _random_queries():
        case = cached_case(index)
        verdict = ev.verify(case.network, case.x, eps, norm, target, time_limit=TIME_LIMIT, **NO_ATTACK, **options)
        expected = "robust" if robust else "not_robust"
        assert verdict.status == expected, f"{case.name} {norm} target={target} eps={eps}: {verdict.reason}"
        if not robust:
            assert verdict.validated is True
            check_counterexample(case.network, case.x, verdict.counterexample, norm, case.label, target, eps)
        verdicts.append(verdict)
    return verdicts


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES) + ["scip-constraint", "scip-heuristics", "scip-params"])
def test_backends_agree_with_oracle(backend, monkeypatch):
    """Every backend decides 24 random queries as the oracle does; ``scip-constraint`` is SCIP
    with the spec as a constraint instead of its maximised slack (both forms are checked),
    ``scip-heuristics`` the slack form with the other primal-heuristics setting than decisions
    use, and ``scip-params`` the slack form with the backend's own parameters (no DECISION_PARAMS)."""
    from exactverify.queries import stages

    if backend == "scip-params":
        assert stages.slack_options()["params"] == stages.DECISION_PARAMS
        monkeypatch.setattr(stages, "DECISION_PARAMS", {})
        backend = "scip"

    if backend == "scip-constraint":
        monkeypatch.setattr(stages, "SLACK_OBJECTIVE_BACKENDS", ())
        backend = "scip"
    if backend == "scip-heuristics":
        other = "off" if stages.DECISION_HEURISTICS == "default" else "default"
        monkeypatch.setattr(stages, "DECISION_HEURISTICS", other)
        backend = "scip"
    pytest.importorskip(BACKEND_MODULES[backend], reason=f"{backend} backend not installed")
    # Interval bounds leave the decision to the solver; no attack, when that can be switched off.
    verdicts = decide_random_queries(backend=backend, bounds_method="interval")
    solver_decided = sum(any(r.stage in ("milp", "smt") for r in v.history) for v in verdicts)
    assert solver_decided >= 12, f"only {solver_decided} of 24 queries reached the {backend} solver"


@pytest.mark.parametrize("backend,method,tol", [("ortools", "direct", TOL), ("z3", "bisection", 1e-2)])
def test_minimal_distortion_other_backends(backend, method, tol):
    pytest.importorskip(BACKEND_MODULES[backend], reason=f"{backend} backend not installed")
    case = cached_case(0)
    d_star = oracle_distance(0, "linf", False)
    res = ev.minimal_distortion(case.network, case.x, "linf", method=method, tol=tol, backend=backend,
                                time_limit=TIME_LIMIT)
    assert res.status == "optimal", res.reason
    assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL and res.upper - res.lower <= tol + 1e-9
    dist = check_counterexample(case.network, case.x, res.counterexample, "linf", case.label, None)
    assert dist == pytest.approx(res.upper, abs=BOUND_TOL)


# ------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("norm,target,method", [
    ("linf", None, "bisection"), ("l1", None, "direct"), ("linf", 2, "direct"), ("l1", 2, "bisection"),
])
def test_no_adversarial_example_in_domain(norm, target, method):
    net, x = no_adversarial_net(), np.array([0.5, 0.5])
    assert math.isinf(oracles.min_distortion(net, x, norm, margin=MARGIN, target=target).distance)
    res = ev.minimal_distortion(net, x, norm, target, method=method, time_limit=TIME_LIMIT)
    assert res.status == "no_counterexample", res.reason
    assert res.upper == math.inf and res.counterexample is None
    verdict = ev.verify(net, x, 1.0, norm, target, time_limit=TIME_LIMIT)
    assert verdict.status == "robust" and verdict.counterexample is None


@pytest.mark.parametrize("norm", NORMS)
def test_explicit_domain_clips_the_region(norm):
    """``domain=`` overrides the network's (here: none) and can push the minimum outwards."""
    index = 3  # tiny16: no input domain of its own
    case = cached_case(index)
    assert case.network.input_domain is None
    d_free = oracle_distance(index, norm, False)
    domain = (case.x - 0.5 * d_free, case.x + 3.0)  # cuts off part of the ball of radius d_free
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN, domain=domain).distance
    assert d_star >= d_free - BOUND_TOL
    res = ev.minimal_distortion(case.network, case.x, norm, domain=domain, method="direct", time_limit=TIME_LIMIT)
    if not math.isfinite(d_star):
        assert res.status == "no_counterexample", res.reason
        return
    assert res.status == "optimal", res.reason
    assert res.lower - BOUND_TOL <= d_star <= res.upper + BOUND_TOL
    dist = check_counterexample(case.network, case.x, res.counterexample, norm, case.label, None, domain=domain)
    assert dist == pytest.approx(res.upper, abs=BOUND_TOL)


@pytest.mark.parametrize("method", METHODS)
def test_centre_already_misclassified(method):
    case = cached_case(0)
    logits = oracles.evaluate(case.network, case.x.reshape(1, -1))[0]
    other = int(np.argsort(logits)[-2])  # beaten by the argmax by >= MIN_LOGIT_GAP > margin
    assert oracles.min_distortion(case.network, case.x, "linf", margin=MARGIN, label=other).distance == 0.0
    res = ev.minimal_distortion(case.network, case.x, "linf", label=other, method=method)
    assert res.lower == 0.0 and res.upper == 0.0 and res.status == "optimal"
    np.testing.assert_array_equal(res.counterexample, case.x)
    verdict = ev.verify(case.network, case.x, 0.05, "linf", label=other)
    assert verdict.status == "not_robust" and verdict.validated is True and verdict.distortion == 0.0


def test_tiny_time_limit_is_never_robust():
    """On a 120-ReLU net, at an eps where a counterexample is known, 10 ms gives "unknown"."""
    net = harder_net()
    x = point_with_gap(net, 0)
    found = ev.verify(net, x, 0.05, "linf", time_limit=TIME_LIMIT)
    assert found.status == "not_robust" and found.validated is True
    eps = found.distortion  # the truth at this eps is "not robust"
    for bounds_method in ("interval", "crown"):
        verdict = ev.verify(net, x, eps, "linf", bounds_method=bounds_method, time_limit=0.01, **NO_ATTACK)
        assert verdict.status != "robust", f"wrong proof with bounds_method={bounds_method}: {verdict.reason}"
        if verdict.status == "not_robust":
            assert verdict.validated is True
            check_counterexample(net, x, verdict.counterexample, "linf", found.label, None, eps)
        elif NO_ATTACK:
            assert verdict.status == "unknown" and verdict.reason
    res = ev.minimal_distortion(net, x, "linf", bounds_method="interval", time_limit=0.01)
    assert res.status == "unknown", res.reason
    assert res.lower <= eps, "proved lower bound above a known counterexample's distance"
    if math.isfinite(res.upper):
        dist = check_counterexample(net, x, res.counterexample, "linf", found.label, None)
        assert dist == pytest.approx(res.upper, abs=BOUND_TOL)


# ---------------------------------------------------------------------- errors
def _bad_verify_calls(case: TinyCase):
    net, label, n = case.network, case.label, case.num_classes
    low = net.input_domain[0]
    return [
        (dict(eps=-0.1), ev.InvalidInputError, "eps"),
        (dict(eps=float("nan")), ev.InvalidInputError, "eps"),
        (dict(norm="l2"), ev.InvalidInputError, "norm"),
        (dict(target=label), ev.InvalidInputError, "target"),
        (dict(target=n), ev.InvalidInputError, "target"),
        (dict(target=-1), ev.InvalidInputError, "target"),
        (dict(x=np.zeros(net.input_size + 1)), ev.ShapeMismatchError, "shape"),
        (dict(x=low - 0.5), ev.InvalidInputError, "domain"),
        (dict(backend="gurobi"), ev.InvalidInputError, "backend"),
        (dict(label=n), ev.InvalidInputError, "label"),
    ]


@pytest.mark.parametrize("which", range(10))
def test_verify_rejects_bad_arguments(which):
    case = cached_case(0)
    change, error, match = _bad_verify_calls(case)[which]
    args = dict(x=case.x, eps=0.1, norm="linf", target=None) | change
    extra = {key: value for key, value in change.items() if key not in ("x", "eps", "norm", "target")}
    with pytest.raises(error, match=match):
        ev.verify(case.network, args["x"], args["eps"], args["norm"], args["target"], **extra)


@pytest.mark.parametrize("change,match", [
    (dict(norm="l2"), "norm"), (dict(target="label"), "target"), (dict(target=99), "target"),
    (dict(method="newton"), "method"), (dict(tol=-1.0), "tol"), (dict(x="outside"), "domain"),
    (dict(x="short"), "shape"),
])
def test_minimal_distortion_rejects_bad_arguments(change, match):
    case = cached_case(0)
    args = dict(x=case.x, norm="linf", target=None) | change
    if args["target"] == "label":
        args["target"] = case.label
    if isinstance(args["x"], str):
        args["x"] = case.network.input_domain[0] - 0.5 if args["x"] == "outside" else case.x[:1]
    extra = {k: v for k, v in args.items() if k not in ("x", "norm", "target")}
    with pytest.raises(ev.InvalidInputError, match=match):
        ev.minimal_distortion(case.network, args["x"], args["norm"], args["target"], **extra)
