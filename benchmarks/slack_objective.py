"""Decision MILPs: the spec as a constraint vs its slack maximised with an objective cutoff.

"Is some x of the eps-ball misclassified as class t" is asked two ways on the same model
(same region, same bounds, same big-M network encoding, SCIP with the backend's defaults):
- ``constraint``: every row of the spec ``A y <= b`` is a constraint, no objective;
- ``slack``: maximise ``s <= b - A y`` (``encoders.milp.encode_spec_slack``) with the
  objective cutoff ``-SLACK_CUTOFF`` and ``stop_at=0`` (what ``exactverify.verify`` does).

Queries: the MNIST 784-24-24-24-10 network (``zoo.mnist_network``, needs ``../shared/data``),
test images 0..N-1 with every target, at eps = ``fraction`` x the smallest L-inf distortion
PGD finds (fractions 0.6 and 0.85: the band where bisection steps near the minimum land),
CROWN bounds. Both forms must agree whenever both decide. Writes
``benchmarks/results/slack_objective.{csv,json,md}``.

Usage: ``python benchmarks/slack_objective.py [--images 2] [--time-limit 30]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, markdown_table, solver_versions, write_results  # noqa: E402

FRACTIONS = (0.6, 0.85)
FORMS = ("constraint", "slack")


def pgd_radius(query) -> float | None:
    """The smallest of a grid of L-inf radii at which PGD finds a re-checked adversarial point."""
    from exactverify.queries.stages import attack

    grid = [0.01 * k for k in range(1, 41)]
    found = [f for f in attack(query, grid) if f is not None]
    return min(f.distortion for f in found) if found else None


def decide(query, eps: float, form: str, time_limit: float) -> dict:
    """One decision MILP in ``form``; its answer, time and nodes."""
    from encoders.backends import Status, make_backend
    from encoders.milp import encode_query
    from exactverify.queries.stages import SLACK_CUTOFF, live_disjuncts, spec_bounds

    spec = query.spec()
    net_bounds, row_lower = spec_bounds(query, spec, eps, "crown")
    live = live_disjuncts(spec, row_lower)
    if live is None:
        return {"answer": "robust (bounds)", "seconds": 0.0, "nodes": 0}
    solver = make_backend("scip")
    encoding = encode_query(solver, query.network, query.region(eps), live, net_bounds, slack=form == "slack")
    options = {}
    if form == "slack":
        solver.set_objective([encoding.slack], [1.0], minimize=False)
        options = {"cutoff": -SLACK_CUTOFF, "stop_at": 0.0}
    result = solver.solve(time_limit=time_limit, **options)
    if result.status == Status.INFEASIBLE:
        answer = "robust"
    elif result.status.has_solution:
        answer = "point"
    else:
        answer = "timeout"
    return {"answer": answer, "seconds": round(result.seconds, 3), "nodes": result.node_count,
            "raw_status": result.raw_status}


def summarise(rows: list[dict], time_limit: float) -> str:
    table = []
    for form in FORMS:
        mine = [r for r in rows if r["form"] == form]
        decided = [r for r in mine if r["answer"] != "timeout"]
        table.append({"form": form, "queries": len(mine), "decided": len(decided),
                      "robust": sum(r["answer"] == "robust" for r in mine),
                      "point": sum(r["answer"] == "point" for r in mine),
                      "median s": statistics.median(r["seconds"] for r in mine) if mine else None,
                      "total s": round(sum(r["seconds"] for r in mine), 1)})
    pairs = {}
    for r in rows:
        pairs.setdefault((r["image"], r["target"], r["fraction"]), {})[r["form"]] = r
    both = [p for p in pairs.values() if len(p) == 2 and all(v["answer"] != "timeout" for v in p.values())]
    disagree = sum(1 for p in both if (p["constraint"]["answer"] == "robust") != (p["slack"]["answer"] == "robust"))
    ratio = (sum(p["constraint"]["seconds"] for p in both) / max(sum(p["slack"]["seconds"] for p in both), 1e-9)
             if both else None)
    text = ["# Decision MILPs: spec as a constraint vs maximised slack with a cutoff", "",
            f"MNIST 784-24-24-24-10, CROWN bounds, SCIP, time limit {time_limit} s per MILP, "
            f"eps = {FRACTIONS} x PGD's smallest distortion.", "",
            markdown_table(table, ["form", "queries", "decided", "robust", "point", "median s", "total s"]),
            f"Disagreements where both decided: **{disagree}**. On the {len(both)} queries both decided, "
            f"constraint / slack total time = **{ratio:.2f}x**." if ratio is not None else "No query decided by both.",
            ""]
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo
    from exactverify.queries.checks import make_query

    _, _, x_test, y_test = zoo.load_mnist()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    rows = []
    for image in range(args.images):
        x = x_test[image].reshape(-1).astype(np.float64)
        for target in range(10):
            if target == int(y_test[image]):
                continue
            query = make_query(network, x, "linf", target, None, (0.0, 1.0), ev.DEFAULT_MARGIN, None)
            radius = pgd_radius(query)
            if radius is None:
                continue
            for fraction in FRACTIONS:
                for form in FORMS:
                    tick = time.perf_counter()
                    row = {"image": image, "label": int(y_test[image]), "target": target, "fraction": fraction,
                           "eps": round(fraction * radius, 6), "form": form,
                           **decide(query, fraction * radius, form, args.time_limit)}
                    row["wall_s"] = round(time.perf_counter() - tick, 3)
                    rows.append(row)
                    print(row, flush=True)
    summary = summarise(rows, args.time_limit)
    summary += f"\nMachine: {machine_info()}\n\nSolvers: {solver_versions()}\n"
    write_results("slack_objective", rows, summary, extra={"time_limit": args.time_limit, "fractions": FRACTIONS})
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
