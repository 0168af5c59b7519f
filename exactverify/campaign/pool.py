"""Worker processes with a watchdog: one query at a time per process, killed on overrun.

A ``ProcessPoolExecutor`` cannot kill one stuck task (killing a worker breaks the whole
pool), so each slot owns one long-lived process and a pipe. The parent hands a query to an
idle slot, waits on every pipe and process sentinel at once, and
- on a result, reports it (``"done"`` or ``"error"`` with the exception text);
- on a deadline (``time_limit * factor + grace`` after the hand-over), SIGKILLs the
  process, reports ``"killed"`` and starts a fresh one;
- on a process that died by itself (segfault, OOM killer, external SIGKILL), runs the
  query again in a fresh process up to ``crash_retries`` times, then reports ``"crashed"``.
Only the parent sees results, so only the parent writes the store. ``kill -USR1 PID`` on the
parent or on a worker prints every thread's Python stack to stderr (``DUMP_SIGNAL``), to see
where a run that seems stuck is.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import wait

from ..errors import ExactVerifyError, InvalidInputError
from .store import dumps

#: Longest the parent sleeps between checks of deadlines and of the stop flag (seconds).
POLL_INTERVAL = 0.2
#: Seconds a worker gets to exit after the parent closes its pipe, before SIGKILL.
SHUTDOWN_GRACE = 1.0
#: Traceback lines kept in an "error" outcome.
TRACEBACK_LINES = 12
#: Worker processes that may die before they ever get ready, before the campaign gives up.
MAX_STARTUP_FAILURES = 3
#: Signal that makes the parent or a worker print its Python stacks to stderr.
DUMP_SIGNAL = getattr(signal, "SIGUSR1", None)


class CampaignError(ExactVerifyError, RuntimeError):
    """Worker processes cannot be started or talk nonsense."""


def timestamp(seconds: float | None = None) -> str:
    """ISO-8601 UTC time with microseconds."""
    return datetime.fromtimestamp(time.time() if seconds is None else seconds, timezone.utc).isoformat()


def resolve_worker(worker) -> Callable[[dict], dict]:
    """The query function named by ``"module:function"`` or given directly (must be importable)."""
    if callable(worker):
        try:
            pickle.dumps(worker)
        except Exception as exc:
            raise InvalidInputError(
                f"worker must be importable by worker processes (a module-level function), got {worker!r}: {exc}"
            ) from exc
        return worker
    if not isinstance(worker, str) or worker.count(":") != 1:
        raise InvalidInputError(f"worker must be a callable or 'module:function', got {worker!r}")
    module_name, name = worker.split(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"worker {worker!r} cannot be imported: {exc}") from exc
    if not callable(function):
        raise InvalidInputError(f"worker {worker!r} is not callable")
    return function


def worker_module(worker) -> str:
    """The module that defines ``worker`` (preloaded by the fork server)."""
    return worker.split(":")[0] if isinstance(worker, str) else worker.__module__


def enable_stack_dumps() -> bool:
    """Make ``DUMP_SIGNAL`` print every thread's stack to the process's real stderr.

    Returns False where that cannot be done (no such signal, or no stderr file descriptor).
    """
    stream = sys.__stderr__
    if DUMP_SIGNAL is None or stream is None:
        return False
    try:
        faulthandler.register(DUMP_SIGNAL, file=stream, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # io.UnsupportedOperation is an OSError
        return False
    return True


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a crashed campaign leaves no orphans."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _single_thread() -> None:
    """Parallelism comes from processes: torch (and BLAS via OMP) get one thread each."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set or inter-op work already started
        pass


def worker_main(conn, worker) -> None:
    """Body of a worker process: answer ``(id, query)`` messages until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops cleanly
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    _single_thread()
    enable_stack_dumps()
    try:
        function = resolve_worker(worker)
    except Exception as exc:
        conn.send(("fatal", None, f"{type(exc).__name__}: {exc}", 0.0, time.time(), time.time()))
        return
    conn.send(("ready", None, None, 0.0, 0.0, 0.0))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        key, query = message
        started, tick = time.time(), time.perf_counter()
        try:
            result = function(query)
            if not isinstance(result, dict):
                raise TypeError(f"the worker must return a dict, got {type(result).__name__}")
            kind, payload = "done", dumps(result)
        except Exception as exc:
            lines = traceback.format_exc().strip().splitlines()[-TRACEBACK_LINES:]
            kind, payload = "error", json.dumps({"message": f"{type(exc).__name__}: {exc}", "traceback": lines})
        try:
            conn.send((kind, key, payload, time.perf_counter() - tick, started, time.time()))
        except (BrokenPipeError, OSError):
            return


@dataclass
class Task:
    """One query to run: id, payload handed to the worker, and its hard deadline span."""

    key: str
    payload: dict
    hard_timeout: float | None
    attempts: int = 0


@dataclass
class Outcome:
    """What happened to one task; ``status`` is done / error / killed / crashed."""

    key: str
    status: str
    result: dict | None
    error: str | None
    seconds: float
    pid: int | None
    started: str
    finished: str
    attempts: int
    traceback: list[str] = field(default_factory=list)


class _Slot:
    def __init__(self, ctx, worker) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child, worker), daemon=True,
                                   name="exactverify-campaign-worker")
        self.process.start()
        child.close()
        self.ready = False
        self.task: Task | None = None
        self.sent_at = 0.0
        self.sent_wall = 0.0

    def deadline(self) -> float:
        if self.task is None or self.task.hard_timeout is None:
            return float("inf")
        return self.sent_at + self.task.hard_timeout

    def stop(self, kill: bool = False) -> None:
        """End the process: close the pipe (the worker exits) or SIGKILL it; always reap."""
        try:
            if not kill:
                try:
                    self.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                self.process.join(SHUTDOWN_GRACE)
            if self.process.is_alive():
                self.process.kill()
            self.process.join()
        finally:
            self.conn.close()


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class WorkerPool:
    """Runs tasks on ``size`` worker processes; see the module docstring."""

    def __init__(self, ctx, worker, size: int, crash_retries: int) -> None:
        self.ctx, self.worker, self.size, self.crash_retries = ctx, worker, size, crash_retries
        self.slots: list[_Slot] = []
        self.startup_failures = 0

    def run(self, tasks: Iterable[Task], report: Callable[[Outcome], None],
            should_stop: Callable[[], bool]) -> bool:
        """Run ``tasks``, calling ``report`` with each outcome as it happens.

        Returns False when ``should_stop`` turned true first (in-flight tasks are dropped).
        """
        pending = deque(tasks)
        try:
            while pending or any(slot.task for slot in self.slots):
                if should_stop():
                    return False
                busy = sum(slot.task is not None for slot in self.slots)
                while len(self.slots) < min(self.size, busy + len(pending)):
                    self.slots.append(_Slot(self.ctx, self.worker))
                for slot in self.slots:
                    if slot.ready and slot.task is None and pending:
                        self._send(slot, pending.popleft(), pending)
                now = time.monotonic()
                timeout = min([POLL_INTERVAL] + [slot.deadline() - now for slot in self.slots])
                watched = [slot.conn for slot in self.slots] + [slot.process.sentinel for slot in self.slots]
                ready = set(wait(watched, max(timeout, 0.0)))
                for slot in list(self.slots):
                    if slot.conn in ready:
                        self._receive(slot, report)
                    if slot.process.sentinel in ready or time.monotonic() >= slot.deadline():
                        self._check(slot, pending, report)
            return True
        finally:
            for slot in self.slots:
                slot.stop(kill=slot.task is not None)
            self.slots = []

    def _send(self, slot: _Slot, task: Task, pending: deque) -> None:
        task.attempts += 1
        try:
            slot.conn.send((task.key, task.payload))
        except (BrokenPipeError, OSError):  # died while idle: the sentinel check replaces it
            task.attempts -= 1
            pending.appendleft(task)
            return
        slot.task, slot.sent_at, slot.sent_wall = task, time.monotonic(), time.time()

    def _receive(self, slot: _Slot, report) -> None:
        while True:
            try:
                if not slot.conn.poll():
                    return
                kind, key, payload, seconds, started, finished = slot.conn.recv()
            except (EOFError, OSError):
                return  # the process died: the sentinel tells
            if kind == "ready":
                slot.ready = True
                continue
            if kind == "fatal":
                raise InvalidInputError(f"worker {self.worker!r} failed to start in a worker process: {payload}")
            task, slot.task = slot.task, None
            if task is None or task.key != key:  # pragma: no cover - protocol invariant
                raise CampaignError(f"worker answered {key!r} while running {task and task.key!r}")
            body = json.loads(payload)
            report(Outcome(
                key, kind, body if kind == "done" else None, None if kind == "done" else body["message"],
                seconds, slot.process.pid, timestamp(started), timestamp(finished), task.attempts,
                [] if kind == "done" else body["traceback"],
            ))

    def _check(self, slot: _Slot, pending: deque, report) -> None:
        """Kill an overrunning worker or retire a dead one (the run loop starts replacements)."""
        task, pid = slot.task, slot.process.pid
        overrun = task is not None and time.monotonic() >= slot.deadline()
        if not overrun and slot.process.is_alive():
            return
        if not overrun:
            self._receive(slot, report)  # a result sent just before dying still counts
            task = slot.task
        self.slots.remove(slot)
        slot.stop(kill=True)
        if not slot.ready:
            self.startup_failures += 1
            if self.startup_failures > MAX_STARTUP_FAILURES:
                raise CampaignError(f"{self.startup_failures} worker processes died before getting ready "
                                    f"(last {_death(slot.process)}); is {self.worker!r} importable?")
        if task is not None:
            seconds = time.monotonic() - slot.sent_at
            if overrun:
                error = (f"exceeded the hard timeout of {task.hard_timeout:.3g} s; worker process {pid} was killed")
                report(Outcome(task.key, "killed", None, error, seconds, pid, timestamp(slot.sent_wall),
                               timestamp(), task.attempts))
            elif task.attempts <= self.crash_retries:
                pending.appendleft(task)
            else:
                error = f"worker process {pid} {_death(slot.process)} (attempt {task.attempts})"
                report(Outcome(task.key, "crashed", None, error, seconds, pid, timestamp(slot.sent_wall),
                               timestamp(), task.attempts))
