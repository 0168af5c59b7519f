"""(eps, delta)-global robustness of one (generator, classifier, eps) by the certified sampler.

    python benchmarks/global_robustness.py                      # 10^4 samples, digit 3, small classifier
    python benchmarks/global_robustness.py --device cuda        # bounds and attacks on a GPU
    python benchmarks/global_robustness.py --quick              # 300 samples, *_quick outputs
    python benchmarks/global_robustness.py --dataset digits8    # the committed tiny models

Measures, in one run on this machine: the resolved fraction and time of every cascade stage,
total time and samples per second; the naive alternative (one ``exactverify.verify`` call per
sample: centre, attack, bounds, MILP, not batched) on a random subsample, extrapolated to all
samples; and
the forward-pass throughput of C∘G in float32 (the physical limit of any sampler).
The run stores every outcome in ``results/global_robustness[_quick].jsonl`` and resumes from it.
Writes ``results/global_robustness[_quick].{csv,json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, machine_info, markdown_table, write_results  # noqa: E402

from exactverify.compose import compose  # noqa: E402
from exactverify.generative.models import classifier_info, generator_info, load_classifier, load_generator  # noqa: E402
from exactverify.globalrob.cascade import STAGES, CascadeOptions  # noqa: E402
from exactverify.globalrob.latent import latent_stream, sample_latent  # noqa: E402
from exactverify.globalrob.sampler import global_robustness  # noqa: E402


def forward_throughput(generator, classifier, dim: int, device: str, batch: int = 4096, repeats: int = 5) -> float:
    """Samples per second of the float32 forward pass of C∘G (latent draw included)."""
    model = torch.nn.Sequential(generator, classifier).to(device).float().eval()
    stream = latent_stream(0)
    with torch.no_grad():
        model(sample_latent(batch, dim, stream, device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(sample_latent(batch, dim, stream, device)).argmax(1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def naive_exact(generator, classifier, label: int, eps: float, count: int, time_limit: float, seed: int) -> dict:
    """One :func:`exactverify.verify` call per sample (centre check, attack, forward bounds, MILP),
    as a user would loop over samples, on ``count`` fresh latents."""
    from exactverify import VerdictStatus, verify

    network = compose(generator, classifier)
    model = torch.nn.Sequential(generator, classifier).eval()
    latents = sample_latent(count, network.input_size, latent_stream(seed + 12345), dtype=torch.float64)
    names = {VerdictStatus.ROBUST: "certified", VerdictStatus.NOT_ROBUST: "violated"}
    times, statuses = [], []
    for latent in latents:
        start = time.perf_counter()
        verdict = verify(network, latent.numpy(), eps, "linf", label=label, domain=None, bounds_method="forward",
                         time_limit=time_limit, model=model)
        times.append(time.perf_counter() - start)
        statuses.append(names.get(verdict.status, "unknown"))
    return {"samples": count, "time_limit_s": time_limit, "median_s": statistics.median(times),
            "mean_s": statistics.fmean(times), "max_s": max(times), "unknown": statuses.count("unknown"),
            "certified": statuses.count("certified"), "violated": statuses.count("violated")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits8"))
    parser.add_argument("--digit", type=int, default=3)
    parser.add_argument("--classifier", default="small", choices=("small", "medium", "large"))
    parser.add_argument("--augmented", action="store_true")
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--exact-time-limit", type=float, default=20.0)
    parser.add_argument("--split-boxes", type=int, default=1024)
    parser.add_argument("--naive-samples", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 samples, 5 naive ones, *_quick outputs")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.naive_samples = 300, 5
    torch.set_num_threads(args.threads)
    suffix = ("_quick" if args.quick else "") + ("" if args.dataset == "mnist" else f"_{args.dataset}") + \
        ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
    name = f"global_robustness{suffix}"
    try:
        generator = load_generator(args.digit, args.dataset).double()
        classifier = load_classifier(args.classifier, args.augmented, args.dataset).double()
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    options = CascadeOptions(exact_time_limit=args.exact_time_limit, split_boxes=args.split_boxes, device=args.device,
                             seed=args.seed)
    store = RESULTS_DIR / f"{name}.jsonl"
    report = global_robustness(generator, classifier, args.digit, args.eps, samples=args.samples,
                               batch_size=args.batch_size, options=options, seed=args.seed, store=store, progress=True)
    dim = compose(generator, classifier).input_size
    throughput = forward_throughput(generator, classifier, dim, args.device)
    naive = naive_exact(generator, classifier, args.digit, args.eps, args.naive_samples, args.exact_time_limit,
                        args.seed)
    rows = [{"stage": stage, **asdict(report.stages[stage]),
             "seconds_per_entered": report.stages[stage].seconds / max(report.stages[stage].entered, 1)}
            for stage in STAGES]
    resumed = report.seconds < sum(r["seconds"] for r in rows) * 0.9
    summary = {
        "generator": generator_info(args.digit, args.dataset), "classifier": classifier_info(
            args.classifier, args.augmented, args.dataset), "eps": args.eps, "label": args.digit,
        "report": report.to_json(), "forward_samples_per_second": throughput, "naive_exact": naive,
        "naive_extrapolated_s": naive["mean_s"] * report.samples, "stage_seconds": sum(r["seconds"] for r in rows),
        "resumed_from_store": resumed,
    }
    md = _markdown(args, report, rows, throughput, naive, summary)
    write_results(name, rows, md, extra=summary)
    print(md)
    return 0


def _markdown(args, report, rows, throughput, naive, summary) -> str:
    machine = machine_info()
    iv = report.interval
    total = summary["stage_seconds"]
    lines = [
        f"# Global robustness: digit {args.digit} generator, {args.classifier}"
        f"{'-augmented' if args.augmented else '-standard'} classifier, eps = {args.eps} (latent L-inf)",
        "",
        f"Machine: {machine['processor']}, {machine.get('cpus_usable')} usable cores, torch {machine['torch']} "
        f"({args.threads} threads), device {args.device}; load average at the end {machine.get('load_average_1m')}.",
        f"Command: `python benchmarks/global_robustness.py {' '.join(sys.argv[1:])}`",
        "",
        f"- samples: {report.samples}; certified {report.certified}, violated {report.violated}, "
        f"unknown {report.unknown} ({100 * report.unknown_fraction:.2f}%)",
        f"- P(robust) in [{iv.low:.4f}, {iv.high:.4f}] at {iv.confidence:.3f} confidence "
        f"({iv.method}); empirical fraction in [{report.certified / report.samples:.4f}, "
        f"{(report.certified + report.unknown) / report.samples:.4f}]",
        f"- total time {total:.0f} s of cascade work ({total / 60:.1f} min), "
        f"{report.samples / total:.2f} samples/s",
        f"- forward pass of C∘G alone (float32, batch 4096): {throughput:,.0f} samples/s "
        f"(the physical limit; the cascade is {throughput / (report.samples / total):,.0f}x slower)",
        f"- naive: one verify() per sample on {naive['samples']} fresh samples ({naive['time_limit_s']:.0f} s limit): "
        f"median {naive['median_s']:.2f} s, mean {naive['mean_s']:.2f} s, max {naive['max_s']:.1f} s, "
        f"{naive['unknown']} unknown; extrapolated to {report.samples} samples: "
        f"{summary['naive_extrapolated_s'] / 60:.0f} min ({summary['naive_extrapolated_s'] / total:.1f}x the cascade)",
        "",
        markdown_table(rows, ["stage", "entered", "certified", "violated", "seconds", "seconds_per_entered"],
                       ["stage", "entered", "certified", "violated", "seconds", "s per entered sample"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
