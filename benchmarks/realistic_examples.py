"""Realistic adversarial examples (Fijalkow and Gupta's Algorithms 1 and 2) and the random walk.

For a few (digit generator, classifier) pairs, run the black-box latent local search
(Algorithm 1) and the white-box signed-gradient latent attack (Algorithm 2) from
``--starts`` latents the classifier labels as the digit with confidence >= 0.9 (the paper's
start condition), untargeted, with the authors' parameters (10 rounds x 5 candidates of
std 0.2; 40 steps of 0.01). Every reported pair is re-checked in float64; rates count
verified pairs only. Also a latent random walk from one start.

    python benchmarks/realistic_examples.py            # MNIST, CPU
    python benchmarks/realistic_examples.py --quick    # fewer starts, *_quick outputs
    python benchmarks/realistic_examples.py --device cuda

Writes ``results/realistic_examples.{csv,json,md}`` and PNG grids of pairs
(``realistic_examples_<method>_<digit>_<classifier>.png``) and of the random walk.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, machine_info, write_results  # noqa: E402

from exactverify.generative.models import IMAGE_SIDE, load_classifier, load_generator  # noqa: E402
from exactverify.globalrob.latent import latent_dim_of, latent_stream, sample_latent  # noqa: E402
from exactverify.globalrob.pictures import plot_random_walk, plot_realistic_pairs  # noqa: E402
from exactverify.globalrob.realistic import black_box_search, random_walk, white_box_search  # noqa: E402

PAPER = ("N. Fijalkow, M. K. Gupta, \"Verification of Neural Networks: Specifying Global Robustness using "
         "Generative Models\", arXiv:1910.05018v1 (2019)")
#: (capacity, augmented) of the classifiers attacked, and the digits.
CLASSIFIERS = (("small", False), ("large", True))
DIGITS = (3, 8)
METHODS = {"blackbox": black_box_search, "whitebox": white_box_search}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=200, help="search starts per (digit, classifier, method)")
    parser.add_argument("--digits", type=int, nargs="*", default=list(DIGITS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits8"))
    parser.add_argument("--root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--walk-steps", type=int, default=48)
    parser.add_argument("--walk-step-size", type=float, default=0.35)
    parser.add_argument("--min-confidence", type=float, default=0.9, help="softmax of the digit needed at a start")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20 starts, outputs named *_quick")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    starts = 20 if args.quick else args.starts
    name = "realistic_examples" + ("_quick" if args.quick else "") + ("_digits8" if args.dataset == "digits8" else "")
    results_dir = Path(args.results_dir) if args.results_dir else RESULTS_DIR
    side = IMAGE_SIDE[args.dataset]

    classifiers, generators, skipped = {}, {}, []
    for capacity, augmented in CLASSIFIERS:
        label = f"{capacity}-{'augmented' if augmented else 'standard'}"
        try:
            classifiers[label] = load_classifier(capacity, augmented, args.dataset, args.root)
        except FileNotFoundError as exc:
            skipped.append(f"classifier {label}: {exc}")
    for d in args.digits:
        try:
            generators[d] = load_generator(d, args.dataset, args.root)
        except FileNotFoundError as exc:
            skipped.append(f"generator {d}: {exc}")
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not classifiers or not generators:
        print("nothing to attack: no generator or no classifier could be loaded (see above)", file=sys.stderr)
        return 0

    rows, pngs = [], []
    total_start = time.perf_counter()
    for d, g in generators.items():
        for cname, c in classifiers.items():
            for method, search in METHODS.items():
                res = search(g, c, d, starts, seed=args.seed + d, device=args.device,
                             min_confidence=args.min_confidence)
                s = res.summary()
                rows.append({"digit": d, "classifier": cname, "method_key": method, **s})
                print(f"digit {d} {cname:17s} {method}: {len(res.verified)}/{res.starts} verified "
                      f"({res.found} found), mean ||z-z'||_inf {res.mean_distance:.3f}, {res.seconds:.1f} s",
                      flush=True)
                path = results_dir / f"{name}_{method}_{d}_{cname}.png"
                plot_realistic_pairs(res.verified, path, image_shape=(side, side),
                                     title=f"{res.method}: GAN {d}, classifier {cname}; rows G(z), G(z'), diff")
                pngs.append(path.name)
    total = time.perf_counter() - total_start

    d0, g0 = next(iter(generators.items()))
    c0name, c0 = next(iter(classifiers.items()))
    z0 = sample_latent(1, latent_dim_of(g0), latent_stream(args.seed), "cpu", torch.float64)[0]
    walk = random_walk(g0, c0, z0, args.walk_steps, args.walk_step_size, seed=args.seed)
    walk_png = results_dir / f"{name}_random_walk.png"
    plot_random_walk(walk, walk_png, label=d0, every=max(1, args.walk_steps // 12), image_shape=(side, side),
                     title=f"random walk in the latent space of GAN {d0} (step {args.walk_step_size}), "
                           f"classifier {c0name}")
    pngs.append(walk_png.name)
    walk_changes = int(np.sum(walk.predictions[1:] != walk.predictions[:-1]))
    walk_share = float(np.mean(walk.predictions == d0))

    columns = ["digit", "classifier", "method_key", "starts", "found", "verified", "unverified", "success_rate",
               "mean_distance", "min_distance", "seconds", "queries"]
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        table.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in columns)
                     + " |")
    machine = machine_info()
    md = [
        f"# Realistic adversarial examples ({args.dataset})\n",
        f"Method of {PAPER}: search the generator's latent space for z, z' with C(G(z)) = d "
        f"(softmax >= {args.min_confidence} at the start) and C(G(z')) != d. Algorithm 1 (black-box): 10 rounds, "
        "5 Gaussian candidates of std 0.2 per "
        "round, keep the best if the logit margin improves. Algorithm 2 (white-box): 40 signed-gradient steps of "
        "0.01 on the cross-entropy of C∘G w.r.t. the latent. Each search stops at its first misclassified latent. "
        "`verified` counts pairs that pass a float64 re-check (d strictly wins at z, another class strictly beats "
        f"d at z'); `success_rate` = verified / starts; distances are ||z - z'||_inf. {starts} starts per row.\n",
        "\n".join(table) + "\n",
        f"Total search time {total:.1f} s on {args.device} (torch threads {torch.get_num_threads()}; "
        f"{machine.get('processor')}, torch {machine.get('torch')}, CUDA device {machine.get('cuda')}).\n",
        f"Random walk: {args.walk_steps} steps of size {args.walk_step_size} from one latent of GAN {d0}; classifier "
        f"{c0name} says {d0} on {100 * walk_share:.0f}% of the points and changes its label {walk_changes} times.\n",
        "## Pictures\n\n" + "\n".join(f"- `{p}`" for p in pngs) + "\n",
    ]
    if skipped:
        md.append("## Skipped\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n")
    extra = {"starts": starts, "device": args.device, "dataset": args.dataset, "seconds": total, "paper": PAPER,
             "random_walk": {"digit": d0, "classifier": c0name, "steps": args.walk_steps,
                             "step_size": args.walk_step_size, "predictions": walk.predictions.tolist(),
                             "label_changes": walk_changes, "share_labelled_digit": walk_share},
             "pairs": {f"{r['digit']}/{r['classifier']}/{r['method_key']}": r["adv_labels"] for r in rows},
             "skipped": skipped, "pictures": pngs}
    paths = write_results(name, rows, "\n".join(md), results_dir, extra)
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
