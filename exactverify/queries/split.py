"""Decide one exact query as several smaller MILPs solved side by side (``threads > 1``).

The eps-region is split on the phases of the unstable ReLUs that matter most to the spec
(BaBSR's score, :mod:`exactverify.bounds.branching`) into up to ``2**depth`` sub-domains.
CROWN bounds each with its splits (the split neuron becomes stable, and its bounds tighten
every later layer); sub-domains that hold no point or whose spec rows CROWN refutes drop
out, and each of the rest is one MILP, solved on worker threads by :mod:`.split_solve`.
The sub-domains cover the region, so "robust" needs all of them infeasible, and a
sub-MILP's point is re-checked in float64 like any other.

Why: on the 5 hardest closing probes of the MNIST 784-24-24-24-10 minimal-distortion
benchmark (about 60 unstable ReLUs), 60 s each on 2 cores, one SCIP MILP decided 2 and the
split on 2 threads 4, 1.5x faster on the 2 both decided (``benchmarks/split_milp.py``).
"""

from __future__ import annotations

import math
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

#: Backends whose solves release the GIL and can be interrupted from another thread.
SPLIT_BACKENDS = ("scip",)
#: Sub-domains per worker thread: more than one, so that a thread whose sub-domain closes
#: early takes another instead of idling.
DOMAINS_PER_THREAD = 2


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


def split_region(query: Query, spec: OutputSpec, spec_network: Network, region: Region, depth: int,
                 known: BoundsResult | None = None,
                 start: list[tuple[int, int, int]] | None = None) -> tuple[list[SubDomain], int]:
    """The sub-domains of ``region`` still open after ``depth`` levels of ReLU splits, and how
    many closed (empty, or refuted by CROWN). ``spec_network`` is the network with the spec
    rows ``A y - b`` appended; ``known`` are sound bounds of the region (intersected in);
    ``start`` are splits already made (a :class:`SubDomain`'s ``splits``: its sub-domains).
    """
    from .stages import live_disjuncts

    relus = [i for i, layer in enumerate(spec_network.layers) if isinstance(layer, ReLU)]
    splits = {i: torch.zeros(1, *spec_network.shapes[i], dtype=torch.float64) for i in relus}
    for value, neuron, sign in start or []:
        splits[value].reshape(-1)[neuron] = float(sign)
    known_pair = None
    if known is not None:
        extra = len(spec_network.layers) - len(query.network.layers)
        pad = [torch.full((1, *spec_network.shapes[-1 - k]), math.inf, dtype=torch.float64)
               for k in range(extra - 1, -1, -1)]
        known_pair = (list(known.lower) + [-p for p in pad], list(known.upper) + pad)
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


def split_further(query: Query, spec: OutputSpec, spec_network: Network, region: Region,
                  domain: SubDomain) -> tuple[list[SubDomain], int] | None:
    """The halves of ``domain`` on one more ReLU phase (CROWN within the domain's own bounds)
    still open, and how many closed; None when no unstable ReLU is left to split on.
    ``spec`` and ``spec_network`` are those ``domain`` was made with by :func:`split_region`."""
    children, closed = split_region(query, spec, spec_network, region, 1, known=domain.bounds,
                                    start=domain.splits)
    if closed == 0 and len(children) == 1 and len(children[0].splits) == len(domain.splits):
        return None
    return children, closed


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
