"""MILP tightening of hidden-layer bounds: CROWN, then one small MILP per unstable neuron.

CROWN's bounds on the first ReLU layer's inputs are exact over a box or L1 ball; from the
second ReLU layer on they loosen, and every unstable ReLU they leave costs the decision MILP
a binary and a big-M. Here each unstable neuron of the next ``layers`` ReLU layers is
maximised and minimised by a MILP over the network up to that layer (the binaries of the
layers before it only: a few dozen on an MLP), and the solver's dual bound, padded outward
by :data:`MILP_BOUND_PADDING`, replaces the CROWN bound where it is tighter. CROWN then
runs again with these bounds, so every later layer and the output tighten too.

Why: on the closing probes of the MNIST 784-24-24-24-10 minimal-distortion benchmark (the
decision just below the optimum that takes a minimal-distortion search most of its time),
one SCIP MILP on these bounds needed 2.6-7x fewer nodes and decided 1.2-2x faster with the
tightening included (``benchmarks/closing_probes.py``, ``tighten``).

Soundness: a MILP's dual bound at a time limit still bounds its optimum; the MILP is the
exact model of the prefix network over the region (big-M from sound CROWN bounds), so its
optimum is the neuron's true extreme value. The padding covers the solver's tolerances
(feasibility 1e-6, floating point in its LP duals). As a guard against a solver bug, the
tightened bounds must hold at the region's centre and at sampled points, or the CROWN
bounds are kept (:func:`milp_bounds` logs a warning).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor

import torch

from ..errors import InvalidInputError
from ..ir import LeakyReLU, Network, ReLU
from ..regions import Region
from .result import BoundsResult

log = logging.getLogger(__name__)

#: Outward padding of a MILP dual bound before it becomes a neuron bound, relative to
#: ``1 + |bound|``: ten times SCIP's feasibility tolerance (1e-6). A neuron only becomes
#: stable if its padded bound keeps its sign.
MILP_BOUND_PADDING = 1e-5
#: Seconds per neuron MILP (its dual bound at the limit is still a bound, just a looser one).
NEURON_TIME_LIMIT = 1.0
#: ReLU layers tightened, counted from the second (the first one's inputs are exact already).
TIGHTEN_LAYERS = 1
#: SCIP's primal-heuristics setting for the neuron MILPs: only their dual bound is used (the
#: points SCIP still finds without heuristics serve the guard in :func:`_neuron_extreme`). On 30
#: closing-probe regions of the MNIST benchmark, "off" tightened in 177.9 s against 218.9 s
#: (faster on 29 of 30), with the same unstable ReLUs left on every region and second-layer
#: widths within -1.4% / +0.3% (``benchmarks/results/neuron_milp_settings.md``).
NEURON_HEURISTICS = "off"
#: Raw SCIP parameters of the neuron MILPs, over the backend's ``DEFAULT_PARAMS`` (which allow 3
#: rounds of cuts at the root): none, as in the decision MILPs. On 30 closing-probe regions of the
#: MNIST benchmark (time budget 14 s, 2 threads) the tightening took 166.6 s against 176.2 s with
#: the 3 rounds, and 216.7 s with 10, leaving the same unstable ReLUs; more MILPs end within their
#: 1 s, so the unstable ReLUs' summed bound widths shrink 1.4% (``neuron_milp_settings_s16.md``).
NEURON_PARAMS: dict[str, object] = {"separating/maxroundsroot": 0}
#: Order of the neuron MILPs of a layer (:func:`neuron_jobs`): ``"nearest"`` (the side nearer to
#: 0 of the neurons nearest to stable first, the other side only while the neuron stays unstable)
#: or ``"index"`` (both sides of every neuron, by index: the order before session 16). On the same
#: 30 regions "nearest" ran 10% fewer MILPs (1010 vs 1119) in 176.2 s against 191.4 s, with the same
#: unstable ReLUs left and their bound widths 0.5% narrower (``neuron_milp_settings_s16.md``).
NEURON_ORDER = "nearest"
#: Seconds the tightening may take when the caller gives no ``time_budget`` (a query without a
#: time limit): without a cap it would spend up to ``2 * NEURON_TIME_LIMIT / threads`` seconds
#: per unstable neuron, minutes on a network with hundreds of them. Neurons not reached keep
#: their CROWN bounds; ``time_budget=math.inf`` lifts the cap.
DEFAULT_TIME_BUDGET = 60.0
#: Least seconds between two reports to a ``progress`` callback of :func:`milp_bounds`.
PROGRESS_INTERVAL = 2.0
#: Points of the region (besides its centre) at which the tightened bounds must hold.
CHECK_SAMPLES = 64
#: Relative float64 slack of that check (forward-pass rounding; the bounds are padded 1e-5).
CHECK_TOLERANCE = 1e-9


def _relu_layers(network: Network) -> list[int]:
    return [i for i, layer in enumerate(network.layers) if isinstance(layer, (ReLU, LeakyReLU))]


def _neuron_extreme(network: Network, region: Region, prefix_bounds: BoundsResult, neuron: int, maximise: bool,
                    backend: str, time_limit: float, cancelled: threading.Event) -> float | None:
    """The solver's dual bound on max (or min) of output ``neuron`` of ``network`` over ``region``."""
    from encoders.backends import make_backend
    from encoders.milp import encode_network, encode_region

    if cancelled.is_set() or time_limit <= 0:
        return None
    solver = make_backend(backend)
    x, _ = encode_region(solver, region)
    y, _, _ = encode_network(solver, network, prefix_bounds, x)
    solver.set_objective([y[neuron]], [1.0], minimize=not maximise)
    options = {"heuristics": NEURON_HEURISTICS, "params": dict(NEURON_PARAMS)} if backend == "scip" else {}
    result = solver.solve(time_limit=time_limit, **options)
    if result.bound is None or not math.isfinite(result.bound):
        return None
    # a dual bound on the wrong side of the solver's own point would be a solver bug: keep the point's value
    if result.objective is None:
        return float(result.bound)
    return max(result.bound, result.objective) if maximise else min(result.bound, result.objective)


class _Reporter:
    """Calls ``callback(done, total, seconds)`` at most every :data:`PROGRESS_INTERVAL` seconds
    (and once more at the end); a callback that raises (but for KeyboardInterrupt) is logged and
    dropped: a display must never change the bounds."""

    def __init__(self, callback: Callable[[int, int, float], None] | None, start: float) -> None:
        self.callback, self.start, self.last = callback, start, start

    def __call__(self, done: int, total: int, final: bool = False) -> None:
        now = time.perf_counter()
        if self.callback is None or (not final and now - self.last < PROGRESS_INTERVAL):
            return
        self.last = now
        try:
            self.callback(done, total, now - self.start)
        except Exception:  # noqa: BLE001 - a broken display callback must not end the tightening
            log.warning("milp bounds: the progress callback raised; no further reports", exc_info=True)
            self.callback = None


Job = tuple[int, bool]  # (neuron, maximise)


def neuron_jobs(low: torch.Tensor, up: torch.Tensor, order: str) -> tuple[list[Job], list[Job]]:
    """The neuron MILPs of one layer as two phases of ``(neuron, maximise)`` jobs.

    ``"index"``: both sides of every unstable neuron in the first phase, by index. ``"nearest"``:
    first the side of each unstable neuron nearer to 0 (maximise if ``u < -l``), neurons nearest to
    stable first (smallest ``min(u, -l) / (u - l)``), then the other sides; a neuron the first
    phase makes stable needs no second MILP (a stable ReLU's other bound matters neither to CROWN
    nor to the MILP), and under a time budget the MILPs most likely to free a ReLU run first.
    """
    unstable = torch.nonzero((low < 0) & (up > 0)).reshape(-1).tolist()
    if order == "index":
        return [(int(j), sense) for j in unstable for sense in (True, False)], []
    if order != "nearest":
        raise InvalidInputError(f"neuron order must be 'index' or 'nearest', got {order!r}")
    closeness = {j: min(float(up[j]), -float(low[j])) / float(up[j] - low[j]) for j in unstable}
    ranked = sorted(unstable, key=lambda j: (closeness[j], j))
    first = [(int(j), float(up[j]) < -float(low[j])) for j in ranked]
    return first, [(neuron, not maximise) for neuron, maximise in first]


def tighten_layer(network: Network, region: Region, lowers: list[torch.Tensor], uppers: list[torch.Tensor],
                  value: int, *, backend: str, threads: int, deadline: float | None,
                  report: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Tighten the bounds of the value entering layer ``value`` in place; (MILPs solved, neurons tightened).

    ``lowers``/``uppers`` are sound bounds of every value of ``network`` on ``region`` (a batch of one).
    The MILPs run in the order of :func:`neuron_jobs` (:data:`NEURON_ORDER`). ``report(k, n)``, if
    given, is called after each of the layer's neuron MILPs (``k`` done so far of ``n`` planned).
    """
    prefix = network.with_layers(network.layers[:value])
    prefix_bounds = BoundsResult(prefix, "crown", tuple(lowers[: value + 1]), tuple(uppers[: value + 1]))
    low = lowers[value][0].reshape(-1).clone()
    up = uppers[value][0].reshape(-1).clone()
    first, second = neuron_jobs(low, up, NEURON_ORDER)
    planned = len(first) + len(second)
    cancelled = threading.Event()

    def run(job):
        neuron, maximise = job
        left = NEURON_TIME_LIMIT if deadline is None else min(NEURON_TIME_LIMIT, deadline - time.perf_counter())
        return job, _neuron_extreme(prefix, region, prefix_bounds, neuron, maximise, backend, left, cancelled)

    solved = tightened = done = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        try:
            for phase in (first, second):
                if phase is second:  # the other side of the neurons the first phase left unstable
                    phase = [(j, sense) for j, sense in second if float(low[j]) < 0 < float(up[j])]
                    planned = len(first) + len(phase)
                for (neuron, maximise), bound in pool.map(run, phase):
                    done += 1
                    if report is not None:
                        report(done, planned)
                    if bound is None:
                        continue
                    solved += 1
                    pad = MILP_BOUND_PADDING * (1.0 + abs(bound))
                    if maximise and bound + pad < float(up[neuron]):
                        up[neuron], tightened = bound + pad, tightened + 1
                    elif not maximise and bound - pad > float(low[neuron]):
                        low[neuron], tightened = bound - pad, tightened + 1
        finally:
            cancelled.set()
    lowers[value] = low.reshape(lowers[value].shape)
    uppers[value] = up.reshape(uppers[value].shape)
    return solved, tightened


def _holds(network: Network, region: Region, lowers, uppers) -> bool:
    """Whether the forward values at the region's centre and at sampled points lie within the
    bounds of every value (one forward pass, layer by layer)."""
    generator = torch.Generator().manual_seed(0)
    points = region.sample(CHECK_SAMPLES, generator=generator)[:, 0]
    centre = region.center if region.center is not None else (region.lower + region.upper) / 2
    value = torch.cat([centre.to(points.dtype), points])
    for index, layer in enumerate(network.layers, start=1):
        value = layer.forward(value)
        slack = CHECK_TOLERANCE * (1.0 + value.abs())
        if bool((value < lowers[index] - slack).any()) or bool((value > uppers[index] + slack).any()):
            return False
    return True


def milp_bounds(network: Network, region: Region, *, layers: int | None = None, backend: str = "scip",
                threads: int = 1, time_budget: float | None = None, stats: dict | None = None,
                progress: Callable[[int, int, float], None] | None = None):
    """CROWN bounds with the inputs of ``layers`` ReLU layers (from the second) tightened by MILP.

    ``layers`` defaults to :data:`TIGHTEN_LAYERS`. ``time_budget`` (seconds, default
    :data:`DEFAULT_TIME_BUDGET`) caps the tightening: neurons not reached keep their CROWN
    bounds. ``threads`` neuron MILPs run
    side by side. ``progress(done, total, seconds)``, if given, hears how many of the
    neuron MILPs known so far have ended, at most every :data:`PROGRESS_INTERVAL` seconds
    (``total`` grows as each layer's unstable neurons become known, and shrinks by the second MILPs
    that a neuron made stable by its first one no longer needs). ``stats``, if given, receives the
    counts (MILPs solved, neurons tightened, unstable ReLUs before and after, seconds).
    Returns ``(lowers, uppers)`` like :func:`~exactverify.bounds.crown.crown_bounds`.
    """
    from .crown import crown_bounds

    if region.batch_size != 1:
        raise InvalidInputError(f"milp bounds take a batch of one region, got {region.batch_size}")
    layers = TIGHTEN_LAYERS if layers is None else layers
    time_budget = DEFAULT_TIME_BUDGET if time_budget is None else time_budget
    if isinstance(time_budget, bool) or not isinstance(time_budget, (int, float)) or math.isnan(time_budget) \
            or time_budget < 0:
        raise InvalidInputError(f"time_budget must be a number of seconds >= 0, got {time_budget!r}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
        raise InvalidInputError(f"layers must be an int >= 0, got {layers!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError(f"threads must be an int >= 1, got {threads!r}")
    if stats is not None and not isinstance(stats, MutableMapping):
        raise InvalidInputError(f"stats must be a dict (it receives the counts) or None, got {type(stats).__name__}")
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a callable (done, total, seconds), got {type(progress).__name__}")
    relus = _relu_layers(network)[1: 1 + layers]
    smooth = [layer.kind for layer in network.layers[: max(relus, default=0)] if not layer.piecewise_linear]
    if smooth:
        raise InvalidInputError(f"bounds method 'milp' needs piecewise-linear layers before the ReLUs it "
                                f"tightens; {network.name} has {', '.join(sorted(set(smooth)))}")
    device = region.lower.device  # the MILPs read float64 numpy values: bound on the CPU, return on the device
    region = region.to(torch.device("cpu"))
    start = time.perf_counter()
    deadline = None if math.isinf(time_budget) else start + time_budget
    lowers, uppers = crown_bounds(network, region)
    crown = ([t.clone() for t in lowers], [t.clone() for t in uppers])
    before = _unstable(lowers, uppers, relus)
    solved = tightened = 0
    reporter = _Reporter(progress, start)
    ended = total = 0  # neuron MILPs ended / known, over the layers so far
    for value in relus:
        if deadline is not None and time.perf_counter() >= deadline:
            break
        lowers, uppers = list(lowers), list(uppers)
        before_layer, total_before = ended, total
        total += 2 * _unstable(lowers, uppers, [value])

        def report(done: int, planned: int, before_layer=before_layer, total_before=total_before) -> None:
            nonlocal ended, total
            ended, total = before_layer + done, total_before + planned
            reporter(ended, total)

        done = tighten_layer(network, region, lowers, uppers, value, backend=backend, threads=threads,
                             deadline=deadline, report=report)
        solved, tightened = solved + done[0], tightened + done[1]
        lowers, uppers = crown_bounds(network, region, known=(lowers, uppers))
    if total:
        reporter(ended, total, final=True)
    if tightened and not _holds(network, region, lowers, uppers):
        log.warning("MILP-tightened bounds failed the sampling check on %s; keeping the CROWN bounds", network.name)
        lowers, uppers, tightened = crown[0], crown[1], -1
    if stats is not None:
        stats.update(milps=solved, tightened=tightened, unstable_before=before,
                     unstable_after=_unstable(lowers, uppers, relus), seconds=time.perf_counter() - start)
    return [t.to(device) for t in lowers], [t.to(device) for t in uppers]


def _unstable(lowers, uppers, values) -> int:
    return int(sum(((lowers[v] < 0) & (uppers[v] > 0)).sum() for v in values))


__all__ = ["milp_bounds", "neuron_jobs", "tighten_layer", "DEFAULT_TIME_BUDGET", "MILP_BOUND_PADDING",
           "NEURON_ORDER", "NEURON_TIME_LIMIT", "TIGHTEN_LAYERS"]
