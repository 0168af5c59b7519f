"""Solve the sub-domain MILPs of a split decision on worker threads, splitting the slowest further.

Each open sub-domain (:mod:`.split`) is one MILP; worker threads take them from a queue,
largest first (SCIP releases the GIL while it solves). When a thread has nothing left to
take while a sub-domain's MILP has run for ``STEAL_AFTER`` seconds, that sub-domain is
split once more and its halves are queued for the idle thread, while its own MILP keeps
running: whichever ends first decides it (its MILP infeasible, or every half closed), and
the rest of that race is interrupted. A re-checked counterexample in any sub-domain ends
the decision. "Robust" needs every top-level sub-domain closed; every point is re-checked.

Why: with 4 sub-domains on 2 threads one of them often takes most of the time while the
other thread idles (MNIST image 4 target 7 L1: three closed within 10 s, the fourth ran
24 s more alone).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..ir import Network
from ..specs import OutputSpec
from .checks import Query
from .results import SolveRecord
from .split import SubDomain, split_further

#: How often (seconds) the coordinating thread looks at the workers: it repeats interrupts to
#: MILPs still starting up (a solve that has not started cannot be interrupted yet) and looks
#: for a sub-domain to split for an idle thread.
INTERRUPT_INTERVAL = 0.05
#: A sub-domain's MILP must have run this long before an idle thread splits it further
#: (most sub-MILPs that end at all end within a second or two; splitting them is waste).
STEAL_AFTER = 1.0


@dataclass(eq=False)
class Node:
    """A sub-domain in the tree of splits: its MILP's state and its halves, if split."""

    domain: SubDomain
    label: str
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    closed: bool = False  # proved to hold no counterexample
    split_done: bool = False  # halves made (or nothing left to split)
    open_children: int = 0
    started: float | None = None  # when its MILP started (None: queued or ended)
    solver: object | None = None
    outcome: str | None = None  # its MILP's status

    def dead(self) -> bool:
        """Closed itself or below a closed sub-domain: its MILP need not run."""
        node: Node | None = self
        while node is not None:
            if node.closed:
                return True
            node = node.parent
        return False


class Coordinator:
    """The tree of sub-domains and what is queued and running (used by one thread only,
    except ``lock``-guarded ``Node.solver``/``Node.started``, which the workers set)."""

    def __init__(self, query: Query, spec: OutputSpec, spec_network: Network, eps: float,
                 domains: list[SubDomain], history: list[SolveRecord]) -> None:
        self.query, self.spec, self.spec_network = query, spec, spec_network
        self.eps, self.region = eps, query.region(eps)
        self.history = history
        order = sorted(range(len(domains)), key=lambda k: -domains[k].unstable)
        self.roots = [Node(domains[k], str(k + 1)) for k in range(len(domains))]
        self.queue = [self.roots[k] for k in order]
        self.lock = threading.Lock()
        self.splits = 0

    def close(self, node: Node) -> None:
        """``node`` holds no counterexample: so may its parent (when all halves are closed)."""
        while node is not None and not node.closed:
            node.closed = True
            parent = node.parent
            if parent is None:
                return
            parent.open_children -= 1
            if parent.open_children > 0:
                return
            node = parent

    def all_closed(self) -> bool:
        return all(root.closed for root in self.roots)

    def next_queued(self) -> Node | None:
        while self.queue:
            node = self.queue.pop(0)
            if not node.dead():
                return node
        return None

    def steal(self, now: float) -> bool:
        """Split the longest-running unsplit sub-domain (run >= STEAL_AFTER s) for an idle
        thread; True when something new was queued or closed."""
        with self.lock:
            running = [n for n in self._nodes() if n.started is not None and not n.split_done and not n.dead()]
        candidates = [n for n in running if now - n.started >= STEAL_AFTER]
        if not candidates:
            return False
        node = min(candidates, key=lambda n: n.started)
        node.split_done = True
        tick = time.perf_counter()
        made = split_further(self.query, self.spec, self.spec_network, self.region, node.domain)
        if made is None:
            return self.steal(now)
        halves, closed = made
        self.history.append(SolveRecord("bounds", self.eps, "unknown" if halves else "robust",
                                        time.perf_counter() - tick,
                                        raw_status=f"crown: sub-domain {node.label} split further while its MILP "
                                                   f"runs: {len(halves)} halves open, {closed} closed"))
        self.splits += 1
        node.children = [Node(h, f"{node.label}.{k + 1}", node) for k, h in enumerate(halves)]
        node.open_children = len(node.children)
        if not node.children:  # CROWN closed both halves: the sub-domain is closed
            self.close(node)
        self.queue = sorted(node.children, key=lambda n: -n.domain.unstable) + self.queue
        return True

    def _nodes(self):
        stack = list(self.roots)
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children)

    def interrupt_dead(self, everything: bool = False) -> None:
        """Interrupt the running MILPs of closed sub-domains (all of them, with ``everything``)."""
        with self.lock:
            for node in self._nodes():
                if node.solver is not None and node.started is not None and (everything or node.dead()):
                    node.solver.interrupt()

    def undecided(self) -> dict[str, str]:
        """Label -> its MILP's status, for the top-level sub-domains left open."""
        return {root.label: root.outcome or "not run" for root in self.roots if not root.closed}


def solve_split(query: Query, eps: float, domains: list[SubDomain], spec: OutputSpec, spec_network: Network, *,
                backend: str, threads: int, time_limit: float | None, history: list[SolveRecord],
                encoder_options: dict | None = None):
    """Decide every sub-domain's MILP with ``threads`` worker threads; a :class:`~.stages.Finding`.
    ``spec`` and ``spec_network`` are those the domains were made with (:func:`~.split.split_region`).

    ``robust`` only when every sub-domain is closed (its MILP infeasible, or all its halves
    closed); ``not_robust`` with the first re-checked counterexample (the other MILPs are
    interrupted); otherwise ``unknown``.
    """
    from encoders.backends import Status, make_backend
    from encoders.milp import encode_query

    from .stages import SLACK_CUTOFF, Finding, accept_point, slack_form

    deadline = None if time_limit is None else time.perf_counter() + time_limit
    tree = Coordinator(query, spec, spec_network, eps, domains, history)
    stop = threading.Event()
    total = len(domains)

    def solve_one(node: Node):
        domain = node.domain
        solver = make_backend(backend)
        by_slack = slack_form(backend, domain.spec)
        encoding = encode_query(solver, query.network, tree.region, domain.spec, domain.bounds, slack=by_slack,
                                **(encoder_options or {}))
        options = {}
        if by_slack:
            solver.set_objective([encoding.slack], [1.0], minimize=False)
            options = {"cutoff": -SLACK_CUTOFF, "stop_at": 0.0}
        with tree.lock:
            if stop.is_set() or node.dead():
                return node, None, encoding
            node.solver, node.started = solver, time.perf_counter()
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
        try:
            return node, solver.solve(time_limit=left, **options), encoding
        finally:
            with tree.lock:
                node.started = None

    found = unchecked = None
    with ThreadPoolExecutor(max_workers=threads) as pool:
        running: set = set()
        try:
            while not tree.all_closed():
                while len(running) < threads:
                    node = tree.next_queued()
                    if node is None and not tree.steal(time.perf_counter()):
                        break
                    if node is not None:
                        running.add(pool.submit(solve_one, node))
                if tree.all_closed() or (not running and not tree.queue):
                    break
                if deadline is not None and time.perf_counter() > deadline + 1.0:
                    break  # every MILP got the deadline as its limit; do not wait on stragglers
                finished, running = wait(running, timeout=INTERRUPT_INTERVAL, return_when=FIRST_COMPLETED)
                running = set(running)
                for future in finished:
                    node, result, encoding = future.result()
                    if result is None:
                        continue
                    node.outcome = result.status.value
                    history.append(SolveRecord("milp", eps, result.status.value, result.seconds,
                                               f"{result.raw_status} (sub-domain {node.label}/{total})",
                                               result.objective, result.bound, result.node_count,
                                               node.domain.bounds.unstable_per_layer()))
                    if result.status == Status.INFEASIBLE:
                        tree.close(node)
                    elif result.status.has_solution and result.values is not None:
                        finding = accept_point(query, result.values[encoding.input], eps,
                                               f"{backend} MILP (sub-domain {node.label}/{total})")
                        if finding.outcome == "not_robust":
                            found = finding
                            break
                        unchecked = finding
                if found is not None:
                    break
                tree.interrupt_dead()
        finally:  # done, a counterexample or an error: stop every MILP still queued or running
            with tree.lock:
                stop.set()
            while not all(future.done() for future in running):
                tree.interrupt_dead(everything=True)
                time.sleep(INTERRUPT_INTERVAL)
    if found is not None:
        return found
    splits = f", {tree.splits} split further while running" if tree.splits else ""
    if tree.all_closed():
        return Finding("robust", f"MILP infeasible on all {total} sub-domains ({backend}, {threads} threads{splits})",
                       lower_bound=math.inf)
    if unchecked is not None:
        return unchecked
    left = tree.undecided()
    return Finding("unknown", f"{backend}: {len(left)} of {total} sub-domains not decided{splits} "
                              f"(sub-domain: status {left})")
