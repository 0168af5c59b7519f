"""Branch and bound on ReLU phases (beta-CROWN style), for networks with many inputs.

Bisecting a 784-pixel box gets nowhere; splitting an unstable ReLU does: its two
sub-domains (pre-activation >= 0, <= 0) cover the region, and in each the neuron is
linear. Each batch of sub-domains is bounded by
:func:`~exactverify.bounds.crown.crown_bounds` with its ``splits``, then the spec rows
of the domains still open by :func:`~exactverify.bounds.alpha.alpha_output_lower` with
optimised slopes and split multipliers (beta). A sub-domain is closed when every
disjunct of the output spec has a row with a positive lower bound, or when its splits
contradict each other (its bounds cross: it holds no point).

Branching (one neuron per sub-domain): BaBSR's intercept score over the rows of the live
disjuncts (:mod:`exactverify.bounds.branching`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..bounds.alpha import alpha_bounds, alpha_output_lower
from ..bounds.branching import branch_scores, choose_branch, split_children
from ..bounds.crown import crown_bounds, empty_subdomains
from ..ir import Dense, Flatten, Network, ReLU, Reshape
from ..regions import box

#: Sub-domains bounded per batched call.
BATCH_DOMAINS = 64
#: Gradient steps on slopes and split multipliers per batch.
ITERATIONS = 10
#: Gradient steps for a domain with every ReLU split or stable, where the bound is an LP
#: dual that only the split multipliers can still tighten.
EXHAUSTED_ITERATIONS = 300
#: Open sub-domains kept at most; beyond it the search stops ("open"), bounding memory.
MAX_OPEN_DOMAINS = 100_000


@dataclass
class SplitOutcome:
    """``proved``: every sub-domain closed; else the search stopped (time, memory, or a
    domain with nothing left to split)."""

    proved: bool
    domains: int  # sub-domains bounded
    closed: int
    open: int
    seconds: float


def supports(network: Network) -> bool:
    """ReLU splitting is implemented for dense ReLU networks (ACAS Xu, MNIST-FC)."""
    return all(isinstance(layer, (Dense, ReLU, Flatten, Reshape)) for layer in network.layers)


def refuted_disjuncts(row_lower: torch.Tensor, owner: np.ndarray, count: int) -> torch.Tensor:
    """(B, count) bool: disjunct k is unreachable in region b (some row has a positive lower bound)."""
    positive = row_lower > 0
    return torch.stack([positive[:, torch.as_tensor(owner == k)].any(1) for k in range(count)], 1)


def _size(splits: dict) -> int:
    return next(iter(splits.values())).shape[0]


def _take(stack: list, count: int) -> dict:
    """Up to ``count`` domains from the top of the stack (depth first keeps it small)."""
    splits = stack.pop()
    if _size(splits) > count:
        stack.append({i: s[count:] for i, s in splits.items()})
        return {i: s[:count] for i, s in splits.items()}
    return splits


def relu_split_search(network: Network, owner: np.ndarray, disjuncts: int, lower: torch.Tensor,
                      upper: torch.Tensor, deadline: float,
                      on_points: Callable[[torch.Tensor], None] | None = None) -> SplitOutcome:
    """Close every ReLU sub-domain of the box ``[lower, upper]`` (flat, float64) for the
    spec rows that end ``network`` (see :func:`~exactverify.vnncomp.solve.spec_network`),
    or stop at ``deadline`` (a ``time.perf_counter()`` value).

    ``on_points`` gets, for each batch of domains still open, the inputs (N, inputs) that
    minimise their rows' linear bounds: counterexample candidates (deeper domains give
    better ones); it may raise to end the search with one.
    """
    start = time.perf_counter()
    values = [i for i, layer in enumerate(network.layers) if isinstance(layer, ReLU)]
    # batches of open domains, each a splits dict (+1 / -1 / 0 per neuron, leading batch dim)
    stack = [{i: torch.zeros(1, *network.shapes[i], dtype=torch.int8) for i in values}]
    root = box(lower[None], upper[None], network.input_shape)
    known = alpha_bounds(network, root)  # valid on every sub-domain: intersected into each
    bounded = closed = 0

    def stopped(extra: int = 0) -> SplitOutcome:
        return SplitOutcome(False, bounded, closed, sum(_size(s) for s in stack) + extra, time.perf_counter() - start)

    while stack:
        if time.perf_counter() > deadline or sum(_size(s) for s in stack) > MAX_OPEN_DOMAINS:
            return stopped()
        splits = _take(stack, BATCH_DOMAINS)
        count = _size(splits)
        as_float = {i: s.to(torch.float64) for i, s in splits.items()}
        region = box(lower.expand(count, -1), upper.expand(count, -1), network.input_shape)
        lowers, uppers = crown_bounds(network, region, splits=as_float, known=known)
        bounded += count
        empty = empty_subdomains(lowers, uppers)
        refuted = refuted_disjuncts(lowers[-1], owner, disjuncts)
        open_ = torch.nonzero(~(refuted.all(1) | empty)).reshape(-1)
        if len(open_):
            tuned, points = alpha_output_lower(network, region[open_], [t[open_] for t in lowers],
                                               [t[open_] for t in uppers], iterations=ITERATIONS,
                                               splits={i: s[open_] for i, s in as_float.items()}, with_points=True)
            if on_points is not None:
                on_points(points.reshape(-1, lower.numel()))
            row_lower = lowers[-1].clone()
            row_lower[open_] = torch.maximum(row_lower[open_], tuned)
            refuted = refuted_disjuncts(row_lower, owner, disjuncts)
        done = refuted.all(1) | empty
        closed += int(done.sum())
        keep = torch.nonzero(~done).reshape(-1)
        if not len(keep):
            continue
        live_rows = ~refuted[keep][:, torch.as_tensor(owner)]
        scores = branch_scores(network, [t[keep] for t in lowers], [t[keep] for t in uppers], live_rows)
        value, neuron, found = choose_branch(scores)
        if not bool(found.all()):  # every neuron split or stable: only the multipliers can still close it
            exhausted = keep[~found]
            sub = {i: s[exhausted] for i, s in as_float.items()}
            tuned = alpha_output_lower(network, region[exhausted], [t[exhausted] for t in lowers],
                                       [t[exhausted] for t in uppers], iterations=EXHAUSTED_ITERATIONS, splits=sub)
            if not bool(refuted_disjuncts(tuned, owner, disjuncts).all()):
                return stopped(len(keep))
            closed += len(exhausted)
            keep, value, neuron = keep[found], value[found], neuron[found]
            if not len(keep):
                continue
        children = split_children({i: s[keep] for i, s in splits.items()}, value, neuron)
        stack.append(children)
    return SplitOutcome(True, bounded, closed, 0, time.perf_counter() - start)
