"""Helpers shared by the benchmark scripts: machine/solver facts and result files.

Every benchmark writes ``benchmarks/results/NAME.csv`` (one row per measurement),
``NAME.json`` (the rows plus machine and solver information, so numbers can be
compared only with numbers taken on the same machine) and ``NAME.md`` (a summary).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count/model, load average, torch version and CUDA device (if any)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine skews timings
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = "missing"
    return info


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo where available, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def code_version() -> str:
    """The project's git commit (short hash), with ``+dirty`` when the library's code has uncommitted
    changes: which engine produced a row. ``unknown`` outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "exactverify", "encoders"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def mnist_benchmark_net():
    """The MNIST benchmark network (784-24-24-24-10) as IR and the test images as flat float64
    rows, with torch on one thread (the solvers get the cores); needs ``../shared/data``."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo

    _, _, x_test, _ = zoo.load_mnist()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    return network, np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)


def solver_versions() -> dict[str, str]:
    """Versions of the solver packages: ``encoders.backends.solver_versions()`` when it exists."""
    try:
        from encoders import backends

        if hasattr(backends, "solver_versions"):
            return dict(backends.solver_versions())
    except ImportError:
        pass
    versions: dict[str, str] = {}
    for name, read in (
        ("pyscipopt", lambda m: m.__version__),
        ("ortools", lambda m: m.__version__),
        ("z3", lambda m: m.get_version_string()),
    ):
        try:
            module = __import__(name)
            versions[name] = str(read(module))
        except ImportError:
            versions[name] = "missing"
    return versions


def markdown_table(rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``columns`` of ``rows`` (floats printed with 4 significant digits)."""
    headers = list(headers) if headers is not None else list(columns)

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _columns(rows: Iterable[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def write_results(name: str, rows: Sequence[dict], summary_md: str, results_dir: Path | None = None,
                  extra: dict | None = None) -> dict[str, Path]:
    """Write ``NAME.csv``, ``NAME.json`` and ``NAME.md`` under ``results_dir``; return their paths.

    The JSON holds the rows, ``machine_info()``, ``solver_versions()``, a UTC timestamp
    and ``extra``; the markdown is ``summary_md`` as given.
    """
    if not name or any(sep in name for sep in "/\\"):
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{name}.{kind}" for kind in ("csv", "json", "md")}
    columns = _columns(rows)
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    payload = {
        "name": name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "solvers": solver_versions(),
        **({"extra": extra} if extra else {}),
        "rows": list(rows),
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    paths["md"].write_text(summary_md if summary_md.endswith("\n") else summary_md + "\n")
    return paths
