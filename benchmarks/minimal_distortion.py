"""Provably minimal L-inf / L1 adversarial distortion on MNIST (issue: exact engine).

The project's 784-24-24-24-10 network, the first N correctly classified MNIST test images
x 9 targets x {linf, l1}. The fast configuration (bisection, SCIP, CROWN bounds: the
library's defaults) runs on every query; the comparisons (bisection vs direct, SCIP vs
OR-Tools, bound method) run on the first ``--compare-images``. Each row is appended to a
JSONL journal as soon as it is known, so an interrupted run resumes where it stopped;
CSV/JSON/markdown are written at the end.

    python benchmarks/minimal_distortion.py [--images 10] [--time-limit 60] [--workers 2]
    python benchmarks/minimal_distortion.py --configs fast --name NAME --unproved-in EARLIER [...]
    python benchmarks/minimal_distortion.py --configs fast --bounds milp --name NAME [...]
    python benchmarks/minimal_distortion.py --configs compare --compare-images 1 --name NAME
    python benchmarks/minimal_distortion.py --report-from OLD NEWER ... --name minimal_distortion

``--unproved-in`` skips the queries an earlier journal proved with any bound method.
``--report-from`` runs nothing: it takes the latest row per query over the named journals
(later names win, so a rerun of the hard queries after an engine change replaces their
rows) and writes the tables with the journal of every row.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import code_version, machine_info, solver_versions, write_results  # noqa: E402

from exactverify.queries.checks import BOUND_METHODS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: The library's defaults (bisection, SCIP, CROWN bounds): cheap bound passes, each exact call
#: on a small ball. Session 2's main configuration, direct MILP with LP-tightened bounds,
#: proved 1/27 queries in 30 s (``minimal_distortion_s2_30s.md``).
FAST = ("bisection", "scip", "crown")
#: One change from FAST each: the method, the backend, the bound method (interval / LP).
COMPARISONS = [("direct", "scip", "crown"), ("bisection", "ortools", "crown"),
               ("bisection", "scip", "interval"), ("bisection", "scip", "lp")]


def _key(row: dict) -> tuple:
    return (row["image"], row["target"], row["norm"], row["method"], row["backend"], row["bounds"])


def run_query(job: dict) -> dict:
    """One minimal-distortion query in a worker process (single-threaded torch)."""
    import torch

    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo

    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    x = np.asarray(job["x"], dtype=np.float64)
    start = time.perf_counter()
    try:
        result = ev.minimal_distortion(network, x, norm=job["norm"], target=job["target"], domain=(0.0, 1.0),
                                       method=job["method"], tol=job["tol"], backend=job["backend"],
                                       bounds_method=job["bounds"], time_limit=job["time_limit"],
                                       threads=job.get("threads", 1))
        row = {"lower": result.lower, "upper": result.upper if math.isfinite(result.upper) else None,
               "status": result.status, "reason": result.reason, "attack": result.attack_distortion,
               "solver_calls": sum(r.stage in ("milp", "smt") for r in result.history),
               "nodes": sum(r.nodes or 0 for r in result.history),
               "steps": [compact_step(r) for r in result.history]}
    except Exception as exc:  # recorded, never hidden: a crash is a benchmark result too
        row = {"lower": None, "upper": None, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
               "attack": None, "solver_calls": 0, "nodes": 0}
    row.update({k: job[k] for k in ("image", "label", "target", "norm", "method", "backend", "bounds", "time_limit")})
    row["threads"] = job.get("threads", 1)
    row["commit"], row["host"] = job.get("commit"), platform.platform()
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def compact_step(record) -> list:
    """One history step as ``[stage, eps, outcome, seconds, nodes, raw status, unstable per layer]``:
    where a search spent its time (the journal keeps it for every query)."""
    eps = None if record.eps is None else float(record.eps)
    return [record.stage, eps, record.outcome, round(record.seconds, 3), record.nodes, record.raw_status,
            record.unstable]


def plan(args, images: np.ndarray, labels: np.ndarray, indices: list[int]) -> list[dict]:
    jobs = []
    subset = set(indices[: args.compare_images])
    configs = {"fast": [FAST], "compare": COMPARISONS, "all": [FAST] + COMPARISONS}[args.configs]
    for config in configs:
        method, backend, bounds_method = config
        if config == FAST:
            bounds_method = args.bounds
        for i in indices if config == FAST else [i for i in indices if i in subset]:
            for norm in args.norms:
                for target in range(10):
                    if target == labels[i]:
                        continue
                    jobs.append({"image": int(i), "label": int(labels[i]), "target": target, "norm": norm,
                                 "method": method, "backend": backend, "bounds": bounds_method,
                                 "tol": args.tol, "time_limit": args.time_limit, "threads": args.threads,
                                 "commit": args.commit, "x": images[i].tolist()})
    return jobs


def merge_journals(names: list[str]) -> list[dict]:
    """The latest row per query over ``results/NAME.jsonl`` (later names win), each tagged with its journal."""
    latest: dict[tuple, dict] = {}
    missing = [name for name in names if not (RESULTS / f"{name}.jsonl").is_file()]
    if missing:
        raise SystemExit(f"--report-from: no journal results/NAME.jsonl for {missing}")
    for name in names:
        for line in (RESULTS / f"{name}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[_key(row)] = {**row, "source": name}
    return [latest[key] for key in sorted(latest, key=lambda k: tuple(str(v) for v in k))]


def _relative_gap(row: dict) -> float | None:
    if row["upper"] is None or row["lower"] is None or not row["upper"]:
        return None
    return (row["upper"] - row["lower"]) / row["upper"]


def _table(rows: list[dict], args) -> list[str]:
    """Markdown table: one line per (configuration, norm)."""
    lines = ["| method | backend | bounds | norm | proved optimal / total | median s | max s | mean minimal (proved) "
             "| mean upper (all) | unproved: median (upper-lower)/upper | rows from |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["backend"], row["bounds"], row["norm"]), []).append(row)
    for (method, backend, bounds_method, norm), group in sorted(groups.items()):
        proved = [r for r in group if r["status"] in ("optimal", "no_counterexample")]
        times = [r["seconds"] for r in group]
        uppers = [r["upper"] for r in proved if r["upper"] is not None]
        all_uppers = [r["upper"] for r in group if r["upper"] is not None]
        gaps = [g for g in (_relative_gap(r) for r in group if r not in proved) if g is not None]
        sources: dict[str, int] = {}
        for row in group:
            threads = row.get("threads", 1)
            name = row.get("source", args.name) + (f", {threads} threads" if threads > 1 else "")
            sources[name] = sources.get(name, 0) + 1
        lines.append(f"| {method} | {backend} | {bounds_method} | {norm} | {len(proved)}/{len(group)} | "
                     f"{statistics.median(times):.2f} | {max(times):.2f} | "
                     f"{(statistics.mean(uppers) if uppers else float('nan')):.4f} | "
                     f"{(statistics.mean(all_uppers) if all_uppers else float('nan')):.4f} | "
                     f"{f'{statistics.median(gaps):.3f}' if gaps else '-'} | "
                     + ", ".join(f"{name} ({count})" for name, count in sources.items()) + " |")
    return lines


def summarise(rows: list[dict], args) -> str:
    lines = ["# Minimal adversarial distortion on MNIST (784-24-24-24-10)", "",
             f"Per-query time limit {args.time_limit} s, tol {args.tol}, "
             + ("each journal's workers and threads per query: see its own markdown file (rows with several "
                "threads per query ran one at a time)." if args.report_from else
                f"{args.workers} worker process(es) x {args.threads} thread(s) per query."), "",
             "## Configurations run on every query", "",
             "The library's defaults are bisection, SCIP and CROWN bounds (`bounds=crown`).", ""]
    config = (lambda r: (r["method"], r["backend"], r["bounds"]))  # noqa: E731
    queries = {(r["image"], r["target"], r["norm"]) for r in rows}
    covered: dict[tuple, set] = {}
    for row in rows:
        covered.setdefault(config(row), set()).add((row["image"], row["target"], row["norm"]))
    everywhere = {c for c, seen in covered.items() if seen == queries} or {FAST}
    lines += _table([r for r in rows if config(r) in everywhere] or rows, args)
    compared = sorted({r["image"] for r in rows if config(r) not in everywhere})
    if compared:
        lines += ["", f"## Every configuration on the same queries (images {compared})", "",
                  "One change from the defaults (bisection, SCIP, CROWN) per line; means of the proved "
                  "minima are over different subsets, the mean upper bound over all queries is comparable.", ""]
        lines += _table([r for r in rows if r["image"] in compared], args)
    errors = [r for r in rows if r["status"] == "error"]
    if errors:
        lines += ["", f"{len(errors)} queries raised errors, e.g. `{errors[0]['reason']}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--compare-images", type=int, default=2, help="images used by the comparison configs")
    parser.add_argument("--norms", nargs="+", default=["linf", "l1"])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per query (split decision MILPs); workers x threads should fit the cores")
    parser.add_argument("--bounds", choices=BOUND_METHODS, default=FAST[2],
                        help="bound method of the fast configuration (e.g. milp: MILP-tightened second layer)")
    parser.add_argument("--name", default="minimal_distortion")
    parser.add_argument("--configs", choices=("all", "fast", "compare"), default="all",
                        help="fast: the defaults on every query; compare: the comparison configurations on "
                             "--compare-images; all: both")
    parser.add_argument("--report-from", nargs="+", default=None, metavar="NAME",
                        help="run nothing: tables from the latest row per query over results/NAME.jsonl")
    parser.add_argument("--unproved-in", nargs="+", default=None, metavar="NAME",
                        help="only the queries that none of results/NAME.jsonl proved optimal (a rerun of the "
                             "hard ones after an engine change)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.report_from:
        return report(args)

    from exactverify import zoo

    _, _, x_test, y_test = zoo.load_mnist()
    import torch

    import exactverify as ev

    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    predictions = network.forward(torch.as_tensor(x_test[:200])).argmax(1).numpy()
    indices = [i for i in range(200) if predictions[i] == y_test[i]][: args.images]
    args.commit = code_version()
    jobs = plan(args, x_test, y_test, indices)
    if args.unproved_in:
        earlier = [json.loads(line) for name in args.unproved_in
                   for line in (RESULTS / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        proved = {_key(row)[:5] for row in earlier if row["status"] == "optimal"}  # any bound method
        jobs = [j for j in jobs if _key(j)[:5] not in proved]

    RESULTS.mkdir(exist_ok=True)
    journal = RESULTS / f"{args.name}.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[_key(row)] = row
    todo = [j for j in jobs if _key(j) not in done]
    print(f"{len(jobs)} queries, {len(done)} already done, {len(todo)} to run", flush=True)
    from tqdm import tqdm

    with journal.open("a") as sink, ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_query, job) for job in todo]
        for future in tqdm(as_completed(futures), total=len(futures), desc="queries"):
            row = future.result()
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[_key(row)] = row
    rows = [done[_key(j)] for j in jobs if _key(j) in done]
    summary = summarise(rows, args)
    extra = {"machine": machine_info(), "solvers": solver_versions()}
    summary += "\nMachine: " + json.dumps(extra["machine"]) + "\n\nSolvers: " + json.dumps(extra["solvers"]) + "\n"
    write_results(args.name, rows, summary)
    print(summary)
    return 0


def report(args) -> int:
    """Tables from journals already written (no query runs); machine and solvers are this one's."""
    rows = merge_journals(args.report_from)
    hosts: dict[str, int] = {}
    for row in rows:
        if row.get("host"):
            hosts[row["host"]] = hosts.get(row["host"], 0) + 1
    summary = summarise(rows, args)
    summary += ("\nRows merged from " + ", ".join(f"`{n}.jsonl`" for n in args.report_from)
                + " (latest per query wins). Hosts of the rows that record one: "
                + (", ".join(f"`{h}` ({n})" for h, n in sorted(hosts.items())) or "none") + ". Machine and solvers "
                  "of the report run: " + json.dumps(machine_info()) + "; " + json.dumps(solver_versions()) + "\n")
    write_results(args.name, rows, summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
