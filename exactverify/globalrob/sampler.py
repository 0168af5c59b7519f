"""(eps, delta)-global robustness of a classifier over a generator, by Monte Carlo with proofs.

Fijalkow and Gupta define the (eps, delta)-global robustness of C for a generator G of class c
as P_z(every z' with ||z' - z||_inf <= eps has C(G(z')) = c) >= 1 - delta, z ~ N(0, I). This
module estimates that probability: latent samples are drawn in batches, each sample's local
property is decided by the :class:`.cascade.Cascade` (certified, violated or unknown), and
the report gives an exact confidence interval in which unknowns widen the bounds
(:func:`.intervals.widened_interval`).

- ``target_width``: stop once the interval is narrower; every look then spends part of the
  error (:func:`.intervals.look_confidence`) so the reported interval keeps its level.
- ``store``: a JSONL file; every outcome is written (fsync'ed) as soon as it is reached and a
  rerun with the same arguments resumes where the last one stopped, nothing lost. Latents
  are drawn from one seeded stream in batch order, so a resumed run sees the same samples.
- ``subsample_unknowns``: decide a uniform random subsample of the unknowns with a longer
  exact budget, for an unbiased (approximate-interval) estimate.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
from tqdm import tqdm

from ..campaign.store import ResultStore, StoreError
from ..compose import compose
from ..errors import InvalidInputError
from ..ir import Network
from ..queries.checks import check_eps
from .cascade import STAGES, Cascade, CascadeOptions, SampleOutcome, SampleStatus, StageStats, empty_stats
from .intervals import (
    DEFAULT_CONFIDENCE,
    Interval,
    SubsampleEstimate,
    look_confidence,
    subsample_estimate,
    widened_interval,
)
from .latent import latent_stream, sample_latent


@dataclass
class GlobalRobustnessReport:
    """Counts, the interval, and where the time went."""

    label: int
    eps: float
    samples: int
    certified: int
    violated: int
    unknown: int
    interval: Interval
    looks: int
    stopped_early: bool
    stages: dict[str, StageStats]
    seconds: float
    batch_size: int
    device: str
    options: dict
    subsample: SubsampleEstimate | None = None
    environment: dict = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    @property
    def unknown_fraction(self) -> float:
        return self.unknown / self.samples if self.samples else 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["samples_per_second"] = self.samples_per_second
        data["unknown_fraction"] = self.unknown_fraction
        data["empirical_low"] = self.certified / self.samples if self.samples else None
        data["empirical_high"] = (self.certified + self.unknown) / self.samples if self.samples else None
        return data


def network_digest(network: Network) -> str:
    """SHA-256 over every layer's kind and parameter arrays (identifies the model in a store)."""
    digest = hashlib.sha256()
    for layer in network.layers:
        digest.update(layer.kind.encode())
        for item in fields(layer):
            value = getattr(layer, item.name)
            if isinstance(value, np.ndarray):
                digest.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()


def _composed(generator, classifier) -> tuple[Network, torch.nn.Module | None]:
    network = compose(generator, classifier)
    model = None
    if isinstance(generator, torch.nn.Module) and isinstance(classifier, torch.nn.Module):
        model = torch.nn.Sequential(generator, classifier).eval()
    return network, model


def _check_arguments(samples, batch_size, target_width, subsample_unknowns) -> None:
    if not (isinstance(samples, int) and samples >= 1):
        raise InvalidInputError(f"samples must be an int >= 1, got {samples!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if target_width is not None and not (isinstance(target_width, (int, float)) and 0 < target_width < 1):
        raise InvalidInputError(f"target_width must lie in (0, 1), got {target_width!r}")
    if not (isinstance(subsample_unknowns, int) and subsample_unknowns >= 0):
        raise InvalidInputError(f"subsample_unknowns must be an int >= 0, got {subsample_unknowns!r}")


class _Records:
    """Outcomes and batch statistics, mirrored into the store when there is one."""

    def __init__(self, store, config: dict) -> None:
        self.store = ResultStore(store) if store is not None else None
        self.samples: dict[int, dict] = {}
        self.stats: dict[str, dict] = {}
        self.extra: dict[str, dict] = {}
        if self.store is None:
            return
        known = self.store.records.get("config")
        if known is None:
            self.store.append({"id": "config", **config})
        elif {k: v for k, v in known.items() if k != "id"} != config:
            self.store.close()
            raise StoreError(f"{store} holds a run with other settings; use another store file")
        for key, record in self.store.records.items():
            if key.isdigit():
                self.samples[int(key)] = record
            elif key.startswith("stats-"):
                self.stats[key] = record
            elif key != "config":
                self.extra[key] = record

    def add(self, record: dict, into: dict, key) -> None:
        into[key] = record
        if self.store is not None:
            self.store.append(record)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def global_robustness(generator, classifier, label: int, eps: float, *, samples: int = 10_000,
                      batch_size: int = 500, options: CascadeOptions | None = None, seed: int = 0,
                      confidence: float = DEFAULT_CONFIDENCE, target_width: float | None = None,
                      store=None, subsample_unknowns: int = 0, subsample_time_limit: float = 120.0,
                      progress: bool = False) -> GlobalRobustnessReport:
    """Estimate P_z(C∘G keeps ``label`` on the whole latent ball of radius ``eps``), z ~ N(0, I).

    ``generator``/``classifier``: torch modules or Networks (see :func:`exactverify.compose`);
    torch modules are also used to re-check every counterexample. ``samples`` is the most to
    draw; ``target_width`` stops earlier. Returns a :class:`GlobalRobustnessReport`.
    """
    _check_arguments(samples, batch_size, target_width, subsample_unknowns)
    eps = check_eps(eps)
    options = options or CascadeOptions()
    network, model = _composed(generator, classifier)
    cascade = Cascade(network, label, eps, options, model)
    subsample_time_limit = check_eps(subsample_time_limit, "subsample_time_limit")
    config = {"label": int(label), "eps": eps, "seed": seed, "batch_size": batch_size, "samples": samples,
              "confidence": confidence, "target_width": target_width,
              "options": {k: v for k, v in asdict(options).items() if k != "device"},
              "network": network_digest(network)}
    records = _Records(store, config)
    stream = latent_stream(seed)
    dim = network.input_size
    stats = empty_stats()
    start = time.perf_counter()
    looks, stopped, interval = 0, False, Interval(0.0, 1.0, confidence, "no samples")
    try:
        batches = range(0, samples, batch_size)
        for first in tqdm(batches, disable=not progress, desc=f"global robustness eps={eps:g}", unit="batch"):
            count = min(batch_size, samples - first)
            latents = sample_latent(count, dim, stream, dtype=torch.float64)
            indices = [first + k for k in range(count) if first + k not in records.samples]
            if indices:
                positions = [i - first for i in indices]

                def report(outcome: SampleOutcome, latents=latents, first=first) -> None:
                    record = outcome.record()
                    record["latent"] = [float(v) for v in latents[outcome.index - first]]
                    records.add(record, records.samples, outcome.index)

                _, batch_stats = cascade.run(latents[positions], indices, report)
                records.add({"id": f"stats-{first}", **{k: asdict(v) for k, v in batch_stats.items()}},
                            records.stats, f"stats-{first}")
            looks += 1
            counts = _counts(records.samples, first + count)
            level = look_confidence(confidence, looks) if target_width is not None else confidence
            interval = widened_interval(*counts, confidence=level)
            if target_width is not None and interval.width <= target_width:
                stopped = first + count < samples
                break
        for record in records.stats.values():
            for name in STAGES:
                stats[name].add(StageStats(**record[name]))
        decided = len([i for i in records.samples if i < first + count])
        certified, violated, unknown = _counts(records.samples, first + count)
        estimate = None
        if subsample_unknowns and unknown:
            estimate = _subsample(cascade, records, first + count, subsample_unknowns, subsample_time_limit,
                                  seed, (certified, violated, unknown), confidence)
    finally:
        records.close()
    return GlobalRobustnessReport(
        label=int(label), eps=eps, samples=decided, certified=certified, violated=violated, unknown=unknown,
        interval=interval, looks=looks, stopped_early=stopped, stages=stats,
        seconds=time.perf_counter() - start, batch_size=batch_size, device=str(options.device),
        options=asdict(options), subsample=estimate, environment=environment())


def _counts(outcomes: dict[int, dict], upto: int) -> tuple[int, int, int]:
    statuses = [record["status"] for index, record in outcomes.items() if index < upto]
    return (statuses.count(SampleStatus.CERTIFIED.value), statuses.count(SampleStatus.VIOLATED.value),
            statuses.count(SampleStatus.UNKNOWN.value))


def _subsample(cascade: Cascade, records: _Records, upto: int, count: int, time_limit: float, seed: int,
               counts: tuple[int, int, int], confidence: float) -> SubsampleEstimate:
    """Decide ``count`` unknowns drawn uniformly (seeded) with ``time_limit`` seconds each."""
    unknown = sorted(i for i, r in records.samples.items() if i < upto and r["status"] == SampleStatus.UNKNOWN.value)
    rng = np.random.default_rng(seed + 1)
    chosen = sorted(rng.choice(unknown, size=min(count, len(unknown)), replace=False).tolist())
    exact = Cascade(cascade.network, cascade.label, cascade.eps,
                    replace(cascade.options, split_boxes=0, attack_steps=0, exact_time_limit=time_limit),
                    cascade.model)
    for index in chosen:
        key = f"sub-{index}"
        if key in records.extra:
            continue
        latent = torch.tensor([records.samples[index]["latent"]], dtype=torch.float64)
        (outcome,), _ = exact.run(latent, [index])
        record = outcome.record()
        record["id"] = key
        records.add(record, records.extra, key)
    results = [records.extra[f"sub-{i}"]["status"] for i in chosen]
    return subsample_estimate(*counts, checked=len(chosen), robust=results.count("certified"),
                              unresolved=results.count("unknown"), confidence=confidence)


def environment() -> dict:
    """Machine and library versions, for benchmark records."""
    from encoders.backends import solver_versions

    return {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "solvers": solver_versions()}
