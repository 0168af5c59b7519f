"""Settings of the neuron MILPs of ``bounds_method="milp"``: time and tightness.

MILP tightening (:mod:`exactverify.bounds.milp`) maximises and minimises every unstable input
of the MNIST net's second ReLU layer by one small MILP and keeps the dual bound; the primal
heuristics only look for points, so switching them off may save time without loosening a
bound; root cuts cost time but tighten a dual bound cut short by the time limit; the order of
the MILPs decides which run before a time budget ends and which are skipped (:data:`SETTINGS`).
This times ``milp_bounds`` on the closing-probe regions of a minimal-distortion
journal (radius ``upper - 0.99 tol`` of each query) with every setting, the settings in turn
on each region, and compares the seconds, the unstable ReLUs left and the widths of the
tightened bounds.

Writes ``benchmarks/results/NAME.{csv,json,md}``; needs ``../shared/data``.

Usage: ``python benchmarks/neuron_milp_settings.py [--regions 40] [--threads 2] [--settings default off]
[--time-budget 14] [--journal minimal_distortion_milp60] [--name neuron_milp_settings]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR,
    machine_info,
    markdown_table,
    mnist_benchmark_net,
    solver_versions,
    write_results,
)

#: Setting name -> the module constants of :mod:`exactverify.bounds.milp` it sets: SCIP's heuristics
#: setting, raw SCIP parameters and the order of the neuron MILPs (``"index"`` before session 16).
SETTINGS: dict[str, dict] = {
    "default": {"NEURON_HEURISTICS": "default", "NEURON_PARAMS": {}, "NEURON_ORDER": "index"},
    "off": {"NEURON_HEURISTICS": "off", "NEURON_PARAMS": {}, "NEURON_ORDER": "index"},
    "fast": {"NEURON_HEURISTICS": "fast", "NEURON_PARAMS": {}, "NEURON_ORDER": "index"},
    "nearest": {"NEURON_HEURISTICS": "off", "NEURON_PARAMS": {}, "NEURON_ORDER": "nearest"},
    "nearest-roots0": {"NEURON_HEURISTICS": "off", "NEURON_PARAMS": {"separating/maxroundsroot": 0},
                       "NEURON_ORDER": "nearest"},
    "nearest-roots10": {"NEURON_HEURISTICS": "off", "NEURON_PARAMS": {"separating/maxroundsroot": 10},
                        "NEURON_ORDER": "nearest"},
}
CLOSING_FACTOR = 0.99


def regions_from(journal: str, count: int) -> list[dict]:
    """``count`` queries of the journal spread over it (sorted by image, norm, target), at the closing radius."""
    rows = [json.loads(line) for line in (RESULTS_DIR / f"{journal}.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if r.get("upper")), key=lambda r: (r["image"], r["norm"], r["target"]))
    picked = [rows[int(k)] for k in np.linspace(0, len(rows) - 1, min(count, len(rows)))]
    return [{"image": r["image"], "target": r["target"], "norm": r["norm"],
             "eps": r["upper"] - CLOSING_FACTOR * r.get("tol", 1e-3)} for r in picked]


def measure(network, x: np.ndarray, job: dict, setting: str, threads: int, time_budget: float | None) -> dict:
    import exactverify as ev
    from exactverify.bounds import milp

    for name, value in SETTINGS[setting].items():
        setattr(milp, name, value)
    region = ev.ball(x, job["eps"], job["norm"], (0.0, 1.0), (784,))
    stats: dict = {}
    tick = time.perf_counter()
    lowers, uppers = milp.milp_bounds(network, region, threads=threads, stats=stats, time_budget=time_budget)
    seconds = time.perf_counter() - tick
    second = milp._relu_layers(network)[1]
    width = float((uppers[second] - lowers[second]).clamp(min=0).sum())
    unstable = (lowers[second] < 0) & (uppers[second] > 0)
    return {**job, "setting": setting, "seconds": round(seconds, 3),
            "milps": stats["milps"], "unstable_before": stats["unstable_before"],
            "unstable_after": stats["unstable_after"], "layer2_width": width,
            "unstable_width": float((uppers[second] - lowers[second])[unstable].sum()),
            "output_width": float((uppers[-1] - lowers[-1]).sum())}


def summarise(rows: list[dict], args) -> str:
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    base = {(r["image"], r["target"], r["norm"]): r for r in rows if r["setting"] == settings[0]}
    table = []
    for setting in settings:
        mine = [r for r in rows if r["setting"] == setting]
        ratios = [r["layer2_width"] / base[(r["image"], r["target"], r["norm"])]["layer2_width"] for r in mine
                  if base.get((r["image"], r["target"], r["norm"]), {}).get("layer2_width")]
        outputs = [r["output_width"] / base[(r["image"], r["target"], r["norm"])]["output_width"] for r in mine
                   if base.get((r["image"], r["target"], r["norm"]), {}).get("output_width")]
        table.append({"setting": setting, "regions": len(mine), "sum s": round(sum(r["seconds"] for r in mine), 1),
                      "median s": round(statistics.median(r["seconds"] for r in mine), 2),
                      "MILPs (sum)": sum(r["milps"] for r in mine),
                      "unstable after (sum)": sum(r["unstable_after"] for r in mine),
                      "unstable width (sum)": round(sum(r.get("unstable_width", math.nan) for r in mine), 1),
                      f"layer-2 width / {settings[0]} (median, max)":
                          f"{statistics.median(ratios):.4f}, {max(ratios):.4f}" if ratios else "-",
                      f"output width / {settings[0]} (median, max)":
                          f"{statistics.median(outputs):.4f}, {max(outputs):.4f}" if outputs else "-"})
    lines = ["# Settings of the neuron MILPs of `bounds_method=\"milp\"` (MNIST 784-24-24-24-10)", "",
             f"Regions: {len({(r['image'], r['target'], r['norm']) for r in rows})} closing-probe radii of "
             f"`{args.journal}`; `milp_bounds` with {args.threads} threads and a time budget of "
             f"{'the default' if args.time_budget is None else f'{args.time_budget:g} s'}, the settings in turn "
             "on each region (module constants of `exactverify.bounds.milp`): "
             + "; ".join(f"`{s}` = {json.dumps(SETTINGS[s])}" for s in settings) + ".", "",
             markdown_table(table, list(table[0])), "",
             "Machine: " + json.dumps(machine_info()), "", "Solvers: " + json.dumps(solver_versions())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regions", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--journal", default="minimal_distortion_milp60")
    parser.add_argument("--settings", nargs="+", default=["default", "off"], choices=list(SETTINGS))
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds per tightening (default: the library's DEFAULT_TIME_BUDGET); a search's "
                             "closing probe at 60 s gets about 14")
    parser.add_argument("--name", default="neuron_milp_settings")
    args = parser.parse_args(argv)

    network, images = mnist_benchmark_net()
    rows = []
    for k, job in enumerate(regions_from(args.journal, args.regions)):
        x = images[job["image"]]
        order = args.settings if k % 2 == 0 else args.settings[::-1]  # alternate: drift hits both alike
        for setting in order:
            rows.append(measure(network, x, job, setting, args.threads, args.time_budget))
            print(json.dumps(rows[-1]), flush=True)
    write_results(args.name, rows, summarise(rows, args))
    print(summarise(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
