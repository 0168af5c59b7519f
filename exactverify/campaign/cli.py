"""``exactverify campaign run | summary``: resumable campaigns from the command line.

Wired into :mod:`exactverify.cli` by ``add_campaign_parser(sub)`` in ``build_parser`` and
``return handle_campaign(args)`` in ``main`` for ``args.command == "campaign"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidInputError
from ..queries.checks import check_threads
from .runner import (
    DEFAULT_CRASH_RETRIES,
    DEFAULT_HARD_TIMEOUT_FACTOR,
    DEFAULT_HARD_TIMEOUT_GRACE,
    run_campaign,
    unknown_under,
)
from .store import load_results
from .summary import format_table, results_table
from .tasks import check_query

TASKS = {"distortion": "exactverify.campaign.tasks:distortion", "verify": "exactverify.campaign.tasks:verify"}


def add_campaign_parser(sub) -> argparse.ArgumentParser:
    """Add the ``campaign`` command (with ``run`` and ``summary``) to a subparsers object."""
    campaign = sub.add_parser("campaign", help="run many queries in parallel, resumably, into a JSONL store")
    actions = campaign.add_subparsers(dest="campaign_command", required=True)
    run = actions.add_parser("run", help="run every query not yet in the store (rerun to resume)")
    run.add_argument("queries", help="queries as a JSON list or JSONL file (one object per line)")
    run.add_argument("--store", required=True, help="JSONL results store (created or resumed)")
    run.add_argument("--task", choices=sorted(TASKS), default="distortion", help="built-in query worker")
    run.add_argument("--worker", help="custom worker 'module:function' (overrides --task)")
    run.add_argument("--workers", type=int, default=2, help="worker processes")
    run.add_argument("--time-limit", type=float, default=None, help="seconds per query (passed to the worker)")
    run.add_argument("--threads", type=int, default=1,
                     help="threads per query (split decision MILPs; run options, not part of a query's id)")
    run.add_argument("--hard-timeout-factor", type=float, default=DEFAULT_HARD_TIMEOUT_FACTOR)
    run.add_argument("--hard-timeout-grace", type=float, default=DEFAULT_HARD_TIMEOUT_GRACE, help="seconds")
    run.add_argument("--crash-retries", type=int, default=DEFAULT_CRASH_RETRIES)
    run.add_argument("--retry-failed", action="store_true", help="rerun queries stored as error/killed/crashed")
    run.add_argument("--extend-unknown", action="store_true",
                     help="rerun queries stored as unknown under a shorter limit than --time-limit "
                          "or other --threads (each new record replaces its old one)")
    run.add_argument("--by", nargs="*", default=[], help="summary grouping keys printed at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    summary = actions.add_parser("summary", help="counts by status and times per group of a store")
    summary.add_argument("store")
    summary.add_argument("--by", nargs="*", default=[], help="group by these query/result fields")
    summary.add_argument("--json", dest="json_out", action="store_true", help="print the rows as JSON")
    return campaign


def read_queries(path: str | Path) -> list[dict]:
    """Queries from a JSON list or a JSONL file."""
    if not Path(path).is_file():
        raise InvalidInputError(f"queries file {str(path)!r} does not exist (or is not a file)")
    text = Path(path).read_text()
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            return json.loads(stripped)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"queries file {path}: not a JSON list or JSONL ({exc})") from exc


def handle_campaign(args: argparse.Namespace) -> int:
    """Run the ``campaign`` command; returns the exit status (130 when interrupted)."""
    if args.campaign_command == "summary":
        if not Path(args.store).is_file():
            raise InvalidInputError(f"store {args.store!r} does not exist (or is not a file)")
        rows = results_table(load_results(args.store), by=args.by)
        print(json.dumps(rows, indent=1) if args.json_out else format_table(rows))
        return 0
    if args.extend_unknown and args.time_limit is None:
        raise InvalidInputError("--extend-unknown needs --time-limit (the longer limit to rerun unknown queries with)")
    queries = read_queries(args.queries)
    if args.worker is None and isinstance(queries, list):  # a built-in task: refuse unknown keys before running
        for index, query in enumerate(queries):
            check_query(query, args.task, f"query {index + 1} of {args.queries}")
    run_options = {"threads": check_threads(args.threads)} if args.threads != 1 else None
    try:
        records = run_campaign(
            queries, args.worker or TASKS[args.task], args.store, workers=args.workers, time_limit=args.time_limit,
            hard_timeout_factor=args.hard_timeout_factor, hard_timeout_grace=args.hard_timeout_grace,
            retry_failed=args.retry_failed, crash_retries=args.crash_retries, progress=not args.quiet,
            rerun=unknown_under(args.time_limit, run_options) if args.extend_unknown else None,
            run_options=run_options,
        )
    except KeyboardInterrupt as exc:
        print(f"exactverify: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    print(format_table(results_table(records, by=args.by)))
    return 0
