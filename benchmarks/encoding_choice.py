"""Time alternative MILP encodings on small digits networks and pick the defaults.

Compared (SCIP, one thread, same bounds for both encodings of a pair):
- max-pool: ``maxpool="direct"`` vs ``"relu_chain"`` on two conv nets (one with a padded pool);
- L1 ball: ``l1="epigraph"`` vs ``"relu"`` on an MLP (minimal L1 distortion within a ball);
- clamp: the ReLU chain vs the direct 2-binary form on a hardtanh MLP.

Networks are trained for a few seconds on scikit-learn's bundled 8x8 digits (64 inputs,
nothing is downloaded). Writes ``benchmarks/results/encodings.{csv,md}``.

Usage: ``python benchmarks/encoding_choice.py [--images 6] [--time-limit 60]``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from encoders.backends import make_backend, solver_versions
from encoders.milp import CLAMP, encode_query
from exactverify import ir
from exactverify.bounds import bounds as compute_bounds
from exactverify.regions import l1_ball, linf_ball
from exactverify.specs import other_class_wins

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS = (
    "Defaults chosen from this table (encoders.milp): maxpool='direct' (fewer nodes, solved every query where "
    "relu_chain timed out once, despite more binaries), l1='epigraph' (same answers, fewer binaries, time on par; "
    "exact for <= constraints and minimisation), clamp='direct' (same binaries, about half the nodes and time)."
)
SEED = 0


# ------------------------------------------------------------------ networks
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.data / 16.0).astype(np.float64), data.target.astype(np.int64)


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, shape, epochs: int = 30) -> torch.nn.Module:
    torch.manual_seed(SEED)
    xt = torch.tensor(x, dtype=torch.float32).reshape(-1, *shape)
    yt = torch.tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            idx = perm[start:start + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def to_ir(model: torch.nn.Sequential, shape, name: str) -> ir.Network:
    """The few torch modules used here as IR layers."""
    layers = []
    for m in model:
        if isinstance(m, torch.nn.Linear):
            layers.append(ir.Dense(m.weight.detach().double(), m.bias.detach().double()))
        elif isinstance(m, torch.nn.Conv2d):
            layers.append(ir.Conv2d(m.weight.detach().double(), m.bias.detach().double(), m.stride, m.padding))
        elif isinstance(m, torch.nn.ReLU):
            layers.append(ir.ReLU())
        elif isinstance(m, torch.nn.Hardtanh):
            layers.append(ir.Clamp(m.min_val, m.max_val))
        elif isinstance(m, torch.nn.MaxPool2d):
            layers.append(ir.MaxPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, torch.nn.Flatten):
            layers.append(ir.Flatten())
        else:
            raise TypeError(type(m).__name__)
    domain = (np.zeros(shape), np.ones(shape))
    return ir.Network(tuple(shape), tuple(layers), domain, name)


def networks(x, y) -> dict[str, ir.Network]:
    torch.manual_seed(SEED)
    nn = torch.nn
    img = (1, 8, 8)
    specs = {
        "conv_pool2": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(64, 10)), img),
        "conv_pool3_pad1": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                                          nn.Flatten(), nn.Linear(64, 10)), img),
        "mlp_relu": (nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 10)),
                     (64,)),
        "mlp_hardtanh": (nn.Sequential(nn.Linear(64, 24), nn.Hardtanh(), nn.Linear(24, 24), nn.Hardtanh(),
                                       nn.Linear(24, 10)), (64,)),
    }
    nets = {}
    for name, (model, shape) in specs.items():
        model = train(model, x[:1400], y[:1400], shape)
        net = to_ir(model, shape, name)
        acc = (net.forward(x[1400:]).argmax(1).numpy() == y[1400:]).mean()
        print(f"{name}: test accuracy {acc:.3f}")
        nets[name] = net
    return nets


# ------------------------------------------------------------------- queries
def safe_bounds(net, region):
    try:
        return compute_bounds(net, region, method="crown"), "crown"
    except Exception:  # noqa: BLE001 - benchmark falls back to the cheapest sound bounds
        return compute_bounds(net, region, method="interval"), "interval"


def run_one(net, region, spec, b, time_limit, minimize_distortion, **options) -> dict:
    be = make_backend("scip")
    start = time.perf_counter()
    enc = encode_query(be, net, region, spec, b, distortion=minimize_distortion, **options)
    build = time.perf_counter() - start
    if minimize_distortion:
        be.set_objective([enc.distortion], [1.0])
    result = be.solve(time_limit=time_limit)
    return {"status": result.status.value, "objective": result.objective, "seconds": round(result.seconds, 3),
            "build_s": round(build, 3), "nodes": result.node_count, "binaries": enc.binaries, "vars": be.num_vars}


COMPARISONS = {
    # name: (networks, variants {label: options}, region maker, eps values, minimise distortion?)
    "maxpool": (("conv_pool2", "conv_pool3_pad1"),
                {"direct": {"maxpool": "direct"}, "relu_chain": {"maxpool": "relu_chain"}},
                "linf", (0.03, 0.06), False),
    "l1": (("mlp_relu",), {"epigraph": {"l1": "epigraph"}, "relu": {"l1": "relu"}}, "l1", (0.5, 1.5), True),
    "clamp": (("mlp_hardtanh",),
              {"chain": {"registry": {ir.Clamp: CLAMP["chain"]}}, "direct": {"registry": {ir.Clamp: CLAMP["direct"]}}},
              "linf", (0.03, 0.06), False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    x, y = digits()
    nets = networks(x, y)
    rows = []
    for comparison, (net_names, variants, norm, eps_values, distortion) in COMPARISONS.items():
        for net_name in net_names:
            net = nets[net_name]
            for image in range(1400, 1400 + args.images):
                center = x[image].reshape(net.input_shape)
                label = int(y[image])
                if int(net.forward(center[None]).argmax()) != label:
                    continue  # only correctly classified images
                spec = other_class_wins(label, 10)
                for eps in eps_values:
                    make = linf_ball if norm == "linf" else l1_ball
                    region = make(center, eps, domain=(0.0, 1.0))
                    b, method = safe_bounds(net, region)
                    for variant, options in variants.items():
                        row = {"comparison": comparison, "network": net_name, "image": image, "eps": eps,
                               "bounds": method, "variant": variant,
                               **run_one(net, region, spec, b, args.time_limit, distortion, **options)}
                        print(row)
                        rows.append(row)
    write(rows, args)


def write(rows: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "encodings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# MILP encoding comparison", "",
             f"SCIP, time limit {args.time_limit:g} s per solve, {args.images} test images of sklearn digits "
             f"(correctly classified ones only); versions: {solver_versions()}.", "",
             "Per comparison and variant: solved = status optimal/infeasible within the limit; times in seconds "
             "(solve only; build time listed separately). Max-pool and clamp: robustness (feasibility) at L-inf eps; "
             "L1: minimal L1 distortion inside an L1 ball.", "",
             "| comparison | network | variant | queries | solved | total s | median s | mean build s | "
             "mean binaries | mean nodes | same answers |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["comparison"], row["network"], row["variant"]), []).append(row)
    for (comparison, network, variant), group in groups.items():
        solved = [r for r in group if r["status"] in ("optimal", "infeasible")]
        others = [g for (c, n, v), g in groups.items() if c == comparison and n == network and v != variant]
        same = _agree(group, others[0]) if others else ""
        lines.append(
            f"| {comparison} | {network} | {variant} | {len(group)} | {len(solved)} | "
            f"{sum(r['seconds'] for r in group):.2f} | {statistics.median(r['seconds'] for r in group):.3f} | "
            f"{statistics.mean(r['build_s'] for r in group):.3f} | "
            f"{statistics.mean(r['binaries'] for r in group):.1f} | "
            f"{statistics.mean((r['nodes'] or 0) for r in group):.0f} | {same} |")
    lines += ["", DEFAULTS]
    path = RESULTS / "encodings.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def _agree(a: list[dict], b: list[dict]) -> str:
    """How many paired queries gave the same status (and objective within 1e-5)."""
    same = 0
    for ra, rb in zip(a, b, strict=True):
        if ra["status"] == rb["status"] and (
                ra["objective"] is None or rb["objective"] is None or abs(ra["objective"] - rb["objective"]) <= 1e-5):
            same += 1
    return f"{same}/{len(a)}"


if __name__ == "__main__":
    main()
