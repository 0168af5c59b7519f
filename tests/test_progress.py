"""In-flight progress of long MILPs (the ``progress`` solve option and the queries' callbacks).

- SCIP's reports change nothing (same status, optimum and node count as without them) and
  bracket the optimum: the best point's objective never beats it, the dual bound never
  cuts it off.
- A callback that raises is dropped (the solve goes on); KeyboardInterrupt in it stops the solve.
- ``verify`` hands every recorded step to its callback, plus ``running`` reports that stay out
  of the history; direct minimisation's reports bracket the activation-pattern oracle's optimum.
- The command line prints the steps on stderr, and nothing with ``--quiet``.
"""

from __future__ import annotations

import logging

import numpy as np
import oracles
import pytest
from conftest import cached_case

import exactverify as ev
from encoders.backends import make_backend
from encoders.backends import scip as scip_backend
from exactverify import zoo
from exactverify.cli import main
from exactverify.queries.stages import DUAL_BOUND_SLACK


@pytest.fixture
def every_node(monkeypatch):
    """Report at every solved node instead of every PROGRESS_INTERVAL seconds."""
    monkeypatch.setattr(scip_backend, "PROGRESS_INTERVAL", 0.0)


def _knapsack(seed: int = 0, n: int = 30):
    """A multi-constraint 0/1 knapsack (maximise): some branching at SCIP's defaults."""
    rng = np.random.default_rng(seed)
    solver = make_backend("scip")
    xs = [solver.add_binary() for _ in range(n)]
    for _ in range(6):
        solver.add_constraint(xs, rng.integers(1, 100, n).astype(float), "<=", 700.0)
    solver.set_objective(xs, rng.integers(1, 100, n).astype(float), minimize=False)
    return solver


@pytest.mark.parametrize("seed", [0, 4, 8, 10])  # seeds whose solve branches
def test_scip_reports_bracket_the_optimum_and_change_nothing(every_node, seed: int) -> None:
    plain = _knapsack(seed).solve()
    reports = []
    watched = _knapsack(seed).solve(progress=reports.append)
    assert (watched.status, watched.objective, watched.node_count) == (plain.status, plain.objective, plain.node_count)
    assert plain.status.value == "optimal" and plain.node_count > 1 and reports
    assert [r.nodes for r in reports] == sorted(r.nodes for r in reports)
    assert [r.seconds for r in reports] == sorted(r.seconds for r in reports)
    for report in reports:  # maximising: best point <= optimum <= dual bound
        assert report.bound is not None and report.bound >= plain.objective - 1e-9
        assert report.objective is None or report.objective <= plain.objective + 1e-9


def test_reports_are_at_least_progress_interval_apart(monkeypatch) -> None:
    monkeypatch.setattr(scip_backend, "PROGRESS_INTERVAL", 1e9)
    reports = []
    assert _knapsack().solve(progress=reports.append).node_count > 1 and reports == []


def test_a_failing_callback_is_dropped_and_ctrl_c_in_it_stops_the_solve(every_node, caplog) -> None:
    calls = []

    def broken(report):
        calls.append(report)
        raise ValueError("display broke")

    plain = _knapsack().solve()
    with caplog.at_level(logging.WARNING):
        result = _knapsack().solve(progress=broken)
    assert (result.status, result.objective) == (plain.status, plain.objective) and len(calls) == 1
    assert "progress callback raised" in caplog.text

    def stop(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _knapsack().solve(progress=stop)


def test_bad_progress_option_names_it() -> None:
    with pytest.raises(ev.InvalidInputError, match="option 'progress' must be a callable"):
        _knapsack().solve(progress="yes")
    with pytest.raises(ev.InvalidInputError, match="progress must be a callable"):
        ev.verify(cached_case(2).network, cached_case(2).x, 0.1, progress=3)


def test_ortools_accepts_the_option_and_never_calls_it() -> None:
    pytest.importorskip("ortools")
    solver = make_backend("ortools")
    x = solver.add_var(0.0, 1.0, integer=True)
    solver.set_objective([x], [1.0], minimize=False)
    calls = []
    assert solver.solve(progress=calls.append).objective == 1.0 and calls == []


def test_verify_reports_every_step_and_running_milps_outside_the_history(every_node) -> None:
    case = cached_case(0)  # both MILPs below reach SCIP's node loop (others end in presolve: no report)
    pieces = oracles.enumerate_pieces(case.network, case.network.input_domain)
    d_star = oracles.min_distortion(case.network, case.x, "linf", margin=ev.DEFAULT_MARGIN, pieces=pieces).distance
    for eps, expected in ((d_star * (1 - 1e-3), "robust"), (d_star * (1 + 1e-3), "not_robust")):
        seen = []
        verdict = ev.verify(case.network, case.x, eps, attack_first=False, progress=seen.append)
        assert verdict.status == expected, verdict.reason
        finished = [step for step in seen if step.outcome != "running"]
        running = [step for step in seen if step.outcome == "running"]
        assert finished == verdict.history
        assert any(step.stage == "milp" for step in verdict.history)
        assert running and all(step.stage == "milp" and step.eps == eps for step in running)
        assert not any(step.outcome == "running" for step in verdict.history)
        if expected == "robust":  # the spec slack's dual bound: the last one proves it below 0
            assert all(step.bound is not None for step in running)


@pytest.mark.parametrize("index,norm", [(3, "linf"), (2, "l1"), (8, "l1")])  # cases whose MILP reaches the node loop
def test_direct_minimisation_reports_bracket_the_oracle(every_node, index: int, norm: str) -> None:
    case = cached_case(index)
    pieces = oracles.enumerate_pieces(case.network, case.network.input_domain)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=ev.DEFAULT_MARGIN, pieces=pieces).distance
    seen = []
    result = ev.minimal_distortion(case.network, case.x, norm, method="direct",
                                   progress=lambda lower, upper, step: seen.append((lower, upper, step)))
    assert result.status == "optimal" and result.lower - 1e-6 <= d_star <= result.upper + 1e-6
    running = [step for _, _, step in seen if step is not None and step.outcome == "running"]
    assert running, "the direct MILP reported nothing"
    for step in running:
        assert "distortion in [" in step.raw_status
        assert step.bound is None or step.bound - DUAL_BOUND_SLACK <= d_star + 1e-9
        assert step.objective is None or step.objective >= d_star - 1e-6
    for lower, upper, _ in seen:
        assert lower - 1e-6 <= d_star <= upper + 1e-6


def test_direct_minimisation_reports_on_digits_stay_inside_the_proved_optimum(every_node) -> None:
    network = ev.load(zoo.digits_network(), input_shape=(64,))
    x = zoo.load_digits_data()[2][1]
    seen = []
    result = ev.minimal_distortion(network, x, "l1", target=4, domain=(0.0, 1.0), method="direct",
                                   progress=lambda lower, upper, step: seen.append(step))
    assert result.status == "optimal"
    running = [step for step in seen if step is not None and step.outcome == "running"]
    assert len(running) >= 2
    for step in running:  # the solver's in-flight numbers never contradict the optimum it proved at the end
        assert step.bound is None or step.bound - DUAL_BOUND_SLACK <= result.upper
        assert step.objective is None or step.objective >= result.lower
    bounds = [step.bound for step in running if step.bound is not None]
    assert bounds == sorted(bounds)  # a minimisation's dual bound only rises


def test_command_line_verify_prints_its_steps_unless_quiet(every_node, capsys) -> None:
    x = zoo.load_digits_data()[2][0]
    args = ["verify", "digits", "--input", ",".join(repr(float(v)) for v in x), "--target", "9", "--eps", "0.05"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert any(" attack at 0.05 -> " in line for line in lines), captured.err
    assert any(" bounds at 0.05 -> " in line for line in lines), captured.err
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
