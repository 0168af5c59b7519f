"""Do all our runs agree on the minimal distortion of each MNIST query? (soundness cross-check)

Every row of every minimal-distortion journal (``results/minimal_distortion_*.jsonl``, any
method, backend or bound method) and every exact record of network N in the attack-gap store
(``results/attack_gap.jsonl``, superseded records included) claims a bracket ``[lower, upper]``
on the same number: the minimal distortion of one (MNIST image, target, norm) query of the
784-24-24-24-10 network with the default margin. ``upper`` comes from a counterexample
re-checked in float64, ``lower`` from proofs. Two brackets of one query that do not overlap
mean that some run claimed a wrong proof (or a wrong counterexample), whatever the runs'
engine versions, settings, hosts and time limits were.

For each contradicted query, ``--recheck`` asks this checkout's engine for a counterexample
within the midpoint of its highest lower and lowest upper bound and re-runs it in float64 on
the torch model itself: one there refutes every lower bound above the midpoint. Writes
``results/bracket_agreement.{csv,json,md}``; needs ``../shared/data`` only for ``--recheck``.

    python benchmarks/bracket_agreement.py [--recheck] [--name bracket_agreement]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

#: Brackets closer than this (absolute) still count as overlapping: stored bounds are floats.
OVERLAP_SLACK = 1e-9
#: Runs of the engine before MILP bounds were padded (commit 233bd65), which could call a MILP
#: with a counterexample infeasible (``solver_soundness.md``): checked for contradictions like
#: every run, but their lower bounds are not proofs, so the intersection leaves them out.
PRE_PADDING_STORES = frozenset({"minimal_distortion_s2_30s", "minimal_distortion_scip_cap",
                                "minimal_distortion_slack60"})


def _rows(path: Path):
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a torn last line of an interrupted run: not a claim
                continue


def collect_brackets(results_dir: Path = RESULTS_DIR) -> dict[tuple, list[dict]]:
    """``(image, target, norm) -> [{source, lower, upper, status, config}]`` over every stored run."""
    brackets: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(results_dir.glob("minimal_distortion_*.jsonl")):
        for row in _rows(path):
            if row.get("lower") is None or row.get("upper") is None:
                continue
            brackets[(row["image"], row["target"], row["norm"])].append(
                {"source": path.stem, "lower": float(row["lower"]), "upper": float(row["upper"]),
                 "status": row["status"], "config": f"{row['method']}/{row['backend']}/{row['bounds']}"})
    store = results_dir / "attack_gap.jsonl"
    if store.exists():
        for record in _rows(store):
            query, result = record.get("query") or {}, record.get("result") or {}
            if query.get("kind") != "exact" or query.get("network") != "N" or result.get("upper") is None:
                continue
            brackets[(query["image"], query["target"], query["norm"])].append(
                {"source": store.stem, "lower": float(result["lower"]), "upper": float(result["upper"]),
                 "status": record["status"],
                 "config": f"{query['method']}/{query['backend']}/{query['bounds_method']}"})
    return dict(brackets)


def contradictions(brackets: dict[tuple, list[dict]]) -> list[dict]:
    """Every pair (a, b) of one query with ``a.lower > b.upper``: one of them claimed too much."""
    found = []
    for (image, target, norm), claims in sorted(brackets.items()):
        for high in claims:
            for low in claims:
                if high["lower"] > low["upper"] + OVERLAP_SLACK:
                    found.append({"image": image, "target": target, "norm": norm,
                                  "lower": high["lower"], "lower_from": high["source"],
                                  "lower_config": high["config"], "lower_status": high["status"],
                                  "upper": low["upper"], "upper_from": low["source"],
                                  "upper_config": low["config"], "upper_status": low["status"]})
    return found


def recheck(bad: list[dict], time_limit: float) -> dict[tuple, dict]:
    """Per contradicted query: this engine's verdict at the midpoint of the highest lower and the
    lowest upper bound, and the float64 re-check of its counterexample on the torch model (not
    the IR). A counterexample there refutes every lower bound above the midpoint."""
    import numpy as np
    import torch

    import exactverify as ev
    from exactverify import zoo

    torch.set_num_threads(1)
    _, _, x_test, _ = zoo.load_mnist()
    module = zoo.mnist_network().double().eval()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    out = {}
    for key in sorted({(b["image"], b["target"], b["norm"]) for b in bad}):
        image, target, norm = key
        mine = [b for b in bad if (b["image"], b["target"], b["norm"]) == key]
        eps = 0.5 * (max(b["lower"] for b in mine) + min(b["upper"] for b in mine))
        x = np.asarray(x_test[image], dtype=np.float64).reshape(-1)
        verdict = ev.verify(network, x, eps=eps, norm=norm, target=target, domain=(0.0, 1.0),
                            time_limit=time_limit)
        entry = {"eps": eps, "verdict": str(verdict.status.value), "validated": verdict.validated}
        if verdict.counterexample is not None:
            point = np.asarray(verdict.counterexample, dtype=np.float64).reshape(-1)
            with torch.no_grad():
                logits = module(torch.as_tensor(point)[None])[0].numpy()
            others = np.delete(logits, target)
            entry.update({"distance": float(np.linalg.norm(point - x, ord=np.inf if norm == "linf" else 1)),
                          "in_domain": bool(point.min() >= 0.0 and point.max() <= 1.0),
                          "target_margin_torch": float(logits[target] - others.max())})
        out[key] = entry
    return out


def summarise(brackets: dict[tuple, list[dict]], bad: list[dict], checked: dict[tuple, dict]) -> tuple[str, list]:
    sources = sorted({c["source"] for claims in brackets.values() for c in claims})
    per_source = []
    for source in sources:
        mine = [c for claims in brackets.values() for c in claims if c["source"] == source]
        per_source.append({"source": source, "brackets": len(mine),
                           "optimal": sum(c["status"] == "optimal" for c in mine),
                           "queries": sum(any(c["source"] == source for c in claims) for claims in brackets.values()),
                           "contradicted as lower": sum(b["lower_from"] == source for b in bad),
                           "contradicted as upper": sum(b["upper_from"] == source for b in bad)})
    bad_queries = sorted({(b["image"], b["target"], b["norm"]) for b in bad})
    trusted = {k: [c for c in v if c["source"] not in PRE_PADDING_STORES] for k, v in brackets.items()}
    trusted = {k: v for k, v in trusted.items() if v}
    combined = [{"image": k[0], "target": k[1], "norm": k[2],
                 "lower": max(c["lower"] for c in v), "upper": min(c["upper"] for c in v), "claims": len(v)}
                for k, v in sorted(trusted.items())]
    lines = ["# Do all runs agree on each query's minimal distortion? (MNIST 784-24-24-24-10, network N)", "",
             f"{sum(map(len, brackets.values()))} brackets on {len(brackets)} queries from {len(sources)} stores; "
             f"**{len(bad)} contradicting pairs on {len(bad_queries)} queries** (a lower bound above another "
             "run's re-checked upper bound of the same query).", "",
             markdown_table(per_source, list(per_source[0])) if per_source else "", ""]
    if bad:
        worst = []
        for key in bad_queries:
            mine = [b for b in bad if (b["image"], b["target"], b["norm"]) == key]
            high, low = max(mine, key=lambda b: b["lower"]), min(mine, key=lambda b: b["upper"])
            worst.append({"image": key[0], "target": key[1], "norm": key[2], "pairs": len(mine),
                          "highest lower": high["lower"], "lowest upper": low["upper"],
                          "lower from": ", ".join(sorted({b["lower_from"] for b in mine})),
                          "upper from": ", ".join(sorted({b["upper_from"] for b in mine}))})
        lines += ["Contradicted queries (every pair is in the JSON):", "", markdown_table(worst, list(worst[0])), ""]
    if checked:
        rows = [{"image": k[0], "target": k[1], "norm": k[2], **v} for k, v in sorted(checked.items())]
        lines += ["This checkout's engine at the midpoint of each contradicted query's highest lower and "
                  "lowest upper bound (`--recheck`; the counterexample re-run in float64 on the torch model):", "",
                  markdown_table(rows, list(dict.fromkeys(c for r in rows for c in r))), ""]
    closed = [c for c in combined if (c["image"], c["target"], c["norm"]) not in bad_queries
              and c["upper"] - c["lower"] <= 1e-3 + OVERLAP_SLACK]
    lines += [f"Intersecting every non-contradicted query's brackets closes {len(closed)} of {len(combined)} "
              "to within tol 1e-3 (claims from different runs, time limits and hosts: not a timing result; "
              f"rows of {', '.join(sorted(PRE_PADDING_STORES))} left out, see `PRE_PADDING_STORES`).", ""]
    return "\n".join(lines), combined


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recheck", action="store_true", help="re-decide each contradicted query (needs ../shared)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="per re-check, seconds")
    parser.add_argument("--name", default="bracket_agreement")
    args = parser.parse_args(argv)
    brackets = collect_brackets()
    bad = contradictions(brackets)
    checked = recheck(bad, args.time_limit) if args.recheck and bad else {}
    text, combined = summarise(brackets, bad, checked)
    write_results(args.name, combined, text, extra={"contradictions": bad,
                                                    "rechecks": [{"query": list(k), **v} for k, v in checked.items()]})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
