"""Command line: ``exactverify global-robustness`` and ``exactverify global-correctness``.

Models are given as a path (.onnx or .nnet, anything :func:`exactverify.load` reads) or as a
built-in name: ``digits8:3`` / ``mnist:3`` for the generator of digit 3, ``digits8:small`` or
``mnist:medium-aug`` for a classifier (MNIST ones must have been trained with
``benchmarks/train_generative.py``). Torch pickles are never loaded from the command line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..errors import InvalidInputError


def _builtin(spec: str, kind: str):
    from ..generative.models import load_classifier, load_generator

    dataset, _, name = spec.partition(":")
    if kind == "generator":
        if not name.isdigit():
            raise InvalidInputError(f"generator {spec!r}: expected DATASET:DIGIT, e.g. digits8:3")
        return load_generator(int(name), dataset).double()
    capacity, _, variant = name.partition("-")
    if variant not in ("", "aug", "std"):
        raise InvalidInputError(f"classifier {spec!r}: expected DATASET:CAPACITY[-aug], e.g. mnist:small-aug")
    return load_classifier(capacity, variant == "aug", dataset).double()


def load_model(spec: str, kind: str):
    """A built-in ``DATASET:NAME`` torch module, or the network at a model path."""
    from ..loaders import load

    if spec.split(":")[0] in ("digits8", "mnist") and not Path(spec).exists():
        return _builtin(spec, kind)
    return load(spec)


def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="path (.onnx/.nnet) or digits8:D / mnist:D")
    parser.add_argument("--classifier", required=True, help="path or digits8:CAPACITY[-aug] / mnist:...")
    parser.add_argument("--label", type=int, required=True, help="the class the generator draws")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--device", default="cpu", help="torch device for sampling, bounds and attacks")
    parser.add_argument("--json", dest="json_out", help="write the full report as JSON here ('-' for stdout)")


def add_global_parsers(sub) -> None:
    robust = sub.add_parser("global-robustness", help="(eps, delta)-global robustness over a generator, certified")
    _models(robust)
    robust.add_argument("--eps", type=float, required=True, help="latent L-inf radius")
    robust.add_argument("--batch-size", type=int, default=500)
    robust.add_argument("--target-width", type=float, default=None, help="stop once the interval is this narrow")
    robust.add_argument("--store", help="JSONL file: every outcome is written at once; a rerun resumes")
    robust.add_argument("--exact-time-limit", type=float, default=20.0, help="MILP seconds per sample")
    robust.add_argument("--split-boxes", type=int, default=1024, help="input-splitting boxes per sample")
    robust.add_argument("--backend", choices=("scip", "ortools", "z3"), default="scip")
    robust.add_argument("--subsample-unknowns", type=int, default=0)
    robust.add_argument("--progress", action="store_true")
    correct = sub.add_parser("global-correctness", help="P(C(G(z)) = label) with a Clopper-Pearson interval")
    _models(correct)


def handle_global(args: argparse.Namespace) -> int:
    if args.command == "global-correctness":
        from .correctness import global_correctness

        generator, classifier = load_model(args.generator, "generator"), load_model(args.classifier, "classifier")
        generator, classifier = _as_module(generator), _as_module(classifier)
        result = global_correctness(generator, classifier, args.label, args.samples, device=args.device,
                                    confidence=args.confidence, seed=args.seed)
        payload = result.summary()
        summary = (f"P(C(G(z)) = {args.label}) = {result.estimate:.4f}, {100 * args.confidence:g}% interval "
                   f"[{result.interval.low:.4f}, {result.interval.high:.4f}] from {result.total} samples")
    else:
        from .cascade import CascadeOptions
        from .sampler import global_robustness

        options = CascadeOptions(exact_time_limit=args.exact_time_limit, split_boxes=args.split_boxes,
                                 backend=args.backend, device=args.device, seed=args.seed)
        report = global_robustness(load_model(args.generator, "generator"), load_model(args.classifier, "classifier"),
                                   args.label, args.eps, samples=args.samples, batch_size=args.batch_size,
                                   options=options, seed=args.seed, confidence=args.confidence,
                                   target_width=args.target_width, store=args.store,
                                   subsample_unknowns=args.subsample_unknowns, progress=args.progress)
        payload = report.to_json()
        iv = report.interval
        summary = (f"{report.samples} samples: {report.certified} certified, {report.violated} violated, "
                   f"{report.unknown} unknown; P(robust at eps={args.eps:g}) in [{iv.low:.4f}, {iv.high:.4f}] "
                   f"({100 * iv.confidence:.2f}% confidence) in {report.seconds:.1f} s")
        payload["stages"] = {k: asdict(v) for k, v in report.stages.items()}
    text = json.dumps(payload, indent=1, default=str)
    if args.json_out == "-":
        print(text)
        return 0
    if args.json_out:
        Path(args.json_out).write_text(text)
    print(summary)
    return 0


def _as_module(model):
    """Global correctness runs torch modules; a loaded Network is wrapped by its float64 forward."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model

    class _Forward(torch.nn.Module):
        def __init__(self, network) -> None:
            super().__init__()
            self.network = network
            # never called: it only records the input width, which latent_dim_of reads from the first Linear
            self.input_width_marker = torch.nn.Linear(network.input_size, 1).requires_grad_(False)

        def forward(self, x):
            return self.network.forward(x.to(torch.float64)).reshape(x.shape[0], -1)

    return _Forward(model)
