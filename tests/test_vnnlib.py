"""VNNLIB reading and VNN-COMP instance solving on a tiny hand-built ONNX network.

The network is ``y0 = relu(x0) + relu(x1)``, ``y1 = relu(x0 - x1)``, so every property in
tests/data/tiny_vnnlib has an answer derivable by hand (stated in each file's comment); the
verdicts are checked against that and every counterexample against the formula.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from exactverify import InvalidInputError, ShapeMismatchError
from exactverify.vnncomp import parse_vnnlib, read_vnnlib
from exactverify.vnncomp import solve as solve_module
from exactverify.vnncomp.solve import solve_instance
from exactverify.vnncomp.witness import ONNX_SAT_TOLERANCE, float32_in_box

DATA = Path(__file__).resolve().parent / "data" / "tiny_vnnlib"  # hand-written, tiny
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vnncomp2021"
HEADER = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n"


def tiny(x: np.ndarray) -> np.ndarray:
    """The test network's formula, independent of torch/ONNX."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return np.array([max(x[0], 0) + max(x[1], 0), max(x[0] - x[1], 0)])


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        model[2].bias.zero_()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(model, (torch.zeros(1, 2),), str(path), dynamo=False)
    return str(path)


# ------------------------------------------------------------------ parser
def test_parser_reads_boxes_terms_and_disjunctions():
    prop = read_vnnlib(DATA / "disjunctive_sat.vnnlib")
    assert (prop.num_inputs, prop.num_outputs) == (2, 2)
    (sub,) = prop.subproblems
    np.testing.assert_array_equal(sub.lower, [0.0, 0.0])
    np.testing.assert_array_equal(sub.upper, [1.0, 1.0])
    first, second = sub.spec.disjuncts
    np.testing.assert_allclose(first.A, [[0.0, -1.0]])  # y1 >= 1.5  <=>  -y1 <= -1.5
    np.testing.assert_allclose(first.b, [-1.5])
    np.testing.assert_allclose(second.A, [[-1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(second.b, [-1.9, 0.5])


def test_parser_splits_input_disjunctions_into_subproblems():
    prop = read_vnnlib(DATA / "input_or.vnnlib")
    assert len(prop.subproblems) == 2
    np.testing.assert_allclose(prop.subproblems[1].lower, [0.8, 0.8])
    for sub in prop.subproblems:
        np.testing.assert_allclose(sub.spec.disjuncts[0].A, [[-1.0, 0.0]])


def test_parser_numbers_comments_and_constant_folding():
    text = HEADER + "; comment (with parens\n" + BOX.replace("1)", "1.5e-1)") + \
        "(assert (<= (* 2 (- Y_0 Y_1)) (+ 1 (* 0.5 4))))\n(assert (<= 1 2))"
    (sub,) = parse_vnnlib(text).subproblems
    np.testing.assert_allclose(sub.upper, [0.15, 0.15])
    np.testing.assert_allclose(sub.spec.disjuncts[0].A, [[2.0, -2.0]])
    np.testing.assert_allclose(sub.spec.disjuncts[0].b, [3.0])


@pytest.mark.parametrize("body, message", [
    (BOX + "(assert (<= (* Y_0 Y_1) 1))", r":9: non-linear term"),
    (BOX + "(assert (max Y_0 1))", r"unknown operator 'max'"),
    (BOX + "(assert (<= Y_0 Y_7))", r"Y_7 is used but never declared"),
    (BOX.replace("(assert (>= X_1 0))\n", "") + "(assert (<= Y_0 1))", r"input X_1 is unbounded"),
    (BOX + "(assert (<= Y_0 X_0))", r"mixes inputs and outputs"),
    (BOX + "(assert (<= (+ X_0 X_1) 1))", r"couples several inputs"),
    (BOX + "(assert (<= Y_0 1)", r"never closed"),
    (BOX + "(assert (<= Y_0 1)))", r"unexpected '\)'"),
    (BOX + "(assert (<= Y_0 foo))", r"unknown symbol 'foo'"),
    (BOX + "(define-fun f () Real 1)", r"unknown command 'define-fun'"),
    (BOX + "(assert (>= X_0 2))", r"contradictory"),
])
def test_malformed_properties_name_the_problem(body, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_vnnlib(HEADER + body, source="bad.vnnlib")


def test_declarations_are_checked():
    with pytest.raises(InvalidInputError, match="sort 'Int'"):
        parse_vnnlib("(declare-const X_0 Int)")
    with pytest.raises(InvalidInputError, match="declared twice"):
        parse_vnnlib("(declare-const X_0 Real)(declare-const X_0 Real)")
    with pytest.raises(InvalidInputError, match="missing X_1"):
        parse_vnnlib("(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)")
    with pytest.raises(InvalidInputError, match="not a file"):
        read_vnnlib(DATA / "absent.vnnlib")


def test_float32_rounding_stays_inside_the_box():
    lower, upper = np.array([0.1, -0.3]), np.array([0.1 + 1e-7, 0.7])
    x = float32_in_box(np.array([0.0, 1.0]), lower, upper)
    assert x.dtype == np.float32
    assert np.all(x.astype(np.float64) >= lower) and np.all(x.astype(np.float64) <= upper)
    # no float32 lies in [0.1, 0.1 + 1e-9]: the documented fallback is the float32 just above 0.1
    x = float32_in_box(np.array([0.0]), np.array([0.1]), np.array([0.1 + 1e-9]))
    assert x[0] == np.nextafter(np.float32(0.1), np.float32(1)) or x[0] == np.float32(0.1)


# ------------------------------------------------------------------ solver
EXPECTED = {"box_unsat": "unsat", "box_sat": "sat", "disjunctive_unsat": "unsat",
            "disjunctive_sat": "sat", "split_unsat": "unsat", "input_or": "sat"}


def _check_witness(result, prop):
    """A sat result's x lies in a sub-problem's box and the formula puts y in its spec."""
    x = np.array(result.x)
    y = tiny(x)
    np.testing.assert_allclose(result.y, y, atol=1e-5)
    inside = [sub for sub in prop.subproblems if np.all(x >= sub.lower) and np.all(x <= sub.upper)]
    assert inside, f"counterexample {x} is in no box"
    assert max(float(sub.spec.slack(y[None])[0]) for sub in inside) >= -ONNX_SAT_TOLERANCE


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdicts_match_hand_derived_answers(onnx_path, name):
    torch.set_num_threads(1)
    result = solve_instance(onnx_path, DATA / f"{name}.vnnlib", timeout=30)
    assert result.verdict == EXPECTED[name], result.reason
    prop = read_vnnlib(DATA / f"{name}.vnnlib")
    if result.verdict == "sat":
        _check_witness(result, prop)
        assert result.onnx_slack >= -result.tolerance
        text = result.result_text()
        assert text.startswith("sat\n((X_0 ") and text.rstrip().endswith(")")
        values = [float(v) for v in re.findall(r"\((?:X|Y)_\d+ ([^)]+)\)", text)]
        np.testing.assert_allclose(values, result.x + result.y)
    else:
        # independent oracle: no grid point of any box reaches the unsafe set
        grid = np.stack(np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101)), -1).reshape(-1, 2)
        for sub in prop.subproblems:
            points = sub.lower + grid * (sub.upper - sub.lower)
            ys = np.stack([tiny(p) for p in points])
            assert float(sub.spec.slack(ys).max()) < 0
        assert result.result_text() == "unsat\n"


def test_split_property_needs_branch_and_bound(onnx_path):
    result = solve_instance(onnx_path, DATA / "split_unsat.vnnlib", timeout=30)
    assert [s["outcome"] for s in result.stages if s["stage"] == "crown"] == ["open"]
    assert any(s["stage"] == "bab" and s["outcome"] == "proved" for s in result.stages)


def test_milp_fallback_decides_without_splitting(onnx_path, monkeypatch):
    monkeypatch.setattr(solve_module, "MAX_SPLIT_INPUTS", 0)
    result = solve_instance(onnx_path, DATA / "split_unsat.vnnlib", timeout=30)
    assert result.verdict == "unsat"
    assert any(s["stage"] == "milp" and s["outcome"] == "proved" for s in result.stages)


def test_relu_splitting_decides_what_the_milp_leaves_open(onnx_path, monkeypatch):
    # many-input route with a MILP that gives up at once: ReLU-phase branch and bound proves it
    monkeypatch.setattr(solve_module, "MAX_SPLIT_INPUTS", 0)
    monkeypatch.setattr(solve_module._Search, "milp", lambda self, *args, **kwargs: "open")
    result = solve_instance(onnx_path, DATA / "split_unsat.vnnlib", timeout=30)
    assert result.verdict == "unsat"
    assert [s["outcome"] for s in result.stages if s["stage"] == "relu-split"] == ["proved"]
    # and never on a property with a counterexample (no attack and no candidate points, so
    # nothing else can answer)
    monkeypatch.setattr(solve_module._Search, "attack", lambda self: None)
    monkeypatch.setattr(solve_module._Search, "minimiser_attack", lambda self, *args: None)
    monkeypatch.setattr(solve_module._Search, "polish_candidates", lambda self, *args: None)
    result = solve_instance(onnx_path, DATA / "disjunctive_sat.vnnlib", timeout=3)
    assert result.verdict == "timeout"


@pytest.mark.parametrize("route", ["whole box", "relu split"])
def test_bound_minimisers_find_counterexamples(onnx_path, monkeypatch, route):
    # no random/PGD attack and no MILP: the inputs minimising the spec rows' linear bounds
    # (of the whole box, or of ReLU sub-domains) are the only candidates, and they are re-checked
    monkeypatch.setattr(solve_module._Search, "attack", lambda self: None)
    monkeypatch.setattr(solve_module._Search, "milp", lambda self, *args, **kwargs: "open")
    monkeypatch.setattr(solve_module, "MAX_SPLIT_INPUTS", 0)
    if route == "relu split":
        monkeypatch.setattr(solve_module._Search, "minimiser_attack", lambda self, *args: None)
    result = solve_instance(onnx_path, DATA / "disjunctive_sat.vnnlib", timeout=30)
    assert result.verdict == "sat" and "minimisers" in result.reason, result.reason
    assert ("ReLU-split" in result.reason) == (route == "relu split")
    _check_witness(result, read_vnnlib(DATA / "disjunctive_sat.vnnlib"))


def test_milp_candidate_is_rechecked(onnx_path, monkeypatch):
    # no attack: the MILP must find the point, and it is still re-checked on the ONNX file
    monkeypatch.setattr(solve_module._Search, "attack", lambda self: None)
    monkeypatch.setattr(solve_module._Search, "minimiser_attack", lambda self, *args: None)
    monkeypatch.setattr(solve_module, "MAX_SPLIT_INPUTS", 0)
    result = solve_instance(onnx_path, DATA / "disjunctive_sat.vnnlib", timeout=30)
    assert result.verdict == "sat" and "MILP" in result.reason
    _check_witness(result, read_vnnlib(DATA / "disjunctive_sat.vnnlib"))


def test_undecided_deep_boxes_are_never_dropped(onnx_path, monkeypatch):
    # a property with counterexamples, every way of finding them switched off, and a MILP
    # that always runs out of time: the boxes holding the counterexamples can never be
    # closed, so the only right answer is "timeout" (a dropped box would give "unsat")
    monkeypatch.setattr(solve_module, "MAX_SPLIT_DEPTH", 3)
    monkeypatch.setattr(solve_module, "INFLUENCE_PHASE_SECONDS", 0.3)
    monkeypatch.setattr(solve_module._Search, "attack", lambda self: None)
    monkeypatch.setattr(solve_module._Search, "try_points", lambda self, *args, **kwargs: None)
    calls = []
    monkeypatch.setattr(solve_module._Search, "milp", lambda self, *args, **kwargs: calls.append(1) or "open")
    result = solve_instance(onnx_path, DATA / "box_sat.vnnlib", timeout=2)
    assert calls and result.verdict == "timeout"


def test_timeout_is_never_unsat(onnx_path, monkeypatch):
    # the time runs out after two rounds of box splitting, with boxes still open: "timeout".
    # The deadline is counted in calls, not seconds (a 0.05 s timeout was a proof on a fast host).
    monkeypatch.setattr(solve_module, "BATCH_BOXES", 2)
    calls = itertools.count()
    monkeypatch.setattr(solve_module._Search, "left", lambda self: 1.0 if next(calls) < 2 else 0.0)
    result = solve_instance(onnx_path, DATA / "split_unsat.vnnlib", timeout=30)
    assert result.verdict == "timeout" and result.result_text() == "timeout\n"
    stopped = [s for s in result.stages if s["stage"] == "bab"]
    assert stopped and all(s["outcome"] == "timeout" and s["open"] > 0 for s in stopped)


def test_failed_recheck_is_not_sat(onnx_path, monkeypatch):
    # pretend the ONNX file disagrees with the IR: every candidate fails, so no "sat"
    monkeypatch.setattr("exactverify.vnncomp.witness.onnx_outputs", lambda path, x: np.full((len(x), 2), -9.0))
    monkeypatch.setattr(solve_module, "MAX_SPLIT_INPUTS", 0)
    result = solve_instance(onnx_path, DATA / "box_sat.vnnlib", timeout=30)
    assert result.verdict == "unknown"


def test_size_mismatch_and_bad_arguments(onnx_path, tmp_path):
    wide = tmp_path / "three.vnnlib"
    wide.write_text(HEADER + "(declare-const X_2 Real)\n" + BOX + "(assert (<= X_2 1))(assert (>= X_2 0))"
                    "(assert (>= Y_0 1))")
    with pytest.raises(ShapeMismatchError, match="declares 3 inputs"):
        solve_instance(onnx_path, wide, timeout=5)
    with pytest.raises(InvalidInputError, match="timeout"):
        solve_instance(onnx_path, DATA / "box_sat.vnnlib", timeout=0)
    with pytest.raises(InvalidInputError, match="onnx_path"):
        solve_instance(tmp_path / "none.onnx", DATA / "box_sat.vnnlib", timeout=5)


def test_cli_writes_competition_result_file(onnx_path, tmp_path):
    import argparse

    from exactverify.vnncomp.cli import add_vnncomp_parser, handle_vnncomp

    parser = argparse.ArgumentParser()
    add_vnncomp_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "result.txt"
    args = parser.parse_args(["vnncomp", onnx_path, str(DATA / "box_unsat.vnnlib"), "--timeout", "20",
                              "--out", str(out)])
    assert handle_vnncomp(args) == 0
    assert out.read_text() == "unsat\n"


# ------------------------------------------------------------------ the competition's files
@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.is_dir(), reason="shared VNN-COMP 2021 data (../shared/data) is absent")
def test_reads_every_competition_property():
    files = sorted(SHARED.glob("*/*.vnnlib"))
    assert files
    for path in files:
        prop = read_vnnlib(path)
        for sub in prop.subproblems:
            assert sub.lower.shape == (prop.num_inputs,) and np.all(sub.lower <= sub.upper)
        if path.parent.name == "mnistfc":
            eps = float(path.stem.split("_")[-1])
            assert (prop.num_inputs, prop.num_outputs, len(prop.subproblems)) == (784, 10, 1)
            (sub,) = prop.subproblems
            width = sub.upper - sub.lower
            assert np.all(sub.lower >= 0) and np.all(sub.upper <= 1)
            assert np.all(width <= 2 * eps + 1e-6)
            # each pixel's interval is x +- eps clipped to [0, 1]: full width unless clipped
            assert np.all((np.abs(width - 2 * eps) < 1e-6) | (sub.lower == 0) | (sub.upper == 1))
            assert len(sub.spec.disjuncts) == 9
        else:
            assert (prop.num_inputs, prop.num_outputs) == (5, 5)
    assert len(read_vnnlib(SHARED / "acasxu" / "prop_6.vnnlib").subproblems) == 2


def test_narrow_inputs_are_not_bisected_again():
    """The influence score may keep picking an input that is already thin; the guard hands
    the split to the relatively widest input instead (and never to a fixed input)."""
    from types import SimpleNamespace

    search = SimpleNamespace(guard=True, lower=torch.tensor([0.0, -1.0, 2.0], dtype=torch.float64),
                             upper=torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    low = torch.tensor([[0.0, -1.0, 2.0], [0.0, -1.0, 2.0]], dtype=torch.float64)
    high = torch.tensor([[0.01, 1.0, 2.0], [0.5, 0.0, 2.0]], dtype=torch.float64)
    picked = torch.tensor([0, 0])
    guarded = solve_module._Search.guard_narrow(search, picked, low, high)
    # box 0: input 0 has 1 % of its width, input 1 all of it -> input 1; box 1: 50 % vs 50 % -> kept
    assert guarded.tolist() == [1, 0]
    assert 2 not in solve_module._Search.guard_narrow(search, torch.tensor([2, 2]), low, high).tolist()


def test_strict_violation_milp_never_proves(onnx_path):
    """``SAT_SEARCH_MARGIN`` only searches for counterexamples: an infeasible MILP with a
    margin says "open", while the same MILP without a margin proves an unsat box."""
    from exactverify.loaders import load

    net = load(onnx_path)
    for name, margin, expected in (("box_unsat.vnnlib", 0.0, "proved"),
                                   ("box_unsat.vnnlib", solve_module.SAT_SEARCH_MARGIN, "open")):
        sub = read_vnnlib(DATA / name).subproblems[0]
        search = solve_module._Search(onnx_path, net, sub, solve_module._Clock(30), 0, "scip",
                                      torch.Generator().manual_seed(0))
        low, high = search.lower[None], search.upper[None]
        result, refuted = search.crown(low, high, method="interval")
        live = torch.zeros_like(refuted[0])  # hand every disjunct to the MILP
        assert search.milp(low[0], high[0], result, 0, live, margin=margin) == expected
    assert solve_module.SAT_SEARCH_MARGIN > 0


def test_cli_refuses_non_onnx_models_before_loading_them(tmp_path, capsys):
    from exactverify.cli import main

    nnet = tmp_path / "tiny.nnet"  # exactverify loads .nnet, but counterexamples are re-checked by onnxruntime
    nnet.write_text("// not read: refused by its suffix\n")
    prop = str(DATA / "box_sat.vnnlib")
    assert main(["vnncomp", str(nnet), prop, "--timeout", "10"]) == 2
    assert f"onnx_path {str(nnet)!r} is not an .onnx file" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="is not an .onnx file"):
        solve_instance(nnet, prop, timeout=5)


def test_cli_and_solver_refuse_unbounded_timeouts(onnx_path, tmp_path, capsys):
    from exactverify.cli import main

    prop = str(DATA / "box_sat.vnnlib")
    for timeout in ("inf", "nan", "0"):
        assert main(["vnncomp", onnx_path, prop, "--timeout", timeout]) == 2
        assert "timeout must be a finite positive number of seconds" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="finite positive"):
        solve_instance(onnx_path, prop, timeout=float("inf"))
    instances = tmp_path / "instances.csv"
    instances.write_text(f"{onnx_path},{prop},inf\n")
    from exactverify.vnncomp.instances import read_instances

    with pytest.raises(InvalidInputError, match="instances.csv:1: timeout 'inf'"):
        read_instances(instances)


def test_cli_makes_the_result_files_folder_before_solving(onnx_path, tmp_path):
    from exactverify.cli import main

    out, full = tmp_path / "new" / "result.txt", tmp_path / "other" / "result.json"
    assert main(["vnncomp", onnx_path, str(DATA / "box_unsat.vnnlib"), "--timeout", "20", "--out", str(out),
                 "--json", str(full)]) == 0
    assert out.read_text() == "unsat\n" and '"verdict": "unsat"' in full.read_text()
