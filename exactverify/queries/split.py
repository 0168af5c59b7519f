"""Decide one exact query as several smaller MILPs solved side by side (``threads > 1``).

The eps-region is split on the phases of the unstable ReLUs that matter most to the spec
(BaBSR's score, :mod:`exactverify.bounds.branching`) into up to ``2**depth`` sub-domains.
CROWN bounds each with its splits (the split neuron becomes stable, and its bounds tighten
every later layer); sub-domains that hold no point or whose spec rows CROWN refutes drop
out, and each of the rest is one MILP. Worker threads take them from a queue, largest
first (SCIP releases the GIL while it solves); a re-checked counterexample in any of them
interrupts the others. The sub-domains cover the region, so "robust" needs all of them
infeasible, and a sub-MILP's point is re-checked in float64 like any other.

Why: on the 5 hardest closing probes of the MNIST 784-24-24-24-10 minimal-distortion
benchmark (about 60 unstable ReLUs), 60 s each on 2 cores, one SCIP MILP decided 2 and the
split on 2 threads 4, 1.5x faster on the 2 both decided (``benchmarks/split_milp.py``).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import torch

from ..bounds import BoundsResult
from ..bounds.branching import branch_scores, choose_branch, split_children
from ..bounds.crown import crown_bounds, empty_subdomains
from ..ir import Dense, Flatten, Network, ReLU, Reshape
from ..regions import Region
from ..specs import OutputSpec
from .checks import Query
from .results import SolveRecord

#: Backends whose solves release the GIL and can be interrupted from another thread.
SPLIT_BACKENDS = ("scip",)
#: Sub-domains per worker thread: more than one, so that a thread whose sub-domain closes
#: early takes another instead of idling.
DOMAINS_PER_THREAD = 2
#: How often (seconds) the coordinating thread repeats its interrupt to sub-MILPs still
#: starting up after a counterexample was found (a solve that has not started cannot be
#: interrupted yet; queued ones never start).
INTERRUPT_INTERVAL = 0.05


def split_depth(threads: int) -> int:
    """Levels of splitting for ``threads`` workers: ``2**depth >= DOMAINS_PER_THREAD * threads``."""
    return max(1, math.ceil(math.log2(DOMAINS_PER_THREAD * threads)))


def supports_split(network: Network, backend: str) -> bool:
    """Splitting works on dense ReLU networks (the branching score's layers) and GIL-free backends."""
    layers_ok = all(isinstance(layer, (Dense, ReLU, Flatten, Reshape)) for layer in network.layers)
    return backend in SPLIT_BACKENDS and layers_ok and any(isinstance(layer, ReLU) for layer in network.layers)


@dataclass
class SubDomain:
    """One sub-domain left open by the bounds: its bounds on the network and its live disjuncts."""

    bounds: BoundsResult
    spec: OutputSpec
    splits: list[tuple[int, int, int]]  # (value index, neuron, +1 / -1)

    @property
    def unstable(self) -> int:
        return sum(self.bounds.unstable_per_layer())


def repeat_region(region: Region, count: int) -> Region:
    """``count`` copies of a single region as one batch."""
    grow = (lambda t: None if t is None else t.expand(count, *t.shape[1:]))  # noqa: E731
    return Region(region.norm, grow(region.lower), grow(region.upper), grow(region.center), grow(region.eps))


def padded_known(spec_network: Network, lower, upper) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Bounds ``lower, upper`` (one per value of a prefix of ``spec_network``, batch of one) with
    infinite bounds appended for the values past that prefix (the spec rows): a ``known`` pair
    for :func:`~exactverify.bounds.crown.crown_bounds` on ``spec_network``."""
    pads = [torch.full((1, *shape), math.inf, dtype=torch.float64) for shape in spec_network.shapes[len(lower):]]
    return list(lower) + [-p for p in pads], list(upper) + pads


def split_region(query: Query, spec: OutputSpec, spec_network: Network, region: Region, depth: int,
                 known: BoundsResult | None = None) -> tuple[list[SubDomain], int]:
    """The sub-domains of ``region`` still open after ``depth`` levels of ReLU splits, and how
    many closed (empty, or refuted by CROWN). ``spec_network`` is the network with the spec
    rows ``A y - b`` appended; ``known`` are sound bounds of the whole region (intersected in).
    """
    from .stages import live_disjuncts

    relus = [i for i, layer in enumerate(spec_network.layers) if isinstance(layer, ReLU)]
    splits = {i: torch.zeros(1, *spec_network.shapes[i], dtype=torch.float64) for i in relus}
    known_pair = None if known is None else padded_known(spec_network, known.lower, known.upper)
    closed = 0
    for level in range(depth + 1):
        count = next(iter(splits.values())).shape[0]
        lowers, uppers = crown_bounds(spec_network, repeat_region(region, count), splits=splits, known=known_pair)
        empty = empty_subdomains(lowers, uppers)
        row_lower = lowers[-1].cpu().numpy()
        live = [None if bool(empty[b]) else live_disjuncts(spec, row_lower[b]) for b in range(count)]
        keep = [b for b in range(count) if live[b] is not None]
        closed += count - len(keep)
        if not keep:
            return [], closed
        index = torch.as_tensor(keep)
        splits = {i: s[index] for i, s in splits.items()}
        lowers, uppers = [t[index] for t in lowers], [t[index] for t in uppers]
        live = [live[b] for b in keep]
        if level == depth:
            break
        value, neuron, found = choose_branch(branch_scores(spec_network, lowers, uppers,
                                                           _live_rows(spec, row_lower[keep])))
        if not bool(found.all()):  # nothing left to split in some domain: keep the tree as it is
            break
        splits = split_children(splits, value, neuron)
    n = len(query.network.layers)
    return [SubDomain(BoundsResult(query.network, "crown+splits", [t[k: k + 1] for t in lowers[: n + 1]],
                                   [t[k: k + 1] for t in uppers[: n + 1]]), live[k], _signs(splits, k))
            for k in range(len(live))], closed


def _live_rows(spec: OutputSpec, row_lower: np.ndarray) -> torch.Tensor:
    """(B, R) bool: the spec rows of the disjuncts that the bounds leave open in each domain."""
    blocks, start = [], 0
    for conj in spec.disjuncts:
        size = conj.A.shape[0]
        still_open = ~(row_lower[:, start: start + size] > 0).any(1, keepdims=True)
        blocks.append(np.repeat(still_open, size, axis=1))
        start += size
    return torch.as_tensor(np.concatenate(blocks, axis=1))


def _signs(splits: dict[int, torch.Tensor], b: int) -> list[tuple[int, int, int]]:
    out = []
    for i, s in splits.items():
        flat = s[b].reshape(-1)
        for k in torch.nonzero(flat).reshape(-1).tolist():
            out.append((i, k, int(flat[k])))
    return out


def solve_split(query: Query, eps: float, domains: list[SubDomain], *, backend: str, threads: int,
                time_limit: float | None, history: list[SolveRecord], encoder_options: dict | None = None,
                progress=None):
    """Decide every sub-domain's MILP with ``threads`` worker threads; a :class:`~.stages.Finding`.

    ``robust`` only when every sub-MILP is infeasible; ``not_robust`` with the first
    re-checked counterexample (the others are interrupted); otherwise ``unknown``.
    ``progress`` gets each running sub-MILP's in-flight reports (from its worker thread).
    """
    from encoders.backends import Status, make_backend
    from encoders.milp import encode_query

    from .stages import Finding, accept_point, running_reporter, slack_form, slack_options

    deadline = None if time_limit is None else time.perf_counter() + time_limit
    stop = threading.Event()
    lock = threading.Lock()
    running: list = []
    region = query.region(eps)
    order = sorted(range(len(domains)), key=lambda k: -domains[k].unstable)

    def solve_one(k: int):
        if stop.is_set():
            return k, None, None
        domain = domains[k]
        solver = make_backend(backend)
        by_slack = slack_form(backend, domain.spec, domain.bounds)
        encoding = encode_query(solver, query.network, region, domain.spec, domain.bounds, slack=by_slack,
                                **(encoder_options or {}))
        options = {}
        if by_slack:
            solver.set_objective([encoding.slack], [1.0], minimize=False)
            options = slack_options()
        if progress is not None:
            options["progress"] = running_reporter(progress, eps, "slack" if by_slack else "feasibility",
                                                   f"sub-domain {k + 1}/{len(domains)}: ")
        with lock:
            if stop.is_set():
                return k, None, encoding
            running.append(solver)
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
        return k, solver.solve(time_limit=left, **options), encoding

    outcomes: dict[int, str] = {}
    found = unchecked = None
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(solve_one, k) for k in order]
        try:
            for future in as_completed(futures):
                k, result, encoding = future.result()
                if result is None:
                    continue
                history.append(SolveRecord("milp", eps, result.status.value, result.seconds,
                                           f"{result.raw_status} (sub-domain {k + 1}/{len(domains)})",
                                           result.objective, result.bound, result.node_count,
                                           domains[k].bounds.unstable_per_layer()))
                outcomes[k] = result.status.value
                if result.status.has_solution and result.values is not None:
                    finding = accept_point(query, result.values[encoding.input], eps,
                                           f"{backend} MILP (sub-domain {k + 1}/{len(domains)})")
                    if finding.outcome == "not_robust":
                        found = finding
                        break
                    unchecked = finding
        finally:  # a counterexample or an error: stop every sub-MILP still queued or running
            with lock:
                stop.set()
            while not all(future.done() for future in futures):
                with lock:
                    for solver in running:
                        solver.interrupt()
                time.sleep(INTERRUPT_INTERVAL)
    if found is not None:
        return found
    if len(outcomes) == len(domains) and all(v == Status.INFEASIBLE.value for v in outcomes.values()):
        return Finding("robust", f"MILP infeasible on all {len(domains)} sub-domains ({backend}, {threads} threads)",
                       lower_bound=math.inf)
    if unchecked is not None:
        return unchecked
    left = {k + 1: v for k, v in sorted(outcomes.items()) if v != Status.INFEASIBLE.value}
    return Finding("unknown", f"{backend}: {len(left)} of {len(domains)} sub-domains not decided "
                              f"(sub-domain: status {left})")
