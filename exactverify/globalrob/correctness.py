"""Global correctness of a classifier over a generator: Monte Carlo estimate with an exact interval.

Fijalkow and Gupta call a classifier ``C`` globally correct for the generator ``G_c`` of
class ``c`` when ``P_z(C(G_c(z)) = c)`` is close to 1, ``z ~ N(0, I)``. Their code draws
one latent at a time and reports a point estimate. Here latents are drawn in batches on
any torch device, and the estimate comes with a Clopper-Pearson interval.

A sample counts as correct only when the logit of ``c`` is *strictly* larger than every
other logit; a tie counts as a misclassification (ties have probability zero for a
continuous latent, but they must not be rounded in the classifier's favour).

Several classifiers can be scored on the *same* latents (:func:`correctness_table`): the
generator runs once per batch, which halves the cost, and the paired comparison between
classifiers is less noisy than independent draws.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ..errors import InvalidInputError, ShapeMismatchError
from .intervals import DEFAULT_CONFIDENCE, Interval, clopper_pearson
from .latent import latent_dim_of, latent_stream, sample_latent

#: Default number of latents pushed through ``C∘G`` at once.
DEFAULT_BATCH_SIZE = 4096


@dataclass(frozen=True)
class CorrectnessResult:
    """Outcome of one Monte Carlo estimate of ``P_z(C(G(z)) = label)``.

    ``misclassified_*`` hold the first ``keep_misclassified`` failures in draw order
    (CPU tensors): latents (k, d), flat images (k, D) and the classifier's argmax (k,)."""

    label: int
    correct: int
    total: int
    interval: Interval
    misclassified_latents: torch.Tensor
    misclassified_images: torch.Tensor
    misclassified_predictions: torch.Tensor
    seconds: float
    device: str
    batch_size: int
    seed: int
    dtype: str = "float32"

    @property
    def estimate(self) -> float:
        return self.correct / self.total

    @property
    def samples_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> dict:
        """A JSON-ready record (no tensors)."""
        return {
            "label": self.label, "correct": self.correct, "total": self.total, "estimate": self.estimate,
            "ci_low": self.interval.low, "ci_high": self.interval.high, "confidence": self.interval.confidence,
            "misclassified_kept": int(self.misclassified_predictions.numel()),
            "misclassified_predictions": [int(p) for p in self.misclassified_predictions.tolist()],
            "seconds": self.seconds, "samples_per_second": self.samples_per_second, "device": self.device,
            "batch_size": self.batch_size, "seed": self.seed, "dtype": self.dtype,
        }


@dataclass
class CorrectnessTable:
    """The paper's layout: one row per classifier, one column per generator (digit),
    plus the test-set accuracy the caller supplies."""

    results: dict[str, dict[int, CorrectnessResult]]
    test_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def classifiers(self) -> list[str]:
        return list(self.results)

    @property
    def digits(self) -> list[int]:
        seen: list[int] = []
        for row in self.results.values():
            seen += [d for d in row if d not in seen]
        return sorted(seen)

    def rows(self) -> list[dict]:
        """One flat record per (classifier, digit) cell."""
        out = []
        for name, row in self.results.items():
            for digit, result in row.items():
                out.append({"classifier": name, "digit": digit, **result.summary(),
                            "test_accuracy": self.test_accuracy.get(name)})
        return out

    def markdown(self, with_interval: bool = True) -> str:
        """Markdown table, percentages; each cell ``estimate [low, high]`` when ``with_interval``."""
        digits = self.digits
        head = ["classifier"] + [f"GAN {d}" for d in digits] + ["test acc."]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, row in self.results.items():
            cells = [name]
            for d in digits:
                r = row.get(d)
                if r is None:
                    cells.append("n/a")
                elif with_interval:
                    cells.append(f"{100 * r.estimate:.2f} [{100 * r.interval.low:.2f}, {100 * r.interval.high:.2f}]")
                else:
                    cells.append(f"{100 * r.estimate:.2f}")
            acc = self.test_accuracy.get(name)
            cells.append("n/a" if acc is None else f"{100 * acc:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def strictly_correct(logits: torch.Tensor, label: int) -> torch.Tensor:
    """(B,) bool: the logit of ``label`` is strictly larger than every other logit."""
    others = logits.clone()
    others[:, label] = -float("inf")
    return logits[:, label] > others.max(dim=1).values


def prepared(module: nn.Module, device, dtype: torch.dtype) -> nn.Module:
    """``module`` in eval mode on ``device`` in ``dtype``: the module itself when it already
    is, else a deep copy (the caller's model is never moved or mutated)."""
    params = list(module.parameters())
    same = (not module.training and all(p.device == torch.device(device) and p.dtype == dtype for p in params))
    if same:
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval()


def _first_linear_in(module: nn.Module) -> int | None:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return int(sub.in_features)
        if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None
    return None


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_composition(generator: nn.Module, classifier: nn.Module, device="cpu",
                      dtype: torch.dtype = torch.float32) -> tuple[int, int, int]:
    """Check that ``classifier`` accepts ``generator``'s flat output; return
    (latent dim, image size, number of classes). Raises ShapeMismatchError naming both widths."""
    if not isinstance(generator, nn.Module):
        raise InvalidInputError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
    if not isinstance(classifier, nn.Module):
        raise InvalidInputError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
    dim = latent_dim_of(generator)
    g = prepared(generator, device, dtype)
    c = prepared(classifier, device, dtype)
    with torch.no_grad():
        try:
            image = g(torch.zeros(1, dim, device=device, dtype=dtype)).reshape(1, -1)
        except RuntimeError as exc:
            raise ShapeMismatchError(f"generator rejects latents of width {dim}: {exc}") from exc
        width = _first_linear_in(classifier)
        if width is not None and width != image.shape[1]:
            raise ShapeMismatchError(f"generator output has {image.shape[1]} values per sample but the classifier's "
                                     f"first Linear expects {width}")
        try:
            logits = c(image)
        except RuntimeError as exc:
            raise ShapeMismatchError(f"classifier rejects the generator's output of {image.shape[1]} values: "
                                     f"{exc}") from exc
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ShapeMismatchError(f"classifier must output (batch, classes>=2) logits, got shape {tuple(logits.shape)}")
    return dim, int(image.shape[1]), int(logits.shape[1])


def _check_common(samples, batch_size, confidence, keep_misclassified, seed) -> None:
    _check_int("samples", samples, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("keep_misclassified", keep_misclassified, 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise InvalidInputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _score_many(generator: nn.Module, classifiers: Mapping[str, nn.Module], label: int, samples: int, *,
                batch_size: int, device, confidence: float, seed: int, keep_misclassified: int,
                dtype: torch.dtype) -> dict[str, CorrectnessResult]:
    """Score every classifier on the same ``samples`` latents of ``generator``."""
    _check_common(samples, batch_size, confidence, keep_misclassified, seed)
    if not classifiers:
        raise InvalidInputError("classifiers must not be empty")
    dim = None
    for name, clf in classifiers.items():
        d, _, classes = check_composition(generator, clf, device, dtype)
        dim = d
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
            raise InvalidInputError(f"label must be an int in [0, {classes}) for classifier {name!r}, got {label!r}")
    g = prepared(generator, device, dtype)
    cs = {name: prepared(c, device, dtype) for name, c in classifiers.items()}
    stream = latent_stream(seed)
    correct = dict.fromkeys(cs, 0)
    seconds = dict.fromkeys(cs, 0.0)
    kept: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {n: [] for n in cs}
    kept_count = dict.fromkeys(cs, 0)
    gen_seconds = 0.0
    done = 0
    with torch.no_grad():
        while done < samples:
            count = min(batch_size, samples - done)
            _sync(device)
            start = time.perf_counter()
            z = sample_latent(count, dim, stream, device, dtype)
            images = g(z).reshape(count, -1)
            _sync(device)
            gen_seconds += time.perf_counter() - start
            for name, c in cs.items():
                start = time.perf_counter()
                logits = c(images)
                ok = strictly_correct(logits, label)
                correct[name] += int(ok.sum())
                need = keep_misclassified - kept_count[name]
                if need > 0:
                    bad = (~ok).nonzero().flatten()[:need]
                    if bad.numel():
                        kept[name].append((z[bad].cpu(), images[bad].cpu(), logits[bad].argmax(1).cpu()))
                        kept_count[name] += int(bad.numel())
                _sync(device)
                seconds[name] += time.perf_counter() - start
            done += count
    results = {}
    for name in cs:
        parts = kept[name]
        zs = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, dim, dtype=dtype)
        xs = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, 0, dtype=dtype)
        ps = torch.cat([p[2] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
        results[name] = CorrectnessResult(
            label=label, correct=correct[name], total=samples,
            interval=clopper_pearson(correct[name], samples, confidence),
            misclassified_latents=zs, misclassified_images=xs, misclassified_predictions=ps,
            seconds=gen_seconds + seconds[name], device=str(device), batch_size=batch_size, seed=seed,
            dtype=str(dtype).replace("torch.", ""))
    return results


def global_correctness(generator: nn.Module, classifier: nn.Module, label: int, samples: int, *,
                       batch_size: int = DEFAULT_BATCH_SIZE, device="cpu", confidence: float = DEFAULT_CONFIDENCE,
                       seed: int = 0, keep_misclassified: int = 16,
                       dtype: torch.dtype = torch.float32) -> CorrectnessResult:
    """Estimate ``P_z(C(G(z)) = label)`` from ``samples`` latents ``z ~ N(0, I)`` drawn with ``seed``.

    The interval is Clopper-Pearson at ``confidence``. The same seed gives the same
    latents on every device (they are drawn on the CPU, then moved)."""
    return _score_many(generator, {"classifier": classifier}, label, samples, batch_size=batch_size, device=device,
                       confidence=confidence, seed=seed, keep_misclassified=keep_misclassified,
                       dtype=dtype)["classifier"]


def correctness_table(generators: Mapping[int, nn.Module], classifiers: Mapping[str, nn.Module], samples: int, *,
                      test_accuracy: Mapping[str, float] | None = None, seed: int = 0,
                      batch_size: int = DEFAULT_BATCH_SIZE, device="cpu", confidence: float = DEFAULT_CONFIDENCE,
                      keep_misclassified: int = 16, dtype: torch.dtype = torch.float32) -> CorrectnessTable:
    """Global correctness of every classifier against every generator (keyed by its class).

    Generator ``d`` uses latent seed ``seed + d``; all classifiers see the same latents for
    a given generator, so the generator runs once per batch. The other arguments are as
    in :func:`global_correctness`."""
    if not generators:
        raise InvalidInputError("generators must not be empty")
    if not classifiers:
        raise InvalidInputError("classifiers must not be empty")
    for key in generators:
        if isinstance(key, bool) or not isinstance(key, int):
            raise InvalidInputError(f"generators must be keyed by their class (an int), got key {key!r}")
    results: dict[str, dict[int, CorrectnessResult]] = {name: {} for name in classifiers}
    for digit in sorted(generators):
        cell = _score_many(generators[digit], classifiers, digit, samples, seed=seed + digit, batch_size=batch_size,
                           device=device, confidence=confidence, keep_misclassified=keep_misclassified, dtype=dtype)
        for name, result in cell.items():
            results[name][digit] = result
    return CorrectnessTable(results, dict(test_accuracy or {}))
