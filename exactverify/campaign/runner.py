"""``run_campaign``: run many queries in worker processes, each result stored as it is known.

Resuming is running again: queries whose id is in the store are skipped, so a crash
(of a worker, of the parent, of the machine) costs at most the queries in flight.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InvalidInputError
from .pool import DUMP_SIGNAL, Outcome, Task, WorkerPool, enable_stack_dumps, resolve_worker, worker_module
from .store import ResultStore, dumps, normalise

#: Statuses the campaign itself gives; a query with one of them is re-run only on ``retry_failed``.
FAILED_STATUSES = ("error", "killed", "crashed")
#: Hard timeout = ``time_limit * DEFAULT_HARD_TIMEOUT_FACTOR + DEFAULT_HARD_TIMEOUT_GRACE``: the
#: anytime queries check their limit between solver calls, so they may overrun it a little.
DEFAULT_HARD_TIMEOUT_FACTOR = 2.0
DEFAULT_HARD_TIMEOUT_GRACE = 10.0  # seconds
#: How often a query whose worker process died (segfault, OOM kill) is started again in one run.
DEFAULT_CRASH_RETRIES = 1
#: Fork server on POSIX: workers fork from a clean process that imported exactverify once
#: (fast, and safe with torch, unlike forking a parent that may run threads).
DEFAULT_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def query_id(query: dict) -> str:
    """The query's ``"id"`` as a string, or a hash of its canonical JSON when it has none."""
    if "id" in query:
        return str(query["id"])
    return "q-" + hashlib.sha256(dumps(query).encode()).hexdigest()[:16]


def unknown_under(limit: float, run_options: dict | None = None) -> Callable[[dict], bool]:
    """A ``rerun`` predicate for :func:`run_campaign`: the records that ended ``"unknown"`` (an
    anytime query that ran out of time) under a time limit below ``limit``, or under other
    ``run_options`` (e.g. fewer threads). It is false for the records a rerun with these
    settings writes, so resuming an interrupted rerun repeats nothing."""
    limit = float(limit)
    wanted = json.loads(json.dumps(run_options or {}))  # as stored in a record

    def rerun(record: dict) -> bool:
        ran_under = record.get("time_limit")
        if record.get("status") != "unknown" or ran_under is None:
            return False
        return float(ran_under) < limit or (record.get("run_options") or {}) != wanted

    return rerun


def _check_queries(queries) -> list[tuple[str, dict]]:
    if isinstance(queries, (str, bytes, dict)) or not isinstance(queries, Sequence):
        raise InvalidInputError(f"queries must be a sequence of dicts, got {type(queries).__name__}")
    seen: dict[str, int] = {}
    keyed = []
    for index, query in enumerate(queries):
        if not isinstance(query, dict):
            raise InvalidInputError(f"queries[{index}] must be a dict, got {type(query).__name__}")
        try:
            plain = normalise(query)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"queries[{index}] is not JSON serialisable: {exc}") from exc
        key = query_id(plain)
        if key in seen:
            raise InvalidInputError(f"queries[{index}] and queries[{seen[key]}] have the same id {key!r}")
        seen[key] = index
        keyed.append((key, plain))
    return keyed


def _check_options(workers, time_limit, hard_timeout_factor, hard_timeout_grace, crash_retries, start_method):
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InvalidInputError(f"workers must be a positive int, got {workers!r}")
    for name, value in (("time_limit", time_limit), ("hard_timeout_factor", hard_timeout_factor),
                        ("hard_timeout_grace", hard_timeout_grace)):
        if (value is not None or name != "time_limit") and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0):
            raise InvalidInputError(f"{name} must be a non-negative number, got {value!r}")
    if time_limit is not None and time_limit == 0:
        raise InvalidInputError("time_limit must be > 0 (or None for no limit)")
    if hard_timeout_factor < 1:
        raise InvalidInputError(f"hard_timeout_factor must be >= 1, got {hard_timeout_factor!r}")
    if not isinstance(crash_retries, int) or crash_retries < 0:
        raise InvalidInputError(f"crash_retries must be a non-negative int, got {crash_retries!r}")
    if start_method not in multiprocessing.get_all_start_methods():
        raise InvalidInputError(f"start_method must be one of {multiprocessing.get_all_start_methods()}, "
                                f"got {start_method!r}")


def _check_run_options(run_options) -> dict:
    if run_options is None:
        return {}
    if not isinstance(run_options, dict) or not all(isinstance(k, str) for k in run_options):
        raise InvalidInputError(f"run_options must be a dict with str keys, got {run_options!r}")
    if "time_limit" in run_options:
        raise InvalidInputError("run_options must not hold 'time_limit' (use time_limit=)")
    try:
        return json.loads(json.dumps(run_options))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"run_options must be JSON-able: {exc}") from exc


def _record(key: str, query: dict, limit: float | None, outcome: Outcome, run_options: dict) -> dict:
    failed = outcome.status != "done"
    status = outcome.status if failed else str(outcome.result.get("status", "done"))
    record = {
        "id": key, "query": query, "status": status, "result": outcome.result, "error": outcome.error,
        "seconds": outcome.seconds, "worker_pid": outcome.pid, "started": outcome.started,
        "finished": outcome.finished, "time_limit": limit, "attempts": outcome.attempts,
    }
    if run_options:
        record["run_options"] = run_options
    if outcome.traceback:
        record["traceback"] = outcome.traceback
    return record


class _StopFlag:
    """SIGINT/SIGTERM set a flag (never raise mid-write); the run loop stops and cleans up."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}
        self._dumps = False

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
            self._dumps = enable_stack_dumps()
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._dumps:
            faulthandler.unregister(DUMP_SIGNAL)


def run_campaign(queries: Sequence[dict], worker: Callable[[dict], dict] | str, store: str | os.PathLike, *,
                 workers: int = 2, time_limit: float | None = None,
                 hard_timeout_factor: float = DEFAULT_HARD_TIMEOUT_FACTOR,
                 hard_timeout_grace: float = DEFAULT_HARD_TIMEOUT_GRACE, retry_failed: bool = False,
                 rerun: Callable[[dict], bool] | None = None,
                 crash_retries: int = DEFAULT_CRASH_RETRIES, progress: bool = True,
                 start_method: str = DEFAULT_START_METHOD, run_options: dict | None = None) -> list[dict]:
    """Run ``worker(query)`` for every query not yet in ``store``; returns all records in query order.

    Each query is a JSON object; its ``"id"`` (or a hash of it) names it in the store. The
    worker gets the query plus ``"time_limit"`` (the query's own, else ``time_limit``), must
    honour it like the anytime queries do, and returns a JSON-able dict whose ``"status"``
    (default ``"done"``) becomes the record's. It runs in one of ``workers`` processes; one
    that overruns ``limit * hard_timeout_factor + hard_timeout_grace`` is killed and its
    query recorded ``"killed"`` (no bounds; without a limit there is no watchdog); an
    exception is recorded ``"error"`` with its message; a worker process that dies is
    retried ``crash_retries`` times, then recorded ``"crashed"``. Records with these
    statuses are kept on resume unless ``retry_failed``. ``rerun(record)`` picks further
    stored records to run again (e.g. anytime results that ended ``unknown`` under a shorter
    limit, :func:`unknown_under`). A record run again stays until its new one replaces it (one
    atomic rewrite), so an interruption loses neither and every id stays stored once. Make ``rerun`` false for the
    new records (compare their ``time_limit``), or a resumed run repeats them.
    ``run_options`` (JSON-able, e.g. ``{"threads": 2}``) go to every worker call like the
    time limit, and into each new record as ``"run_options"``; they are how a query runs,
    not what it asks, so they are not part of its id or its stored parameters.
    On SIGINT/SIGTERM the workers are
    stopped, in-flight queries dropped (they run on the next resume) and
    ``KeyboardInterrupt`` raised; records already stored stay untouched.
    """
    _check_options(workers, time_limit, hard_timeout_factor, hard_timeout_grace, crash_retries, start_method)
    run_options = _check_run_options(run_options)
    keyed = _check_queries(queries)
    resolve_worker(worker)  # fail fast, before any process starts
    with ResultStore(store) as opened:
        for key, query in keyed:
            stored = opened.records.get(key)
            if stored is not None and stored.get("query") != query:
                raise InvalidInputError(f"query id {key!r} is stored with other parameters in {opened.path}: "
                                        f"stored {stored.get('query')!r}, given {query!r}")
        def run_again(record: dict) -> bool:
            return ((retry_failed and record.get("status") in FAILED_STATUSES)
                    or (rerun is not None and rerun(record)))

        again = {key for key, _ in keyed if key in opened.records and run_again(opened.records[key])}
        todo, limits = [], {}
        for key, query in keyed:
            if key in opened.records and key not in again:
                continue
            limit = query.get("time_limit", time_limit)
            limits[key] = limit
            payload = {**query, **run_options} if limit is None else {**query, **run_options, "time_limit": limit}
            hard = None if limit is None else float(limit) * hard_timeout_factor + hard_timeout_grace
            todo.append(Task(key, payload, hard))
        queries_by_key = dict(keyed)
        counts = Counter(opened.records[key]["status"] for key, _ in keyed
                         if key in opened.records and key not in again)
        bar = _progress(len(keyed), len(keyed) - len(todo), Path(store).name, progress)

        def report(outcome: Outcome) -> None:
            record = _record(outcome.key, queries_by_key[outcome.key], limits[outcome.key], outcome, run_options)
            if outcome.key in opened.records:
                opened.replace(record)
            else:
                opened.append(record)
            counts[record["status"]] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(dict(sorted(counts.items())), refresh=False)

        try:
            finished = True
            if todo:
                ctx = multiprocessing.get_context(start_method)
                if start_method == "forkserver":
                    ctx.set_forkserver_preload(["exactverify", worker_module(worker)])
                with _StopFlag() as stop:
                    finished = WorkerPool(ctx, worker, workers, crash_retries).run(todo, report, stop)
        finally:
            if bar is not None:
                bar.close()
        if not finished:
            raise KeyboardInterrupt(f"campaign stopped by {signal.Signals(stop.signal).name}: "
                                    f"{len(opened.records)} records in {opened.path}; run it again to resume")
        return [opened.records[key] for key, _ in keyed]


def _progress(total: int, done: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="query", dynamic_ncols=True)
