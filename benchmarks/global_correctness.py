"""Global correctness table (Fijalkow and Gupta's layout): classifiers x class generators.

For every trained class generator ``G_d`` (digit ``d``) and every classifier ``C`` (small /
medium / large, standard / augmented training), estimate ``P_z(C(G_d(z)) = d)`` from
``--samples`` latents ``z ~ N(0, I)`` (default 10^4 per cell) with a 95% Clopper-Pearson
interval. All six classifiers are scored on the same latents of a generator. Models that
are missing are skipped with a message naming the training command.

    python benchmarks/global_correctness.py                 # MNIST, 10^4 per cell, CPU
    python benchmarks/global_correctness.py --device cuda   # same code on a GPU
    python benchmarks/global_correctness.py --quick         # 500 per cell, *_quick outputs
    python benchmarks/global_correctness.py --dataset digits8

Writes ``results/global_correctness.{csv,json,md}`` and one PNG of misclassified generated
images per classifier (``results/global_correctness_misclassified_<classifier>.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, machine_info, write_results  # noqa: E402

from exactverify.generative.models import (  # noqa: E402
    CAPACITIES,
    IMAGE_SIDE,
    classifier_info,
    generator_info,
    load_classifier,
    load_generator,
)
from exactverify.globalrob.correctness import correctness_table  # noqa: E402
from exactverify.globalrob.intervals import clopper_pearson  # noqa: E402
from exactverify.globalrob.latent import latent_dim_of  # noqa: E402
from exactverify.globalrob.pictures import plot_misclassified_table  # noqa: E402

PAPER = ("N. Fijalkow, M. K. Gupta, \"Verification of Neural Networks: Specifying Global Robustness using "
         "Generative Models\", arXiv:1910.05018v1 (2019)")
#: The paper's own table (classifier x GAN, percentages, plus test accuracy), as
#: {classifier: {"gans": {digit: percent}, "test_accuracy": percent}}. Empty: it was not
#: transcribed (see PAPER_TABLE_NOTE); fill it in from the paper to print it beside ours.
PAPER_TABLE: dict[str, dict] = {}
PAPER_TABLE_NOTE = (
    "The paper's table is not reproduced here: the stored copy of the paper that this benchmark's author could "
    "read stopped after the introduction, and numbers are not quoted from memory. Fill `PAPER_TABLE` in "
    "`benchmarks/global_correctness.py` from the paper to print it here.")
#: The one number of theirs that could be checked: the authors' public notebook
#: (github.com/mohitiitb/NeuralNetworkVerification_GlobalRobustness, "Global correctness.ipynb",
#: commit 0d3f0106) prints this for their capacity-1 CNN trained without augmentation
#: ("classifier_capacity1_simple") against their digit-8 GAN ("gan_digit8_rich"), 1000 samples.
PAPER_NOTEBOOK_POINT = {"classifier": "capacity 1 (CNN conv 32-32-64-64, dense 200-200), no augmentation",
                        "gan": 8, "samples": 1000, "global_correctness_percent": 92.20}


def classifier_name(capacity: str, augmented: bool) -> str:
    return f"{capacity}-{'augmented' if augmented else 'standard'}"


def load_models(dataset: str, root, digits):
    generators, classifiers, accuracy, skipped = {}, {}, {}, []
    for d in digits:
        try:
            generators[d] = load_generator(d, dataset, root)
        except FileNotFoundError as exc:
            skipped.append(f"generator {d}: {exc}")
    for capacity in CAPACITIES:
        for augmented in (False, True):
            name = classifier_name(capacity, augmented)
            try:
                classifiers[name] = load_classifier(capacity, augmented, dataset, root)
                accuracy[name] = float(classifier_info(capacity, augmented, dataset, root)["test_accuracy"])
            except FileNotFoundError as exc:
                skipped.append(f"classifier {name}: {exc}")
    return generators, classifiers, accuracy, skipped


def paper_section(table) -> str:
    lines = [f"## The paper's numbers\n\nSource: {PAPER}.\n"]
    if PAPER_TABLE:
        digits = sorted({d for row in PAPER_TABLE.values() for d in row["gans"]})
        head = ["classifier (paper)"] + [f"GAN {d}" for d in digits] + ["test acc."]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, row in PAPER_TABLE.items():
            cells = [name] + [f"{row['gans'].get(d, float('nan')):.2f}" for d in digits]
            lines.append("| " + " | ".join(cells + [f"{row.get('test_accuracy', float('nan')):.2f}"]) + " |")
        lines.append("")
    else:
        lines.append(PAPER_TABLE_NOTE + "\n")
    p = PAPER_NOTEBOOK_POINT
    ci = clopper_pearson(round(p["global_correctness_percent"] * p["samples"] / 100), p["samples"])
    lines.append(
        f"One checkable point from the authors' public notebook: classifier {p['classifier']} against their "
        f"GAN {p['gan']}: {p['global_correctness_percent']:.2f}% from {p['samples']} samples (our 95% "
        f"Clopper-Pearson interval for that count: [{100 * ci.low:.2f}, {100 * ci.high:.2f}]%; they report no "
        "interval). Their classifiers are CNNs (3 capacities, 'simple' or 'rich' = rotation/shear/shift-augmented "
        "training data), their GANs map latent 10 -> 256 -> 512 -> 1024 -> 784 (LeakyReLU). Ours are ReLU MLP "
        "classifiers and generators of that shape ending in Hardtanh(0, 1) (exactly encodable), trained by this "
        "project, so only the layout and the orders of magnitude compare.\n")
    mine = [(name, d, r) for name, row in table.results.items() for d, r in row.items()]
    if mine:
        worst = min(mine, key=lambda x: x[2].estimate)
        lines.append(f"Our lowest cell: {worst[0]} on GAN {worst[1]}: {100 * worst[2].estimate:.2f}%.\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000, help="latent samples per cell (default 10^4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0, help="generator d uses latent seed SEED + d")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits8"))
    parser.add_argument("--root", default=None, help="folder of the weights (default: the dataset's)")
    parser.add_argument("--digits", type=int, nargs="*", default=list(range(10)))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    parser.add_argument("--quick", action="store_true", help="500 samples per cell, outputs named *_quick")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = 500 if args.quick else args.samples
    name = "global_correctness" + ("_quick" if args.quick else "") + ("_digits8" if args.dataset == "digits8" else "")
    results_dir = Path(args.results_dir) if args.results_dir else RESULTS_DIR

    generators, classifiers, accuracy, skipped = load_models(args.dataset, args.root, args.digits)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not generators or not classifiers:
        print("nothing to evaluate: no generator or no classifier could be loaded (see above)", file=sys.stderr)
        return 0
    print(f"{len(classifiers)} classifiers x {len(generators)} generators, {samples} samples per cell, "
          f"device {args.device}", flush=True)

    start = time.perf_counter()
    table = correctness_table(generators, classifiers, samples, test_accuracy=accuracy, seed=args.seed,
                              batch_size=args.batch_size, device=args.device, confidence=args.confidence)
    seconds = time.perf_counter() - start
    cells = len(generators) * len(classifiers)
    print(table.markdown(with_interval=False))

    side = IMAGE_SIDE[args.dataset]
    pngs = []
    for cname, row in table.results.items():
        path = results_dir / f"{name}_misclassified_{cname}.png"
        plot_misclassified_table(row, path, image_shape=(side, side),
                                 title=f"{cname}: misclassified generated images (title: predicted label)")
        pngs.append(path.name)

    rows = table.rows()
    gen_quality = {}
    for d in generators:
        try:
            gen_quality[d] = generator_info(d, args.dataset, args.root)
        except FileNotFoundError:
            gen_quality[d] = None
    machine = machine_info()
    md = [
        f"# Global correctness ({args.dataset}): classifiers x class generators\n",
        f"P_z(C(G_d(z)) = d), z ~ N(0, I_{latent_dim_of(next(iter(generators.values())))}), {samples} latent samples "
        f"per cell (same latents for every classifier of a generator; seed {args.seed} + d), "
        f"{100 * args.confidence:.0f}% Clopper-Pearson intervals; a logit tie counts as wrong. "
        f"Percentages. Last column: accuracy on the standard test set.\n",
        "## Estimates\n", table.markdown(with_interval=False),
        "## With intervals\n", table.markdown(with_interval=True),
        f"## Cost\n\n{cells} cells x {samples} samples in {seconds:.1f} s on {args.device} "
        f"({cells * samples / seconds:.0f} classifier evaluations per second, the generator run once per latent "
        f"and shared by the {len(classifiers)} classifiers; batch {args.batch_size}, torch threads "
        f"{torch.get_num_threads()}). Machine: {machine.get('processor')}, torch {machine.get('torch')}, "
        f"CUDA device: {machine.get('cuda')}.\n",
        paper_section(table),
        "## Pictures\n\n" + "\n".join(f"- `{p}`" for p in pngs) + "\n",
    ]
    if skipped:
        md.append("## Skipped\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n")
    extra = {"samples_per_cell": samples, "seconds": seconds, "device": args.device, "batch_size": args.batch_size,
             "seed": args.seed, "confidence": args.confidence, "dataset": args.dataset, "skipped": skipped,
             "paper": PAPER, "paper_table": PAPER_TABLE, "paper_table_note": PAPER_TABLE_NOTE,
             "paper_notebook_point": PAPER_NOTEBOOK_POINT, "test_accuracy": accuracy,
             "generator_quality": {d: (q or {}).get("quality") for d, q in gen_quality.items()}, "pictures": pngs}
    paths = write_results(name, rows, "\n".join(md), results_dir, extra)
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
