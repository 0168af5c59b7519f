"""Argument validation for the query entry points and the float64 counterexample re-check.

Named tolerances (all absolute):

- ``DOMAIN_TOLERANCE``: how far ``x`` may lie outside its domain before it is refused
  (float noise from normalisation); ``x`` is then clipped into the domain.
- ``REGION_TOLERANCE``: a solver's point is always projected into the region before the
  re-check (so every reported counterexample lies in the region); when the point lay
  further outside than this, the excess is stated in the verdict's reason, since it
  signals solver tolerances (e.g. many L1 epigraph rows each off by the feasibility
  tolerance) or an encoding problem rather than float noise.
- Misclassification in the re-check is *strict* (the winning logit is larger, in float64):
  ties never count. The encoders additionally demand the query's ``margin`` (default
  ``DEFAULT_MARGIN`` = 1e-5) so that solver tolerances do not produce near-ties.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidInputError, ShapeMismatchError
from ..ir import Network
from ..loaders import SourceModel
from ..regions import DOMAIN_TOLERANCE, Region, ball
from ..specs import OutputSpec, class_wins, other_class_wins

REGION_TOLERANCE = 1e-6
NORMS = ("linf", "l1")
BACKENDS = ("scip", "ortools", "z3")
BOUND_METHODS = ("interval", "crown", "lp", "forward", "alpha", "milp")
#: z3 (real arithmetic, one case split per piecewise-linear neuron) is for tiny networks: the
#: minimal L-inf distortion of a random 8-8-8-4 ReLU net (16 ReLUs) took it 4.8 s, of an 8-16-16-4
#: net (32) it did not end within 60 s (SCIP: 6 s), and on a 64-24-24-24-10 digits net it answered
#: none of its decisions within 120 s. Above this many such neurons, a z3 query without a
#: ``time_limit`` gets a warning (it may not end).
Z3_SMALL_NETWORK = 16


@dataclass(frozen=True)
class Query:
    """A validated query: network, centre (input shape, float64), label/target, domain."""

    network: Network
    x: np.ndarray
    label: int
    target: int | None
    norm: str
    domain: tuple[np.ndarray, np.ndarray] | None
    margin: float
    model: torch.nn.Module | SourceModel | None  # the user's model, or the model file's own evaluation

    @property
    def num_classes(self) -> int:
        return self.network.output_size

    def spec(self, margin: float | None = None) -> OutputSpec:
        """The adversarial output set (targeted or untargeted) with ``margin``."""
        margin = self.margin if margin is None else margin
        if self.target is None:
            return other_class_wins(self.label, self.num_classes, margin)
        return class_wins(self.target, self.num_classes, margin)

    def region(self, eps: float) -> Region:
        return ball(self.x, eps, self.norm, self.domain, self.network.input_shape)

    def max_radius(self) -> float:
        """The smallest eps whose ball contains the whole domain (inf without a domain)."""
        if self.domain is None:
            return math.inf
        low, high = self.domain
        reach = np.maximum(self.x - low, high - self.x)
        return float(reach.max() if self.norm == "linf" else reach.sum())


def as_network(network) -> tuple[Network, torch.nn.Module | SourceModel | None]:
    """The IR of ``network`` plus what counterexamples are re-checked on besides it: the user's
    torch module, or a model file's own evaluation (onnxruntime, or the parsed ``.nnet``)."""
    if isinstance(network, Network):
        return network, None
    from ..loaders import load, load_source

    if isinstance(network, torch.nn.Module):
        return load(network), network
    if isinstance(network, str) or hasattr(network, "__fspath__"):
        return load_source(network)
    raise InvalidInputError(
        f"network must be an exactverify Network, a torch nn.Module or a model path, got {type(network).__name__}"
    )


def case_split_neurons(network: Network) -> int:
    """Neurons entering the network's non-affine piecewise-linear layers (ReLU, max-pool, clamp...)."""
    return sum(int(np.prod(network.shapes[i])) for i, layer in enumerate(network.layers)
               if not layer.affine and layer.piecewise_linear)


def warn_unbounded_z3(network: Network, backend: str, time_limit: float | None) -> None:
    """Warn when z3 gets a network beyond :data:`Z3_SMALL_NETWORK` without a time limit."""
    if backend != "z3" or time_limit is not None:
        return
    neurons = case_split_neurons(network)
    if neurons > Z3_SMALL_NETWORK:
        warnings.warn(f"backend 'z3' decides tiny networks only; {network.name} has {neurons} piecewise-linear "
                      f"neurons (more than Z3_SMALL_NETWORK = {Z3_SMALL_NETWORK}) and no time_limit was given, so "
                      "this query may not end: pass time_limit, or use backend='scip'", UserWarning, stacklevel=3)


def check_eps(eps, name: str = "eps") -> float:
    """``eps`` (or the parameter ``name``) as a finite float >= 0; bools and strings are refused."""
    if isinstance(eps, (bool, str, bytes)):
        raise InvalidInputError(f"{name} must be a number, got {eps!r}")
    try:
        value = float(eps)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a number, got {eps!r}") from exc
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be finite and >= 0, got {eps!r}")
    return value


def check_threads(threads) -> int:
    """``threads`` must be an int >= 1 (worker threads for split exact solves, :mod:`.split`)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def check_flag(value, name: str) -> bool:
    """A boolean option: ``attack_first="no"`` would otherwise count as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_point(x, input_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as a finite float64 array of the network's input shape (given in that shape or flat)."""
    raw = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    if np.iscomplexobj(raw):
        raise InvalidInputError("x must be real; it has complex values")
    try:
        point = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"x must be an array of numbers, got {type(x).__name__} ({exc})") from exc
    size = int(np.prod(input_shape))
    if point.size != size:
        raise ShapeMismatchError(
            f"x has shape {point.shape} ({point.size} values); the network's input shape is {input_shape}"
        )
    point = point.reshape(input_shape)
    if not np.all(np.isfinite(point)):
        raise InvalidInputError("x contains NaN or infinite values")
    return point


def check_domain(domain, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``domain = (low, high)``, each a number or an array broadcasting to the input shape (or flat), as two
    float64 arrays of the input shape; no NaN, ``low <= high`` (infinite ends are allowed)."""
    if isinstance(domain, (str, bytes)) or not hasattr(domain, "__len__") or len(domain) != 2:
        raise InvalidInputError(f"domain must be a pair (low, high) of numbers or arrays, got {domain!r}")
    ends = []
    for name, end in zip(("low", "high"), domain, strict=True):
        if isinstance(end, (bool, str, bytes)):
            raise InvalidInputError(f"domain {name} must be a number or an array, got {end!r}")
        try:
            value = np.asarray(end.detach().cpu().numpy() if isinstance(end, torch.Tensor) else end, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"domain {name} must be a number or an array, got {end!r}") from exc
        try:
            value = np.broadcast_to(value, input_shape)
        except ValueError:
            if value.size != int(np.prod(input_shape)):  # a flat array of the input size is fine too
                raise ShapeMismatchError(f"domain {name} has shape {value.shape}; it must be a number or "
                                         f"broadcast to the network's input shape {input_shape}") from None
            value = value.reshape(input_shape)
        if np.any(np.isnan(value)):
            raise InvalidInputError(f"domain {name} contains NaN")
        ends.append(value.copy())
    if np.any(ends[0] > ends[1]):
        raise InvalidInputError("domain lower bound exceeds upper bound")
    return ends[0], ends[1]


def run_model(model: torch.nn.Module | SourceModel, point: np.ndarray) -> torch.Tensor:
    """The user's model on one point (batch of one), in eval mode and its own dtype and device;
    its training flag is restored afterwards. A model file's evaluation runs in the file's precision."""
    if isinstance(model, SourceModel):
        return torch.as_tensor(model(np.asarray(point)[None]))
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            return model(torch.as_tensor(point, dtype=dtype, device=device)[None])
    finally:
        model.train(was_training)


def check_model(model: torch.nn.Module | SourceModel, network: Network, point: np.ndarray) -> None:
    """The user's re-check model must take ``x`` in the network's input shape and give its logits."""
    try:
        out = run_model(model, point)
    except Exception as exc:  # noqa: BLE001 - any failure means the model does not fit the network
        raise ShapeMismatchError(f"model does not accept x of the network's input shape {network.input_shape} "
                                 f"with a batch dimension ({type(exc).__name__}: {exc})") from exc
    if not isinstance(out, torch.Tensor) or out.numel() != network.output_size:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeMismatchError(f"model gives {shape} for one input; the network has {network.output_size} outputs")


def make_query(network, x, norm: str, target, label, domain, margin: float, model=None) -> Query:
    """Validate the arguments shared by every query entry point.

    ``model`` is a torch module (or a :class:`~exactverify.loaders.SourceModel`) to re-check
    counterexamples on; it defaults to ``network`` itself when that is a module, and to the
    file's own evaluation when ``network`` is a model path."""
    net, own_model = as_network(network)
    if model is not None and not isinstance(model, torch.nn.Module | SourceModel):
        raise InvalidInputError(f"model must be a torch nn.Module or a SourceModel, got {type(model).__name__}")
    model = model if model is not None else own_model
    if norm not in NORMS:
        raise InvalidInputError(f"norm must be one of {NORMS}, got {norm!r}")
    if not net.piecewise_linear:
        kinds = sorted({layer.kind for layer in net.layers if not layer.piecewise_linear})
        raise InvalidInputError(f"exact queries need a piecewise-linear network; it contains {kinds}")
    point = as_point(x, net.input_shape)
    margin = check_eps(margin, "margin")
    if domain is None:
        domain = net.input_domain
    if domain is not None:
        low, high = check_domain(domain, net.input_shape)
        outside = (point < low - DOMAIN_TOLERANCE) | (point > high + DOMAIN_TOLERANCE)
        if np.any(outside):
            i = int(np.flatnonzero(outside.reshape(-1))[0])
            raise InvalidInputError(
                f"x lies outside the input domain: x[{i}] = {point.reshape(-1)[i]:.6g} is not in "
                f"[{low.reshape(-1)[i]:.6g}, {high.reshape(-1)[i]:.6g}] ({int(outside.sum())} of {point.size} "
                "coordinates outside; the domain argument, --domain on the command line, changes it)")
        point = np.clip(point, low, high)
        domain = (low, high)
    if model is not None:
        check_model(model, net, point)
    logits = net.forward(torch.as_tensor(point)[None]).reshape(-1)
    n = logits.numel()
    if label is None:
        label = int(torch.argmax(logits))
    elif isinstance(label, bool) or not (isinstance(label, (int, np.integer)) and 0 <= int(label) < n):
        raise InvalidInputError(f"label={label!r} is not a class index in [0, {n})")
    if target is not None:
        if isinstance(target, bool) or not (isinstance(target, (int, np.integer)) and 0 <= int(target) < n):
            raise InvalidInputError(f"target={target!r} is not a class index in [0, {n})")
        if int(target) == int(label):
            raise InvalidInputError(f"target={target} equals the label; a targeted query needs another class")
        target = int(target)
    return Query(net, point, int(label), target, norm, domain, float(margin), model)


def distance(query: Query, point: np.ndarray) -> float:
    diff = (point - query.x).reshape(-1)
    return float(np.abs(diff).max() if query.norm == "linf" else np.abs(diff).sum())


def excess(query: Query, point: np.ndarray, eps: float) -> float:
    """How far ``point`` lies outside the eps-region: beyond the domain or beyond the ball."""
    point = np.asarray(point, dtype=np.float64).reshape(query.network.input_shape)
    outside = 0.0
    if query.domain is not None:
        outside = float(max(np.max(query.domain[0] - point), np.max(point - query.domain[1]), 0.0))
    return max(outside, distance(query, point) - eps, 0.0)


#: Rounds of one-ulp steps toward the centre that :func:`project` may take to undo rounding.
PROJECTION_ROUNDS = 64


def project(query: Query, point: np.ndarray, eps: float) -> np.ndarray:
    """Bring a solver's point into the region (box clip; L1 shrink toward the centre).

    ``x + clip(p - x, -eps, eps)`` rounds: at x = 0.5, eps = 0.02 it gives the double 0.48,
    which lies 1.8e-17 further than eps from 0.5. So the coordinates are then stepped one ulp
    toward the centre until :func:`distance` (what the result reports) is at most ``eps``:
    every reported counterexample lies in the region in float64, not just within rounding.
    """
    point = np.asarray(point, dtype=np.float64).reshape(query.network.input_shape)
    if query.domain is not None:
        point = np.clip(point, *query.domain)
    diff = point - query.x
    if query.norm == "linf":
        diff = np.clip(diff, -eps, eps)
    else:
        size = np.abs(diff).sum()
        if size > eps:
            diff = diff * (eps / size)
    point = query.x + diff
    if query.domain is not None:  # the centre lies in the domain, so this is a no-op up to rounding
        point = np.clip(point, *query.domain)
    for _ in range(PROJECTION_ROUNDS):
        if distance(query, point) <= eps:
            break
        gap = np.abs(point - query.x)
        step = gap > eps if query.norm == "linf" else gap > 0
        point[step] = np.nextafter(point[step], query.x[step])  # between x and point: stays in the domain
    return point


def misclassified(query: Query, logits: torch.Tensor) -> torch.Tensor:
    """Strict (tie-free) misclassification of each row of ``logits`` in float64."""
    return query.spec(0.0).slack(logits.reshape(logits.shape[0], -1).to(torch.float64)) > 0


def recheck(query: Query, point: np.ndarray) -> tuple[bool, bool | None, np.ndarray]:
    """Re-run ``point`` on the IR in float64 and on the user's model; returns (ir_ok, model_ok, logits)."""
    logits = query.network.forward(torch.as_tensor(point)[None])
    ir_ok = bool(misclassified(query, logits)[0])
    model_ok = None
    if query.model is not None:
        out = run_model(query.model, point).to(torch.float64).cpu()
        model_ok = bool(misclassified(query, out)[0])
    return ir_ok, model_ok, logits.reshape(-1).numpy()
