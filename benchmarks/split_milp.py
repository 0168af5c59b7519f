"""One decision MILP against the same decision split into ReLU-phase sub-domains on 2 threads.

The probes are the hardest exact queries of the minimal-distortion benchmark: for each query
of the MNIST 784-24-24-24-10 network that a journal left ``unknown`` (closest to ending
first), the radius ``upper - 0.99 tol`` just below its best upper bound, where one robust
answer ends the search. Each probe is decided by ``solve_exact`` with ``threads=1`` (one
SCIP MILP) and ``threads=2`` (:mod:`exactverify.queries.split`), same CROWN bounds, same
limit, one probe at a time (2 cores). Answers must agree whenever both decide. Writes
``benchmarks/results/split_milp.{csv,json,md}``; needs ``../shared/data``.

Usage: ``python benchmarks/split_milp.py [--probes 6] [--time-limit 60] [--journal minimal_distortion_lns60]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine_info, markdown_table, solver_versions, write_results  # noqa: E402

THREADS = (1, 2)
CLOSING_FACTOR = 0.99  # as exactverify.queries.distortion.CLOSING_STEP_FACTOR


def probes(journal: str, count: int) -> list[dict]:
    rows = [json.loads(line) for line in (RESULTS_DIR / f"{journal}.jsonl").read_text().splitlines() if line.strip()]
    unknown = [r for r in rows if r["status"] == "unknown" and r.get("upper")]
    unknown.sort(key=lambda r: (r["upper"] - r["lower"]) / r["upper"])
    tol = 1e-3
    return [{"image": r["image"], "target": r["target"], "norm": r["norm"],
             "eps": r["upper"] - CLOSING_FACTOR * tol} for r in unknown[:count]]


def decide(query, eps: float, threads: int, time_limit: float) -> dict:
    from exactverify.queries.stages import solve_exact

    history = []
    tick = time.perf_counter()
    finding = solve_exact(query, eps, backend="scip", bounds_method="crown", time_limit=time_limit,
                          minimise=False, history=history, threads=threads)
    milps = [r for r in history if r.stage == "milp"]
    return {"answer": finding.outcome, "seconds": round(time.perf_counter() - tick, 3),
            "milps": len(milps), "nodes": sum(r.nodes or 0 for r in milps),
            "milp_seconds": round(sum(r.seconds for r in milps), 3), "reason": finding.reason}


def summarise(rows: list[dict], args) -> str:
    table = []
    for threads in THREADS:
        mine = [r for r in rows if r["threads"] == threads]
        decided = [r for r in mine if r["answer"] != "unknown"]
        table.append({"threads": threads, "probes": len(mine), "decided": len(decided),
                      "robust": sum(r["answer"] == "robust" for r in mine),
                      "median s": round(statistics.median(r["seconds"] for r in mine), 2),
                      "MILP CPU s (sum)": round(sum(r["milp_seconds"] for r in mine), 1)})
    pairs = {}
    for r in rows:
        pairs.setdefault((r["image"], r["target"], r["norm"]), {})[r["threads"]] = r
    both = [p for p in pairs.values() if all(p[t]["answer"] != "unknown" for t in THREADS)]
    disagree = [p for p in both if p[1]["answer"] != p[2]["answer"]]
    ratios = [p[1]["seconds"] / p[2]["seconds"] for p in both]
    lines = ["# One decision MILP vs ReLU-split sub-domains on 2 threads (MNIST 784-24-24-24-10)", "",
             f"Closing probes (`upper - {CLOSING_FACTOR} tol`) of the {len(pairs)} unknown queries of "
             f"`{args.journal}` closest to ending; CROWN bounds, SCIP, {args.time_limit:g} s per probe, "
             "one probe at a time on 2 cores.", "", markdown_table(table, list(table[0])), "",
             f"Both decided: {len(both)}; disagreements: {len(disagree)}; "
             f"wall-time ratio 1 thread / 2 threads where both decided: "
             + (f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
                if ratios else "-"), "",
             "| image | target | norm | eps | 1 thread | s | 2 threads | s | sub-MILPs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (image, target, norm), p in sorted(pairs.items()):
        one, two = p.get(1, {}), p.get(2, {})
        lines.append(f"| {image} | {target} | {norm} | {one.get('eps', two.get('eps')):.6g} | {one.get('answer')} | "
                     f"{one.get('seconds')} | {two.get('answer')} | {two.get('seconds')} | {two.get('milps')} |")
    lines += ["", "Machine: " + json.dumps(machine_info()), "", "Solvers: " + json.dumps(solver_versions())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--journal", default="minimal_distortion_lns60")
    parser.add_argument("--name", default="split_milp")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo
    from exactverify.queries.checks import make_query

    _, _, x_test, _ = zoo.load_mnist()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    journal = RESULTS_DIR / f"{args.name}.jsonl"  # one row per line as it is known; a rerun resumes
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()] if journal.exists() else []
    done = {(r["image"], r["target"], r["norm"], r["threads"]) for r in rows}
    with journal.open("a") as sink:
        for probe in probes(args.journal, args.probes):  # "image" is the MNIST test index
            x = np.asarray(x_test[probe["image"]], dtype=np.float64).reshape(-1)
            query = make_query(network, x, probe["norm"], probe["target"], None, (0.0, 1.0), ev.DEFAULT_MARGIN)
            for threads in THREADS:
                if (probe["image"], probe["target"], probe["norm"], threads) in done:
                    continue
                row = {**probe, "threads": threads, **decide(query, probe["eps"], threads, args.time_limit)}
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                rows.append(row)
    write_results(args.name, rows, summarise(rows, args))
    print(summarise(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
