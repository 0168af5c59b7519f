"""Realistic adversarial examples: two latents ``z, z'`` close together with ``C(G(z)) = c != C(G(z'))``.

Fijalkow and Gupta search the *latent* space of a class generator ``G_c`` rather than the
pixel space, so both images come from the generator and look like real digits:

- :func:`black_box_search` (their Algorithm 1) only queries ``C∘G``: from a latent the
  classifier labels ``c`` confidently, it repeatedly draws a few Gaussian perturbations and
  keeps the best one if it moves towards another class (hill climbing).
- :func:`white_box_search` (their Algorithm 2) follows the sign of the gradient of the loss
  of ``C∘G`` with respect to the latent, a fixed number of small steps.
- :func:`random_walk` moves a latent by Gaussian steps and records what the classifier
  says along the way (the paper's random-walk picture).

Both searches run many starts at once (batched) in the models' dtype, then every pair they
report is **re-checked in float64** on the CPU with independent copies of the models:
``c`` must strictly win at ``z`` and another class must strictly beat ``c`` at ``z'``
(the target, strictly, for a targeted search). The result carries that flag per pair;
success rates count verified pairs only.

Deviations from the paper, on purpose: the search objective is the logit margin rather
than a softmax probability (same ordering of "closer to another class", no saturation);
success means strict misclassification rather than "target probability > 0.5"; a search
stops at its first adversarial latent, which gives the smaller distance; ``eps`` optionally
confines ``z'`` to the L-infinity ball of radius ``eps`` around ``z`` (the paper's local
property), and ``clip`` optionally clamps latents to ``[-clip, clip]`` as the authors'
notebook does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, ShapeMismatchError
from .correctness import DEFAULT_BATCH_SIZE, check_composition, prepared, strictly_correct
from .latent import latent_stream, sample_latent

#: A start counts only if the classifier gives ``c`` at least this softmax probability
#: (the paper starts from confidently classified latents, threshold 0.9).
DEFAULT_MIN_CONFIDENCE = 0.9
#: Algorithm 1 defaults, the authors' values: 10 rounds of 5 candidates, perturbation std 0.2.
DEFAULT_ROUNDS = 10
DEFAULT_CANDIDATES = 5
DEFAULT_SIGMA = 0.2
#: Algorithm 2 defaults, the authors' values: 40 signed-gradient steps of 0.01.
DEFAULT_STEPS = 40
DEFAULT_STEP_SIZE = 0.01
#: Relative pull-back towards ``z`` of a latent that overshoots ``eps`` by float rounding.
BUDGET_SHRINK = 1e-12
#: Starts are drawn until this many latents per requested start have been tried.
MAX_DRAWS_PER_START = 100


@dataclass(frozen=True)
class RealisticPair:
    """One candidate realistic adversarial example, re-checked in float64.

    ``z``/``z_adv`` (d,) and ``image``/``image_adv`` (D,) are float64 numpy arrays;
    ``label``/``label_adv`` the float64 argmax at each; ``margin`` is
    ``max_{j != c} f_j(z') - f_c(z')`` in float64 (> 0 iff strictly misclassified);
    ``verified`` is the float64 verdict (start strictly ``c``, ``z'`` strictly not ``c``
    (strictly the target when targeted), and ``||z - z'||_inf <= eps`` when a budget is set)."""

    z: np.ndarray
    z_adv: np.ndarray
    distance: float
    image: np.ndarray
    image_adv: np.ndarray
    label: int
    label_adv: int
    margin: float
    verified: bool
    iterations: int


@dataclass
class RealisticSearchResult:
    """What a search tried and what it found."""

    method: str
    label: int
    target: int | None
    starts_requested: int
    latents_drawn: int
    starts: int
    found: int
    pairs: list[RealisticPair]
    seconds: float
    queries: int
    device: str
    params: dict = field(default_factory=dict)

    @property
    def verified(self) -> list[RealisticPair]:
        return [p for p in self.pairs if p.verified]

    @property
    def success_rate(self) -> float:
        """Verified pairs per usable start (nan when no start was usable)."""
        return len(self.verified) / self.starts if self.starts else float("nan")

    @property
    def mean_distance(self) -> float:
        good = self.verified
        return float(np.mean([p.distance for p in good])) if good else float("nan")

    def summary(self) -> dict:
        """A JSON-ready record (no arrays)."""
        return {
            "method": self.method, "label": self.label, "target": self.target,
            "starts_requested": self.starts_requested, "latents_drawn": self.latents_drawn, "starts": self.starts,
            "found": self.found, "verified": len(self.verified), "unverified": len(self.pairs) - len(self.verified),
            "success_rate": self.success_rate, "mean_distance": self.mean_distance,
            "min_distance": min((p.distance for p in self.verified), default=float("nan")),
            "adv_labels": [p.label_adv for p in self.verified], "seconds": self.seconds, "queries": self.queries,
            "device": self.device, **{f"param_{k}": v for k, v in self.params.items()},
        }


@dataclass(frozen=True)
class RandomWalk:
    """A latent random walk and the classifier's view of it (float64, CPU numpy arrays):
    latents (T+1, d), images (T+1, D), logits and probabilities (T+1, K), predictions (T+1,)."""

    latents: np.ndarray
    images: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray
    step_size: float
    seed: int


# ----------------------------------------------------------------------------------- checks


def _int_at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _positive(name: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_search(generator, classifier, label, target, starts, min_confidence, seed, device, dtype) -> tuple[int, int]:
    dim, _, classes = check_composition(generator, classifier, device, dtype)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
        raise InvalidInputError(f"label must be an int in [0, {classes}), got {label!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int)
                               or not 0 <= target < classes or target == label):
        raise InvalidInputError(f"target must be None or an int in [0, {classes}) other than label {label}, "
                                f"got {target!r}")
    _int_at_least("starts", starts, 1)
    if not (isinstance(min_confidence, (int, float)) and 0.0 <= min_confidence < 1.0):
        raise InvalidInputError(f"min_confidence must lie in [0, 1), got {min_confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    return dim, classes


# --------------------------------------------------------------------------------- helpers


def _logits(g: nn.Module, c: nn.Module, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    parts = [c(g(z[i:i + batch_size]).reshape(min(batch_size, z.shape[0] - i), -1))
             for i in range(0, z.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def _objective(logits: torch.Tensor, label: int, target: int | None) -> torch.Tensor:
    """Larger is closer to the goal; > 0 iff the goal is strictly reached.

    Untargeted: ``max_{j != c} f_j - f_c``; targeted: ``f_t - max_{j != t} f_j``."""
    cls = label if target is None else target
    others = logits.clone()
    others[:, cls] = -float("inf")
    best_other = others.max(dim=1).values
    own = logits[:, cls]
    return best_other - own if target is None else own - best_other


def _draw_starts(g, c, label, dim, starts, min_confidence, stream, device, dtype, batch_size):
    """Latents ``z ~ N(0, I)`` that ``C∘G`` labels ``label`` strictly, with softmax
    probability >= ``min_confidence``; at most ``MAX_DRAWS_PER_START * starts`` draws."""
    kept, drawn = [], 0
    budget = MAX_DRAWS_PER_START * starts
    have = 0
    with torch.no_grad():
        while have < starts and drawn < budget:
            count = min(max(2 * (starts - have), 64), budget - drawn, batch_size)
            z = sample_latent(count, dim, stream, device, dtype)
            drawn += count
            logits = _logits(g, c, z, batch_size)
            good = strictly_correct(logits, label) & (logits.softmax(1)[:, label] >= min_confidence)
            z = z[good][: starts - have]
            kept.append(z)
            have += z.shape[0]
    z0 = torch.cat(kept) if kept else torch.empty(0, dim, device=device, dtype=dtype)
    return z0, drawn


def _project(z: torch.Tensor, z0: torch.Tensor, eps: float | None, clip: float | None) -> torch.Tensor:
    if eps is not None:
        z = torch.maximum(torch.minimum(z, z0 + eps), z0 - eps)
    if clip is not None:
        z = z.clamp(-clip, clip)
    return z


def _recheck(generator, classifier, z0: torch.Tensor, z_adv: torch.Tensor, iterations: torch.Tensor, label: int,
             target: int | None, eps: float | None) -> list[RealisticPair]:
    """Float64 CPU re-check of each (z0, z_adv) row with independent float64 copies of the models."""
    if z0.shape[0] == 0:
        return []
    g = prepared(generator, "cpu", torch.float64)
    c = prepared(classifier, "cpu", torch.float64)
    a = z0.detach().to("cpu", torch.float64)
    b = z_adv.detach().to("cpu", torch.float64)
    if eps is not None:  # undo any overshoot of the budget by rounding of z0 +- eps
        b = a + (b - a).clamp(-eps, eps)
        for _ in range(8):
            over = (b - a).abs().max(dim=1).values > eps
            if not over.any():
                break
            b[over] = a[over] + (b[over] - a[over]) * (1.0 - BUDGET_SHRINK)
    with torch.no_grad():
        xa, xb = g(a).reshape(a.shape[0], -1), g(b).reshape(b.shape[0], -1)
        la, lb = c(xa), c(xb)
    start_ok = strictly_correct(la, label)
    margin = _objective(lb, label, None)
    adv_ok = margin > 0 if target is None else _objective(lb, label, target) > 0
    dist = (b - a).abs().max(dim=1).values
    in_budget = torch.ones_like(adv_ok) if eps is None else dist <= eps
    verified = start_ok & adv_ok & in_budget
    return [RealisticPair(z=a[i].numpy().copy(), z_adv=b[i].numpy().copy(), distance=float(dist[i]),
                          image=xa[i].numpy().copy(), image_adv=xb[i].numpy().copy(), label=int(la[i].argmax()),
                          label_adv=int(lb[i].argmax()), margin=float(margin[i]), verified=bool(verified[i]),
                          iterations=int(iterations[i]))
            for i in range(a.shape[0])]


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ algorithms


@dataclass
class _Run:
    """State shared by both searches: models on the device, the starts and their progress."""

    g: nn.Module
    c: nn.Module
    stream: torch.Generator
    device: object
    t0: float
    z0: torch.Tensor
    drawn: int
    z: torch.Tensor
    done: torch.Tensor
    used: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.z0.shape[0])

    def finish(self, generator, classifier, label, target, eps, starts, queries, method,
               params) -> "RealisticSearchResult":
        """Re-check the found pairs in float64 and package the result."""
        _sync(self.device)
        found = self.done.nonzero().flatten()
        pairs = _recheck(generator, classifier, self.z0[found], self.z[found], self.used[found.cpu()], label,
                         target, eps)
        return RealisticSearchResult(
            method=method, label=label, target=target, starts_requested=starts, latents_drawn=self.drawn,
            starts=self.n, found=int(found.numel()), pairs=pairs, seconds=time.perf_counter() - self.t0,
            queries=queries, device=str(self.device), params=params)


def _begin(generator, classifier, label, dim, starts, min_confidence, seed, device, dtype, batch_size) -> _Run:
    """Move the models, draw the starts (clock started) and set up the progress tensors."""
    g, c = prepared(generator, device, dtype), prepared(classifier, device, dtype)
    stream = latent_stream(seed)
    _sync(device)
    t0 = time.perf_counter()
    z0, drawn = _draw_starts(g, c, label, dim, starts, min_confidence, stream, device, dtype, batch_size)
    n = z0.shape[0]
    return _Run(g, c, stream, device, t0, z0, drawn, z0.clone(), torch.zeros(n, dtype=torch.bool, device=device),
                torch.zeros(n, dtype=torch.long))


def black_box_search(generator: nn.Module, classifier: nn.Module, label: int, starts: int, *,
                     target: int | None = None, rounds: int = DEFAULT_ROUNDS, candidates: int = DEFAULT_CANDIDATES,
                     sigma: float = DEFAULT_SIGMA, eps: float | None = None, clip: float | None = None,
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE, seed: int = 0, device="cpu",
                     batch_size: int = DEFAULT_BATCH_SIZE, dtype: torch.dtype = torch.float32) -> RealisticSearchResult:
    """Algorithm 1: black-box hill climbing in the latent space of ``generator``.

    ``starts`` latents labelled ``label`` (confidence >= ``min_confidence``) are searched in
    parallel; each round draws ``candidates`` perturbations ``N(0, sigma^2 I)`` of the current
    latent and moves to the best if it improves the margin towards another class (or
    ``target``). A start stops at its first strictly misclassified latent."""
    dim, _ = _check_search(generator, classifier, label, target, starts, min_confidence, seed, device, dtype)
    _int_at_least("rounds", rounds, 1)
    _int_at_least("candidates", candidates, 1)
    _int_at_least("batch_size", batch_size, 1)
    sigma = _positive("sigma", sigma)
    eps = _positive("eps", eps, allow_none=True)
    clip = _positive("clip", clip, allow_none=True)
    run = _begin(generator, classifier, label, dim, starts, min_confidence, seed, device, dtype, batch_size)
    g, c, stream, z0, z, done, used, n = run.g, run.c, run.stream, run.z0, run.z, run.done, run.used, run.n
    queries = run.drawn
    with torch.no_grad():
        score = _objective(_logits(g, c, z, batch_size), label, target) if n else torch.empty(0, device=device)
        for _ in range(rounds):
            active = (~done).nonzero().flatten()
            if active.numel() == 0:
                break
            noise = sample_latent(active.numel() * candidates, dim, stream, device, dtype) * sigma
            cand = z[active].repeat_interleave(candidates, 0) + noise
            cand = _project(cand, z0[active].repeat_interleave(candidates, 0), eps, clip)
            obj = _objective(_logits(g, c, cand, batch_size), label, target).reshape(-1, candidates)
            queries += cand.shape[0]
            best, which = obj.max(dim=1)
            better = best > score[active]
            rows = active[better]
            picked = cand.reshape(-1, candidates, dim)[better.nonzero().flatten(), which[better]]
            z[rows] = picked
            score[rows] = best[better]
            used[active.cpu()] += 1
            done |= score > 0
    params = {"rounds": rounds, "candidates": candidates, "sigma": sigma, "eps": eps, "clip": clip,
              "min_confidence": min_confidence, "seed": seed}
    return run.finish(generator, classifier, label, target, eps, starts, queries,
                      "black-box local search (Algorithm 1)", params)


def white_box_search(generator: nn.Module, classifier: nn.Module, label: int, starts: int, *,
                     target: int | None = None, steps: int = DEFAULT_STEPS, step_size: float = DEFAULT_STEP_SIZE,
                     eps: float | None = None, clip: float | None = None, loss: str = "ce",
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE, seed: int = 0, device="cpu",
                     batch_size: int = DEFAULT_BATCH_SIZE, dtype: torch.dtype = torch.float32) -> RealisticSearchResult:
    """Algorithm 2: signed-gradient steps on the latent of ``C∘G``.

    Each step moves every unfinished latent by ``step_size * sign(grad)`` of the loss:
    cross-entropy of ``label`` ascended (untargeted) or of ``target`` descended (targeted),
    or the logit margin with ``loss="margin"``. A start stops at its first strictly
    misclassified latent."""
    dim, _ = _check_search(generator, classifier, label, target, starts, min_confidence, seed, device, dtype)
    _int_at_least("steps", steps, 1)
    _int_at_least("batch_size", batch_size, 1)
    step_size = _positive("step_size", step_size)
    eps = _positive("eps", eps, allow_none=True)
    clip = _positive("clip", clip, allow_none=True)
    if loss not in ("ce", "margin"):
        raise InvalidInputError(f"loss must be 'ce' or 'margin', got {loss!r}")
    run = _begin(generator, classifier, label, dim, starts, min_confidence, seed, device, dtype, batch_size)
    g, c, z0, z, done, used = run.g, run.c, run.z0, run.z, run.done, run.used
    queries = run.drawn
    cls = label if target is None else target
    sign = 1.0 if target is None else -1.0
    for _ in range(steps):
        active = (~done).nonzero().flatten()
        if active.numel() == 0:
            break
        for i in range(0, active.numel(), batch_size):
            rows = active[i:i + batch_size]
            za = z[rows].clone().requires_grad_(True)
            logits = c(g(za).reshape(rows.numel(), -1))
            if loss == "ce":
                objective = sign * nn.functional.cross_entropy(
                    logits, torch.full((rows.numel(),), cls, device=device), reduction="sum")
            else:
                objective = _objective(logits, label, target).sum()
            (grad,) = torch.autograd.grad(objective, za)
            with torch.no_grad():
                z[rows] = _project(za + step_size * grad.sign(), z0[rows], eps, clip)
            queries += rows.numel()
        used[active.cpu()] += 1
        with torch.no_grad():
            done[active] = _objective(_logits(g, c, z[active], batch_size), label, target) > 0
        queries += active.numel()
    params = {"steps": steps, "step_size": step_size, "eps": eps, "clip": clip, "loss": loss,
              "min_confidence": min_confidence, "seed": seed}
    return run.finish(generator, classifier, label, target, eps, starts, queries,
                      "white-box gradient attack (Algorithm 2)", params)


def random_walk(generator: nn.Module, classifier: nn.Module, z0, steps: int, step_size: float,
                seed: int = 0) -> RandomWalk:
    """``z_{t+1} = z_t + step_size * N(0, I)`` for ``steps`` steps from ``z0``; every point
    is pushed through ``C∘G`` in float64 on the CPU."""
    dim, _, _ = check_composition(generator, classifier)
    _int_at_least("steps", steps, 1)
    step_size = _positive("step_size", step_size)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    start = torch.as_tensor(np.asarray(z0, dtype=np.float64)).reshape(-1)
    if start.numel() != dim:
        raise ShapeMismatchError(f"z0 has {start.numel()} values but the generator's latent dimension is {dim}")
    increments = sample_latent(steps, dim, latent_stream(seed), "cpu", torch.float64) * step_size
    path = torch.cat([start[None], start[None] + increments.cumsum(0)])
    g = prepared(generator, "cpu", torch.float64)
    c = prepared(classifier, "cpu", torch.float64)
    with torch.no_grad():
        images = g(path).reshape(path.shape[0], -1)
        logits = c(images)
    return RandomWalk(latents=path.numpy(), images=images.numpy(), logits=logits.numpy(),
                      probabilities=logits.softmax(1).numpy(), predictions=logits.argmax(1).numpy(),
                      step_size=step_size, seed=seed)
