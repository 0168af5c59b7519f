"""Command line: JSON verdicts that agree with each other and with a float64 re-run."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

import exactverify as ev
from exactverify import zoo
from exactverify.cli import ProgressLines, main


def _digits():
    return ev.load(zoo.digits_network(), input_shape=(64,)), zoo.load_digits_data()[2]


def test_distortion_then_verify_bracket_the_minimum(tmp_path):
    out = tmp_path / "d.json"
    assert main(["distortion", "digits", "--digits-index", "0", "--target", "9", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["status"] == "optimal"
    assert 0 < result["lower"] <= result["upper"] <= result["lower"] + 1e-3
    network, x_test = _digits()
    point = np.array(result["counterexample"])
    assert np.abs(point - x_test[0]).max() <= result["upper"] + 1e-9
    assert network.forward(torch.tensor(point)[None]).argmax(1).item() == 9

    below, above = tmp_path / "below.json", tmp_path / "above.json"
    assert main(["verify", "digits", "--digits-index", "0", "--target", "9", "--eps",
                 str(result["lower"] * 0.99), "--json", str(below)]) == 0
    assert main(["verify", "digits", "--digits-index", "0", "--target", "9", "--eps",
                 str(result["upper"] * 1.01), "--json", str(above)]) == 0
    assert json.loads(below.read_text())["status"] == "robust"
    verdict = json.loads(above.read_text())
    assert verdict["status"] == "not_robust" and verdict["validated"] is True and verdict["model_validated"] is True


def test_bad_input_exits_with_a_clear_message(capsys):
    assert main(["verify", "digits", "--digits-index", "0", "--eps", "-0.1"]) == 2
    assert "eps must be finite and >= 0" in capsys.readouterr().err


def test_input_given_inline_or_as_a_text_file_gives_the_same_verdict(tmp_path, capsys):
    _, x_test = _digits()
    inline = ",".join(repr(float(v)) for v in x_test[0])
    text = tmp_path / "x.txt"
    text.write_text("\n".join(" ".join(repr(float(v)) for v in row) for row in x_test[0].reshape(8, 8)))
    outs = []
    for given in (inline, str(text)):
        out = tmp_path / f"v{len(outs)}.json"
        assert main(["verify", "digits", "--input", given, "--target", "9", "--eps", "0.5", "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0]["status"] == outs[1]["status"] == "not_robust"
    assert outs[0]["validated"] and outs[1]["validated"]


def test_unreadable_input_and_input_outside_the_domain_name_the_problem(tmp_path, capsys):
    assert main(["verify", "digits", "--input", str(tmp_path / "missing.npy"), "--eps", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--input: no such file" in err and "not a list of numbers" not in err
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not an npy file")
    assert main(["verify", "digits", "--input", str(broken), "--eps", "0.1"]) == 2
    assert "not a list of numbers" in capsys.readouterr().err
    assert main(["verify", "digits", "--input", "0.1,zero", "--eps", "0.1"]) == 2
    assert "not a list of numbers" in capsys.readouterr().err
    assert main(["verify", "digits", "--input", "notafile", "--eps", "0.1"]) == 2
    assert "neither a file nor comma-separated numbers" in capsys.readouterr().err
    point = ",".join(["0.5"] * 63 + ["1.5"])
    assert main(["verify", "digits", "--input", point, "--eps", "0.1"]) == 2
    assert "x[63] = 1.5 is not in [0, 1]" in capsys.readouterr().err


def test_distortion_reports_a_shrinking_proved_bracket_while_it_runs(tmp_path, capsys):
    network, x_test = _digits()
    seen = []
    result = ev.minimal_distortion(network, x_test[1], target=4, domain=(0.0, 1.0),
                                   progress=lambda lower, upper, step: seen.append((lower, upper, step)))
    assert result.status == "optimal" and len(seen) >= 2
    lowers, uppers = [s[0] for s in seen], [s[1] for s in seen]
    assert lowers == sorted(lowers) and uppers == sorted(uppers, reverse=True)
    assert (lowers[-1], uppers[-1]) == (result.lower, result.upper)
    assert all(s[2] in result.history for s in seen if s[2].outcome != "running")  # running: in-flight reports

    out = tmp_path / "d.json"
    assert main(["distortion", "digits", "--digits-index", "1", "--target", "4", "--json", str(out)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "distortion in [" in line]
    final = json.loads(out.read_text())
    assert lines and f"[{final['lower']:.6g}, {final['upper']:.6g}]" in lines[-1]
    assert main(["distortion", "digits", "--digits-index", "1", "--target", "4", "--quiet"]) == 0
    assert "distortion in [" not in capsys.readouterr().err
    with pytest.raises(ev.InvalidInputError, match="progress must be a callable"):
        ev.minimal_distortion(network, x_test[1], target=4, progress="yes")


def test_ctrl_c_in_a_search_returns_what_was_proved_so_far(tmp_path, monkeypatch, capsys):
    network, x_test = _digits()
    seen = []

    def stop_after_first(lower, upper, step):
        seen.append((lower, upper))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(ev.Interrupted) as caught:
        ev.minimal_distortion(network, x_test[1], target=4, domain=(0.0, 1.0), progress=stop_after_first)
    partial = caught.value.result
    assert isinstance(caught.value, KeyboardInterrupt)  # loops over queries still stop on Ctrl-C
    assert partial.status == "unknown" and "interrupted by Ctrl-C" in partial.reason
    assert (partial.lower, partial.upper) == seen[-1] and partial.lower < partial.upper
    point = np.asarray(partial.counterexample).reshape(-1)
    assert np.abs(point - x_test[1]).max() <= partial.upper + 1e-9
    assert network.forward(torch.tensor(point)[None]).argmax(1).item() == 4

    # the command line prints and stores that result and exits with the shell's 130
    class InterruptedProgress(ProgressLines):
        def __call__(self, lower, upper, step):
            super().__call__(lower, upper, step)
            raise KeyboardInterrupt

    monkeypatch.setattr("exactverify.cli.ProgressLines", InterruptedProgress)
    out = tmp_path / "d.json"
    assert main(["distortion", "digits", "--digits-index", "1", "--target", "4", "--json", str(out)]) == 130
    stored = json.loads(out.read_text())
    assert stored["status"] == "unknown" and "interrupted" in stored["reason"] and stored["upper"] < math.inf
    assert "unknown [" in capsys.readouterr().out

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["exactverify.queries.verify"], "_decide", interrupted)
    with pytest.raises(ev.Interrupted) as caught:
        ev.verify(network, x_test[1], 0.1, target=4)
    assert caught.value.result.status.value == "unknown" and "interrupted" in caught.value.result.reason


def test_ctrl_c_in_the_demo_stops_it_without_writing_a_query_result_over_its_rows(tmp_path, monkeypatch, capsys):
    network, x_test = _digits()

    def stop_at_once(lower, upper, step):
        raise KeyboardInterrupt

    with pytest.raises(ev.Interrupted) as caught:
        ev.minimal_distortion(network, x_test[1], target=4, domain=(0.0, 1.0), progress=stop_at_once)

    def interrupted_demo(*args, **kwargs):
        raise caught.value

    monkeypatch.setattr("exactverify.demo.run_demo", interrupted_demo)
    rows = tmp_path / "demo.json"
    assert main(["demo", "--json", str(rows), "--out", str(tmp_path / "demo.png")]) == 130
    assert not rows.exists()
    assert "interrupted" in capsys.readouterr().err


def test_milp_bounds_give_the_same_optimum_as_crown(tmp_path):
    results = {}
    for bounds in ("crown", "milp"):
        out = tmp_path / f"{bounds}.json"
        assert main(["distortion", "digits", "--digits-index", "1", "--target", "3", "--norm", "l1", "--bounds", bounds,
                     "--threads", "2", "--quiet", "--json", str(out)]) == 0
        results[bounds] = json.loads(out.read_text())
        assert results[bounds]["status"] == "optimal"
    crown, milp = results["crown"], results["milp"]
    assert max(crown["lower"], milp["lower"]) <= min(crown["upper"], milp["upper"]) + 1e-9, (crown, milp)
    assert any("milp (" in step["raw_status"] for step in milp["history"] if step["stage"] == "bounds")


def test_digits_index_out_of_range_or_negative_names_the_flag_and_range(capsys):
    for index in ("99999", "-1"):  # -1 used to pick the last test image silently
        assert main(["verify", "digits", "--digits-index", index, "--eps", "0.01", "--quiet"]) == 2
        assert f"--digits-index must be in 0..359 (the bundled digits' test images), got {index}" in \
            capsys.readouterr().err


def test_npy_input_of_strings_names_the_flag_and_dtype(tmp_path, capsys):
    strings = tmp_path / "x.npy"
    np.save(strings, np.array(["a", "b"]))
    assert main(["verify", "digits", "--input", str(strings), "--eps", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--input" in err and "dtype <U1, expected numbers" in err and "not a list of numbers" not in err


def test_output_folders_are_made_or_refused_before_the_query_runs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "folder" / "v.json"
    assert main(["verify", "digits", "--digits-index", "0", "--eps", "0.001", "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["status"] == "robust"

    def never(*args, **kwargs):
        raise AssertionError("the query ran before its output path was checked")

    monkeypatch.setattr("exactverify.queries.verify", never)
    monkeypatch.setattr("exactverify.queries.minimal_distortion", never)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for command in (["verify", "--eps", "0.1"], ["distortion"]):
        argv = [command[0], "digits", "--digits-index", "0", *command[1:], "--json", str(blocker / "out.json")]
        assert main(argv) == 2
        assert f"--json '{blocker / 'out.json'}': cannot create its folder" in capsys.readouterr().err
    assert main(["verify", "digits", "--digits-index", "0", "--eps", "0.1", "--json", str(tmp_path)]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


def test_demo_image_count_is_checked_before_anything_runs(tmp_path, monkeypatch, capsys):
    from exactverify.demo import correct_test_images, run_demo

    def never(*args, **kwargs):
        raise AssertionError("the demo ran")

    monkeypatch.setattr("exactverify.demo.run_demo", never)
    available = len(correct_test_images())
    for images in ("-2", "0", str(available + 1)):  # -2 used to run all but two test images
        argv = ["demo", "--images", images, "--out", str(tmp_path / "d.png"), "--json", str(tmp_path / "d.json")]
        assert main(argv) == 2
        assert f"--images must be in 1..{available} (the correctly classified test images), got {images}" in \
            capsys.readouterr().err
    with pytest.raises(ev.InvalidInputError, match=rf"images must be in 1\.\.{available}"):
        run_demo(0, out=None, json_path=None)


def test_global_commands_check_the_device_flag(capsys):
    base = ["global-correctness", "--classifier", "digits8:small", "--label", "3", "--samples", "5"]
    assert main([*base, "--generator", "digits8:3", "--device", "banana"]) == 2
    assert "--device must be a torch device such as 'cpu' or 'cuda', got 'banana'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--generator", "digits8:3", "--device", "cuda"]) == 2
        assert "--device='cuda' asks for CUDA, but torch.cuda.is_available() is False" in capsys.readouterr().err


def test_global_commands_name_unknown_datasets_and_untrained_weights(monkeypatch, tmp_path, capsys):
    base = ["global-correctness", "--classifier", "digits8:small", "--label", "3", "--samples", "5"]
    assert main([*base, "--generator", "cifar:3"]) == 2
    assert "--generator 'cifar:3': unknown dataset 'cifar'; known: mnist, digits8" in capsys.readouterr().err
    # weights that were never trained: the loader's message, without a traceback
    monkeypatch.setattr("exactverify.generative.models.DEFAULT_MODELS_DIR", tmp_path)
    assert main(["global-robustness", "--generator", "mnist:3", "--classifier", "mnist:small", "--label", "3",
                 "--eps", "0.05", "--samples", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exactverify: error: weights of the mnist generator of digit 3 are missing")
    assert "train_generative.py generators --digits 3" in err
