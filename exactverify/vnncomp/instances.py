"""VNN-COMP instance lists (``instances.csv``: onnx, vnnlib, timeout) as campaign queries."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

from ..errors import InvalidInputError


def read_instances(csv_path: str | Path, *, timeout_scale: float = 1.0, max_timeout: float | None = None,
                   benchmark: str | None = None) -> list[dict]:
    """One campaign query per row: ``id``, ``benchmark``, absolute ``onnx``/``vnnlib`` paths
    (relative ones are resolved against the CSV's folder) and ``time_limit`` =
    ``timeout * timeout_scale``, capped at ``max_timeout``."""
    path = Path(csv_path)
    if not path.is_file():
        raise InvalidInputError(f"instances CSV {str(path)!r} is not a file")
    if not timeout_scale > 0:
        raise InvalidInputError(f"timeout_scale must be > 0, got {timeout_scale!r}")
    name = benchmark or path.parent.name
    queries = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise InvalidInputError(f"{path.name}:{number}: expected 'onnx,vnnlib,timeout', got {row!r}")
            onnx, vnnlib, timeout = (cell.strip() for cell in row)
            try:
                limit = float(timeout) * timeout_scale
            except ValueError as exc:
                raise InvalidInputError(f"{path.name}:{number}: timeout {timeout!r} is not a number") from exc
            if max_timeout is not None:
                limit = min(limit, float(max_timeout))
            if not 0 < limit < math.inf:
                raise InvalidInputError(f"{path.name}:{number}: timeout {timeout!r} (scaled and capped: {limit!r}) "
                                        "must be a finite number of seconds > 0")
            queries.append({"id": f"{name}/{Path(onnx).name}/{Path(vnnlib).name}", "benchmark": name,
                            "onnx": str((path.parent / onnx).resolve()),
                            "vnnlib": str((path.parent / vnnlib).resolve()),
                            "time_limit": round(limit, 3)})
    return queries


@lru_cache(maxsize=4)
def _network(onnx_path: str):
    from ..loaders import load

    return load(onnx_path)


def instance(query: dict) -> dict:
    """Campaign worker: :func:`.solve.solve_instance` on the query; ``status`` is the verdict."""
    import torch

    from .solve import solve_instance

    torch.set_num_threads(1)
    for key in ("onnx", "vnnlib", "time_limit"):
        if key not in query:
            raise InvalidInputError(f"a vnncomp query needs {key!r}")
    result = solve_instance(query["onnx"], query["vnnlib"], float(query["time_limit"]),
                            network=_network(str(query["onnx"])))
    row = result.to_dict()
    row["status"] = row.pop("verdict")
    return row
