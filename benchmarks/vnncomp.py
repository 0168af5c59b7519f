"""VNN-COMP 2021 ACAS Xu and MNIST-FC instances through ``exactverify.vnncomp``, against ground truth.

Each instance (ONNX + VNNLIB + timeout from the competition's ``*_instances.csv``) is one
campaign query (resumable JSONL store). Verdicts are compared with the top-4 consensus of
``ground_truth.csv`` (holds = unsat, violated = sat): solved counts per benchmark and
network, WRONG answers (must be zero), median and total time, and the published solved
counts of three competition tools beside ours.

    python benchmarks/vnncomp.py --benchmark acasxu --limit 8 --max-timeout 30 --store /tmp/v.jsonl
    python benchmarks/vnncomp.py                       # every instance, competition timeouts

``--limit N`` takes N instances evenly spread over the CSV (not the first N), so a small
run sees several networks and properties. Writes ``results/NAME.{csv,json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp2021"
BENCHMARKS = {"acasxu": "acasxu/acasxu_instances.csv", "mnistfc": "mnistfc/mnistfc_instances.csv"}
#: Solved counts published for VNN-COMP 2021 (out of 186 ACAS Xu and 90 MNIST-FC instances).
PUBLISHED = {"alpha-beta-CROWN": (186, 70), "ERAN": (171, 56), "Marabou": (183, 54)}
TOTALS = {"acasxu": 186, "mnistfc": 90}
REFERENCE = {"holds": "unsat", "violated": "sat"}


def ground_truth(path: Path) -> dict[tuple[str, str, str], str | None]:
    """(benchmark, onnx, vnnlib) -> "sat" / "unsat" / None (no consensus) from the top-4 verdict."""
    truth = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            truth[(row["benchmark"], row["onnx"], row["vnnlib"])] = REFERENCE.get(row["top4_verdict"])
    return truth


def spread(items: list, count: int | None) -> list:
    """``count`` items evenly spaced over ``items`` (all when count is None or too large)."""
    if count is None or count >= len(items):
        return items
    step = len(items) / count
    return [items[int(k * step)] for k in range(count)]


def run(args: argparse.Namespace) -> list[dict]:
    from exactverify.campaign import run_campaign
    from exactverify.vnncomp.instances import read_instances

    queries = []
    for name in args.benchmark:
        listed = read_instances(DATA / BENCHMARKS[name], timeout_scale=args.timeout_scale,
                                max_timeout=args.max_timeout, benchmark=name)
        if args.networks:
            listed = [q for q in listed if any(part in Path(q["onnx"]).name for part in args.networks)]
        queries += spread(listed, args.limit)
    if args.finished_only:  # summarise what a stopped run finished, run nothing
        from exactverify.campaign.runner import query_id
        from exactverify.campaign.store import load_results

        wanted = {query_id(q) for q in queries}
        records = [r for r in load_results(args.store) if r.get("id") in wanted]
    else:
        records = run_campaign(queries, "exactverify.vnncomp.instances:instance", args.store,
                               workers=args.workers, progress=not args.quiet)
    truth = ground_truth(DATA / "ground_truth.csv")
    rows = []
    for record in records:
        query, result = record["query"], record.get("result") or {}
        key = (query["benchmark"], Path(query["onnx"]).name, Path(query["vnnlib"]).name)
        verdict = record["status"]
        expected = truth.get(key)
        solved = verdict in ("sat", "unsat")
        rows.append({"benchmark": key[0], "onnx": key[1], "vnnlib": key[2], "time_limit": query["time_limit"],
                     "verdict": verdict, "solved": solved,  # the reference verdict stays in ../shared
                     "wrong": solved and expected is not None and verdict != expected,
                     "seconds": result.get("seconds", record.get("seconds")),
                     "stages": ",".join(s["stage"] for s in result.get("stages", [])[1:]),
                     "code": record.get("code", "")})  # set by hand on records kept from an older run
    return rows


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["# VNN-COMP 2021 instances", "",
             f"Timeouts x{args.timeout_scale}, capped at {args.max_timeout} s; "
             f"{'evenly spread subset of ' + str(args.limit) + ' per benchmark' if args.limit else 'every instance'}.",
             *([f"Networks matching {args.networks} only."] if args.networks else []),
             *(["Finished instances of a stopped run only (--finished-only)."] if args.finished_only else []),
             "Reference: top-4 consensus of ground_truth.csv (holds = unsat, violated = sat).", ""]
    table = []
    for name in args.benchmark:
        mine = [r for r in rows if r["benchmark"] == name]
        if not mine:
            continue
        times = [r["seconds"] for r in mine if r["seconds"] is not None]
        solved = [r for r in mine if r["solved"]]
        table.append({"benchmark": name, "instances": len(mine), "solved": len(solved),
                      "sat": sum(r["verdict"] == "sat" for r in mine),
                      "unsat": sum(r["verdict"] == "unsat" for r in mine),
                      "wrong": sum(r["wrong"] for r in mine),
                      "median_s": statistics.median(times) if times else None,
                      "total_s": sum(times) if times else None,
                      **{tool: f"{counts[list(TOTALS).index(name)]}/{TOTALS[name]}"
                         for tool, counts in PUBLISHED.items()}})
    lines.append(markdown_table(table, list(table[0]) if table else []))
    networks: dict[tuple[str, str], list] = defaultdict(list)
    for r in rows:
        networks[(r["benchmark"], r["onnx"])].append(r)
    per_net = [{"benchmark": b, "onnx": o, "instances": len(rs), "solved": sum(r["solved"] for r in rs),
                "wrong": sum(r["wrong"] for r in rs)} for (b, o), rs in sorted(networks.items())]
    lines += ["", "Per network:", "", markdown_table(per_net, ["benchmark", "onnx", "instances", "solved", "wrong"])]
    older = any(r["code"] for r in rows)
    lines += ["", "Per instance:", "",
              *(["`code`: records marked there were kept from an earlier run of the older code named; "
                 "the others ran this commit's code.", ""] if older else []),
              markdown_table(rows, ["benchmark", "onnx", "vnnlib", "time_limit", "verdict", "wrong", "seconds",
                                    "stages", *(["code"] if older else [])])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument("--limit", type=int, default=None, help="instances per benchmark, evenly spread")
    parser.add_argument("--networks", nargs="+", default=None,
                        help="only instances whose ONNX file name contains one of these (e.g. 256x2)")
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--max-timeout", type=float, default=None, help="cap on every instance's timeout (s)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", default=None, help="campaign store (default results/NAME.jsonl)")
    parser.add_argument("--name", default="vnncomp", help="results file stem")
    parser.add_argument("--results-dir", default=None, help="where NAME.{csv,json,md} go (default results/)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--finished-only", action="store_true",
                        help="only summarise the instances the store already finished (a stopped run)")
    args = parser.parse_args(argv)
    if args.store is None:
        args.store = str(RESULTS_DIR / f"{args.name}.jsonl")
    if not DATA.is_dir():
        print(f"VNN-COMP data not found at {DATA}", file=sys.stderr)
        return 2
    rows = run(args)
    summary = summarise(rows, args)
    write_results(args.name, rows, summary, Path(args.results_dir) if args.results_dir else None,
                  extra={"published": PUBLISHED, "timeout_scale": args.timeout_scale, "max_timeout": args.max_timeout,
                         "limit": args.limit, "networks": args.networks, "finished_only": args.finished_only})
    print(summary)
    return 1 if any(r["wrong"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
