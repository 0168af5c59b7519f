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

import exactverify as ev
from exactverify.bounds import alpha as alpha_module
from exactverify.bounds.alpha import alpha_bounds, alpha_output_lower
from exactverify.bounds.crown import crown_bounds
from exactverify.errors import InvalidInputError
from exactverify.queries import stages

MARGIN = ev.DEFAULT_MARGIN
ESCALATED = "alpha (escalated from crown)"
#: The tiny cases and norms run through the escalated engine (each against the oracle).
CASES = [(index, norm) for index in (0, 2, 4, 7, 9, 11) for norm in ("linf", "l1")]


def _escalated(history) -> list:
    return [step for step in history if step.stage == "bounds" and step.raw_status == ESCALATED]


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


@pytest.mark.parametrize("budget", [-1.0, math.nan, "1"])
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
    assert verdict.status == "robust" and verdict.reason == "proved by alpha bounds (escalated from crown)"
    assert [s.stage for s in verdict.history] == ["bounds", "bounds"]


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
        assert len(alpha) == 1 and sum(alpha[0].unstable) < sum(crown.unstable)
        if verdict.status == "robust":
            points = np.clip(x + rng.uniform(-eps, eps, (20000, 10)), 0, 1)
            logits = oracles.evaluate(network, points)
            assert np.all(np.delete(logits, label, 1).max(1) - logits[:, label] < MARGIN)
        elif verdict.status == "not_robust":
            assert verdict.validated is True
