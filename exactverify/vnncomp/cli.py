"""``exactverify vnncomp``: one instance to a competition result file, or a whole instance list.

Wired into :mod:`exactverify.cli` by ``add_vnncomp_parser(sub)`` in ``build_parser`` and
``return handle_vnncomp(args)`` in ``main`` for ``args.command == "vnncomp"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidInputError

WORKER = "exactverify.vnncomp.instances:instance"


def add_vnncomp_parser(sub) -> argparse.ArgumentParser:
    """Add the ``vnncomp`` command to a subparsers object."""
    parser = sub.add_parser("vnncomp", help="decide VNN-COMP instances (ONNX + VNNLIB); competition result files")
    parser.add_argument("model", nargs="?", help="ONNX network (single-instance mode)")
    parser.add_argument("property", nargs="?", help="VNNLIB property (single-instance mode)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds (single mode: required)")
    parser.add_argument("--out", help="result file: sat + assignment, unsat, timeout or unknown")
    parser.add_argument("--json", dest="json_out", help="also write the full result as JSON")
    parser.add_argument("--instances", help="batch mode: instances.csv (onnx,vnnlib,timeout)")
    parser.add_argument("--store", help="batch mode: JSONL campaign store (created or resumed)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="batch mode: scale every timeout")
    parser.add_argument("--max-timeout", type=float, default=None, help="batch mode: cap every timeout (s)")
    parser.add_argument("--limit", type=int, default=None, help="batch mode: first N instances only")
    parser.add_argument("--workers", type=int, default=1, help="batch mode: worker processes")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _single(args: argparse.Namespace) -> int:
    import torch

    from .solve import solve_instance

    if args.model is None or args.property is None or args.timeout is None:
        raise InvalidInputError("vnncomp needs MODEL.onnx PROP.vnnlib --timeout S (or --instances CSV --store S)")
    torch.set_num_threads(1)
    result = solve_instance(args.model, args.property, args.timeout)
    if args.out:
        Path(args.out).write_text(result.result_text())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_dict(), indent=1))
    print(f"{result.verdict}: {result.reason} ({result.seconds:.2f} s)")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from ..campaign import format_table, results_table, run_campaign
    from .instances import read_instances

    if args.store is None:
        raise InvalidInputError("--instances needs --store STORE.jsonl")
    queries = read_instances(args.instances, timeout_scale=args.timeout_scale, max_timeout=args.max_timeout)
    if args.limit is not None:
        queries = queries[: args.limit]
    try:
        records = run_campaign(queries, WORKER, args.store, workers=args.workers, progress=not args.quiet)
    except KeyboardInterrupt as exc:
        print(f"exactverify: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    print(format_table(results_table(records, by=["benchmark"])))
    return 0


def handle_vnncomp(args: argparse.Namespace) -> int:
    """Run the ``vnncomp`` command; returns the exit status."""
    if args.instances is not None:
        return _batch(args)
    return _single(args)
