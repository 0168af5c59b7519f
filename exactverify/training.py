"""PGD adversarial training (Madry et al., 2018) under an L-inf budget, in torch.

Training minimises the cross-entropy at the worst point PGD finds in
``{x' : ||x' - x||_inf <= eps} ∩ domain`` for every example of every batch. It makes the
"hardened" networks whose provable minimal distortion the benchmarks compare with the
standard ones (Carlini et al.'s N̄). Everything is seeded, so a run reproduces on one
machine; PGD here is a training and evaluation tool, never a verdict.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .errors import InvalidInputError

#: Madry et al.'s step size rule: ``step_size = STEP_SIZE_FACTOR * eps / steps``, so that PGD
#: can cross the ball from one face to the other even from a random start.
STEP_SIZE_FACTOR = 2.5


@dataclass
class TrainingHistory:
    """Per-epoch record of an adversarial training run."""

    epochs: list[int] = field(default_factory=list)
    eps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _as_tensor(values, dtype: torch.dtype, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be an array of numbers: {exc}") from exc


def _check_attack(eps: float, steps: int, step_size: float | None, domain: Sequence[float] | None):
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise InvalidInputError(f"eps must be a finite number >= 0, got {eps!r}")
    if not (isinstance(steps, int) and steps >= 0):
        raise InvalidInputError(f"steps must be an int >= 0, got {steps!r}")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise InvalidInputError(f"step_size must be a finite number > 0, got {step_size!r}")
    if domain is not None and (len(domain) != 2 or not domain[0] < domain[1]):
        raise InvalidInputError(f"domain must be (low, high) with low < high, got {domain!r}")


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
             step_size: float | None = None, domain: Sequence[float] | None = (0.0, 1.0),
             random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted L-inf PGD on the cross-entropy: points ``x'`` with ``||x' - x||_inf <= eps`` in ``domain``.

    ``step_size`` defaults to ``STEP_SIZE_FACTOR * eps / steps``. The model's train/eval mode
    and its parameters' gradients are left as they were.
    """
    _check_attack(eps, steps, step_size, domain)
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    step = step_size if step_size is not None else STEP_SIZE_FACTOR * eps / steps
    low = x - eps if domain is None else torch.clamp(x - eps, min=domain[0])
    high = x + eps if domain is None else torch.clamp(x + eps, max=domain[1])
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
        adv = torch.minimum(torch.maximum(x + eps * noise, low), high)
    else:
        adv = x.clone()
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = loss_fn(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = torch.minimum(torch.maximum(adv + step * grad.sign(), low), high)
    return adv.detach()


def robust_accuracy(model: nn.Module, x, y, eps: float, steps: int = 20, restarts: int = 1,
                    batch_size: int = 1000, domain: Sequence[float] | None = (0.0, 1.0), seed: int = 0) -> float:
    """Fraction of examples that PGD (``restarts`` random starts, first from ``x``) leaves correct.

    An upper bound on the true robust accuracy at ``eps``: PGD may miss adversarial points.
    """
    xs = _as_tensor(x, torch.float32, "x")
    ys = _as_tensor(y, torch.int64, "y")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(xs), batch_size):
        xb, yb = xs[start:start + batch_size], ys[start:start + batch_size]
        with torch.no_grad():
            still = model(xb).argmax(1) == yb
        for restart in range(max(1, restarts)):
            adv = pgd_linf(model, xb, yb, eps, steps, domain=domain, random_start=restart > 0, generator=generator)
            with torch.no_grad():
                still &= model(adv).argmax(1) == yb
        correct += int(still.sum())
    model.train(was_training)
    return correct / max(1, len(xs))


def adversarial_training(model: nn.Module, x, y, eps: float, steps: int = 10, *, epochs: int = 20,
                         batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0,
                         step_size: float | None = None, warmup_epochs: int = 0,
                         domain: Sequence[float] | None = (0.0, 1.0), seed: int = 0,
                         log_every: int = 0) -> TrainingHistory:
    """Train ``model`` in place on PGD points at L-inf radius ``eps`` (Madry et al.); returns the history.

    Adam with cosine learning-rate decay. During the first ``warmup_epochs`` the radius grows
    linearly from ``eps / (warmup_epochs + 1)`` to ``eps`` (small networks fail to train at the
    full radius from the start). ``eps = 0`` or ``steps = 0`` is standard training. ``x`` is
    (N, features) with values in ``domain``, ``y`` integer labels.
    """
    _check_attack(eps, steps, step_size, domain)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not (isinstance(value, int) and value >= 1):
            raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    if not (isinstance(warmup_epochs, int) and warmup_epochs >= 0):
        raise InvalidInputError(f"warmup_epochs must be an int >= 0, got {warmup_epochs!r}")
    xs = _as_tensor(x, torch.float32, "x")
    ys = _as_tensor(y, torch.int64, "y")
    if xs.shape[0] != ys.shape[0]:
        raise InvalidInputError(f"x and y must hold the same number of examples, got {xs.shape[0]} and {ys.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(xs) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    history = TrainingHistory()
    start_time = time.perf_counter()
    for epoch in range(epochs):
        radius = eps * min(1.0, (epoch + 1) / (warmup_epochs + 1))
        order = torch.randperm(len(xs), generator=generator)
        total = 0.0
        for start in range(0, len(xs), batch_size):
            batch = order[start:start + batch_size]
            xb, yb = xs[batch], ys[batch]
            model.eval()  # the attack sees the network as it will be used (matters for dropout/batchnorm)
            adv = pgd_linf(model, xb, yb, radius, steps, step_size, domain, random_start=True, generator=generator)
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(adv), yb)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        history.epochs.append(epoch + 1)
        history.eps.append(radius)
        history.loss.append(total / len(xs))
        if log_every and (epoch + 1) % log_every == 0:
            print(f"  epoch {epoch + 1:3d}  eps {radius:.4f}  adversarial loss {history.loss[-1]:.4f}", flush=True)
    model.eval()
    history.seconds = time.perf_counter() - start_time
    return history
