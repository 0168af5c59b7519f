"""The cross-run soundness check of ``benchmarks/bracket_agreement.py`` on journals made here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_loader import load_benchmark


def _module():
    return load_benchmark("bracket_agreement")


def _journal(folder: Path, name: str, rows: list[dict]) -> None:
    base = {"image": 3, "target": 2, "norm": "linf", "method": "bisection", "backend": "scip", "bounds": "crown"}
    (folder / f"{name}.jsonl").write_text("".join(json.dumps({**base, **row}) + "\n" for row in rows)
                                          + '{"torn": ')  # an interrupted run's last line


def test_disjoint_brackets_are_reported_and_touching_ones_are_not(tmp_path):
    check = _module()
    _journal(tmp_path, "minimal_distortion_old", [{"lower": 0.0765, "upper": 0.0771, "status": "optimal"}])
    _journal(tmp_path, "minimal_distortion_new", [{"lower": 0.0733, "upper": 0.0743, "status": "optimal"},
                                                  {"target": 5, "lower": 0.1, "upper": 0.2, "status": "unknown"}])
    _journal(tmp_path, "minimal_distortion_other", [{"target": 5, "lower": 0.2 + check.OVERLAP_SLACK / 2,
                                                     "upper": 0.3, "status": "unknown"}])
    brackets = check.collect_brackets(tmp_path)
    assert sorted(len(v) for v in brackets.values()) == [2, 2]
    found = check.contradictions(brackets)
    assert [(b["target"], b["lower_from"], b["upper_from"]) for b in found] == \
        [(2, "minimal_distortion_old", "minimal_distortion_new")]


def test_attack_gap_records_of_n_count_and_pre_padding_stores_stay_out_of_the_intersection(tmp_path):
    check = _module()
    stale = sorted(check.PRE_PADDING_STORES)[0]
    _journal(tmp_path, stale, [{"lower": 0.0705, "upper": 0.2, "status": "optimal"}])  # overlaps, not a proof
    records = [{"status": "optimal", "query": {"kind": "exact", "network": network, "image": 3, "target": 2,
                                               "norm": "linf", "method": "bisection", "backend": "scip",
                                               "bounds_method": "crown"},
                "result": {"lower": low, "upper": high}}
               for network, low, high in (("N", 0.07, 0.071), ("Nbar", 0.5, 0.6))]
    (tmp_path / "attack_gap.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    brackets = check.collect_brackets(tmp_path)
    assert [c["source"] for c in brackets[(3, 2, "linf")]] == [stale, "attack_gap"]  # N̄ is another network
    assert check.contradictions(brackets) == []
    _, combined = check.summarise(brackets, [], {})
    assert combined == [{"image": 3, "target": 2, "norm": "linf", "lower": 0.07, "upper": 0.071, "claims": 1}]
