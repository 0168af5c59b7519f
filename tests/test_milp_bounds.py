"""MILP-tightened bounds (``bounds_method="milp"``) against independent oracles.

- Soundness: every bound contains the float64 forward values of sampled points, the
  centre and corners (``test_bounds.assert_sound``), and is never looser than CROWN.
- Tightness: on a 3-input net, the tightened second-layer bounds equal the exact extremes
  from enumerating the first layer's activation patterns with one scipy LP per pattern
  (shares no code with the encoder or SCIP), within the MILP gap and the padding.
- The sampling guard: a solver bound that cuts off reachable values is thrown away.
- Reuse across a search's probes: no MILP runs for a probe inside the cached radius band,
  and the reused bounds hold on its region.
- End to end: minimal distortion with these bounds brackets the activation-pattern oracle.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import oracles
import pytest
import torch
from conftest import cached_case
from scipy.optimize import linprog
from test_bounds import assert_sound, deep_narrow, mlp_relu

import exactverify as ev
from exactverify import ir
from exactverify.bounds import milp
from exactverify.errors import InvalidInputError
from exactverify.queries.checks import make_query
from exactverify.queries.stages import MILP_REUSE_FRACTION, spec_bounds

#: The tightened bound may exceed the exact extreme by SCIP's default relative gap (1e-4)
#: plus the padding (1e-5 relative) on top of rounding.
TIGHT_TOL = 2e-4


def small_net(seed: int = 3) -> ev.Network:
    rng = np.random.default_rng(seed)
    return ev.Network((3,), [ir.Dense(rng.normal(size=(6, 3)), 0.3 * rng.normal(size=6)), ir.ReLU(),
                             ir.Dense(rng.normal(size=(6, 6)) / 2, 0.3 * rng.normal(size=6)), ir.ReLU(),
                             ir.Dense(rng.normal(size=(2, 6)), np.zeros(2))], name="small")


def single_region(network: ev.Network, kind: str, seed: int = 0, eps: float = 0.4) -> ev.Region:
    centre = np.random.default_rng(seed).uniform(0.2, 0.8, size=network.input_shape)
    if kind == "linf":
        return ev.linf_ball(centre, eps, domain=(0.0, 1.0), shape=network.input_shape)
    return ev.l1_ball(centre, 2 * eps, domain=(0.0, 1.0), shape=network.input_shape)


def exact_extremes(network: ev.Network, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min/max of every second-layer pre-activation over the box ``[low, high]``: one LP per
    activation pattern of the first ReLU layer and neuron (patterns with no point are skipped)."""
    first, second = network.layers[0], network.layers[2]
    W1, b1, W2, b2 = (np.asarray(t, dtype=np.float64) for t in (first.weight, first.bias, second.weight, second.bias))
    lo = np.full(W2.shape[0], np.inf)
    hi = np.full(W2.shape[0], -np.inf)
    box = list(zip(low, high, strict=True))
    for pattern in itertools.product((0.0, 1.0), repeat=W1.shape[0]):
        active = np.asarray(pattern)
        sign = np.where(active > 0, -1.0, 1.0)  # active: -(W1 x + b1) <= 0; inactive: W1 x + b1 <= 0
        A_ub, b_ub = sign[:, None] * W1, -sign * b1
        for j in range(W2.shape[0]):
            coef = W2[j] * active @ W1
            const = W2[j] * active @ b1 + b2[j]
            for direction in (1.0, -1.0):
                res = linprog(direction * coef, A_ub=A_ub, b_ub=b_ub, bounds=box, method="highs")
                if res.status == 2:  # the pattern holds nowhere in the box
                    break
                assert res.status == 0, res.message
                value = direction * res.fun + const
                lo[j], hi[j] = (min(lo[j], value), hi[j]) if direction > 0 else (lo[j], max(hi[j], value))
    return lo, hi


@pytest.mark.parametrize("kind", ["linf", "l1"])
@pytest.mark.parametrize("make", [mlp_relu, deep_narrow], ids=["mlp_relu", "deep_narrow"])
def test_milp_bounds_are_sound_and_never_looser_than_crown(make, kind: str) -> None:
    network = make(np.random.default_rng(7))
    region = single_region(network, kind)
    stats: dict = {}
    tightened = ev.bounds(network, region, method="milp", layers=2, stats=stats)
    crown = ev.bounds(network, region, method="crown")
    assert_sound(network, region, tightened.lower, tightened.upper, f"{network.name}/{kind}/milp")
    for index in range(len(network.layers) + 1):
        assert bool((tightened.lower[index] >= crown.lower[index] - 1e-12).all()), f"looser than CROWN at {index}"
        assert bool((tightened.upper[index] <= crown.upper[index] + 1e-12).all()), f"looser than CROWN at {index}"
    assert stats["milps"] > 0 and stats["unstable_after"] <= stats["unstable_before"]
    assert stats["tightened"] > 0, "the sampling check (CHECK_TOLERANCE) threw away sound bounds"


@pytest.mark.parametrize("seed", [3, 5])
@pytest.mark.parametrize("order", ["index", "nearest"])
def test_tightened_second_layer_equals_the_exact_extremes(order: str, seed: int, monkeypatch) -> None:
    """Every side that was tightened reaches the exact extreme: with ``"index"`` both sides of
    every unstable neuron; with ``"nearest"`` both sides of the neurons left unstable, and the
    side that made a neuron stable (its other side is skipped: it matters nowhere)."""
    monkeypatch.setattr(milp, "NEURON_ORDER", order)
    network = small_net(seed)
    region = single_region(network, "linf", eps=0.35)
    crown = ev.bounds(network, region, method="crown")
    tightened = ev.bounds(network, region, method="milp")
    exact_low, exact_high = exact_extremes(network, region.lower[0].numpy(), region.upper[0].numpy())
    second = 3  # the value entering the second ReLU layer
    low, high = tightened.lower[second][0].numpy(), tightened.upper[second][0].numpy()
    unstable = ((crown.lower[second][0] < 0) & (crown.upper[second][0] > 0)).numpy()
    assert unstable.sum() >= 2, "the test net must leave unstable second-layer ReLUs to tighten"
    assert np.all(low <= exact_low + 1e-9) and np.all(high >= exact_high - 1e-9), "unsound"
    scale = TIGHT_TOL * (1 + np.abs(exact_low) + np.abs(exact_high))
    high_exact = (high - exact_high) <= scale
    low_exact = (exact_low - low) <= scale
    if order == "index":
        assert np.all(high_exact[unstable]), (high, exact_high)
        assert np.all(low_exact[unstable]), (low, exact_low)
    else:
        left = unstable & (low < 0) & (high > 0)
        assert np.all(high_exact[left] & low_exact[left]), (low, high, exact_low, exact_high)
        inactive, active = unstable & (high <= 0), unstable & (low >= 0)
        assert np.all(high_exact[inactive]) and np.all(low_exact[active])
        assert np.all(exact_high[inactive] <= 0) and np.all(exact_low[active] >= 0)
    assert np.any((crown.upper[second][0].numpy() - high)[unstable] > 1e-3), "CROWN was already exact: no test"


def test_nearest_order_runs_the_side_nearer_to_zero_first_and_skips_stable_neurons(monkeypatch) -> None:
    low = torch.tensor([-1.0, -3.0, -0.5, 0.2, -2.0])
    up = torch.tensor([4.0, 1.0, 0.5, 3.0, -0.1])
    first, second = milp.neuron_jobs(low, up, "index")
    assert first == [(j, sense) for j in (0, 1, 2) for sense in (True, False)] and second == []
    first, second = milp.neuron_jobs(low, up, "nearest")
    # closeness min(u, -l) / (u - l): neuron 0: 0.2, neuron 1: 0.25, neuron 2: 0.5
    assert first == [(0, False), (1, True), (2, False)]
    assert second == [(0, True), (1, False), (2, True)]
    with pytest.raises(InvalidInputError, match="order"):
        milp.neuron_jobs(low, up, "random")

    network = mlp_relu(np.random.default_rng(7))
    region = single_region(network, "linf")
    calls: list[tuple[int, bool]] = []

    def stabilise_the_first(prefix, region, bounds, neuron, maximise, backend, limit, cancelled):
        calls.append((neuron, maximise))
        low, up = (float(t[0].reshape(-1)[neuron]) for t in (bounds.lower[-1], bounds.upper[-1]))
        if len(calls) == 1:  # the first MILP proves its side of 0: that neuron is stable
            return -1e-3 if maximise else 1e-3
        return up if maximise else low  # no tightening elsewhere

    monkeypatch.setattr(milp, "_neuron_extreme", stabilise_the_first)
    monkeypatch.setattr(milp, "_holds", lambda *args: True)  # the fake bound need not hold
    stats: dict = {}
    ev.bounds(network, region, method="milp", stats=stats, time_budget=math.inf)
    stable = calls[0][0]
    assert calls.count((stable, not calls[0][1])) == 0, "the other side of a stable neuron was solved"
    unstable = stats["unstable_before"]
    assert len(calls) == 2 * unstable - 1 and stats["milps"] == len(calls)
    assert stats["unstable_after"] == unstable - 1


def test_a_wrong_solver_bound_is_caught_by_sampling(monkeypatch, caplog) -> None:
    network = mlp_relu(np.random.default_rng(7))
    region = single_region(network, "linf")
    crown = ev.bounds(network, region, method="crown")

    def too_tight(prefix, region, bounds, neuron, maximise, backend, limit, cancelled):
        low, up = (float(t[0].reshape(-1)[neuron]) for t in (bounds.lower[-1], bounds.upper[-1]))
        return low + 0.05 * (up - low) if maximise else low  # cuts off most of the reachable values

    monkeypatch.setattr(milp, "_neuron_extreme", too_tight)
    stats: dict = {}
    with caplog.at_level(logging.WARNING, logger="exactverify.bounds.milp"):
        kept = ev.bounds(network, region, method="milp", stats=stats)
    assert "failed the sampling check" in caplog.text
    assert stats["tightened"] == -1
    for ours, theirs in zip(kept.upper + kept.lower, crown.upper + crown.lower, strict=True):
        assert torch.equal(ours, theirs)


def test_bad_options_name_the_parameter() -> None:
    network = mlp_relu(np.random.default_rng(7))
    with pytest.raises(InvalidInputError, match="layers"):
        ev.bounds(network, single_region(network, "linf"), method="milp", layers=-1)
    batch = ev.linf_ball(np.full((2, 4), 0.5), 0.1, domain=(0.0, 1.0), shape=(4,))
    with pytest.raises(InvalidInputError, match="batch of one"):
        ev.bounds(network, batch, method="milp")
    rng = np.random.default_rng(0)
    smooth = ev.Network((2,), [ir.Dense(rng.normal(size=(3, 2)), np.zeros(3)), ir.Sigmoid(),
                               ir.Dense(rng.normal(size=(3, 3)), np.zeros(3)), ir.ReLU(),
                               ir.Dense(rng.normal(size=(3, 3)), np.zeros(3)), ir.ReLU(),
                               ir.Dense(rng.normal(size=(2, 3)), np.zeros(2))], name="smooth")
    with pytest.raises(InvalidInputError, match="piecewise-linear.*Sigmoid"):
        ev.bounds(smooth, single_region(smooth, "linf"), method="milp")


def test_without_a_budget_the_tightening_stops_at_its_default_cap(monkeypatch) -> None:
    """No ``time_budget`` means :data:`milp.DEFAULT_TIME_BUDGET`, not unlimited: with the cap at 0
    no neuron MILP runs and the bounds are CROWN's; ``math.inf`` lifts it."""
    network = mlp_relu(np.random.default_rng(7))
    region = single_region(network, "linf")
    crown = ev.bounds(network, region, method="crown")
    monkeypatch.setattr(milp, "DEFAULT_TIME_BUDGET", 0.0)
    stats: dict = {}
    capped = ev.bounds(network, region, method="milp", stats=stats)
    assert stats["milps"] == 0 and stats["tightened"] == 0
    for ours, theirs in zip(capped.upper + capped.lower, crown.upper + crown.lower, strict=True):
        assert torch.equal(ours, theirs)
    ev.bounds(network, region, method="milp", time_budget=math.inf, stats=stats)
    assert stats["milps"] > 0 and stats["tightened"] > 0
    for bad in (-1.0, math.nan, "10", True):
        with pytest.raises(InvalidInputError, match="time_budget"):
            ev.bounds(network, region, method="milp", time_budget=bad)


def test_a_search_reuses_tightened_bounds_inside_the_radius_band(monkeypatch) -> None:
    network = mlp_relu(np.random.default_rng(7))
    x = np.random.default_rng(1).uniform(0.2, 0.8, size=4)
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    query = make_query(network, x, "linf", None, label, (0.0, 1.0), ev.DEFAULT_MARGIN)
    calls = []
    original = milp._neuron_extreme
    monkeypatch.setattr(milp, "_neuron_extreme", lambda *args: calls.append(1) or original(*args))
    cache: dict = {}
    eps = 0.4
    spec_bounds(query, query.spec(), eps, "milp", reuse=cache)
    first = len(calls)
    assert first > 0 and cache["eps"] == eps
    inside = eps * (1 + MILP_REUSE_FRACTION) / 2
    reused, _ = spec_bounds(query, query.spec(), inside, "milp", reuse=cache)
    assert len(calls) == first, "a probe inside the band tightened again"
    region = query.region(inside)
    assert_sound(network, region, reused.lower, reused.upper, "reused")
    fresh = ev.bounds(network, region, method="crown")
    for index in range(len(network.layers)):  # hidden values: intersected with CROWN at the probe
        assert bool((reused.upper[index] <= fresh.upper[index] + 1e-12).all())
    spec_bounds(query, query.spec(), eps * MILP_REUSE_FRACTION / 2, "milp", reuse=cache)
    assert len(calls) > first and cache["eps"] == eps * MILP_REUSE_FRACTION / 2
    before = len(calls)
    spec_bounds(query, query.spec(), eps, "milp", reuse=cache)  # larger than the cached radius: never reused
    assert len(calls) > before


@pytest.mark.parametrize("index,norm,threads", [(2, "linf", 1), (9, "l1", 1), (0, "linf", 2), (7, "l1", 2)])
def test_minimal_distortion_with_milp_bounds_brackets_the_oracle(index: int, norm: str, threads: int) -> None:
    case = cached_case(index)
    pieces = oracles.enumerate_pieces(case.network, case.network.input_domain)
    d_star = oracles.min_distortion(case.network, case.x, norm, margin=ev.DEFAULT_MARGIN, pieces=pieces).distance
    res = ev.minimal_distortion(case.network, case.x, norm, bounds_method="milp", threads=threads, time_limit=60)
    assert math.isfinite(d_star) and res.status == "optimal", res.reason
    assert res.lower - 1e-6 <= d_star <= res.upper + 1e-6
    assert any(step.raw_status.startswith("milp (") for step in res.history if step.stage == "bounds")


def test_tightening_progress_counts_its_milps_and_changes_nothing(monkeypatch, caplog) -> None:
    """Reports say how many neuron MILPs ended of those known (never more, never fewer than
    before), the last one all of them; a raising callback is dropped and the bounds stay those
    of a run without one."""
    network = mlp_relu(np.random.default_rng(7))
    region = single_region(network, "linf")
    monkeypatch.setattr(milp, "PROGRESS_INTERVAL", 0.0)
    seen: list[tuple[int, int, float]] = []
    stats: dict = {}
    reported = ev.bounds(network, region, method="milp", layers=2, stats=stats, time_budget=math.inf,
                         progress=lambda *args: seen.append(args))
    assert len(seen) == stats["milps"] + 1  # one per MILP, then the final one
    assert all(done <= total for done, total, _ in seen)
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert seen[-1][0] == seen[-1][1] == stats["milps"]

    def broken(*_args) -> None:
        raise RuntimeError("display broke")

    with caplog.at_level(logging.WARNING):
        dropped = ev.bounds(network, region, method="milp", layers=2, time_budget=math.inf, progress=broken)
    assert "progress callback raised" in caplog.text
    for ours, theirs in zip(dropped.upper + dropped.lower, reported.upper + reported.lower, strict=True):
        assert torch.allclose(ours, theirs, atol=TIGHT_TOL, rtol=TIGHT_TOL)  # equal up to the MILP gap
    with pytest.raises(InvalidInputError, match="progress"):
        ev.bounds(network, region, method="milp", progress="stderr")


def test_verify_shows_the_tightening_as_running_bounds_steps(monkeypatch) -> None:
    network = mlp_relu(np.random.default_rng(7))
    x = np.random.default_rng(0).uniform(0.2, 0.8, size=network.input_shape)
    monkeypatch.setattr(milp, "PROGRESS_INTERVAL", 0.0)
    seen = []
    verdict = ev.verify(network, x, 0.4, domain=(0.0, 1.0), bounds_method="milp", attack_first=False,
                        progress=seen.append)
    running = [step for step in seen if step.stage == "bounds" and step.outcome == "running"]
    assert running and all("neuron MILPs ended" in step.raw_status and step.eps == 0.4 for step in running)
    assert not any(step.outcome == "running" for step in verdict.history)
    assert [step for step in seen if step.outcome != "running"] == verdict.history
