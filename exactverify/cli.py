"""Command line: ``exactverify verify | distortion | demo | campaign | vnncomp | global-robustness |
global-correctness`` with JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .errors import ExactVerifyError, Interrupted, InvalidInputError
from .queries.checks import BOUND_METHODS
from .zoo import BUILTIN_MODELS, resolve_model


def parse_point(text: str) -> np.ndarray:
    """``--input``: a ``.npy`` file, a text file of numbers (comma or whitespace separated),
    or the numbers themselves, comma separated (``0.6,-0.5,0,0.45,-0.45``)."""
    path = Path(text)
    if path.suffix == ".npy" and not path.is_file():
        raise InvalidInputError(f"--input: no such file {text!r}")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.dtype.kind in "biuf":
                return array
            raise InvalidInputError(f"--input {text!r}: the .npy array has dtype {array.dtype}, expected numbers")
        if _is_file(path):
            return np.loadtxt(path, delimiter="," if "," in path.read_text() else None, ndmin=1)
        if "," in text or _is_number(text):
            return np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except InvalidInputError:
        raise
    except ValueError as exc:
        raise InvalidInputError(f"--input {text!r}: not a list of numbers ({exc})") from exc
    raise InvalidInputError(f"--input: {text!r} is neither a file nor comma-separated numbers")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long: inline numbers, not a path
        return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _input(args) -> np.ndarray:
    if args.input is not None:
        return parse_point(args.input)
    if args.digits_index is not None:
        from .zoo import load_digits_data

        images = load_digits_data()[2]
        if not 0 <= args.digits_index < len(images):
            raise InvalidInputError(f"--digits-index must be in 0..{len(images) - 1} (the bundled digits' test "
                                    f"images), got {args.digits_index}")
        return images[args.digits_index]
    raise ExactVerifyError("give --input (a .npy or text file, or comma-separated numbers) or --digits-index K")


#: Output-file flags (argparse dest -> flag); their folders are made before anything runs.
OUTPUT_FLAGS = {"json_out": "--json", "out": "--out", "store": "--store"}


def prepare_output(path: str | None, flag: str) -> None:
    """Make the folder of an output file up front, as the stores do, so that a path that cannot
    be written fails before a long query runs, with a message naming ``flag``."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"{flag} {path!r} is a directory, not a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"{flag} {path!r}: cannot create its folder {str(target.parent)!r} "
                                f"({exc.strerror or exc})") from exc
    if not os.access(target.parent, os.W_OK):
        raise InvalidInputError(f"{flag} {path!r}: its folder {str(target.parent)!r} is not writable")


def _check_generative_spec(spec: str, flag: str) -> None:
    """``DATASET:NAME`` specs must name a known dataset (a path is checked when it is loaded)."""
    from .generative.models import DATASETS

    dataset, colon, _ = spec.partition(":")
    if (colon and dataset not in DATASETS and not Path(spec).exists()
            and Path(spec).suffix.lower() not in (".onnx", ".nnet")):
        raise InvalidInputError(f"{flag} {spec!r}: unknown dataset {dataset!r}; known: {', '.join(DATASETS)} "
                                "(or give a .onnx / .nnet path)")


def check_arguments(args: argparse.Namespace) -> None:
    """Checks made before any command runs: devices, generative model names, the demo's image
    count, then the output files' folders (made here, as the stores make theirs)."""
    if args.command in ("global-robustness", "global-correctness"):
        from .bounds import check_device

        check_device(args.device, "--device")
        _check_generative_spec(args.generator, "--generator")
        _check_generative_spec(args.classifier, "--classifier")
    if args.command == "demo":
        from .demo import check_images

        check_images(args.images, "--images")
    summary = args.command == "campaign" and args.campaign_command == "summary"  # its store is an input
    for dest, flag in OUTPUT_FLAGS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and not (summary and dest == "store"):
            prepare_output(value, flag)


def describe_step(step) -> str:
    """One step of a query's history (or an in-flight ``running`` report) for a progress line."""
    at = "" if step.eps is None else f" at {step.eps:.6g}"
    nodes = "" if step.nodes is None else f", {step.nodes} nodes"
    detail = f": {step.raw_status}" if step.outcome == "running" and step.raw_status else ""
    return f"{step.stage}{at} -> {step.outcome} ({step.seconds:.1f} s{nodes}){detail}"


class ProgressLines:
    """``minimal_distortion``'s progress callback for the command line: one line per step,
    with the time so far, the proved bracket and what the last step decided (or, while a
    MILP runs, its nodes and bounds so far)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.start = time.perf_counter()
        self.lock = threading.Lock()  # split sub-MILPs report from worker threads

    def __call__(self, lower: float, upper: float, step) -> None:
        what = "" if step is None else f"  last: {describe_step(step)}"
        self.write(f"distortion in [{lower:.6g}, {upper:.6g}]{what}")

    def write(self, text: str) -> None:
        with self.lock:
            print(f"[{time.perf_counter() - self.start:7.1f} s] {text}", file=self.stream, flush=True)


class StepLines(ProgressLines):
    """``verify``'s progress callback for the command line: one line per step or in-flight report."""

    def __call__(self, step) -> None:  # type: ignore[override]
        self.write(describe_step(step))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model path (.onnx, .nnet) or built-in name: " + ", ".join(BUILTIN_MODELS))
    parser.add_argument("--input", help="input point: a .npy or text file, or comma-separated numbers")
    parser.add_argument("--digits-index", type=int, help="use this test image of the bundled 8x8 digits")
    parser.add_argument("--norm", choices=("linf", "l1"), default="linf")
    parser.add_argument("--target", type=int, default=None, help="target class (default: untargeted)")
    parser.add_argument("--label", type=int, default=None, help="true label (default: the network's argmax)")
    parser.add_argument("--domain", type=float, nargs=2, metavar=("LOW", "HIGH"), help="input domain box")
    parser.add_argument("--backend", choices=("scip", "ortools", "z3"), default="scip")
    parser.add_argument("--bounds", choices=BOUND_METHODS, default="crown")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the whole query")
    parser.add_argument("--threads", type=int, default=1,
                        help="split each decision MILP into ReLU-phase sub-domains solved by this many threads")
    parser.add_argument("--json", dest="json_out", help="write the result as JSON to this file ('-' = stdout)")


def _emit(payload: dict, json_out: str | None, summary: str) -> None:
    text = json.dumps(payload, indent=1)
    if json_out == "-":
        print(text)
        return
    if json_out:
        Path(json_out).write_text(text)
    print(summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exactverify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="prove robustness within eps, or find a re-checked counterexample")
    _common(verify)
    verify.add_argument("--eps", type=float, required=True)
    verify.add_argument("--quiet", action="store_true", help="no progress lines (steps, running MILPs) on stderr")
    dist = sub.add_parser("distortion", help="provably minimal adversarial distortion")
    _common(dist)
    dist.add_argument("--method", choices=("bisection", "direct"), default="bisection")
    dist.add_argument("--tol", type=float, default=1e-3)
    dist.add_argument("--quiet", action="store_true", help="no progress lines (anytime bounds) on stderr")
    demo = sub.add_parser("demo", help="minimal adversarial examples on the bundled 8x8 digits")
    demo.add_argument("--images", type=int, default=3)
    demo.add_argument("--out", default="demo.png", help="PNG grid path")
    demo.add_argument("--json", dest="json_out", default="demo.json")
    demo.add_argument("--backend", choices=("scip", "ortools"), default="scip")
    demo.add_argument("--time-limit", type=float, default=60.0, help="seconds per query")
    demo.add_argument("--quiet", action="store_true")
    from .campaign.cli import add_campaign_parser

    add_campaign_parser(sub)
    from .vnncomp.cli import add_vnncomp_parser

    add_vnncomp_parser(sub)
    from .globalrob.cli import add_global_parsers

    add_global_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The networks are small: torch's intra-op threads cost more than they give (and
    # contend with the solver), so the command line runs torch single-threaded.
    import torch

    torch.set_num_threads(1)
    try:
        check_arguments(args)
        if args.command == "vnncomp":
            from .vnncomp.cli import handle_vnncomp

            return handle_vnncomp(args)
        if args.command in ("global-robustness", "global-correctness"):
            from .globalrob.cli import handle_global

            return handle_global(args)
        if args.command == "campaign":
            from .campaign.cli import handle_campaign

            return handle_campaign(args)
        if args.command == "demo":
            from .demo import run_demo

            rows = run_demo(args.images, args.out, args.json_out, args.backend, args.time_limit, quiet=args.quiet)
            proved = sum(r["status"] == "optimal" for r in rows)
            print(f"{proved}/{len(rows)} queries proved optimal; grid: {args.out}; rows: {args.json_out}")
            return 0
        from .queries import minimal_distortion, verify

        network, module, builtin_domain = resolve_model(args.model)
        domain = tuple(args.domain) if args.domain else builtin_domain
        x = _input(args)
        common = dict(norm=args.norm, target=args.target, label=args.label, domain=domain, backend=args.backend,
                      bounds_method=args.bounds, time_limit=args.time_limit, model=module, threads=args.threads)
        if args.command == "verify":
            verdict = verify(network, x, args.eps, progress=None if args.quiet else StepLines(sys.stderr), **common)
            _emit(verdict.to_dict(), args.json_out, f"{verdict.status.value}: {verdict.reason}")
            return 0
        progress = None if args.quiet else ProgressLines(sys.stderr)
        result = minimal_distortion(network, x, method=args.method, tol=args.tol, progress=progress, **common)
        _emit(result.to_dict(), args.json_out,
              f"{result.status}: minimal {args.norm} distortion in [{result.lower:.6g}, {result.upper:.6g}]")
        return 0
    except ExactVerifyError as exc:
        print(f"exactverify: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # the shell's 130; a single query first says what it proved so far
        if isinstance(exc, Interrupted) and args.command in ("verify", "distortion"):
            result = exc.result
            bounds = f" [{result.lower:.6g}, {result.upper:.6g}]" if hasattr(result, "lower") else ""
            _emit(result.to_dict(), args.json_out, f"unknown{bounds}: {result.reason}")
        else:
            print("exactverify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
