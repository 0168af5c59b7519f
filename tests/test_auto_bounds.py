"""``bounds_method="auto"``: CROWN first, MILP-tightened bounds for a decision CROWN leaves open.

- Control flow (the solve stubbed): a decided first attempt is final; an open one is solved
  again on ``milp`` bounds with the time left, never past the limit; direct minimisation and
  probes inside a search's reuse band take one route only.
- End to end against the activation-pattern oracle on tiny nets, with the escalation forced
  on every decision (``ESCALATE_AFTER = 0``) and with the default (tiny MILPs decide at once).
- Bracketing with ``verify`` around a known optimum, escalation forced.
"""

from __future__ import annotations

import math
import time

import numpy as np
import oracles
import pytest
import torch
from conftest import cached_case
from test_bounds import mlp_relu

import exactverify as ev
from exactverify.queries import stages
from exactverify.queries.checks import make_query
from exactverify.queries.stages import Finding


def _query():
    network = mlp_relu(np.random.default_rng(7))
    x = np.random.default_rng(1).uniform(0.2, 0.8, size=4)
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    return make_query(network, x, "linf", None, label, (0.0, 1.0), ev.DEFAULT_MARGIN)


class StubSolve:
    """Stands in for ``solve_exact``: returns the scripted outcomes, records each call's method and limit."""

    def __init__(self, outcomes: list[str], seconds: float = 0.0) -> None:
        self.outcomes, self.seconds, self.calls = list(outcomes), seconds, []

    def __call__(self, query, eps, *, bounds_method, time_limit, history, **_):
        self.calls.append((bounds_method, time_limit))
        history.append(stages.SolveRecord("bounds", eps, "unknown", 0.0, raw_status=bounds_method))
        time.sleep(self.seconds)
        return Finding(self.outcomes.pop(0), "stub")


def _escalate(monkeypatch, stub: StubSolve, *, time_limit, minimise=False, cache=None, history=None):
    monkeypatch.setattr(stages, "solve_exact", stub)
    return stages._solve_escalating(_query(), 0.1, backend="scip", time_limit=time_limit, minimise=minimise,
                                    history=[] if history is None else history, bound_cache=cache,
                                    encoder_options=None, known_lower=0.0, threads=1)


@pytest.mark.parametrize("outcome", ["robust", "not_robust"])
def test_a_decided_first_attempt_is_final(monkeypatch, outcome: str) -> None:
    stub = StubSolve([outcome])
    assert _escalate(monkeypatch, stub, time_limit=60.0).outcome == outcome
    assert stub.calls == [("crown", stages.ESCALATE_AFTER)]


def test_an_open_decision_escalates_with_the_time_left(monkeypatch) -> None:
    stub = StubSolve(["unknown", "robust"], seconds=0.05)
    history: list = []
    assert _escalate(monkeypatch, stub, time_limit=30.0, history=history).outcome == "robust"
    (first, first_limit), (second, second_limit) = stub.calls
    assert (first, first_limit) == ("crown", stages.ESCALATE_AFTER)
    assert second == "milp" and 30.0 - 1.0 < second_limit <= 30.0 - 0.05  # the first attempt's time is spent
    assert history[1].raw_status.startswith("auto, escalated after")
    no_limit = StubSolve(["unknown", "unknown"])
    _escalate(monkeypatch, no_limit, time_limit=None)
    assert no_limit.calls == [("crown", stages.ESCALATE_AFTER), ("milp", None)]


def test_no_escalation_without_time_left(monkeypatch) -> None:
    stub = StubSolve(["unknown"])
    short = stages.ESCALATE_MIN_LEFT / 2
    assert _escalate(monkeypatch, stub, time_limit=short).outcome == "unknown"
    assert stub.calls == [("crown", short)]


def test_direct_minimisation_and_reused_bounds_take_one_route(monkeypatch) -> None:
    stub = StubSolve(["unknown"])
    _escalate(monkeypatch, stub, time_limit=60.0, minimise=True)
    assert stub.calls == [("crown", 60.0)]
    stub = StubSolve(["unknown"])
    _escalate(monkeypatch, stub, time_limit=60.0, cache={"eps": 0.1 / stages.MILP_REUSE_FRACTION ** 0.5})
    assert stub.calls == [("milp", 60.0)]


def test_bad_bounds_method_names_the_choices() -> None:
    with pytest.raises(ev.InvalidInputError, match="bounds_method must be one of .*'auto'"):
        ev.verify(mlp_relu(np.random.default_rng(0)), np.full(4, 0.5), 0.1, bounds_method="automatic")


@pytest.mark.parametrize("forced", [True, False], ids=["escalate-always", "default"])
@pytest.mark.parametrize("index,norm", [(2, "linf"), (9, "l1"), (0, "l1")])
def test_minimal_distortion_with_auto_bounds_brackets_the_oracle(monkeypatch, forced: bool, index: int,
                                                                 norm: str) -> None:
    if forced:
        monkeypatch.setattr(stages, "ESCALATE_AFTER", 0.0)
    case = cached_case(index)
    pieces = oracles.enumerate_pieces(case.network, case.network.input_domain)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=ev.DEFAULT_MARGIN, pieces=pieces).distance
    res = ev.minimal_distortion(case.network, case.x, norm, bounds_method="auto", threads=2, time_limit=60)
    assert math.isfinite(d_star) and res.status == "optimal", res.reason
    assert res.lower - 1e-6 <= d_star <= res.upper + 1e-6
    statuses = [step.raw_status for step in res.history if step.stage == "bounds"]
    escalated = [s for s in statuses if s.startswith("auto, escalated")]
    probes = [s for s in statuses if s != "crown certified radius"]
    if forced:
        # every exact probe either escalated or reused the bounds an escalation tightened
        assert escalated and "crown" not in probes
        assert all("escalated after 0.0 s" in s for s in escalated)
    else:
        assert not escalated  # tiny MILPs decide within ESCALATE_AFTER


def test_verify_with_forced_escalation_brackets_the_optimum(monkeypatch) -> None:
    monkeypatch.setattr(stages, "ESCALATE_AFTER", 0.0)
    case = cached_case(2)
    pieces = oracles.enumerate_pieces(case.network, case.network.input_domain)
    d_star = oracles.min_distortion(case.network, case.x, "linf", margin=ev.DEFAULT_MARGIN, pieces=pieces).distance
    below = ev.verify(case.network, case.x, d_star * (1 - 1e-3), bounds_method="auto", attack_first=False)
    above = ev.verify(case.network, case.x, d_star * (1 + 1e-3), bounds_method="auto", attack_first=False)
    assert below.status == "robust", below.reason
    assert above.status == "not_robust" and above.validated, above.reason
    assert any(step.raw_status.startswith("auto, escalated") for step in below.history + above.history)
