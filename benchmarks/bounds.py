"""Bounds benchmark: unstable ReLUs and time per region for interval, CROWN and LP bounds.

Networks: VNN-COMP 2021 ``mnist-net_256x2.onnx`` and the project's 784-24-24-24-10 MNIST
network (``exactverify.zoo``). Regions: L-inf balls of radius eps in {0.01, 0.03, 0.05}
around the first MNIST test images, intersected with the domain [0, 1].

- interval and CROWN run at batch sizes 1 (``--single`` regions one by one), 64 and 1024;
- LP tightening is per region and slow: it runs at batch 1 on ``--lp-images`` images only.

Unstable counts are means over the regions of one run; times are ``BoundsResult.seconds``
divided by the batch size (after one untimed warm-up call per method). Two checks are
printed: CROWN leaves fewer unstable ReLUs than interval, LP no more than CROWN on the same
images; and every bound is spot-checked for soundness on points sampled in its regions.

    python benchmarks/bounds.py            # full run (LP dominates the time)
    python benchmarks/bounds.py --quick    # a minute or two: small batches, LP on one image
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import exactverify as ev
from exactverify import zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, markdown_table, solver_versions, write_results  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VNN_256X2 = SHARED / "vnncomp2021" / "mnistfc" / "mnist-net_256x2.onnx"
EPSILONS = (0.01, 0.03, 0.05)
BATCHES = (1, 64, 1024)
#: Points sampled per region in the soundness spot check, and the slack allowed there:
#: bounds are float64, the sampled forward pass too; 1e-7 covers summation-order rounding.
SOUNDNESS_SAMPLES = 32
SOUNDNESS_TOL = 1e-7


def networks(names: list[str]) -> dict[str, ev.Network]:
    """The benchmark networks in IR form, loaded (and load-checked) through ``exactverify.load``."""
    out = {}
    for name in names:
        if name == "mnist-net_256x2":
            if not VNN_256X2.is_file():
                raise FileNotFoundError(f"VNN-COMP network not found at {VNN_256X2}")
            out[name] = ev.load(str(VNN_256X2))
        elif name == "zoo_mnist_24x3":
            out[name] = ev.load(zoo.mnist_network(), input_shape=(784,))
        else:
            raise ValueError(f"unknown network {name!r}")
    return out


def regions(network: ev.Network, images: np.ndarray, eps: float, device: str) -> ev.Region:
    """L-inf balls around ``images`` (flat, in [0, 1]) in the network's input shape."""
    centers = torch.as_tensor(images, dtype=torch.float64).reshape(len(images), *network.input_shape)
    region = ev.linf_ball(centers, eps, domain=(0.0, 1.0), shape=network.input_shape)
    return region.to(device)


def run_bounds(network, region, method: str, device: str, lp_time_limit: float):
    """One call of ``exactverify.bounds``; LP options only for the LP method."""
    options = {"time_limit": lp_time_limit} if method == "lp" else {}
    dev = None if method == "lp" or device == "cpu" else device
    return ev.bounds(network, region, method=method, device=dev, **options)


def soundness_violations(network: ev.Network, region: ev.Region, result, samples: int, seed: int = 0) -> int:
    """Values (entering any layer) of sampled points that leave the computed bounds by > SOUNDNESS_TOL."""
    generator = torch.Generator().manual_seed(seed)
    cpu = region.to("cpu")
    points = cpu.sample(samples, generator=generator)  # (S, B, *shape)
    x = points.reshape(samples * cpu.batch_size, *network.input_shape)
    bad = 0
    for index in range(len(network.layers) + 1):
        low = result.lower[index].detach().cpu().repeat(samples, *([1] * (result.lower[index].dim() - 1)))
        up = result.upper[index].detach().cpu().repeat(samples, *([1] * (result.upper[index].dim() - 1)))
        bad += int(((x < low - SOUNDNESS_TOL) | (x > up + SOUNDNESS_TOL)).sum())
        if index < len(network.layers):
            x = network.layers[index].forward(x)
    return bad


def measure(name, network, images, eps, method, batch, device, lp_time_limit, count=None) -> dict:
    """Bounds on ``count`` regions at batch size ``batch``; returns one result row."""
    count = batch if count is None else count
    per_layer, seconds, violations = [], 0.0, 0
    for start in range(0, count, batch):
        region = regions(network, images[start:start + batch], eps, device)
        result = run_bounds(network, region, method, device, lp_time_limit)
        seconds += result.seconds
        per_layer.append(torch.stack([s.unstable for s in result.stability], 1).cpu())  # (B, layers)
        violations += soundness_violations(network, region, result, SOUNDNESS_SAMPLES)
    unstable = torch.cat(per_layer).to(torch.float64)  # (count, layers)
    per_region_total = unstable.sum(1).tolist()
    relus = [int(np.prod(network.shapes[s.layer])) for s in result.stability]
    return {
        "network": name, "method": method, "eps": eps, "batch": batch, "regions": count,
        "device": "cpu" if method == "lp" else device,
        "seconds_total": round(seconds, 4), "seconds_per_region": seconds / count,
        "unstable_per_layer": [round(v, 3) for v in unstable.mean(0).tolist()],
        "unstable_total": float(unstable.sum(1).mean()),
        "relus_per_layer": relus,
        "per_region_total": per_region_total,
        "soundness_violations": violations,
    }


def warm_up(network, images, device: str, methods) -> None:
    for method in methods:
        if method != "lp":
            run_bounds(network, regions(network, images[:2], 0.01, device), method, device, 1.0)


def checks(rows: list[dict]) -> list[str]:
    """CROWN < interval (mean unstable, every setting); LP <= CROWN on the same images; soundness."""
    lines, key = [], (lambda r: (r["network"], r["eps"], r["batch"], r["regions"]))
    by = {(r["method"], *key(r)): r for r in rows}
    for row in rows:
        if row["method"] != "crown" or ("interval", *key(row)) not in by:
            continue
        ref = by[("interval", *key(row))]
        fewer = row["unstable_total"] < ref["unstable_total"]
        worse_regions = sum(c > i for c, i in zip(row["per_region_total"], ref["per_region_total"], strict=True))
        lines.append(
            f"{'PASS' if fewer else 'FAIL'} crown < interval: {row['network']} eps={row['eps']} "
            f"batch={row['batch']}: {row['unstable_total']:.1f} < {ref['unstable_total']:.1f} "
            f"(regions where crown > interval: {worse_regions})"
        )
    for row in rows:
        if row["method"] != "lp":
            continue
        crown = next((r for r in rows if r["method"] == "crown" and r["network"] == row["network"]
                      and r["eps"] == row["eps"] and r["batch"] == 1), None)
        if crown is None:
            continue
        same = crown["per_region_total"][: row["regions"]]
        ok = all(lp <= c for lp, c in zip(row["per_region_total"], same, strict=True))
        lines.append(
            f"{'PASS' if ok else 'FAIL'} lp <= crown (same {row['regions']} image(s)): {row['network']} "
            f"eps={row['eps']}: {row['unstable_total']:.1f} <= {float(np.mean(same)):.1f}"
        )
    bad = [r for r in rows if r["soundness_violations"]]
    lines.append(
        f"{'PASS' if not bad else 'FAIL'} soundness spot check ({SOUNDNESS_SAMPLES} samples per region, "
        f"tol {SOUNDNESS_TOL:g}): {sum(r['soundness_violations'] for r in rows)} violations"
    )
    return lines


def summary(rows: list[dict], check_lines: list[str], args, elapsed: float) -> str:
    largest = {}
    for row in rows:
        k = (row["network"], row["method"], row["eps"])
        if row["method"] != "lp" and (k not in largest or row["regions"] > largest[k]["regions"]):
            largest[k] = row
    unstable_rows = []
    for (net, method, eps), row in sorted(largest.items()):
        unstable_rows.append({"network": net, "eps": eps, "method": method, "regions": row["regions"],
                              "per_layer": " / ".join(f"{v:.1f}" for v in row["unstable_per_layer"]),
                              "total": row["unstable_total"], "relus": sum(row["relus_per_layer"])})
    lp_rows = [r for r in rows if r["method"] == "lp"]
    for row in lp_rows:
        crown = next((r for r in rows if r["method"] == "crown" and r["network"] == row["network"]
                      and r["eps"] == row["eps"] and r["batch"] == 1), None)
        same = crown["per_region_total"][: row["regions"]] if crown else []
        row["_crown_same"] = float(np.mean(same)) if same else None
    timing = {}
    for row in rows:
        timing.setdefault((row["network"], row["method"], row["eps"]), {})[row["batch"]] = row["seconds_per_region"]
    timing_rows = [{"network": n, "method": m, "eps": e, **{f"b{b}": t.get(b) for b in BATCHES}}
                   for (n, m, e), t in sorted(timing.items())]
    text = [
        "# Bounds benchmark: unstable ReLUs and time per region",
        "",
        "L-inf balls of radius eps around the first MNIST test images, intersected with [0, 1].",
        f"Device: {args.device}. Mode: {'quick' if args.quick else 'full'}. Wall time {elapsed / 60:.1f} min.",
        f"Load average at the end: {machine_info().get('load_average_1m')} on {machine_info()['cpu_count']} CPUs "
        "(other jobs share the machine, so timings are noisy; compare them within one run only).",
        f"LP tightening is per region and slow: it ran at batch 1 on {args.lp_images} image(s) only "
        f"(time limit {args.lp_time_limit:g} s per LP, HiGHS, CPU); interval and CROWN ran at "
        f"batch sizes {', '.join(map(str, args.batches))}.",
        "",
        "## Unstable ReLUs (mean per region; per ReLU layer and total)",
        "",
        "Interval/CROWN at the largest batch run:",
        "",
        markdown_table(unstable_rows, ["network", "eps", "method", "regions", "per_layer", "total", "relus"],
                       ["network", "eps", "method", "regions", "unstable per layer", "total", "ReLUs"]),
        "LP (with CROWN on the same images for comparison):",
        "",
        markdown_table(
            [{**r, "per_layer": " / ".join(f"{v:.1f}" for v in r["unstable_per_layer"])} for r in lp_rows],
            ["network", "eps", "regions", "per_layer", "unstable_total", "_crown_same", "seconds_per_region"],
            ["network", "eps", "images", "LP unstable per layer", "LP total", "CROWN total (same)", "s/region"]),
        "## Seconds per region by batch size",
        "",
        markdown_table(timing_rows, ["network", "method", "eps", *[f"b{b}" for b in BATCHES]],
                       ["network", "method", "eps", *[f"batch {b}" for b in BATCHES]]),
        "## Checks",
        "",
        *[f"- {line}" for line in check_lines],
        "",
        f"Machine: {machine_info()}",
        "",
        f"Solvers: {solver_versions()}",
        "",
    ]
    for row in lp_rows:
        row.pop("_crown_same", None)
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where interval/CROWN run")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 64, LP on one image of the small net")
    parser.add_argument("--single", type=int, default=None, help="regions run one by one for batch 1")
    parser.add_argument("--lp-images", type=int, default=None, help="images for the LP method")
    parser.add_argument("--lp-time-limit", type=float, default=10.0, help="seconds per LP")
    parser.add_argument("--networks", nargs="+", default=["zoo_mnist_24x3", "mnist-net_256x2"],
                        choices=["zoo_mnist_24x3", "mnist-net_256x2"])
    parser.add_argument("--lp-networks", nargs="+", default=None, help="networks to run LP on (default: all)")
    parser.add_argument("--eps", type=float, nargs="+", default=list(EPSILONS))
    parser.add_argument("--name", default="bounds", help="results file stem under benchmarks/results")
    args = parser.parse_args(argv)
    if not args.name or any(sep in args.name for sep in "/\\"):
        parser.error(f"--name must be a plain file stem, got {args.name!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    args.batches = (1, 64) if args.quick else BATCHES
    args.single = args.single or (4 if args.quick else 16)
    args.lp_images = args.lp_images if args.lp_images is not None else (1 if args.quick else 2)
    if args.lp_networks is None:
        args.lp_networks = ["zoo_mnist_24x3"] if args.quick else list(args.networks)

    start = time.perf_counter()
    _, _, x_test, _ = zoo.load_mnist()
    images = x_test[: max(args.batches)]
    rows = []
    for name, network in networks(args.networks).items():
        warm_up(network, images, args.device, ("interval", "crown"))
        for eps in args.eps:
            for method in ("interval", "crown"):
                for batch in args.batches:
                    count = args.single if batch == 1 else batch
                    rows.append(measure(name, network, images, eps, method, batch, args.device,
                                        args.lp_time_limit, count))
                    r = rows[-1]
                    print(f"{name} eps={eps} {method:8s} batch={batch:4d}: unstable {r['unstable_per_layer']} "
                          f"{r['seconds_per_region'] * 1e3:.2f} ms/region", flush=True)
            if name in args.lp_networks and args.lp_images > 0:
                rows.append(measure(name, network, images, eps, "lp", 1, args.device, args.lp_time_limit,
                                    args.lp_images))
                r = rows[-1]
                print(f"{name} eps={eps} lp       batch=   1: unstable {r['unstable_per_layer']} "
                      f"{r['seconds_per_region']:.1f} s/region", flush=True)
    check_lines = checks(rows)
    print("\n".join(check_lines))
    text = summary(rows, check_lines, args, time.perf_counter() - start)
    paths = write_results(args.name, rows, text, extra={"args": {k: v for k, v in vars(args).items()}})
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 1 if any(line.startswith("FAIL") for line in check_lines) else 0


if __name__ == "__main__":
    sys.exit(main())
