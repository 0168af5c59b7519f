"""alpha-CROWN's time budget, and the decisions that escalate from CROWN to alpha bounds on
networks CROWN leaves with many unstable ReLUs (``stages.ALPHA_ESCALATION_UNSTABLE``).

The escalation is checked against the exact oracle on the tiny cases with the threshold at
-1 (every decision CROWN leaves open escalates), and on a wider net by default."""

from __future__ import annotations

import math

import numpy as np
import oracles
import pytest
import torch
from conftest import cached_case, tiny_net
from test_bounds import ARCHITECTURES, make_region
from test_encoders import _dense

import exactverify as ev
from exactverify import ir
from exactverify.bounds import alpha as alpha_module
from exactverify.bounds.alpha import alpha_bounds, alpha_output_lower
from exactverify.bounds.crown import crown_bounds
from exactverify.errors import InvalidInputError
from exactverify.queries import stages
from exactverify.queries.checks import make_query

MARGIN = ev.DEFAULT_MARGIN
SPEC_ROWS, ALL_LAYERS = stages.ALPHA_SPEC_ROWS, stages.ALPHA_ALL_LAYERS
#: The tiny cases and norms run through the escalated engine (each against the oracle).
CASES = [(index, norm) for index in (0, 2, 4, 7, 9, 11) for norm in ("linf", "l1")]


def _escalated(history, pass_: str = SPEC_ROWS) -> list:
    """The bound steps of one alpha pass (every escalation starts with the spec-row pass)."""
    return [step for step in history if step.stage == "bounds" and step.raw_status == pass_]


def test_a_spent_time_budget_gives_crown_bounds_without_optimising(monkeypatch) -> None:
    rng = np.random.default_rng(5)
    network = ARCHITECTURES["deep_narrow"](rng)
    center = torch.as_tensor(rng.uniform(0, 1, size=(3, 3)))
    region = ev.box(center - 0.4, center + 0.4, shape=(3,))
    calls = []
    original = alpha_module.alpha_output_lower
    monkeypatch.setattr(alpha_module, "alpha_output_lower", lambda *a, **k: calls.append(1) or original(*a, **k))
    lowers, uppers = alpha_bounds(network, region, time_budget=0.0)
    assert not calls, "no slope optimisation once the budget is spent"
    crown_low, crown_up = crown_bounds(network, region)
    for mine, theirs in zip(lowers + uppers, crown_low + crown_up, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)
    tuned_low, _ = alpha_bounds(network, region, iterations=30)
    assert float(tuned_low[-1].sum()) > float(lowers[-1].sum()), "the unlimited run does optimise"


def test_a_past_deadline_stops_after_the_crown_slopes() -> None:
    rng = np.random.default_rng(0)
    network = ARCHITECTURES["mlp_relu"](rng)
    region = make_region(network, "box", rng)
    lowers, uppers = crown_bounds(network, region)
    start = alpha_output_lower(network, region, lowers, uppers, iterations=0)
    stopped = alpha_output_lower(network, region, lowers, uppers, iterations=50, deadline=0.0)
    torch.testing.assert_close(stopped, start, rtol=0, atol=0)


@pytest.mark.parametrize("budget", [-1.0, math.nan, "1", True])
def test_alpha_rejects_a_bad_time_budget(budget) -> None:
    rng = np.random.default_rng(0)
    network = ARCHITECTURES["mlp_relu"](rng)
    with pytest.raises(InvalidInputError, match="time_budget"):
        alpha_bounds(network, make_region(network, "box", rng), time_budget=budget)


@pytest.mark.parametrize("index,norm", CASES)
def test_escalated_decisions_bracket_the_oracle(index, norm, monkeypatch) -> None:
    """Just below the oracle's minimal distortion "robust", just above a validated point."""
    monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", -1)
    case = cached_case(index)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    assert math.isfinite(d_star)
    below = ev.verify(case.network, case.x, d_star * 0.99, norm, time_limit=60, attack_first=False)
    assert below.status == "robust", below.reason
    crown_open = [s for s in below.history if s.stage == "bounds" and s.raw_status == "crown" and s.outcome != "robust"]
    assert len(_escalated(below.history)) == len(crown_open), "every region CROWN left open escalates"
    above = ev.verify(case.network, case.x, d_star * 1.01, norm, time_limit=60, attack_first=False)
    assert above.status == "not_robust", above.reason
    assert above.validated is True and above.distortion <= d_star * 1.01 + 1e-12


@pytest.mark.parametrize("index,norm", [(0, "linf"), (0, "l1"), (4, "l1"), (11, "linf")])
def test_alpha_proves_what_crown_left_open(index, norm, monkeypatch) -> None:
    """On these cases CROWN cannot prove the ball at 0.99 of the oracle's minimum; alpha can."""
    monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", -1)
    case = cached_case(index)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    verdict = ev.verify(case.network, case.x, d_star * 0.99, norm, time_limit=60, attack_first=False)
    assert verdict.status == "robust" and verdict.reason in (f"proved by {SPEC_ROWS}", f"proved by {ALL_LAYERS}")
    assert {s.stage for s in verdict.history} == {"bounds"}, "no MILP once alpha proves the region"
    if verdict.reason == f"proved by {SPEC_ROWS}":
        assert not _escalated(verdict.history, ALL_LAYERS), "the spec-row pass proved it: no layer-by-layer pass"


def test_a_region_the_spec_row_pass_proves_skips_the_layer_by_layer_pass(monkeypatch) -> None:
    """Tiny case 0 at 0.99 of its L-inf minimum: the spec-row slopes alone prove what CROWN cannot,
    so the costly pass never runs (it would fail the test if it did)."""
    monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", -1)
    real = stages.spec_bounds

    def no_layer_pass(query, spec, eps, method, *args, **kwargs):
        assert method != "alpha", "the layer-by-layer alpha pass ran"
        return real(query, spec, eps, method, *args, **kwargs)

    monkeypatch.setattr(stages, "spec_bounds", no_layer_pass)
    case = cached_case(0)
    d_star = oracles.min_distortion(case.network, case.x, "linf", margin=MARGIN).distance
    verdict = ev.verify(case.network, case.x, d_star * 0.99, "linf", time_limit=60, attack_first=False)
    assert verdict.status == "robust" and verdict.reason == f"proved by {SPEC_ROWS}"


@pytest.mark.parametrize("index,norm", CASES)
def test_the_spec_row_pass_is_never_looser_than_crown(index, norm) -> None:
    """Its rows, at 1.2x the oracle's minimum (open to CROWN), bound every sampled point from below."""
    case = cached_case(index)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    query = make_query(case.network, case.x, norm, None, None, None, MARGIN, None)  # the net's own domain
    spec = query.spec()
    crown, crown_rows = stages.spec_bounds(query, spec, d_star * 1.2, "crown")
    rows = stages._alpha_spec_rows(query, spec, d_star * 1.2, crown, None)
    assert np.all(rows >= crown_rows - 1e-12)
    points = oracles.sample_ball(case.x, d_star * 1.2, norm, 4000, np.random.default_rng(index))
    if query.domain is not None:
        points = np.clip(points, *[np.asarray(d, dtype=np.float64).reshape(-1) for d in query.domain])
    full = stages._with_spec_rows(query, spec)
    values = oracles.evaluate(full, points)
    assert np.all(values >= rows - 1e-9), "a spec-row bound above a sampled value"


@pytest.mark.parametrize("index,norm", CASES[:4])
def test_escalated_minimal_distortion_brackets_the_oracle(index, norm, monkeypatch) -> None:
    monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", -1)
    case = cached_case(index)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=MARGIN).distance
    result = ev.minimal_distortion(case.network, case.x, norm, time_limit=60)
    assert result.status == "optimal", result.history
    assert result.lower - 1e-6 <= d_star <= result.upper + 1e-6


def test_a_wide_net_escalates_by_default_and_stays_sound() -> None:
    """A random 10-300-300-3 net at L-inf 0.035 and 0.05: CROWN leaves more unstable ReLUs than
    the threshold, so the decision takes alpha bounds first (never looser), then the MILP;
    whatever it answers within 3 s agrees with sampling and the re-check."""
    network = tiny_net(3, (10,), (300, 300), 3, (0.0, 1.0), name="wide", min_share=0.0)
    x = np.full(10, 0.5)
    label = int(np.argmax(network.forward(x[None]).numpy()))
    rng = np.random.default_rng(0)
    for eps in (0.035, 0.05):
        verdict = ev.verify(network, x, eps, "linf", time_limit=3, attack_first=False)
        crown, alpha = verdict.history[0], _escalated(verdict.history)
        assert crown.raw_status == "crown" and crown.outcome == "unknown"
        assert sum(crown.unstable) > stages.ALPHA_ESCALATION_UNSTABLE
        assert len(alpha) == 1 and alpha[0].outcome == "unknown", "the spec-row pass leaves these open"
        layers = _escalated(verdict.history, ALL_LAYERS)
        assert len(layers) == 1 and sum(layers[0].unstable) < sum(crown.unstable)
        if verdict.status == "robust":
            points = np.clip(x + rng.uniform(-eps, eps, (20000, 10)), 0, 1)
            logits = oracles.evaluate(network, points)
            assert np.all(np.delete(logits, label, 1).max(1) - logits[:, label] < MARGIN)
        elif verdict.status == "not_robust":
            assert verdict.validated is True


def _conv_pool_net() -> tuple[ev.Network, np.ndarray]:
    """Conv (8 ReLUs), max-pool, dense: 3 classes on [0, 1]^(1x3x3)."""
    rng = np.random.default_rng(5)
    layers = (ir.Conv2d(rng.normal(0, 1, (2, 1, 2, 2)), rng.normal(0, 0.2, 2)), ir.ReLU(), ir.MaxPool2d(2, 1, 0),
              ir.Flatten(), _dense(rng, 3, 2, 2))
    network = ir.Network((1, 3, 3), layers, (np.zeros((1, 3, 3)), np.ones((1, 3, 3))), "tiny_conv_pool3")
    return network, rng.uniform(0.2, 0.8, (1, 3, 3))


def test_escalated_verdicts_on_a_conv_pool_net_agree_with_z3(monkeypatch) -> None:
    """Conv, ReLU, max-pool: every decision escalates (threshold -1) and must give z3's exact
    answer on radii around the minimal distortion (found without escalation)."""
    network, x = _conv_pool_net()
    monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", math.inf)
    d_star = ev.minimal_distortion(network, x, "linf", time_limit=60)
    assert d_star.status == "optimal" and d_star.upper > 0.05
    answers = {}
    for factor in (0.5, 0.98, 0.995, 0.999, 1.001, 1.02, 2.0):
        eps = factor * d_star.upper
        monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", -1)
        escalated = ev.verify(network, x, eps, "linf", time_limit=60, attack_first=False)
        monkeypatch.setattr(stages, "ALPHA_ESCALATION_UNSTABLE", math.inf)
        exact = ev.verify(network, x, eps, "linf", backend="z3", time_limit=60, attack_first=False)
        assert exact.status != "unknown", exact.reason
        assert escalated.status == exact.status, (factor, escalated.reason, exact.reason)
        assert escalated.status == ("robust" if factor < 1 else "not_robust"), (factor, escalated.reason)
        if escalated.status == "not_robust":
            assert escalated.validated is True
        if escalated.reason != "proved by crown bounds":
            assert _escalated(escalated.history), "a decision CROWN left open escalates"
        answers[factor] = escalated.reason
    assert sum("MILP" in reason for reason in answers.values()) >= 4, f"the radii near d* need the MILP: {answers}"


def test_the_digits_net_keeps_the_crown_path() -> None:
    """The demo's 64-16-16-10 MLP stays below the threshold: its decisions never escalate."""
    from exactverify import zoo

    network = ev.load(zoo.digits_network(), input_shape=(64,))
    _, _, x_test, _ = zoo.load_digits_data()
    verdict = ev.verify(network, x_test[0], 0.1, "linf", domain=(0.0, 1.0), time_limit=60, attack_first=False)
    crown = [s for s in verdict.history if s.stage == "bounds" and s.raw_status == "crown"]
    assert crown and sum(crown[0].unstable) <= stages.ALPHA_ESCALATION_UNSTABLE
    assert crown[0].outcome == "unknown", "the ball must be one CROWN leaves open"
    assert not _escalated(verdict.history)
