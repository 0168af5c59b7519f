"""Does SCIP ever call a region "robust" (infeasible) that holds a re-checked counterexample?

Random inputs of the zoo 784-24-24-24-10 MNIST network (uniform, sparse binary and sparse
grey images; L-inf and L1; targeted and untargeted): a re-checked counterexample is found
first (PGD, then SCIP minimising the distortion with presolve off), at distance ``d``. The
decision MILP over the ball of radius ``d * (1 + f)`` then has a feasible point, so any
"infeasible" is a wrong proof. Each MILP is built twice from the same CROWN (and LP) bounds:
exact bounds (``padding=0``, the encoder before ``BOUND_PADDING``) and padded bounds (the
default). Each row also says whether the counterexample's every neuron lies within the bounds
(a bound that cuts it off is unsound). Rows go to a JSONL store as they are produced (resumable).

    python benchmarks/solver_soundness.py [--queries 60] [--time-limit 10] [--methods crown lp milp]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine_info, markdown_table, solver_versions, write_results  # noqa: E402

#: Radii at which the decision MILPs are solved, relative to the counterexample's distance.
FACTORS = (1e-6, 1e-2)
KINDS = ("uniform", "binary", "sparse")


def random_input(seed: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % 3]
    if kind == "uniform":
        return kind, rng.uniform(0, 1, 784)
    if kind == "binary":
        return kind, (rng.uniform(0, 1, 784) < 0.2).astype(np.float64)
    return kind, np.clip(rng.normal(0, 1, 784), 0, 1) * (rng.uniform(0, 1, 784) < 0.3)


def inside(network, point: np.ndarray, net_bounds) -> bool:
    """Whether every value of ``network`` at ``point`` lies within ``net_bounds`` (float64, 1e-9 slack)."""
    value = torch.as_tensor(point, dtype=torch.float64).reshape(1, *network.input_shape)
    for index in range(len(network.layers) + 1):
        if index:
            value = network.layers[index - 1].forward(value)
        slack = 1e-9 * (1 + value.abs())
        low, up = net_bounds.lower[index], net_bounds.upper[index]
        if bool((value < low - slack).any()) or bool((value > up + slack).any()):
            return False
    return True


def run_seed(network, seed: int, time_limit: float, methods=("crown", "lp")) -> list[dict]:
    """The decision MILPs of one random query, exact vs padded bounds; [] if no counterexample was found."""
    from encoders.backends import make_backend
    from encoders.milp import BOUND_PADDING, encode_query
    from exactverify.bounds import bounds
    from exactverify.queries.checks import make_query
    from exactverify.queries.stages import accept_point, attack

    kind, x = random_input(seed)
    rng = np.random.default_rng(10_000 + seed)
    norm = ("l1", "linf")[(seed // 3) % 2]
    label = int(network.forward(torch.as_tensor(x)[None]).argmax())
    target = None if seed % 2 == 0 else int(rng.choice([k for k in range(10) if k != label]))
    query = make_query(network, x, norm, target, None, (0.0, 1.0), 1e-5, None)
    found = [f for f in attack(query, [query.max_radius() * 2.0 ** -k for k in range(16)]) if f]
    if not found:
        return []
    best = min(found, key=lambda f: f.distortion)
    region = query.region(best.distortion)
    solver = make_backend("scip")
    encoding = encode_query(solver, network, region, query.spec(), bounds(network, region, method="crown"),
                            distortion=True)
    solver.set_objective([encoding.distortion], [1.0], minimize=True)
    result = solver.solve(time_limit=time_limit, params={"presolving/maxrounds": 0})
    if result.values is not None:
        smaller = accept_point(query, result.values[encoding.input], best.distortion, "scip without presolve")
        if smaller.outcome == "not_robust" and smaller.distortion < best.distortion:
            best = smaller
    rows = []
    for factor in FACTORS:
        region = query.region(best.distortion * (1 + factor))
        for method in methods:
            net_bounds = bounds(network, region, method=method)
            holds = inside(network, best.point, net_bounds)
            for padding in (0.0, BOUND_PADDING):
                solver = make_backend("scip")
                encode_query(solver, network, region, query.spec(), net_bounds, padding=padding)
                result = solver.solve(time_limit=time_limit)
                rows.append({"seed": seed, "kind": kind, "norm": norm, "target": target, "distance": best.distortion,
                             "factor": factor, "bounds": method, "padding": padding,
                             "status": result.raw_status, "seconds": round(result.seconds, 3),
                             "wrong_robust": result.raw_status == "infeasible", "point_in_bounds": holds})
    return rows


def summarise(rows: list[dict]) -> str:
    table = []
    for padding in sorted({r["padding"] for r in rows}):
        for method in dict.fromkeys(r["bounds"] for r in rows):
            sel = [r for r in rows if r["padding"] == padding and r["bounds"] == method]
            counts = Counter(r["status"] for r in sel)
            table.append({"padding": padding, "bounds": method, "milps": len(sel),
                          "wrong robust (infeasible)": sum(r["wrong_robust"] for r in sel),
                          "feasible": counts["optimal"] + counts["feasible"], "timeout": counts["timelimit"],
                          "queries with a wrong robust": len({r["seed"] for r in sel if r["wrong_robust"]}),
                          "counterexample outside the bounds": sum(r.get("point_in_bounds") is False for r in sel),
                          "median s": round(float(np.median([r["seconds"] for r in sel])), 3) if sel else None})
    by_kind = []
    for kind in KINDS:
        for norm in ("linf", "l1"):
            sel = [r for r in rows if r["kind"] == kind and r["norm"] == norm]
            by_kind.append({"input": kind, "norm": norm, "queries": len({r["seed"] for r in sel}),
                            **{f"with a wrong robust, padding {p:g}": len({r["seed"] for r in sel
                                                                          if r["wrong_robust"] and r["padding"] == p})
                               for p in sorted({r["padding"] for r in rows})}})
    seeds = len({r["seed"] for r in rows})
    return ("# Wrong \"robust\" answers of SCIP on MILPs that hold a counterexample\n\n"
            f"{seeds} random queries of the 784-24-24-24-10 zoo net, decision MILPs at radius d (1 + f), "
            f"f in {FACTORS}, d the distance of a re-checked counterexample.\n\n"
            + markdown_table(table, list(table[0])) + "\n\nBy input kind and norm (queries):\n\n"
            + markdown_table(by_kind, list(by_kind[0])) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--name", default="solver_soundness")
    parser.add_argument("--methods", nargs="+", default=["crown", "lp"],
                        help="bound methods the MILPs are built from (milp: the MILP-tightened second layer)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo

    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    store = RESULTS_DIR / f"{args.name}.jsonl"
    store.parent.mkdir(exist_ok=True)
    rows = [json.loads(line) for line in store.read_text().splitlines() if line.strip()] if store.exists() else []
    done = {r["seed"] for r in rows} | {r["seed"] for r in rows if r.get("skipped")}
    from tqdm import tqdm

    with store.open("a") as sink:
        for seed in tqdm([s for s in range(args.queries) if s not in done], desc="queries"):
            new = run_seed(network, seed, args.time_limit, args.methods)
            new = new or [{"seed": seed, "skipped": "no counterexample"}]
            for row in new:
                sink.write(json.dumps(row) + "\n")
            sink.flush()
            rows.extend(new)
    measured = [r for r in rows if not r.get("skipped") and r["seed"] < args.queries]
    summary = summarise(measured)
    summary += "\nMachine: " + json.dumps(machine_info()) + "\n\nSolvers: " + json.dumps(solver_versions()) + "\n"
    write_results(args.name, measured, summary, extra={"args": vars(args)})
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
