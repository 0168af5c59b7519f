"""Validation of the arguments every attack of the suite shares, in one place.

Each public attack calls :func:`check_inputs` first; it names the offending parameter
in its messages, puts ``x`` in the network's batched input shape as float64, and
broadcasts the domain to ``x``'s shape. ``x`` may lie outside the domain by at most
``DOMAIN_TOLERANCE`` (float noise from normalisation); it is then clipped into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InvalidInputError, ShapeMismatchError
from ..ir import Network
from ..regions import DOMAIN_TOLERANCE

#: The default input domain: pixels in [0, 1].
DEFAULT_DOMAIN = (0.0, 1.0)

Domain = tuple  # (low, high): floats or arrays broadcastable to the input shape


@dataclass(frozen=True)
class AttackInputs:
    """Validated attack arguments: ``x``, ``low``, ``high`` are (B, *input_shape) float64."""

    network: Network
    x: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None
    low: torch.Tensor
    high: torch.Tensor

    @property
    def batch(self) -> int:
        return self.x.shape[0]


def _class_vector(value, batch: int, classes: int, name: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{name} must be a (B,) tensor of class indices, got {value!r}") from exc
    if tensor.dim() == 0:
        tensor = tensor.reshape(1).expand(batch)
    if tensor.dim() != 1 or tensor.shape[0] != batch:
        raise ShapeMismatchError(f"{name} has shape {tuple(tensor.shape)}; expected ({batch},)")
    if torch.is_floating_point(tensor) or tensor.dtype == torch.bool:
        if not torch.equal(tensor, tensor.round()):
            raise InvalidInputError(f"{name} must hold integer class indices")
    tensor = tensor.to(torch.long)
    if ((tensor < 0) | (tensor >= classes)).any():
        raise InvalidInputError(f"{name} holds a class index outside [0, {classes})")
    return tensor


def _broadcast(bound: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``bound`` (scalar, per-sample shape, flat per-sample or (B, ...)) broadcast to ``x``."""
    if bound.dim() == 1 and bound.numel() == x[0].numel() and x.dim() > 2:
        bound = bound.reshape(x.shape[1:])
    return torch.broadcast_to(bound, x.shape).clone()


def _domain(domain, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if domain is None:
        raise InvalidInputError("domain must be a (low, high) pair; attacks keep inputs inside it")
    try:
        low_raw, high_raw = domain
        low = torch.as_tensor(low_raw, dtype=torch.float64)
        high = torch.as_tensor(high_raw, dtype=torch.float64)
        low, high = _broadcast(low, x), _broadcast(high, x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(
            f"domain must be a (low, high) pair broadcastable to the input shape {tuple(x.shape[1:])} or to x"
        ) from exc
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise InvalidInputError("domain bounds must be finite")
    if (low > high).any():
        raise InvalidInputError("domain lower bound exceeds its upper bound")
    return low, high


def check_inputs(network, x, labels, target=None, domain=DEFAULT_DOMAIN, *, norm: str | None = None,
                 norms: tuple[str, ...] = ()) -> AttackInputs:
    """Validate the shared attack arguments (see module doc); ``norm`` must be one of ``norms``."""
    if not isinstance(network, Network):
        raise InvalidInputError(f"network must be an exactverify Network, got {type(network).__name__}")
    if norms and norm not in norms:
        raise InvalidInputError(f"norm must be one of {norms}, got {norm!r}")
    try:
        batch = torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"x must be a (B, *input_shape) array, got {type(x).__name__}") from exc
    if batch.dim() < 2:
        raise ShapeMismatchError(f"x must be batched, (B, *{network.input_shape}); got shape {tuple(batch.shape)}")
    try:
        batch = network.batch_inputs(batch).clone()
    except ShapeMismatchError as exc:
        raise ShapeMismatchError(f"x: {exc}") from exc
    if batch.shape[0] == 0:
        raise ShapeMismatchError("x is an empty batch")
    if not torch.isfinite(batch).all():
        raise InvalidInputError("x contains NaN or infinite values")
    low, high = _domain(domain, batch)
    if (batch < low - DOMAIN_TOLERANCE).any() or (batch > high + DOMAIN_TOLERANCE).any():
        raise InvalidInputError(f"x lies outside the domain by more than {DOMAIN_TOLERANCE}")
    batch = torch.minimum(torch.maximum(batch, low), high)
    classes = network.output_size
    label_t = _class_vector(labels, batch.shape[0], classes, "labels")
    target_t = None if target is None else _class_vector(target, batch.shape[0], classes, "target")
    if target_t is not None and (target_t == label_t).any():
        same = torch.nonzero(target_t == label_t).reshape(-1).tolist()
        raise InvalidInputError(f"target equals the true label (labels) for sample(s) {same[:10]}: a targeted "
                                "attack needs another class (target=None for an untargeted one)")
    return AttackInputs(network, batch, label_t, target_t, low, high)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (InvalidInputError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return number


def check_eps(eps, batch: int) -> torch.Tensor:
    """A budget as a (B,) float64 tensor of finite values >= 0."""
    try:
        eps_t = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"eps must be a number or a (B,) tensor, got {eps!r}") from exc
    if eps_t.numel() == 1:
        eps_t = eps_t.expand(batch)
    if eps_t.numel() != batch:
        raise ShapeMismatchError(f"eps has {eps_t.numel()} entries for a batch of {batch}")
    if not torch.isfinite(eps_t).all() or (eps_t < 0).any():
        raise InvalidInputError("eps must be finite and >= 0")
    return eps_t.clone()
