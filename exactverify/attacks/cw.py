"""Carlini-Wagner L2 and L-inf attacks (Carlini & Wagner, S&P 2017), batched in torch.

Both optimise over ``w`` with ``x' = low + (high - low) * (tanh(w) + 1) / 2`` so every
iterate lies in the domain, and use the objective ``f = max(-margin, -confidence)``
(``margin`` > 0 iff strictly misclassified). They return, per sample, the successful
point of smallest distortion seen; success is re-checked in float64 by :func:`finish`.

- L2: minimise ``||x' - x||_2^2 + c f(x')`` with Adam, binary search on ``c`` per sample.
- L-inf: minimise ``c f(x') + sum_i max(0, |x'_i - x_i| - tau)``. Start at ``tau`` = the
  domain's widest side (1 on [0, 1]); whenever an episode succeeds (adversarial and the
  penalty below ``WORKS_FACTOR * c``) set ``tau = min(tau, ||x' - x||_inf) * tau_decrease``
  and continue from that point; when ``steps`` steps do not succeed, multiply ``c`` by
  ``const_factor`` and restart from the last success. Stop when ``tau < min_tau`` or
  ``c > largest_const``. Each sample runs its own episodes inside one batch.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from ..ir import Network
from .inputs import DEFAULT_DOMAIN, check_inputs, check_positive, check_positive_int
from .optim import NO_UPPER, RowAdam, from_tanh_space, hinge, to_tanh_space, update_constants
from .result import AttackResult, adversarial_margin, finish, norm_of

#: CW-L-inf counts an episode as a success when the tau penalty is below this times ``c``
#: (their ``loss < .0001 * CONST`` test): all coordinates are essentially within tau.
WORKS_FACTOR = 1e-4
#: Abort-early test of both attacks (CW's ``l > prev * .9999``): the loss fell by under 0.01%.
STALL_FACTOR = 0.9999


def _check_common(steps, binary_search_steps, initial_const, confidence, learning_rate) -> None:
    check_positive_int(steps, "steps")
    check_positive_int(binary_search_steps, "binary_search_steps")
    check_positive(initial_const, "initial_const")
    check_positive(confidence, "confidence", allow_zero=True)
    check_positive(learning_rate, "learning_rate")


def cw_l2(network: Network, x, labels, *, target=None, domain=DEFAULT_DOMAIN, steps: int = 1000,
          binary_search_steps: int = 9, initial_const: float = 1e-3, confidence: float = 0.0,
          learning_rate: float = 1e-2, abort_early: bool = True) -> AttackResult:
    """Carlini-Wagner L2: the smallest-L2 successful point over a binary search on ``c``."""
    inputs = check_inputs(network, x, labels, target, domain)
    _check_common(steps, binary_search_steps, initial_const, confidence, learning_rate)
    x0, low, high, batch = inputs.x, inputs.low, inputs.high, inputs.batch
    w_start = to_tanh_space(x0, low, high)
    const = torch.full((batch,), float(initial_const), dtype=torch.float64)
    lower = torch.zeros(batch, dtype=torch.float64)
    upper = torch.full((batch,), NO_UPPER, dtype=torch.float64)
    best_dist = torch.full((batch,), float("inf"), dtype=torch.float64)
    best_points = x0.clone()
    check_every = max(steps // 10, 1)
    for _ in range(binary_search_steps):
        w = w_start.clone()
        adam = RowAdam(w, learning_rate)
        succeeded = torch.zeros(batch, dtype=torch.bool)
        previous = float("inf")
        for step in range(steps):
            w.requires_grad_(True)
            point = from_tanh_space(w, low, high)
            margin = adversarial_margin(network.forward(point), inputs.labels, inputs.target)
            distance2 = (point - x0).reshape(batch, -1).pow(2).sum(1)
            loss = distance2 + const * hinge(margin, confidence)
            (grad,) = torch.autograd.grad(loss.sum(), w)
            with torch.no_grad():
                ok = (margin > 0) & (margin >= confidence)
                dist = norm_of(point - x0, "l2")
                better = ok & (dist < best_dist)
                best_dist = torch.where(better, dist, best_dist)
                best_points[better] = point[better]
                succeeded |= ok
                if abort_early and step % check_every == 0:
                    total = float(loss.sum())
                    if total > previous * STALL_FACTOR:
                        break
                    previous = total
                w = adam.step(w.detach(), grad)
        const, lower, upper = update_constants(const, lower, upper, succeeded)
    return finish(inputs, best_points, "l2", "cw_l2")


def cw_linf(network: Network, x, labels, *, target=None, domain=DEFAULT_DOMAIN, steps: int = 1000,
            initial_const: float = 1e-5, largest_const: float = 20.0, const_factor: float = 2.0,
            tau_decrease: float = 0.9, min_tau: float = 1 / 256, learning_rate: float = 5e-3,
            confidence: float = 0.0, abort_early: bool = True, max_total_steps: int | None = None) -> AttackResult:
    """Carlini-Wagner L-inf (see module doc): the smallest-L-inf successful point seen.

    ``steps`` bounds one episode (one ``tau``, one ``c``); with ``abort_early`` an episode also
    fails once its loss falls by less than 0.01% over ``steps // 10`` steps; ``max_total_steps`` optionally caps
    the whole run (each sample otherwise stops on its own ``min_tau`` / ``largest_const`` rule).
    """
    inputs = check_inputs(network, x, labels, target, domain)
    _check_common(steps, 1, initial_const, confidence, learning_rate)
    check_positive(largest_const, "largest_const")
    check_positive(min_tau, "min_tau")
    if not const_factor > 1:
        raise InvalidInputError(f"const_factor must be > 1, got {const_factor!r}")
    if not 0 < tau_decrease < 1:
        raise InvalidInputError(f"tau_decrease must be in (0, 1), got {tau_decrease!r}")
    if max_total_steps is not None:
        check_positive_int(max_total_steps, "max_total_steps")
    x0, low, high, batch = inputs.x, inputs.low, inputs.high, inputs.batch
    widest = float((high - low).max())
    tau = torch.full((batch,), widest, dtype=torch.float64)
    const = torch.full((batch,), float(initial_const), dtype=torch.float64)
    start = to_tanh_space(x0, low, high)
    w = start.clone()
    adam = RowAdam(w, learning_rate)
    episode = torch.zeros(batch, dtype=torch.long)
    active = torch.ones(batch, dtype=torch.bool)
    best_dist = torch.full((batch,), float("inf"), dtype=torch.float64)
    best_points = x0.clone()
    shape = (-1,) + (1,) * (x0.dim() - 1)
    previous = torch.full((batch,), float("inf"), dtype=torch.float64)
    check_every = max(steps // 10, 1)
    total = 0
    while active.any() and (max_total_steps is None or total < max_total_steps):
        total += 1
        w.requires_grad_(True)
        point = from_tanh_space(w, low, high)
        margin = adversarial_margin(network.forward(point), inputs.labels, inputs.target)
        excess = torch.relu((point - x0).abs() - tau.reshape(shape)).reshape(batch, -1).sum(1)
        loss = const * hinge(margin, confidence) + excess
        (grad,) = torch.autograd.grad(loss.sum(), w)
        with torch.no_grad():
            w = w.detach()
            ok = (margin > 0) & (margin >= confidence)
            dist = norm_of(point - x0, "linf")
            better = ok & (dist < best_dist)
            best_dist = torch.where(better, dist, best_dist)
            best_points[better] = point[better]
            works = active & ok & (excess <= WORKS_FACTOR * const)
            # success: shrink tau and start the next episode from this point
            tau = torch.where(works, torch.minimum(tau, dist) * tau_decrease, tau)
            start = torch.where(works.reshape(shape), w, start)
            # failure for this episode's whole length: raise c and restart from the last success
            episode = torch.where(works, 0, episode + active.long())
            # CW's abort-early test, per sample: an episode whose loss stopped falling has failed
            checkpoint = active & ~works & (episode % check_every == 0)
            stalled = checkpoint & (loss.detach() > previous * STALL_FACTOR) & abort_early
            previous = torch.where(checkpoint, loss.detach(), previous)
            exhausted = active & ~works & ((episode >= steps) | stalled)
            previous = torch.where(works | exhausted, float("inf"), previous)
            const = torch.where(exhausted, const * const_factor, const)
            episode = torch.where(exhausted, 0, episode)
            adam.reset(works | exhausted)
            active = active & ~(works & (tau < min_tau)) & ~(exhausted & (const > largest_const))
            moving = active & ~works & ~exhausted
            w = adam.step(w, grad, rows=moving)
            w = torch.where(exhausted.reshape(shape), start, w)
    return finish(inputs, best_points, "linf", "cw_linf")

