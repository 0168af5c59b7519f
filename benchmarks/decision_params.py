"""SCIP settings for the decision MILPs, measured on closing probes of the MNIST benchmark.

A minimal-distortion search spends most of its time in one slack-form decision MILP just
below the optimum (a closing probe), which SCIP has to prove infeasible under the objective
cutoff. With the cutoff fixed, the order in which nodes are explored changes only the cost of
a node and what SCIP learns on the way (conflicts, pseudo-costs), and root cut rounds cost
time at the root and make every later LP larger: both may be cheaper another way. This
decides each probe with every setting of :data:`SETTINGS` (raw SCIP parameters over the
backend's ``DEFAULT_PARAMS``, in place of the library's ``DECISION_PARAMS``), CROWN bounds, one MILP on one
thread, each in a fresh process, two runs at a time all along (both cores), so every run
sees about the same load; compare node counts first (SCIP is deterministic on one thread),
times second.

Writes ``benchmarks/results/NAME.{csv,json,md}`` and the resumable journal ``NAME.jsonl``;
needs ``../shared/data``.

Usage: ``python benchmarks/decision_params.py [--probe IMAGE:TARGET:NORM:EPS ...]
[--settings default dfs ...] [--time-limit 150] [--name decision_params]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from closing_probes import given_probes  # noqa: E402
from common import RESULTS_DIR, machine_info, markdown_table, solver_versions, write_results  # noqa: E402

#: SCIP parameters per setting name (over the backend's DEFAULT_PARAMS).
SETTINGS: dict[str, dict] = {
    "default": {},
    "dfs": {"nodeselection/dfs/stdpriority": 1_000_000},
    "roots0": {"separating/maxroundsroot": 0},
    "dfs-roots0": {"nodeselection/dfs/stdpriority": 1_000_000, "separating/maxroundsroot": 0},
    # session 16: over roots0 (the decisions' setting since session 15)
    "roots0-seed1": {"separating/maxroundsroot": 0, "randomization/randomseedshift": 1},
    "roots0-pscost": {"separating/maxroundsroot": 0, "branching/pscost/priority": 20_000},
    "roots0-norestart": {"separating/maxroundsroot": 0, "presolving/maxrestarts": 0},
    "roots0-obbt": {"separating/maxroundsroot": 0, "propagating/obbt/onlynonconvexvars": False},
    "roots0-nosym": {"separating/maxroundsroot": 0, "misc/usesymmetry": 0},
    "nocuts": {"separating/maxroundsroot": 0, "separating/maxrounds": 0},
    "roots0-nopresolve": {"separating/maxroundsroot": 0, "presolving/maxrounds": 0},
    "roots0-rel1": {"separating/maxroundsroot": 0, "branching/relpscost/maxreliable": 1},
}
#: Closing probes of queries the default engine proved in 20-50 s in
#: ``minimal_distortion_crown60`` (the radius of the probe that ended the search), 6 per norm.
DEFAULT_PROBES = (
    "0:1:linf:0.13562712992053466", "1:4:linf:0.20845811112857104", "6:0:linf:0.1017388017161646",
    "3:5:linf:0.09412581558591403", "4:8:linf:0.06401078638203132", "9:6:linf:0.12009376288669653",
    "9:5:l1:9.110032484027345", "7:5:l1:6.931854136537277", "0:5:l1:8.35231953649887",
    "4:7:l1:6.415880249929067", "7:0:l1:10.411965810628134", "10:4:l1:16.599248107087572",
)


def run_setting(probe: dict, setting: str, time_limit: float) -> dict:
    """One probe decided with one setting (a fresh process: the setting patches the backend)."""
    from common import mnist_benchmark_net
    from split_milp import decide

    import exactverify as ev
    from encoders.backends import scip
    from exactverify.queries import stages
    from exactverify.queries.checks import make_query

    stages.DECISION_PARAMS = {}  # the setting alone over the backend's defaults (``default``: before DECISION_PARAMS)
    scip.DEFAULT_PARAMS.update(SETTINGS[setting])
    network, images = mnist_benchmark_net()
    query = make_query(network, images[probe["image"]], probe["norm"], probe["target"], None, (0.0, 1.0),
                       ev.DEFAULT_MARGIN)
    return decide(query, probe["eps"], 1, time_limit, bounds_method="crown")


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def summarise(rows: list[dict], args) -> str:
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    base = args.baseline
    by_probe: dict[tuple, dict] = {}
    for r in rows:
        by_probe.setdefault((r["image"], r["target"], r["norm"], r["eps"]), {})[r["setting"]] = r
    table = []
    for setting in settings:
        for norm in ("linf", "l1", "all"):
            pairs = [(p[base], p[setting]) for key, p in by_probe.items()
                     if base in p and setting in p and norm in (key[2], "all")]
            both = [(a, b) for a, b in pairs if a["answer"] != "unknown" and b["answer"] != "unknown"]
            table.append({"setting": setting, "norm": norm, "probes": len(pairs),
                          "decided": sum(b["answer"] != "unknown" for _, b in pairs),
                          "sum s": round(sum(b["seconds"] for _, b in pairs), 1),
                          f"nodes / {base} (geo. mean, both decided)": round(geomean(
                              [b["nodes"] / a["nodes"] for a, b in both if a["nodes"] and b["nodes"]]), 3),
                          f"time / {base} (geo. mean, both decided)": round(geomean(
                              [b["seconds"] / a["seconds"] for a, b in both]), 3)})
    answers = [{r["answer"] for r in p.values() if r["answer"] != "unknown"} for p in by_probe.values()]
    lines = ["# SCIP settings for the decision MILPs (MNIST 784-24-24-24-10 closing probes)", "",
             f"One MILP per probe and setting, CROWN bounds, one thread, {args.time_limit:g} s limit; the "
             "runs go two at a time. Settings (SCIP parameters over the backend's defaults): "
             + "; ".join(f"`{s}` = {json.dumps(SETTINGS[s])}" for s in settings) + ".", "",
             markdown_table(table, list(table[0])) if table else "(no rows)\n",
             f"Disagreements between decided runs: {sum(len(a) > 1 for a in answers)}", "",
             "| image | target | norm | eps | " + " | ".join(f"{s} s | {s} nodes" for s in settings) + " |",
             "|---|---|---|---|" + "---|---|" * len(settings)]
    for (image, target, norm, eps), p in sorted(by_probe.items()):
        cells = []
        for s in settings:
            r = p.get(s)
            cells += ["" if r is None else f"{r['seconds']:.1f}" + ("" if r["answer"] != "unknown" else " (unknown)"),
                      "" if r is None else str(r["nodes"])]
        lines.append(f"| {image} | {target} | {norm} | {eps:.6g} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {json.dumps(machine_info())}", "", f"Solvers: {json.dumps(solver_versions())}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="append", default=None, help="IMAGE:TARGET:NORM:EPS (repeatable)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--baseline", default="default", choices=list(SETTINGS),
                        help="the setting the others are compared with in the summary")
    parser.add_argument("--time-limit", type=float, default=150.0)
    parser.add_argument("--name", default="decision_params")
    args = parser.parse_args(argv)
    journal = RESULTS_DIR / f"{args.name}.jsonl"  # one row per line as it is known; a rerun resumes
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()] if journal.exists() else []
    done = {(r["image"], r["target"], r["norm"], r["eps"], r["setting"]) for r in rows}
    todo = [(probe, s) for probe in given_probes(args.probe or list(DEFAULT_PROBES)) for s in args.settings
            if (probe["image"], probe["target"], probe["norm"], probe["eps"], s) not in done]
    # all submitted at once: two runs share the machine all along (but for the last one)
    with ProcessPoolExecutor(2, max_tasks_per_child=1) as pool:
        futures = [(probe, s, pool.submit(run_setting, probe, s, args.time_limit)) for probe, s in todo]
        for probe, setting, future in futures:
            row = {**probe, "setting": setting, **future.result()}
            rows.append(row)
            with journal.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    write_results(args.name, rows, summarise(rows, args), extra={"settings": SETTINGS, "time_limit": args.time_limit})


if __name__ == "__main__":
    main()
