"""Untargeted ``verify`` on a small MNIST CNN: how far the exact engine reaches beyond MLPs.

The network (trained here, seed 0, 3 epochs of Adam, about 98% test accuracy; needs
``../shared/data``): Conv2d(1, 16, 4, stride 2, pad 1), ReLU, Conv2d(16, 32, 4, 2, 1), ReLU,
Flatten, Dense(1568, 100), ReLU, Dense(100, 10): 4,804 ReLUs. Queries: the first ``--images``
correctly classified test images at each L-inf ``--eps``, domain [0, 1], each with
``--time-limit`` seconds, one at a time. Configurations:

- ``crown``: the engine without alpha escalation (PGD, CROWN, then the MILP);
- ``escalate``: the default engine (PGD, CROWN, alpha-CROWN when CROWN leaves more than
  ``stages.ALPHA_ESCALATION_UNSTABLE`` unstable ReLUs: first on the spec rows alone, then on
  every layer, then the MILP).

Every ``robust`` of one configuration must not meet a re-checked counterexample of the other.
Writes ``benchmarks/results/NAME.{csv,json,md}`` (``--name``, default ``conv_verify``).

Usage: ``python benchmarks/conv_verify.py [--images 10] [--eps 0.02 0.035 0.05] [--time-limit 60] [--name NAME]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, markdown_table, solver_versions, write_results  # noqa: E402

import exactverify as ev  # noqa: E402
from exactverify import zoo  # noqa: E402
from exactverify.queries import stages  # noqa: E402

CONFIGS = ("crown", "escalate")
SEED = 0
EPOCHS = 3


def conv_small() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(1568, 100), nn.ReLU(), nn.Linear(100, 10))


def train(x_train: np.ndarray, y_train: np.ndarray) -> nn.Sequential:
    """The benchmark's CNN, trained reproducibly (fixed seed, deterministic kernels)."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = conv_small()
    xs = torch.tensor(x_train, dtype=torch.float32).reshape(-1, 1, 28, 28)
    ys = torch.tensor(y_train, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(EPOCHS):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 128):
            batch = order[start:start + 128]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xs[batch]), ys[batch]).backward()
            optimizer.step()
    return model.eval()


def run_query(model, net, x, label: int, eps: float, config: str, time_limit: float) -> dict:
    saved = stages.ALPHA_ESCALATION_UNSTABLE
    if config == "crown":
        stages.ALPHA_ESCALATION_UNSTABLE = float("inf")
    try:
        start = time.perf_counter()
        verdict = ev.verify(net, x, eps, "linf", label=label, domain=(0.0, 1.0), time_limit=time_limit, model=model)
        seconds = time.perf_counter() - start
    finally:
        stages.ALPHA_ESCALATION_UNSTABLE = saved
    steps = [s for s in verdict.history if s.stage == "bounds"]
    spec_rows = [s for s in steps if s.raw_status == stages.ALPHA_SPEC_ROWS]
    all_layers = [s for s in steps if s.raw_status == stages.ALPHA_ALL_LAYERS]
    return {"status": verdict.status.value, "seconds": round(seconds, 2), "reason": verdict.reason,
            "validated": verdict.validated,
            "crown_unstable": sum(steps[0].unstable) if steps and steps[0].unstable else None,
            "spec_rows_seconds": round(spec_rows[0].seconds, 2) if spec_rows else None,
            "alpha_unstable": sum(all_layers[0].unstable) if all_layers and all_layers[0].unstable else None,
            "alpha_seconds": round(all_layers[0].seconds, 2) if all_layers else None,
            "milp_seconds": round(sum(s.seconds for s in verdict.history if s.stage == "milp"), 2)}


def summarise(rows: list[dict], accuracy: float, args) -> str:
    lines = ["# Untargeted verify on a small MNIST CNN (conv 16, conv 32, dense 100; 4,804 ReLUs)", "",
             f"Test accuracy {accuracy:.4f}; first {args.images} correctly classified test images, L-inf, "
             f"domain [0, 1], {args.time_limit:g} s per query, one at a time. See the script's docstring.", ""]
    table = []
    for eps in args.eps:
        for config in CONFIGS:
            mine = [r for r in rows if r["eps"] == eps and r["config"] == config]
            if not mine:
                continue
            count = {s: sum(r["status"] == s for r in mine) for s in ("robust", "not_robust", "unknown")}
            by_rows = sum(stages.ALPHA_SPEC_ROWS in r["reason"] for r in mine)
            by_layers = sum(stages.ALPHA_ALL_LAYERS in r["reason"] for r in mine)
            table.append({"eps": eps, "config": config, "queries": len(mine), **count,
                          "robust by alpha (spec rows / every layer)": f"{by_rows} / {by_layers}",
                          "median s": round(statistics.median(r["seconds"] for r in mine), 2),
                          "total s": round(sum(r["seconds"] for r in mine), 1)})
    lines.append(markdown_table(table, list(table[0]) if table else []))
    conflicts = [(r["image"], r["eps"]) for r in rows if r["status"] == "robust" and any(
        o["image"] == r["image"] and o["eps"] == r["eps"] and o["status"] == "not_robust" for o in rows)]
    lines += ["", f"Robust in one configuration, a counterexample in the other: {len(conflicts)} {conflicts}", "",
              f"Machine: {machine_info()}", "", f"Solvers: {solver_versions()}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.035, 0.05])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--name", default="conv_verify")
    args = parser.parse_args(argv)
    x_train, y_train, x_test, y_test = zoo.load_mnist(None)
    model = train(x_train, y_train)
    with torch.no_grad():
        predicted = model(torch.tensor(x_test, dtype=torch.float32).reshape(-1, 1, 28, 28)).argmax(1).numpy()
    accuracy = float((predicted == y_test).mean())
    net = ev.load(model, input_shape=(1, 28, 28))
    images = [i for i in range(len(y_test)) if predicted[i] == y_test[i]][: args.images]
    rows = []
    for eps in args.eps:
        for image in images:
            for config in args.configs:
                row = {"image": image, "label": int(y_test[image]), "eps": eps, "config": config,
                       **run_query(model, net, x_test[image].reshape(1, 28, 28), int(y_test[image]), eps, config,
                                   args.time_limit)}
                print(row, flush=True)
                rows.append(row)
    paths = write_results(args.name, rows, summarise(rows, accuracy, args), extra={"test_accuracy": accuracy,
                                                                                 "args": vars(args)})
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
