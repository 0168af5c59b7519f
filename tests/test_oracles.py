"""Self-tests of the independent oracles in ``oracles.py``: they must be trustworthy
before they judge the exact queries.

Checked on every seeded tiny case, both norms, untargeted and targeted:
- every piece reproduces the float64 forward pass, and the pieces cover the domain;
- pruned enumeration equals brute force over all 2**n patterns;
- the oracle minimum is never above the distance of a sampled adversarial point, and
  (2-D, fine grid) not far below it either;
- its witness is adversarial at exactly the reported distance, inside the domain;
- densely sampled points just inside the radius are never adversarial;
- the feasibility oracle ``is_robust`` brackets the minimum.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import oracles
import pytest
from conftest import TINY_CONFIGS, TinyCase, cached_case, no_adversarial_net

from exactverify import DEFAULT_MARGIN

MARGIN = DEFAULT_MARGIN
#: Float64 roundoff allowed on a logit difference when asserting "not adversarial".
FLOAT_TOL = 1e-9
#: Oracle distances are LP optima, exact up to HiGHS's feasibility tolerance.
DIST_TOL = 10 * oracles.LP_TOL
#: On 2-D cases a 401x401 grid over x +- 2 d* finds an adversarial point within this of d*.
GRID_GAP = 0.05


@lru_cache(maxsize=None)
def pieces(index: int) -> list[oracles.Piece]:
    case = cached_case(index)
    return oracles.enumerate_pieces(case.network, case.network.input_domain)


@lru_cache(maxsize=None)
def exact(index: int, norm: str, targeted: bool) -> oracles.OracleResult:
    case = cached_case(index)
    return oracles.min_distortion(case.network, case.x, norm, margin=MARGIN, target=target_of(case, targeted),
                                  pieces=pieces(index))


def target_of(case: TinyCase, targeted: bool) -> int | None:
    return (case.label + 1) % case.num_classes if targeted else None


def domain_box(case: TinyCase) -> tuple[np.ndarray, np.ndarray]:
    if case.network.input_domain is None:
        n = case.network.input_size
        return np.full(n, -np.inf), np.full(n, np.inf)
    return tuple(d.reshape(-1) for d in case.network.input_domain)


QUERIES = [(norm, targeted) for norm in oracles.NORMS for targeted in (False, True)]
QUERY_IDS = [f"{norm}-{'targeted' if t else 'untargeted'}" for norm, t in QUERIES]


def test_pieces_reproduce_forward_and_cover_domain(tiny_case_index):
    case = cached_case(tiny_case_index)
    low, high = domain_box(case)
    rng = np.random.default_rng(1)
    pts = rng.uniform(np.maximum(low, -3), np.minimum(high, 3), (2000, case.network.input_size))
    out = oracles.evaluate(case.network, pts)
    covered = np.zeros(len(pts), dtype=bool)
    for piece in pieces(tiny_case_index):
        inside = (pts @ piece.G.T <= piece.h + 1e-9).all(1)
        covered |= inside
        np.testing.assert_allclose(pts[inside] @ piece.W.T + piece.c, out[inside], atol=1e-9,
                                   err_msg=f"piece {piece.pattern} disagrees with forward")
    assert covered.all(), f"{(~covered).sum()} sampled domain points lie in no enumerated piece"


@pytest.mark.parametrize("index", [1, 8])
@pytest.mark.parametrize("norm", oracles.NORMS)
def test_pruned_enumeration_matches_bruteforce(index, norm):
    case = cached_case(index)
    assert oracles.num_relus(case.network) <= 8
    brute = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN, prune=False)
    assert brute.pieces == 2 ** oracles.num_relus(case.network)
    assert exact(index, norm, False).distance == pytest.approx(brute.distance, abs=DIST_TOL)


@pytest.mark.parametrize("norm,targeted", QUERIES, ids=QUERY_IDS)
def test_oracle_witness_is_adversarial_at_reported_distance(tiny_case_index, norm, targeted):
    case = cached_case(tiny_case_index)
    result = exact(tiny_case_index, norm, targeted)
    if not np.isfinite(result.distance):
        assert result.witness is None
        return
    low, high = domain_box(case)
    w = result.witness
    assert np.all(w >= low - DIST_TOL) and np.all(w <= high + DIST_TOL), "witness leaves the domain"
    assert oracles.distance(w, case.x, norm) == pytest.approx(result.distance, abs=DIST_TOL)
    slack = oracles.spec_slack(oracles.evaluate(case.network, w[None]), case.label, target_of(case, targeted), MARGIN)
    assert slack[0] >= -oracles.WITNESS_TOL, f"oracle witness is not adversarial (slack {slack[0]:.3g})"
    if targeted:
        assert result.adversarial_class == target_of(case, targeted)
    else:
        assert result.adversarial_class != case.label


@pytest.mark.parametrize("norm,targeted", QUERIES, ids=QUERY_IDS)
def test_oracle_never_above_sampled_adversarial_distance(tiny_case_index, norm, targeted):
    case = cached_case(tiny_case_index)
    d_star = exact(tiny_case_index, norm, targeted).distance
    radius = 2 * d_star if np.isfinite(d_star) else 3.0
    sampled, point = oracles.sampled_min_distortion(case.network, case.x, norm, margin=MARGIN, radius=radius,
                                                    target=target_of(case, targeted), seed=tiny_case_index)
    assert d_star <= sampled + FLOAT_TOL, f"oracle {d_star} above sampled adversarial distance {sampled} at {point}"
    if np.isfinite(d_star) and case.network.input_size == 2:
        assert sampled - d_star <= GRID_GAP * max(d_star, 1.0), f"grid finds nothing near oracle {d_star}: {sampled}"
    if not np.isfinite(d_star):
        assert not np.isfinite(sampled)


@pytest.mark.parametrize("norm,targeted", QUERIES, ids=QUERY_IDS)
def test_no_adversarial_point_just_inside_oracle_radius(tiny_case_index, norm, targeted):
    case = cached_case(tiny_case_index)
    result = exact(tiny_case_index, norm, targeted)
    if not np.isfinite(result.distance):
        pytest.skip("no adversarial point in the domain")
    radius = result.distance * (1 - 1e-6)
    rng = np.random.default_rng(tiny_case_index)
    low, high = domain_box(case)
    x0 = case.x.reshape(-1)
    # Dense ball samples plus points on rays towards the witness, clipped to the domain
    # (clipping moves every coordinate towards x, so points stay in the ball).
    ball = oracles.sample_ball(x0, radius, norm, 40000, rng)
    direction = (result.witness - x0) / max(oracles.distance(result.witness, x0, norm), 1e-300)
    rays = x0 + radius * np.linspace(0.5, 1.0, 200)[:, None] * direction
    pts = np.clip(np.vstack([ball, rays]), low, high)
    dist = np.abs(pts - x0).max(1) if norm == "linf" else np.abs(pts - x0).sum(1)
    assert np.all(dist <= result.distance)
    slack = oracles.spec_slack(oracles.evaluate(case.network, pts), case.label, target_of(case, targeted), MARGIN)
    worst = int(np.argmax(slack))
    assert slack[worst] < FLOAT_TOL, f"point at distance {dist[worst]} < oracle {result.distance} is adversarial"


@pytest.mark.parametrize("norm,targeted", QUERIES, ids=QUERY_IDS)
def test_is_robust_brackets_min_distortion(tiny_case_index, norm, targeted):
    case = cached_case(tiny_case_index)
    d_star = exact(tiny_case_index, norm, targeted).distance
    target = target_of(case, targeted)
    kwargs = dict(margin=MARGIN, target=target, pieces=pieces(tiny_case_index))
    if not np.isfinite(d_star):
        assert oracles.is_robust(case.network, case.x, 100.0, norm, **kwargs) == (True, None)
        return
    assert oracles.is_robust(case.network, case.x, d_star * (1 - 1e-3), norm, **kwargs)[0]
    robust, witness = oracles.is_robust(case.network, case.x, d_star * (1 + 1e-3), norm, **kwargs)
    assert not robust
    assert oracles.distance(witness, case.x, norm) <= d_star * (1 + 1e-3) + DIST_TOL
    slack = oracles.spec_slack(oracles.evaluate(case.network, witness[None]), case.label, target, MARGIN)
    assert slack[0] >= -oracles.WITNESS_TOL


@pytest.mark.parametrize("norm", oracles.NORMS)
def test_no_adversarial_network_gives_infinity(norm):
    net = no_adversarial_net()
    x = np.array([0.5, 0.5])
    assert oracles.predicted_label(net, x) == 0
    assert oracles.min_distortion(net, x, norm, margin=MARGIN).distance == np.inf
    assert oracles.min_distortion(net, x, norm, margin=MARGIN, target=2).distance == np.inf
    assert oracles.is_robust(net, x, 5.0, norm, margin=MARGIN)[0]
    assert oracles.sampled_min_distortion(net, x, norm, margin=MARGIN, radius=1.0)[0] == np.inf


def test_already_misclassified_point_has_distance_zero():
    case = cached_case(0)
    logits = oracles.evaluate(case.network, case.x.reshape(1, -1))[0]
    other = int(np.argsort(logits)[-2])  # x's argmax beats this class by >= MIN_LOGIT_GAP
    for norm in oracles.NORMS:
        result = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN, label=other, pieces=pieces(0))
        assert result.distance == pytest.approx(0.0, abs=DIST_TOL)


def test_every_case_is_tiny_and_nontrivial():
    for index in range(len(TINY_CONFIGS)):
        case = cached_case(index)
        assert oracles.num_relus(case.network) <= 10
        assert case.network.input_size in (2, 3)
        assert np.isfinite(exact(index, "linf", False).distance), f"{case.name}: no adversarial point at all"
