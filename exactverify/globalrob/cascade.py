"""The cascade that decides the local property of many latent samples on C∘G.

For a latent centre ``z`` and radius ``eps`` the local property is: every ``z'`` with
``||z' - z||_inf <= eps`` is classified as ``label`` by ``C(G(z'))``. Stages, cheapest first,
each passing on only what it could not decide:

1. ``centre``: the centre itself is misclassified (a validated counterexample).
2. ``bounds``: batched symbolic bounds (``forward`` by default: the latent is small) prove
   that no class beats the label by ``margin`` anywhere in the ball.
3. ``attack``: batched PGD in the latent ball finds a point another class wins.
4. ``split``: input splitting, batched across samples: bisect latent boxes along the
   dimension with the largest gradient x width, bound the halves, drop the proved ones,
   try every box centre as a counterexample; a sample whose boxes are all proved is
   certified, one that needs more than ``split_boxes`` boxes moves on.
5. ``exact``: :func:`exactverify.verify` (bounds, then the big-M MILP) within a per-sample
   time limit.

Soundness: ``certified`` only comes from bounds or an infeasible MILP; ``violated`` only with
a counterexample that passed the float64 re-check on the IR (and on the torch model when one
is given) via :func:`exactverify.queries.stages.accept_point`; everything else is ``unknown``.
As in :func:`exactverify.verify`, a proof says no other class wins by ``margin`` (default
1e-5), and a counterexample must make another class win strictly in float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch

from ..attacks import pgd
from ..bounds import bounds, check_device
from ..errors import InvalidInputError
from ..ir import Network
from ..queries import VerdictStatus, verify
from ..queries.checks import BACKENDS, BOUND_METHODS, Query, check_eps, make_query
from ..queries.stages import accept_point
from ..regions import bisect_boxes, box, linf_ball
from ..specs import DEFAULT_MARGIN, other_class_wins
from ..vnncomp.solve import refuted_disjuncts, spec_network

STAGES = ("centre", "bounds", "attack", "split", "exact")


class SampleStatus(str, Enum):
    """How one latent sample's local property ended."""

    CERTIFIED = "certified"
    VIOLATED = "violated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CascadeOptions:
    """Knobs of the cascade; the defaults are the ones the global-robustness benchmark uses."""

    bounds_method: str = "forward"
    backward_rows: int = 16  # forward bounds: CROWN on values this small (the spec rows)
    bounds_batch: int = 512
    attack_steps: int = 30
    attack_restarts: int = 2
    split_boxes: int = 256  # boxes per sample before it moves to the exact stage; 0 skips the stage
    split_batch: int = 256
    exact_time_limit: float | None = 30.0  # seconds per sample; 0 skips the stage, None: no limit
    exact_bounds_method: str = "forward"
    backend: str = "scip"
    margin: float = DEFAULT_MARGIN
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bounds_method not in ("interval", "crown", "forward"):
            raise InvalidInputError(f"bounds_method must be interval, crown or forward, got {self.bounds_method!r}")
        if self.exact_bounds_method not in BOUND_METHODS:
            raise InvalidInputError(f"exact_bounds_method must be one of {BOUND_METHODS}")
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("backward_rows", "attack_steps", "attack_restarts", "split_boxes"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise InvalidInputError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("bounds_batch", "split_batch"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise InvalidInputError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.exact_time_limit is not None:
            check_eps(self.exact_time_limit, "exact_time_limit")
        if not (math.isfinite(self.margin) and self.margin > 0):
            raise InvalidInputError(f"margin must be finite and > 0, got {self.margin!r}")
        check_device(self.device)


@dataclass
class SampleOutcome:
    """The verdict on one latent sample and the stage that reached it."""

    index: int
    status: SampleStatus
    stage: str
    reason: str
    counterexample: list[float] | None = None  # the latent z' (violated only)
    validated: bool | None = None
    model_validated: bool | None = None

    def record(self) -> dict:
        return {"id": str(self.index), "index": self.index, "status": self.status.value, "stage": self.stage,
                "reason": self.reason, "counterexample": self.counterexample, "validated": self.validated,
                "model_validated": self.model_validated}


@dataclass
class StageStats:
    """Per-stage accounting: samples that entered, what it decided, time spent."""

    entered: int = 0
    certified: int = 0
    violated: int = 0
    seconds: float = 0.0

    def add(self, other: "StageStats") -> None:
        self.entered += other.entered
        self.certified += other.certified
        self.violated += other.violated
        self.seconds += other.seconds


def empty_stats() -> dict[str, StageStats]:
    return {name: StageStats() for name in STAGES}


@dataclass
class _Batch:
    """The samples still undecided, and the outcomes reported so far."""

    indices: list[int]
    latents: torch.Tensor  # (B, d) float64 on the device
    report: Callable[[SampleOutcome], None]
    outcomes: dict[int, SampleOutcome] = field(default_factory=dict)

    def decide(self, position: int, outcome: SampleOutcome) -> None:
        self.outcomes[self.indices[position]] = outcome
        self.report(outcome)

    def open_positions(self) -> list[int]:
        return [k for k, i in enumerate(self.indices) if i not in self.outcomes]


class Cascade:
    """Decides the local property of latent samples on the composed network ``network``."""

    def __init__(self, network: Network, label: int, eps: float, options: CascadeOptions | None = None,
                 model: torch.nn.Module | None = None) -> None:
        if not isinstance(network, Network):
            raise InvalidInputError(f"network must be an exactverify Network, got {type(network).__name__}")
        if len(network.input_shape) != 1:
            raise InvalidInputError(f"the latent input must be flat, got input shape {network.input_shape}")
        self.options = options or CascadeOptions()
        self.eps = check_eps(eps)
        if self.eps == 0:
            raise InvalidInputError("eps must be > 0 for a neighbourhood property")
        if isinstance(label, bool) or not (isinstance(label, (int, np.integer))
                                           and 0 <= int(label) < network.output_size):
            raise InvalidInputError(f"label={label!r} is not a class index in [0, {network.output_size})")
        if network.input_domain is not None:  # every stage works on the whole latent ball
            raise InvalidInputError(
                f"{network.name} declares an input (latent) domain, but the cascade decides the latent eps-ball "
                "unclipped and the sampler draws z ~ N(0, I) over all of the latent space; use a generator "
                "without input_domain")
        self.network, self.label, self.model = network, int(label), model
        self.spec = other_class_wins(self.label, network.output_size, self.options.margin)
        self.extended, self.owner = spec_network(network, self.spec)
        self.device = torch.device(self.options.device)
        self.stream = torch.Generator().manual_seed(self.options.seed)

    # ------------------------------------------------------------------ helpers
    def query(self, latent: torch.Tensor) -> Query:
        return make_query(self.network, latent.detach().cpu().numpy(), "linf", None, self.label, None,
                          self.options.margin, self.model)

    def _accept(self, batch: _Batch, position: int, point: torch.Tensor, stage: str) -> bool:
        """Re-check ``point`` as a counterexample for the sample at ``position``; True if it holds."""
        finding = accept_point(self.query(batch.latents[position]), point.detach().cpu().numpy(), self.eps, stage)
        if finding.outcome != "not_robust":
            return False
        batch.decide(position, SampleOutcome(batch.indices[position], SampleStatus.VIOLATED, stage, finding.reason,
                                             [float(v) for v in finding.point.reshape(-1)], finding.ir_ok,
                                             finding.model_ok))
        return True

    def _refuted(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the bounds prove no other class wins by ``margin`` on box ``[low, high]``."""
        proved = []
        options = {"backward_rows": self.options.backward_rows} if self.options.bounds_method == "forward" else {}
        for start in range(0, low.shape[0], self.options.bounds_batch):
            part = slice(start, start + self.options.bounds_batch)
            region = box(low[part], high[part], self.network.input_shape)
            result = bounds(self.extended, region, method=self.options.bounds_method, **options)
            proved.append(refuted_disjuncts(result.lower[-1].cpu(), self.owner, len(self.spec.disjuncts)).all(1))
        return torch.cat(proved) if proved else torch.zeros(0, dtype=torch.bool)

    # ------------------------------------------------------------------ stages
    def centre(self, batch: _Batch) -> None:
        with torch.no_grad():
            logits = self.network.forward(batch.latents)
        others = logits.clone()
        others[:, self.label] = -math.inf
        for position in torch.nonzero(others.max(1).values > logits[:, self.label]).reshape(-1).tolist():
            self._accept(batch, position, batch.latents[position], "centre")

    def bounds_stage(self, batch: _Batch) -> None:
        open_ = batch.open_positions()
        if not open_:
            return
        z = batch.latents[open_]
        region = linf_ball(z, self.eps, shape=self.network.input_shape)
        proved = self._refuted(region.lower, region.upper)
        for position, ok in zip(open_, proved.tolist(), strict=True):
            if ok:
                batch.decide(position, SampleOutcome(batch.indices[position], SampleStatus.CERTIFIED, "bounds",
                                                     f"proved by {self.options.bounds_method} bounds"))

    def attack_stage(self, batch: _Batch) -> None:
        open_ = batch.open_positions()
        if not open_ or self.options.attack_steps == 0:
            return
        eps = torch.full((len(open_),), self.eps, dtype=torch.float64, device=self.device)
        points, scores = pgd(self.network, batch.latents[open_], eps,
                             lambda y: self.spec.slack(y), norm="linf", steps=self.options.attack_steps,
                             restarts=max(self.options.attack_restarts, 1), generator=self.stream)
        for k, position in enumerate(open_):
            if float(scores[k]) >= 0:
                self._accept(batch, position, points[k], "attack")

    def _split_dims(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Per box, the latent dimension whose halving should help most: |d slack / dz| x width
        at the box centre (only affects speed, never soundness)."""
        centre = ((low + high) / 2).requires_grad_(True)
        slack = self.spec.slack(self.network.forward(centre))
        (grad,) = torch.autograd.grad(slack.sum(), centre)
        width = high - low
        return (grad.abs() * width + 1e-12 * width).argmax(1)

    def split_stage(self, batch: _Batch) -> None:
        open_ = batch.open_positions()
        if not open_ or self.options.split_boxes == 0:
            return
        z = batch.latents[open_]
        region = linf_ball(z, self.eps, shape=self.network.input_shape)
        low, high = region.lower, region.upper
        owner = torch.arange(len(open_))
        used = torch.zeros(len(open_), dtype=torch.long)
        gave_up = torch.zeros(len(open_), dtype=torch.bool)
        done = torch.zeros(len(open_), dtype=torch.bool)  # violated
        while low.shape[0]:
            take = slice(max(low.shape[0] - max(self.options.split_batch // 2, 1), 0), low.shape[0])
            p_low, p_high, p_owner = low[take], high[take], owner[take]
            low, high, owner = low[: take.start], high[: take.start], owner[: take.start]
            c_low, c_high = bisect_boxes(p_low, p_high, self._split_dims(p_low, p_high))
            c_owner = torch.cat([p_owner, p_owner])
            used.index_add_(0, c_owner, torch.ones_like(c_owner))
            keep = ~self._refuted(c_low, c_high)
            keep &= ~(done | gave_up)[c_owner]
            with torch.no_grad():
                centres = (c_low + c_high) / 2
                slack = self.spec.slack(self.network.forward(centres)).cpu()
            for k in torch.nonzero(keep & (slack >= 0)).reshape(-1).tolist():
                sample = int(c_owner[k])
                if not done[sample] and self._accept(batch, open_[sample], centres[k], "split"):
                    done[sample] = True
            gave_up |= (used > self.options.split_boxes) & ~done
            keep &= ~(done | gave_up)[c_owner]
            on_device = keep.to(self.device)
            low, high = torch.cat([low, c_low[on_device]]), torch.cat([high, c_high[on_device]])
            owner = torch.cat([owner, c_owner[keep]])
            live = ~(done | gave_up)[owner]
            low, high, owner = low[live.to(self.device)], high[live.to(self.device)], owner[live]
        for sample, position in enumerate(open_):
            if not (done[sample] or gave_up[sample]):
                batch.decide(position, SampleOutcome(batch.indices[position], SampleStatus.CERTIFIED, "split",
                                                     f"proved by input splitting ({int(used[sample])} boxes)"))

    def exact_stage(self, batch: _Batch) -> None:
        limit = self.options.exact_time_limit
        for position in batch.open_positions():
            index = batch.indices[position]
            if limit == 0:
                batch.decide(position, SampleOutcome(index, SampleStatus.UNKNOWN, "exact", "exact stage disabled"))
                continue
            verdict = verify(self.network, batch.latents[position].detach().cpu().numpy(), self.eps, "linf",
                             label=self.label, domain=None, margin=self.options.margin, backend=self.options.backend,
                             bounds_method=self.options.exact_bounds_method, time_limit=limit, model=self.model,
                             attack_first=False)
            if verdict.status == VerdictStatus.ROBUST:
                outcome = SampleOutcome(index, SampleStatus.CERTIFIED, "exact", verdict.reason)
            elif verdict.status == VerdictStatus.NOT_ROBUST:
                outcome = SampleOutcome(index, SampleStatus.VIOLATED, "exact", verdict.reason,
                                        [float(v) for v in verdict.counterexample.reshape(-1)], verdict.validated,
                                        verdict.model_validated)
            else:
                outcome = SampleOutcome(index, SampleStatus.UNKNOWN, "exact", verdict.reason)
            batch.decide(position, outcome)

    # ------------------------------------------------------------------ driver
    def run(self, latents, indices: list[int] | None = None,
            report: Callable[[SampleOutcome], None] | None = None) -> tuple[list[SampleOutcome], dict[str, StageStats]]:
        """Decide every latent centre of ``latents`` (B, d); ``report`` sees each outcome as it
        is reached (to store it at once). Returns outcomes in input order and per-stage stats."""
        z = torch.as_tensor(latents, dtype=torch.float64)
        if z.dim() != 2 or z.shape[1] != self.network.input_size:
            raise InvalidInputError(f"latents must have shape (B, {self.network.input_size}), got {tuple(z.shape)}")
        if not bool(torch.isfinite(z).all()):
            raise InvalidInputError("latents contain NaN or infinite values")
        indices = list(range(z.shape[0])) if indices is None else [int(i) for i in indices]
        if len(indices) != z.shape[0]:
            raise InvalidInputError("indices must have one entry per latent")
        batch = _Batch(indices, z.to(self.device), report or (lambda outcome: None))
        stats = empty_stats()
        stages = {"centre": self.centre, "bounds": self.bounds_stage, "attack": self.attack_stage,
                  "split": self.split_stage, "exact": self.exact_stage}
        for name in STAGES:
            before = dict(batch.outcomes)
            entered = len(batch.open_positions())
            if entered == 0:
                break
            start = time.perf_counter()
            stages[name](batch)
            new = [o for i, o in batch.outcomes.items() if i not in before]
            stats[name] = StageStats(entered, sum(o.status == SampleStatus.CERTIFIED for o in new),
                                     sum(o.status == SampleStatus.VIOLATED for o in new), time.perf_counter() - start)
        return [batch.outcomes[i] for i in indices], stats
