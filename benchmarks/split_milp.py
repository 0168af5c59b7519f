"""One decision MILP against the same decision split into ReLU-phase sub-domains on 2 threads.

The probes are the hardest exact queries of the minimal-distortion benchmark: for each query
of the MNIST 784-24-24-24-10 network that a journal left ``unknown`` (closest to ending
first), the radius ``upper - 0.99 tol`` just below its best upper bound, where one robust
answer ends the search. Each probe is decided by ``solve_exact`` with ``threads=1`` (one
SCIP MILP) and ``threads=2`` (:mod:`exactverify.queries.split`), same CROWN bounds, same
limit, one probe at a time (2 cores). ``--domains-per-thread 2 8 16`` runs the 2-thread split
once per value of ``exactverify.queries.split.DOMAINS_PER_THREAD`` (how deep it splits), to
choose that constant; ``--heuristics default off`` runs each with each SCIP primal-heuristics
setting of the decisions (``exactverify.queries.stages.DECISION_HEURISTICS``), to choose that
one (``--skip-split``: one MILP only). Answers must agree whenever two runs decide. Writes
``benchmarks/results/NAME.{csv,json,md}`` and the journal ``NAME.jsonl`` (resumable);
needs ``../shared/data``.

Usage: ``python benchmarks/split_milp.py [--probes 6] [--time-limit 60] [--journal minimal_distortion_lns60]
[--domains-per-thread 2] [--skip-single] [--skip-split] [--heuristics off] [--name split_milp]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine_info, markdown_table, solver_versions, write_results  # noqa: E402

from encoders.backends.scip import HEURISTICS  # noqa: E402

#: Sub-domains per thread of the rows journaled before the option existed.
OLD_DOMAINS_PER_THREAD = 2
CLOSING_FACTOR = 0.99  # as exactverify.queries.distortion.CLOSING_STEP_FACTOR


def probes(journal: str, count: int) -> list[dict]:
    rows = [json.loads(line) for line in (RESULTS_DIR / f"{journal}.jsonl").read_text().splitlines() if line.strip()]
    unknown = [r for r in rows if r["status"] == "unknown" and r.get("upper")]
    unknown.sort(key=lambda r: (r["upper"] - r["lower"]) / r["upper"])
    tol = 1e-3
    return [{"image": r["image"], "target": r["target"], "norm": r["norm"],
             "eps": r["upper"] - CLOSING_FACTOR * tol} for r in unknown[:count]]


def decide(query, eps: float, threads: int, time_limit: float, bounds_method: str = "crown") -> dict:
    from exactverify.queries.stages import solve_exact

    history = []
    tick = time.perf_counter()
    finding = solve_exact(query, eps, backend="scip", bounds_method=bounds_method, time_limit=time_limit,
                          minimise=False, history=history, threads=threads)
    milps = [r for r in history if r.stage == "milp"]
    return {"answer": finding.outcome, "seconds": round(time.perf_counter() - tick, 3),
            "milps": len(milps), "nodes": sum(r.nodes or 0 for r in milps),
            "milp_seconds": round(sum(r.seconds for r in milps), 3), "reason": finding.reason,
            "bounds": "; ".join(r.raw_status for r in history if r.stage == "bounds" and r.raw_status)}


def config_of(row: dict) -> str:
    """``1 thread`` or ``2 threads x D`` (D sub-domains per thread), then the heuristics setting
    (rows journaled before that option ran with SCIP's default heuristics and carry no label)."""
    label = "1 thread" if row["threads"] == 1 else \
        f"{row['threads']} threads x {row.get('domains_per_thread', OLD_DOMAINS_PER_THREAD)}"
    return label + (f", heuristics {row['heuristics']}" if row.get("heuristics") else "")


def summarise(rows: list[dict], args) -> str:
    configs = list(dict.fromkeys(config_of(r) for r in sorted(rows, key=lambda r: (r["threads"],
                                                                                   r.get("domains_per_thread") or 0))))
    table = []
    for config in configs:
        mine = [r for r in rows if config_of(r) == config]
        decided = [r for r in mine if r["answer"] != "unknown"]
        table.append({"config": config, "probes": len(mine), "decided": len(decided),
                      "robust": sum(r["answer"] == "robust" for r in mine),
                      "median s": round(statistics.median(r["seconds"] for r in mine), 2),
                      "MILP CPU s (sum)": round(sum(r["milp_seconds"] for r in mine), 1)})
    pairs: dict[tuple, dict] = {}
    for r in rows:
        pairs.setdefault((r["image"], r["target"], r["norm"]), {})[config_of(r)] = r
    answers = [{r["answer"] for r in p.values() if r["answer"] != "unknown"} for p in pairs.values()]
    disagree = sum(len(a) > 1 for a in answers)
    base = configs[0]
    ratio_lines = []
    for config in configs[1:]:
        both = [p for p in pairs.values()
                if base in p and config in p and p[base]["answer"] != "unknown" and p[config]["answer"] != "unknown"]
        ratios = [p[base]["seconds"] / p[config]["seconds"] for p in both]
        ratio_lines.append(f"- wall time {base} / {config} where both decided ({len(both)}): "
                           + (f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
                              f"max {max(ratios):.2f})" if ratios else "-"))
    lines = ["# One decision MILP vs ReLU-split sub-domains on 2 threads (MNIST 784-24-24-24-10)", "",
             f"Closing probes (`upper - {CLOSING_FACTOR} tol`) of the {len(pairs)} unknown queries of "
             f"`{args.journal}` closest to ending; CROWN bounds, SCIP, {args.time_limit:g} s per probe, "
             "one probe at a time on 2 cores. `2 threads x D`: split into about 2 D sub-domains "
             "(`DOMAINS_PER_THREAD = D`).", "", markdown_table(table, list(table[0])), "",
             f"Disagreements between decided runs: {disagree}", *ratio_lines, "",
             "| image | target | norm | eps | " + " | ".join(f"{c} | s | sub-MILPs" for c in configs) + " |",
             "|---|---|---|---|" + "---|---|---|" * len(configs)]
    for (image, target, norm), p in sorted(pairs.items()):
        eps = next(iter(p.values()))["eps"]
        cells = []
        for config in configs:
            r = p.get(config, {})
            cells += [str(r.get("answer", "")), str(r.get("seconds", "")), str(r.get("milps", ""))]
        lines.append(f"| {image} | {target} | {norm} | {eps:.6g} | " + " | ".join(cells) + " |")
    lines += ["", "Machine: " + json.dumps(machine_info()), "", "Solvers: " + json.dumps(solver_versions())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--journal", default="minimal_distortion_lns60")
    parser.add_argument("--name", default="split_milp")
    parser.add_argument("--domains-per-thread", type=int, nargs="+", default=[OLD_DOMAINS_PER_THREAD],
                        help="run the 2-thread split with each of these DOMAINS_PER_THREAD values")
    parser.add_argument("--skip-single", action="store_true", help="no 1-thread (one MILP) runs")
    parser.add_argument("--skip-split", action="store_true", help="no 2-thread (split) runs")
    parser.add_argument("--heuristics", nargs="+", default=None, choices=tuple(HEURISTICS),
                        help="run every config with each SCIP heuristics setting (default: the library's)")
    args = parser.parse_args(argv)
    if min(args.domains_per_thread) < 1:
        parser.error("--domains-per-thread must be >= 1")
    import torch

    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo
    from exactverify.queries import split, stages
    from exactverify.queries.checks import make_query

    _, _, x_test, _ = zoo.load_mnist()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    journal = RESULTS_DIR / f"{args.name}.jsonl"  # one row per line as it is known; a rerun resumes
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()] if journal.exists() else []
    done = {(r["image"], r["target"], r["norm"], config_of(r)) for r in rows}
    runs = ([] if args.skip_single else [(1, None)]) + ([] if args.skip_split else
                                                        [(2, d) for d in args.domains_per_thread])
    settings = args.heuristics or [stages.DECISION_HEURISTICS]
    with journal.open("a") as sink:
        for probe in probes(args.journal, args.probes):  # "image" is the MNIST test index
            x = np.asarray(x_test[probe["image"]], dtype=np.float64).reshape(-1)
            query = make_query(network, x, probe["norm"], probe["target"], None, (0.0, 1.0), ev.DEFAULT_MARGIN)
            for (threads, per_thread), heuristics in itertools.product(runs, settings):
                row = {**probe, "threads": threads, "domains_per_thread": per_thread, "heuristics": heuristics}
                if (probe["image"], probe["target"], probe["norm"], config_of(row)) in done:
                    continue
                if per_thread is not None:
                    split.DOMAINS_PER_THREAD = per_thread
                stages.DECISION_HEURISTICS = heuristics
                row.update(decide(query, probe["eps"], threads, args.time_limit))
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                rows.append(row)
    write_results(args.name, rows, summarise(rows, args))
    print(summarise(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
