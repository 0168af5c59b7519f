"""The results store: one JSON object per line, appended and fsync'ed record by record.

Why JSONL rather than SQLite: only the campaign's parent process writes, one record at a
time, so a database's concurrency buys nothing; an append of one line with ``O_APPEND``
followed by ``fsync`` is durable, never rewrites earlier records (they stay byte-identical
across resumes), and the file can be read, grepped and diffed without a library. The one
failure mode, a crash in the middle of an append, can only tear the *last* line: it then
lacks its newline (or does not parse) and is detected, ignored on load and cut off by
:func:`repair_store` before the next append. Replacing a record (a query run again) is the
one rewrite: temp file, fsync, rename, the other lines copied byte for byte.

A writer holds an exclusive ``flock`` on ``<store>.lock`` (a sidecar, because a rewrite
replaces the store's inode), so two campaigns never append to one store at once.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import ExactVerifyError

try:  # POSIX only; elsewhere the store is simply not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_SUFFIX = ".lock"


class StoreError(ExactVerifyError, RuntimeError):
    """The store is corrupt beyond a torn last line, or locked by another campaign."""


class TornRecordWarning(UserWarning):
    """A torn last line (crash mid-append) was found and ignored."""


def to_jsonable(value):
    """``json.dumps`` fallback: numpy scalars and arrays, enums, tuples-as-lists, paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def dumps(value) -> str:
    """Canonical JSON text (sorted keys, no spaces); non-finite floats as JSON ``Infinity``/``NaN``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=to_jsonable)


def normalise(value):
    """``value`` as plain JSON types (what a load gives back), e.g. numpy arrays as lists."""
    return json.loads(dumps(value))


def encode_record(record: Mapping) -> bytes:
    """The exact bytes one record occupies in the store (one line, newline-terminated)."""
    if "id" not in record:
        raise StoreError("a record needs an 'id'")
    return (dumps(dict(record)) + "\n").encode("utf-8")


def _scan(path: Path) -> tuple[list[tuple[dict, bytes]], int, bytes]:
    """``([(record, raw line)], bytes of complete valid records, torn tail)``."""
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last append was torn
    entries: list[tuple[dict, bytes]] = []
    offset = good = 0
    for number, line in enumerate(lines, start=1):
        raw = line + b"\n"
        offset += len(raw)
        if not line.strip():
            good = offset
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not a JSON object with an 'id'")
        except ValueError as exc:
            if number == len(lines) and not tail:  # torn last line that still got its newline
                return entries, good, raw
            raise StoreError(f"{path}: line {number} is not a valid record ({exc}); "
                             "only a torn last line can be repaired automatically") from exc
        entries.append((record, raw))
        good = offset
    return entries, good, tail


def load_results(store: str | os.PathLike) -> list[dict]:
    """The records of ``store`` in file order (an absent store has none).

    A torn last line is ignored with a :class:`TornRecordWarning`; the file is not
    modified (it may belong to a running campaign): :func:`repair_store` cuts it off.
    """
    path = Path(store)
    entries, _, torn = _scan(path)
    if torn:
        warnings.warn(f"{path}: ignored a torn last line of {len(torn)} bytes (crash mid-write)",
                      TornRecordWarning, stacklevel=2)
    return [record for record, _ in entries]


def repair_store(store: str | os.PathLike) -> int:
    """Cut a torn last line off ``store``; returns the number of bytes removed (0 if intact)."""
    with ResultStore(store) as opened:
        return opened.repaired_bytes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class ResultStore:
    """A store opened for writing: locked, repaired, with records appended durably.

    ``lines`` maps each id to the exact bytes of its record line.
    """

    def __init__(self, store: str | os.PathLike) -> None:
        self.path = Path(store)
        if self.path.is_dir():
            raise StoreError(f"store {str(self.path)!r} is a directory; give a .jsonl file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.path) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise StoreError(f"{self.path} is in use by another campaign (lock {self.path}{LOCK_SUFFIX})") \
                        from exc
            created = not self.path.exists()
            entries, good, torn = _scan(self.path)
            self.records: dict[str, dict] = {}
            self.lines: dict[str, bytes] = {}
            for record, raw in entries:
                key = str(record["id"])
                if key in self.records:
                    raise StoreError(f"{self.path}: id {key!r} appears more than once")
                self.records[key], self.lines[key] = record, raw
            self.repaired_bytes = len(torn)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if torn:
                os.ftruncate(self._fd, good)
                os.fsync(self._fd)
            if created:
                _fsync_dir(self.path.parent)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def append(self, record: Mapping) -> bytes:
        """Write one record and fsync it before returning; its id must be new."""
        key = str(record["id"])
        if key in self.records:
            raise StoreError(f"{self.path}: id {key!r} is already stored")
        line = encode_record(record)
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.records[key], self.lines[key] = json.loads(line), line
        return line

    def replace(self, record: Mapping) -> bytes:
        """Put ``record`` in place of the stored one with its id, by one atomic rewrite: a
        crash leaves either the old record or the new one, never neither."""
        key = str(record["id"])
        if key not in self.records:
            raise StoreError(f"{self.path}: id {key!r} is not stored, nothing to replace")
        line = encode_record(record)
        self._rewrite([k for k in self.lines if k != key], line)
        del self.lines[key]  # the new line goes last, as in the file
        self.records[key], self.lines[key] = json.loads(line), line
        return line

    def _rewrite(self, keep: list[str], tail: bytes) -> None:
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(b"".join(self.lines[key] for key in keep) + tail)
            handle.flush()
            os.fsync(handle.fileno())
        os.close(self._fd)
        os.replace(temp, self.path)
        _fsync_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

