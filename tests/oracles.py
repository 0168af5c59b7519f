"""Independent exact oracles for robustness queries on tiny Dense+ReLU networks.

These share no code with exactverify's bounds, encoders or queries: they read the IR
layers' weights, use ``network.forward`` only to evaluate points, and solve LPs with
scipy's HiGHS. They exist so that the exact queries can be tested against answers
computed a completely different way.

The exact oracle enumerates activation patterns. On the closed polyhedron where a
pattern holds (every pre-activation ``>= 0`` for active units, ``<= 0`` for inactive
ones) the network is affine, and these polyhedra cover the input space. So the minimal
distortion is the minimum, over patterns and over adversarial polyhedra of the output
spec, of one LP: minimise ``||x - x0||`` subject to the pattern's sign rows, the domain
box and the spec rows mapped back through the affine piece. Patterns are enumerated by
depth-first search that keeps a partial pattern when a random point satisfies it and
prunes it only when HiGHS *proves* it infeasible (a subset of constraints infeasible
implies every completion is infeasible), so pruning never loses a piece;
``prune=False`` enumerates all ``2**n`` patterns for cross-checks.

A second, cruder oracle samples points (grid plus random) and returns the smallest
distance of a sampled adversarial point: an upper bound on the true minimum.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from exactverify import ir

#: HiGHS's primal feasibility tolerance is 1e-7; answers are exact up to about this.
LP_TOL = 1e-7
#: Slack allowed when re-checking an oracle witness with the float64 forward pass.
WITNESS_TOL = 1e-6

NORMS = ("linf", "l1")


# ------------------------------------------------------------------ network pieces
@dataclass(frozen=True)
class Piece:
    """One activation pattern: on ``{x : G x <= h}`` the network output is ``W x + c``."""

    pattern: tuple[bool, ...]
    G: np.ndarray
    h: np.ndarray
    W: np.ndarray
    c: np.ndarray


def _affine_layers(network: ir.Network) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    """The network as a list of ("affine", M, v) and ("relu", None, None) steps on flat vectors."""
    steps: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
    for index, layer in enumerate(network.layers):
        shape = network.shapes[index]
        if isinstance(layer, ir.Dense):
            steps.append(("affine", np.array(layer.weight), np.array(layer.bias)))
        elif isinstance(layer, ir.ReLU):
            steps.append(("relu", None, None))
        elif isinstance(layer, (ir.Flatten, ir.Reshape)):
            continue  # row-major reshapes are the identity on flat vectors
        elif isinstance(layer, ir.ElementwiseAffine):
            scale, shift = layer.full(shape)
            steps.append(("affine", np.diag(scale.reshape(-1)), shift.reshape(-1)))
        else:
            raise ValueError(f"oracle supports Dense/ReLU/Flatten/Reshape/ElementwiseAffine, not {layer.kind}")
    return steps


def num_relus(network: ir.Network) -> int:
    """Total number of ReLU units (the oracle enumerates up to 2**this patterns)."""
    return sum(int(np.prod(network.shapes[i])) for i, layer in enumerate(network.layers) if isinstance(layer, ir.ReLU))


def _bounds(domain, n: int) -> np.ndarray:
    """``domain = (low, high)`` (scalars or arrays of the input shape) as an (n, 2) array (inf: none)."""
    if domain is None:
        return np.tile([-np.inf, np.inf], (n, 1))
    low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (n,)) for v in domain)
    return np.stack([low, high], 1)


def _lp(cost: np.ndarray, A: np.ndarray, b: np.ndarray, box: np.ndarray):
    """HiGHS LP ``min cost @ z`` s.t. ``A z <= b``, ``box[:, 0] <= z <= box[:, 1]`` (scipy.milp, no integers).

    ``milp`` is used rather than ``linprog`` only because it has less per-call overhead.
    """
    return milp(cost, constraints=LinearConstraint(A, -np.inf, b), bounds=Bounds(box[:, 0], box[:, 1]))


def _feasible(G: np.ndarray, h: np.ndarray, bounds, cloud: np.ndarray) -> bool:
    """Is ``{G x <= h} ∩ box`` non-empty? A point of ``cloud`` inside proves it; else HiGHS decides.

    Only a proof of infeasibility (status 2) returns False, so a failing LP keeps the piece.
    """
    if G.shape[0] == 0 or np.any(np.all(cloud @ G.T <= h, axis=1)):
        return True
    return _lp(np.zeros(G.shape[1]), G, h, bounds).status != 2


def enumerate_pieces(network: ir.Network, domain=None) -> list[Piece]:
    """Every activation pattern whose closed polyhedron meets ``domain``, by pruned depth-first search."""
    steps = _affine_layers(network)
    n = network.input_size
    bounds = _bounds(domain, n)
    box = np.clip(bounds, -10.0, 10.0)
    cloud = np.random.default_rng(0).uniform(box[:, 0], box[:, 1], (4000, n))  # cheap feasibility witnesses
    pieces: list[Piece] = []

    def run(step: int, M: np.ndarray, v: np.ndarray, G: np.ndarray, h: np.ndarray, pattern: tuple[bool, ...]):
        while step < len(steps) and steps[step][0] == "affine":
            _, A, b = steps[step]
            M, v = A @ M, A @ v + b
            step += 1
        if step == len(steps):
            pieces.append(Piece(pattern, G, h, M, v))
            return
        # ReLU layer: assign its units one by one (depth first), then continue.
        units = M.shape[0]

        def assign(unit: int, G: np.ndarray, h: np.ndarray, bits: tuple[bool, ...]):
            if unit == units:
                mask = np.array(bits, dtype=np.float64)
                run(step + 1, M * mask[:, None], v * mask, G, h, pattern + bits)
                return
            for active in (True, False):
                sign = -1.0 if active else 1.0  # active: -(m x + v) <= 0; inactive: m x + v <= 0
                G2 = np.vstack([G, sign * M[unit][None, :]])
                h2 = np.append(h, -sign * v[unit])
                if _feasible(G2, h2, bounds, cloud):
                    assign(unit + 1, G2, h2, bits + (active,))

        assign(0, G, h, ())

    run(0, np.eye(n), np.zeros(n), np.zeros((0, n)), np.zeros(0), ())
    return pieces


def enumerate_pieces_bruteforce(network: ir.Network) -> list[Piece]:
    """All ``2**n`` patterns without any LP (for cross-checking the pruned search)."""
    steps = _affine_layers(network)
    n = network.input_size
    pieces = []
    for pattern in itertools.product((True, False), repeat=num_relus(network)):
        M, v = np.eye(n), np.zeros(n)
        G, h, used = [np.zeros((0, n))], [np.zeros(0)], 0
        for kind, A, b in steps:
            if kind == "affine":
                M, v = A @ M, A @ v + b
                continue
            bits = np.array(pattern[used: used + M.shape[0]])
            used += M.shape[0]
            sign = np.where(bits, -1.0, 1.0)
            G.append(sign[:, None] * M)
            h.append(-sign * v)
            M, v = M * bits[:, None], v * bits
        pieces.append(Piece(tuple(pattern), np.vstack(G), np.concatenate(h), M, v))
    return pieces


# ------------------------------------------------------------------- output spec
def adversarial_polyhedra(num_classes: int, label: int, target: int | None, margin: float):
    """The misclassified outputs as a list of ``(C, d)``: ``{y : C y <= d}``, one per disjunct.

    Untargeted: one disjunct per ``j != label``: ``y_j - y_label >= margin``.
    Targeted: one disjunct: ``y_target - y_j >= margin`` for every ``j != target``.
    """
    if target is None:
        out = []
        for j in range(num_classes):
            if j != label:
                row = np.zeros((1, num_classes))
                row[0, label], row[0, j] = 1.0, -1.0
                out.append((row, np.array([-margin])))
        return out
    rows = []
    for j in range(num_classes):
        if j != target:
            row = np.zeros(num_classes)
            row[j], row[target] = 1.0, -1.0
            rows.append(row)
    return [(np.array(rows), np.full(len(rows), -margin))]


def spec_slack(y: np.ndarray, label: int, target: int | None, margin: float) -> np.ndarray:
    """Per-sample slack of the adversarial condition: ``>= 0`` iff misclassified by ``margin``."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if target is None:
        others = np.delete(y, label, axis=1)
        return others.max(1) - y[:, label] - margin
    others = np.delete(y, target, axis=1)
    return y[:, target] - others.max(1) - margin


def evaluate(network: ir.Network, points: np.ndarray) -> np.ndarray:
    """Float64 forward pass of flat points ``(B, n)`` -> flat outputs ``(B, m)``."""
    with torch.no_grad():
        out = network.forward(torch.as_tensor(np.asarray(points, dtype=np.float64).reshape(len(points), -1)))
    return out.reshape(len(points), -1).numpy()


def predicted_label(network: ir.Network, x: np.ndarray) -> int:
    return int(np.argmax(evaluate(network, np.asarray(x).reshape(1, -1))[0]))


def distance(a: np.ndarray, b: np.ndarray, norm: str) -> float:
    d = np.asarray(a, dtype=np.float64).reshape(-1) - np.asarray(b, dtype=np.float64).reshape(-1)
    return float(np.abs(d).max() if norm == "linf" else np.abs(d).sum())


# ----------------------------------------------------------------- exact oracles
@dataclass(frozen=True)
class OracleResult:
    """Exact minimal distortion (``inf`` when no adversarial point exists in the domain)."""

    distance: float
    witness: np.ndarray | None  # flat
    adversarial_class: int | None
    pattern: tuple[bool, ...] | None
    pieces: int


def _distance_lp(x0: np.ndarray, norm: str, G: np.ndarray, h: np.ndarray, bounds, eps: float | None):
    """min ||x - x0|| (or feasibility with ||x - x0|| <= eps) over {G x <= h} ∩ box."""
    n = x0.size
    k = 1 if norm == "linf" else n
    eye = np.eye(n)
    # t (linf, one variable) or u (l1, one per coordinate) bound |x_i - x0_i|.
    T = -np.ones((n, 1)) if norm == "linf" else -np.eye(n)
    rows = [np.hstack([G, np.zeros((G.shape[0], k))]), np.hstack([eye, T]), np.hstack([-eye, T])]
    rhs = [h, x0, -x0]
    cost = np.concatenate([np.zeros(n), np.ones(k)])
    if eps is not None:  # feasibility: t <= eps (linf) or sum(u) <= eps (l1)
        rows.append(np.concatenate([np.zeros(n), np.ones(k)])[None, :])
        rhs.append(np.array([eps]))
        cost = np.zeros(n + k)
    res = _lp(cost, np.vstack(rows), np.concatenate(rhs), np.vstack([bounds, np.tile([0.0, np.inf], (k, 1))]))
    if res.status == 2:
        return None
    if res.status != 0:
        raise RuntimeError(f"oracle LP failed: {res.message}")
    return res.x[:n], (float(res.fun) if eps is None else None)


def _setup(network, x, label, target, domain):
    x0 = np.asarray(x, dtype=np.float64).reshape(-1)
    if x0.size != network.input_size:
        raise ValueError(f"x has {x0.size} entries, network expects {network.input_size}")
    if domain is None and network.input_domain is not None:
        domain = network.input_domain
    if label is None:
        label = predicted_label(network, x0)
    return x0, int(label), target, domain


def min_distortion(network: ir.Network, x, norm: str = "linf", *, margin: float, label: int | None = None,
                   target: int | None = None, domain=None, prune: bool = True,
                   pieces: list[Piece] | None = None) -> OracleResult:
    """Exact minimal ``norm``-distortion of ``x`` into the misclassified set, by enumeration.

    ``domain`` defaults to ``network.input_domain`` (like the queries); ``label`` to argmax.
    ``pieces`` may pass a precomputed :func:`enumerate_pieces` for the same network and domain.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    x0, label, target, domain = _setup(network, x, label, target, domain)
    bounds = _bounds(domain, x0.size)
    if pieces is None:
        pieces = enumerate_pieces(network, domain) if prune else enumerate_pieces_bruteforce(network)
    num_classes = pieces[0].W.shape[0]
    best = OracleResult(float("inf"), None, None, None, len(pieces))
    for piece in pieces:
        for index, (C, d) in enumerate(adversarial_polyhedra(num_classes, label, target, margin)):
            G = np.vstack([piece.G, C @ piece.W])
            h = np.concatenate([piece.h, d - C @ piece.c])
            sol = _distance_lp(x0, norm, G, h, bounds, None)
            if sol is not None and sol[1] < best.distance:
                cls = target if target is not None else [j for j in range(num_classes) if j != label][index]
                best = OracleResult(sol[1], sol[0], cls, piece.pattern, len(pieces))
    if best.witness is not None:  # an LP optimum of 0 may come back as -1e-12
        best = OracleResult(max(best.distance, 0.0), best.witness, best.adversarial_class, best.pattern, best.pieces)
    return best


def is_robust(network: ir.Network, x, eps: float, norm: str = "linf", *, margin: float, label: int | None = None,
              target: int | None = None, domain=None,
              pieces: list[Piece] | None = None) -> tuple[bool, np.ndarray | None]:
    """Exact ``eps``-robustness by LP feasibility per pattern; returns (robust, flat witness or None)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    x0, label, target, domain = _setup(network, x, label, target, domain)
    bounds = _bounds(domain, x0.size)
    for piece in enumerate_pieces(network, domain) if pieces is None else pieces:
        for C, d in adversarial_polyhedra(piece.W.shape[0], label, target, margin):
            G = np.vstack([piece.G, C @ piece.W])
            h = np.concatenate([piece.h, d - C @ piece.c])
            sol = _distance_lp(x0, norm, G, h, bounds, float(eps))
            if sol is not None:
                return False, sol[0]
    return True, None


# --------------------------------------------------------------- sampling oracle
def sample_ball(x, radius: float, norm: str, count: int, rng: np.random.Generator, on_sphere: float = 0.5):
    """``count`` flat points of the closed ``norm``-ball (a fraction ``on_sphere`` on its surface)."""
    x0 = np.asarray(x, dtype=np.float64).reshape(-1)
    n = x0.size
    if norm == "linf":
        pts = rng.uniform(-1.0, 1.0, (count, n))
        surface = int(count * on_sphere)
        face = rng.integers(0, n, surface)
        pts[np.arange(surface), face] = rng.choice([-1.0, 1.0], surface)
    else:
        direction = rng.exponential(size=(count, n)) * rng.choice([-1.0, 1.0], (count, n))
        direction /= np.abs(direction).sum(1, keepdims=True)
        scale = rng.uniform(0.0, 1.0, (count, 1)) ** (1.0 / n)
        scale[: int(count * on_sphere)] = 1.0
        pts = direction * scale
    return x0 + radius * pts


def sampled_min_distortion(network: ir.Network, x, norm: str = "linf", *, margin: float, radius: float,
                           label: int | None = None, target: int | None = None, domain=None,
                           grid: int = 401, samples: int = 20000, seed: int = 0) -> tuple[float, np.ndarray | None]:
    """Smallest distance of a sampled adversarial point in the box ``x +- radius`` ∩ domain.

    A regular grid (2-D inputs only) plus uniform random points: an UPPER bound on the
    true minimal distortion (``inf`` if no sampled point is adversarial).
    """
    x0, label, target, domain = _setup(network, x, label, target, domain)
    n = x0.size
    low, high = x0 - radius, x0 + radius
    if domain is not None:
        b = np.array(_bounds(domain, n), dtype=np.float64)
        low, high = np.maximum(low, b[:, 0]), np.minimum(high, b[:, 1])
    rng = np.random.default_rng(seed)
    parts = [rng.uniform(low, high, (samples, n))]
    if n == 2:
        g0, g1 = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        parts.append(np.stack([g0.ravel(), g1.ravel()], 1))
    pts = np.vstack(parts)
    slack = spec_slack(evaluate(network, pts), label, target, margin)
    adv = pts[slack >= 0]
    if len(adv) == 0:
        return float("inf"), None
    d = np.abs(adv - x0).max(1) if norm == "linf" else np.abs(adv - x0).sum(1)
    i = int(np.argmin(d))
    return float(d[i]), adv[i]


def identity_generator(dim: int = 2) -> torch.nn.Sequential:
    """G(z) = z as a torch generator: its image law is exactly the latent law N(0, I)."""
    g = torch.nn.Sequential(torch.nn.Linear(dim, dim))
    with torch.no_grad():
        g[0].weight.copy_(torch.eye(dim))
        g[0].bias.zero_()
    return g.eval()
