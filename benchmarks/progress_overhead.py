"""Cost of the in-flight progress reports (SCIP's ``progress`` solve option) on MNIST decisions.

Each probe (a decision just below a query's minimal distortion, from a minimal-distortion
journal) is decided by ``solve_exact`` (CROWN bounds, one SCIP MILP, one thread) with and
without a ``progress`` callback, alternating the order; the node counts must be equal (the
reports only read SCIP's counters) and the time ratio is the overhead.

Writes ``benchmarks/results/NAME.{csv,json,md}``; needs ``../shared/data``.

Usage: ``python benchmarks/progress_overhead.py [--probe IMAGE:TARGET:NORM:EPS ...] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, markdown_table, mnist_benchmark_net, solver_versions, write_results  # noqa: E402

DEFAULT_PROBES = ("0:5:linf:0.0771547561568318", "0:4:linf:0.09863678003898756", "1:5:l1:7.835310071745287")


def decide(query, eps: float, watched: bool, time_limit: float) -> dict:
    from exactverify.queries.stages import solve_exact

    history, reports = [], []
    tick = time.perf_counter()
    finding = solve_exact(query, eps, backend="scip", bounds_method="crown", time_limit=time_limit, minimise=False,
                          history=history, progress=reports.append if watched else None)
    milps = [r for r in history if r.stage == "milp"]
    return {"progress": watched, "answer": finding.outcome, "seconds": round(time.perf_counter() - tick, 3),
            "nodes": sum(r.nodes or 0 for r in milps), "reports": len(reports)}


def summarise(rows: list[dict]) -> str:
    table = []
    for key in dict.fromkeys((r["image"], r["target"], r["norm"], r["eps"]) for r in rows):
        mine = [r for r in rows if (r["image"], r["target"], r["norm"], r["eps"]) == key]
        on = [r["seconds"] for r in mine if r["progress"]]
        off = [r["seconds"] for r in mine if not r["progress"]]
        table.append({"image": key[0], "target": key[1], "norm": key[2], "eps": f"{key[3]:.6g}",
                      "answer": "/".join(sorted({r["answer"] for r in mine})),
                      "nodes (all runs)": "/".join(str(n) for n in sorted({r["nodes"] for r in mine})),
                      "s without": ", ".join(f"{s:.2f}" for s in off), "s with": ", ".join(f"{s:.2f}" for s in on),
                      "median ratio with/without": f"{statistics.median(on) / statistics.median(off):.3f}",
                      "reports per run": statistics.median(r["reports"] for r in mine if r["progress"])})
    lines = ["# Cost of in-flight progress reports on MNIST decisions (784-24-24-24-10)", "",
             "One SCIP MILP per run (CROWN bounds, one thread), with and without the `progress` solve option "
             "(a report at most every `encoders.backends.scip.PROGRESS_INTERVAL` s), alternating.", "",
             markdown_table(table, list(table[0])), "",
             "Machine: " + json.dumps(machine_info()), "", "Solvers: " + json.dumps(solver_versions())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", action="append", default=None, metavar="IMAGE:TARGET:NORM:EPS")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--name", default="progress_overhead")
    args = parser.parse_args(argv)

    import exactverify as ev
    from exactverify.queries.checks import make_query

    network, images = mnist_benchmark_net()
    rows = []
    for text in args.probe or DEFAULT_PROBES:
        image, target, norm, eps = text.split(":")
        query = make_query(network, images[int(image)], norm, int(target), None, (0.0, 1.0), ev.DEFAULT_MARGIN)
        for k in range(args.repeats):
            for watched in ((False, True) if k % 2 == 0 else (True, False)):
                row = {"image": int(image), "target": int(target), "norm": norm, "eps": float(eps),
                       **decide(query, float(eps), watched, args.time_limit)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_results(args.name, rows, summarise(rows))
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
