"""Which MILP engine should the OR-Tools backend use? Measure it on ReLU big-M MILPs.

Each instance is a random MLP (He-scaled Gaussian weights) with input box ``x0 +- eps``;
``y = relu(W x + b)`` is encoded by hand with one binary per undecided neuron and big-M
values taken from interval bounds, and the MILP minimises the first output. Every route
(pyscipopt, ortools with each exact engine, optionally z3) solves the same model through
the ``encoders.backends`` interface. A result is checked two ways: the returned input is
pushed through the network in float64 and must reproduce the claimed objective, and a
claimed optimum must agree with every other route's optimum and respect their dual bounds.

Writes ``benchmarks/results/backend_choice.csv`` (one row per instance x route) and
``benchmarks/results/backend_choice.md`` (summary, versions, machine).

    python benchmarks/backend_choice.py            # full run (~20 min on 2 busy cores)
    python benchmarks/backend_choice.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.backends import Backend, make_backend, solver_versions

RESULTS = Path(__file__).resolve().parent / "results"
# An objective reproduced by the float64 forward pass within this (absolute + relative) slack
# counts as consistent; solvers work at feasibility tolerance ~1e-6 on values of order 1-10.
CHECK_TOL = 1e-4
# Two optima (or an optimum and another route's dual bound) further apart than this disagree.
AGREE_TOL = 1e-4

ROUTES = {  # label -> (backend name, constructor options)
    "pyscipopt": ("scip", {}),
    "pyscipopt-stock": ("scip", {"params": {"separating/aggregation/freq": 10}}),
    "ortools-SCIP": ("ortools", {"solver": "SCIP", "params": ""}),  # stock SCIP settings
    "ortools-SCIP-noaggr": ("ortools", {"solver": "SCIP"}),  # the backend's default
    "ortools-HIGHS": ("ortools", {"solver": "HIGHS"}),
    "ortools-CBC": ("ortools", {"solver": "CBC"}),
    "z3": ("z3", {}),
}


@dataclass
class Mlp:
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = w @ x + b
            if k < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return x


def random_mlp(rng: np.random.Generator, widths: list[int]) -> Mlp:
    pairs = zip(widths[:-1], widths[1:], strict=True)
    weights = [rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in)) for n_in, n_out in pairs]
    biases = [rng.normal(0.0, 0.1, size=n_out) for n_out in widths[1:]]
    return Mlp(weights, biases)


def encode(model: Backend, net: Mlp, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Big-M MILP of ``net`` on the box; returns (input vars, output vars, number of binaries)."""
    x = inputs = model.add_vars(lower, upper, prefix="x")
    lo, hi = lower, upper
    binaries = 0
    last = len(net.weights) - 1
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        zl, zu = wp @ lo + wn @ hi + b, wp @ hi + wn @ lo + b
        z = model.add_vars(zl, zu, prefix=f"z{k}_")
        for j in range(w.shape[0]):  # z_j = W_j x + b_j
            model.add_constraint(np.append(x, z[j]), np.append(w[j], -1.0), "==", -b[j])
        if k == last:
            return inputs, z, binaries
        h = np.empty(w.shape[0], dtype=np.int64)
        for j in range(w.shape[0]):
            if zl[j] >= 0.0:  # always active
                h[j] = z[j]
            elif zu[j] <= 0.0:  # always inactive
                h[j] = model.add_var(0.0, 0.0, name=f"h{k}_{j}")
            else:  # undecided: h >= z, h >= 0, h <= z - l (1 - d), h <= u d
                h[j] = model.add_var(0.0, zu[j], name=f"h{k}_{j}")
                d = model.add_binary(f"d{k}_{j}")
                binaries += 1
                model.add_constraint([h[j], z[j]], [1.0, -1.0], ">=", 0.0)
                model.add_constraint([h[j], z[j], d], [1.0, -1.0, -zl[j]], "<=", -zl[j])
                model.add_constraint([h[j], d], [1.0, -zu[j]], "<=", 0.0)
        x, lo, hi = h, np.maximum(zl, 0.0), np.maximum(zu, 0.0)
    raise AssertionError("unreachable")


def instances(quick: bool) -> list[tuple[str, list[int], float, int]]:
    """(label, widths, eps, seed): shapes like the zoo networks, easy to moderately hard."""
    shapes = [([3, 8, 8, 2], 0.5), ([4, 16, 16, 3], 0.5), ([8, 24, 24, 3], 0.3), ([10, 32, 32, 4], 0.2),
              ([12, 40, 40, 40, 5], 0.1)]
    seeds = [0, 1] if quick else [0, 1, 2]
    shapes = shapes[:2] if quick else shapes
    return [(f"{'x'.join(map(str, w))}-e{eps}-s{s}", w, eps, s) for w, eps in shapes for s in seeds]


def run(quick: bool, time_limit: float, routes: list[str], z3_max_binaries: int) -> list[dict]:
    rows = []
    for label, widths, eps, seed in instances(quick):
        rng = np.random.default_rng(seed)
        net = random_mlp(rng, widths)
        x0 = rng.uniform(-1.0, 1.0, size=widths[0])
        results = {}
        for route in routes:
            backend, options = ROUTES[route]
            model = make_backend(backend, **options)
            xs, ys, nbin = encode(model, net, x0 - eps, x0 + eps)
            if route == "z3" and nbin > z3_max_binaries:
                continue
            model.set_objective([ys[0]], [1.0])
            cpu = time.process_time()
            res = model.solve(time_limit=time_limit, threads=1)
            cpu = time.process_time() - cpu
            check = None
            if res.values is not None:
                check = float(net.forward(res.values[xs])[0])
            results[route] = res
            rows.append({"instance": label, "binaries": nbin, "route": route,
                         "status": res.status.value, "raw_status": res.raw_status, "objective": res.objective,
                         "bound": res.bound, "forward_check": check,
                         "seconds": round(res.seconds, 4), "cpu_seconds": round(cpu, 4),
                         "nodes": res.node_count, "time_limit": time_limit})
            print(f"{label:28s} bin={nbin:4d} {route:19s} {res.status.value:10s} obj={res.objective!s:22s} "
                  f"t={res.seconds:7.2f}s cpu={cpu:7.2f}s", flush=True)
        judge(rows[-len(results):], results)
    return rows


def judge(rows: list[dict], results: dict) -> None:
    """Fill ``consistent``: forward pass reproduces the objective; optima agree; no optimum
    beats another route's proven bound."""
    optima = {r: res.objective for r, res in results.items() if res.status.value == "optimal"}
    bounds = {r: res.bound for r, res in results.items() if res.bound is not None and res.status.value
              in ("optimal", "feasible")}
    for row in rows:
        ok = True
        if row["objective"] is not None and row["forward_check"] is not None:
            ok &= abs(row["objective"] - row["forward_check"]) <= CHECK_TOL * (1 + abs(row["objective"]))
        if row["status"] == "optimal":
            mine = row["objective"]
            ok &= all(abs(mine - other) <= AGREE_TOL * (1 + abs(other)) for other in optima.values())
            ok &= all(mine >= b - AGREE_TOL * (1 + abs(b)) for b in bounds.values())  # minimisation
        if row["status"] == "infeasible":
            ok = False  # every instance is feasible (x0 is a point of the box)
        row["consistent"] = ok


def write(rows: list[dict], routes: list[str], time_limit: float, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["instance", "binaries", "route", "status", "raw_status", "objective", "bound", "forward_check",
              "consistent", "seconds", "cpu_seconds", "nodes", "time_limit"]
    with open(out / "backend_choice.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    versions = solver_versions()
    lines = [
        "# OR-Tools engine choice on ReLU big-M MILPs",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Time limit {time_limit:g} s per solve, 1 thread. Objective: minimise output 0 of a random MLP "
        "over an input box; big-M from interval bounds. `consistent` = forward pass reproduces the objective, "
        "optima agree across routes, no optimum beats another route's proven bound.",
        "",
        "Wall seconds are inflated when other jobs share the machine; CPU seconds of this process are the "
        "fairer comparison (1 solver thread). Mean CPU is over all instances, timeouts counted at their cost.",
        "",
        "| route | instances | optimal | feasible | timeout | other | inconsistent | median wall s | mean wall s "
        "| median CPU s | mean CPU s | max CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route in routes:
        mine = [r for r in rows if r["route"] == route]
        if not mine:
            continue
        secs = [r["seconds"] for r in mine]
        cpus = [r["cpu_seconds"] for r in mine]
        count = {s: sum(r["status"] == s for r in mine) for s in ("optimal", "feasible", "timeout")}
        other = len(mine) - sum(count.values())
        bad = sum(not r["consistent"] for r in mine)
        lines.append(f"| {route} | {len(mine)} | {count['optimal']} | {count['feasible']} | {count['timeout']} | "
                     f"{other} | {bad} | {statistics.median(secs):.2f} | {statistics.mean(secs):.2f} | "
                     f"{statistics.median(cpus):.2f} | {statistics.mean(cpus):.2f} | {max(cpus):.2f} |")
    overrun = [r for r in rows if r["seconds"] > 1.5 * time_limit + 1]
    lines += ["", f"Time-limit overruns (> 1.5 x limit + 1 s): {len(overrun)}"
              + (": " + ", ".join(f"{r['route']} on {r['instance']} ({r['seconds']:.1f} s)" for r in overrun)
                 if overrun else ".")]
    text = "\n".join(lines) + "\n"
    (out / "backend_choice.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small shapes, two seeds")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve")
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--z3-max-binaries", type=int, default=40, help="skip z3 on larger models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = run(args.quick, args.time_limit, args.routes, args.z3_max_binaries)
    print(write(rows, args.routes, args.time_limit, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
