"""BIM and PGD as fixed-budget attacks of the suite, wrapping the projected-gradient core :func:`pgd`.

Both ascend the logit margin (Carlini-Wagner's loss; > 0 means strictly misclassified)
over the L-inf or L1 ball intersected with the domain, and return the highest-margin
point seen. BIM (Kurakin et al.) starts at ``x`` only; PGD (Madry et al.) adds restarts
from random points of the ball.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from ..ir import Network
from .inputs import DEFAULT_DOMAIN, check_eps, check_inputs, check_positive, check_positive_int
from .pgd import pgd
from .result import AttackResult, adversarial_margin, finish, keep_in_budget

PGD_NORMS = ("linf", "l1")


def pgd_attack(network: Network, x, labels, eps, *, target=None, norm: str = "linf", steps: int = 100,
               restarts: int = 3, step_fraction: float = 0.1, domain=DEFAULT_DOMAIN, seed: int = 0) -> AttackResult:
    """PGD with ``restarts`` starts (the first at ``x``), ``steps`` steps of ``step_fraction * eps`` each."""
    inputs = check_inputs(network, x, labels, target, domain, norm=norm, norms=PGD_NORMS)
    eps_t = check_eps(eps, inputs.batch)
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive(step_fraction, "step_fraction")

    def score(logits: torch.Tensor) -> torch.Tensor:
        return adversarial_margin(logits, inputs.labels, inputs.target)

    generator = torch.Generator().manual_seed(int(seed))
    points, _ = pgd(network, inputs.x, eps_t, score, norm=norm, domain=(inputs.low, inputs.high), steps=steps,
                    restarts=restarts, step_fraction=step_fraction, generator=generator)
    points = keep_in_budget(inputs, points, eps_t, norm)
    return finish(inputs, points, norm, "pgd" if restarts > 1 else "bim", eps_t)


def bim(network: Network, x, labels, eps, *, target=None, norm: str = "linf", steps: int = 50,
        step_fraction: float | None = None, domain=DEFAULT_DOMAIN) -> AttackResult:
    """Basic iterative method: PGD from ``x`` without restarts; step ``2.5 * eps / steps`` by default."""
    steps = check_positive_int(steps, "steps")
    if step_fraction is None:
        step_fraction = 2.5 / steps
    if norm not in PGD_NORMS:
        raise InvalidInputError(f"norm must be one of {PGD_NORMS}, got {norm!r}")
    return pgd_attack(network, x, labels, eps, target=target, norm=norm, steps=steps, restarts=1,
                      step_fraction=step_fraction, domain=domain)
