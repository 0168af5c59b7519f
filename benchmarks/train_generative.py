"""Train the per-digit generators and the classifiers for global robustness (CPU, fixed seeds, one thread).

    python benchmarks/train_generative.py classifiers [--capacities small medium] [--std-only] [--force]
    python benchmarks/train_generative.py generators [--digits 3 5 ...] [--force]
    python benchmarks/train_generative.py digits8      # tiny 8x8 versions -> exactverify/data (committed)
    python benchmarks/train_generative.py all          # small/medium std classifiers, G_3, then the rest
    python benchmarks/train_generative.py report       # only rewrite the quality table and sample grid

MNIST weights go to ``benchmarks/models/`` (git-ignored), each ``.pt`` (float32 state_dict)
with a JSON sidecar: seed, hyper-parameters, quality numbers, SHA-256 of the weights,
versions. Models whose files exist are skipped unless ``--force``, so a run can resume.
Writes ``benchmarks/results/generative_models.{md,json}`` and
``benchmarks/results/generators_samples.png`` (64 samples per digit, one row per digit).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from exactverify import zoo
from exactverify.generative import models as gm
from exactverify.generative.training import (
    ClassifierConfig,
    GanConfig,
    accuracy,
    augmented_copy,
    generator_quality,
    sample_images,
    train_classifier,
    train_gan,
    weights_digest,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPORT_NAME = "generative_models"
SAMPLES_PNG = "generators_samples.png"

# Hyper-parameters: chosen once, kept fixed so that retraining reproduces.
GAN_CONFIGS = {
    "mnist": GanConfig(steps=3000, batch_size=64),
    "digits8": GanConfig(steps=3000, batch_size=32, lr=1e-3, disc_widths=(64, 32), disc_dropout=0.3),
}
CLASSIFIER_CONFIGS = {
    "mnist": ClassifierConfig(epochs=20, batch_size=128, lr=2e-3, max_shift_px=2.0),
    "digits8": ClassifierConfig(epochs=150, batch_size=32, lr=3e-3, max_shift_px=1.0),
}
GENERATOR_SEED = 1000  # the generator of digit d uses seed GENERATOR_SEED + d
CLASSIFIER_SEED = 0
QUALITY_SAMPLES = 2000
QUALITY_SEED = 1234  # latent draws for the quality gate
AUG_TEST_SEED = 4321  # the fixed augmented copy of the test set
GRID_SEED = 99
QUALITY_GATE = 0.90  # aim: >= 90% of generated images labelled as their digit by the medium std classifier


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, flush=True)


def versions() -> dict:
    return {"torch_version": torch.__version__, "numpy_version": np.__version__,
            "python_version": platform.python_version()}


def load_data(dataset: str, mnist_path: str | None):
    if dataset == "digits8":
        return zoo.load_digits_data()
    return zoo.load_mnist(mnist_path)


def save(model: torch.nn.Module, path: Path, info: dict) -> dict:
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    info = {**info, "file": path.name, "weights_sha256": weights_digest(state), **versions(),
            "trained_by": "benchmarks/train_generative.py"}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def quality_classifier(dataset: str, root: Path):
    """The medium standard classifier (the quality judge), or None when not trained yet."""
    try:
        return gm.load_classifier("medium", False, dataset, root)
    except FileNotFoundError:
        return None


def train_one_classifier(dataset, capacity, augmented, data, root, force) -> None:
    path = root / gm.classifier_file(capacity, augmented, dataset)
    if path.is_file() and not force:
        log(f"skip {path.name} (exists; --force to retrain)")
        return
    x_train, y_train, x_test, y_test = data
    config = CLASSIFIER_CONFIGS[dataset]
    kind = "augmented" if augmented else "standard"
    log(f"training {dataset} {capacity} {kind} classifier {gm.classifier_widths(capacity, x_train.shape[1])}")
    model, stats = train_classifier(x_train, y_train, capacity, config, CLASSIFIER_SEED, augmented,
                                    log=lambda m: log(m))
    aug_test = augmented_copy(x_test, AUG_TEST_SEED, **config.augmentation())
    info = {
        "kind": "classifier", "dataset": dataset, "capacity": capacity, "augmented": augmented,
        "widths": list(gm.classifier_widths(capacity, x_train.shape[1])),
        "architecture": "ReLU MLP, Linear/ReLU alternating, flat input, logits out",
        "input_scaling": "pixel / 16 in [0, 1]" if dataset == "digits8" else "pixel / 255 in [0, 1]",
        "seed": CLASSIFIER_SEED, "optimizer": "Adam, cosine LR decay, cross-entropy",
        "hyperparameters": config.as_dict(),
        "augmentation": config.augmentation() if augmented else None,
        "train_accuracy": accuracy(model, x_train, y_train),
        "test_accuracy": accuracy(model, x_test, y_test),
        "augmented_test_accuracy": accuracy(model, aug_test, y_test),
        "augmented_test_set": {"seed": AUG_TEST_SEED, **config.augmentation()},
        "train_size": int(len(x_train)), "test_size": int(len(x_test)),
        **stats,
    }
    info = save(model, path, info)
    log(f"  test accuracy {info['test_accuracy']:.4f}, augmented test {info['augmented_test_accuracy']:.4f}"
        f" ({stats['train_seconds']} s) -> {path}")


def train_one_generator(dataset, digit, data, root, force) -> None:
    path = root / gm.generator_file(digit, dataset)
    if path.is_file() and not force:
        log(f"skip {path.name} (exists; --force to retrain)")
        return
    x_train, y_train = data[0], data[1]
    images = x_train[y_train == digit]
    config = GAN_CONFIGS[dataset]
    seed = GENERATOR_SEED + digit
    log(f"training {dataset} generator of digit {digit} on {len(images)} images, seed {seed}")
    generator, stats = train_gan(images, gm.LATENT_DIMS[dataset], gm.GENERATOR_HIDDEN[dataset], config, seed,
                                 log=lambda m: log(m), log_every=500)
    info = {
        "kind": "generator", "dataset": dataset, "digit": digit,
        "widths": [gm.LATENT_DIMS[dataset], *gm.GENERATOR_HIDDEN[dataset], gm.IMAGE_SIZE[dataset]],
        "architecture": "Linear/LeakyReLU(0.2) alternating, final Hardtanh(0, 1); latent z ~ N(0, I)",
        "latent_dim": gm.LATENT_DIMS[dataset], "output": "flat image, pixels in [0, 1]",
        "train_images": int(len(images)), "seed": seed,
        "recipe": "unconditional GAN, non-saturating loss, MLP discriminator with LeakyReLU + dropout, "
                  "Adam, one-sided label smoothing; trained through a leaky-clamp surrogate of the final "
                  "Hardtanh, saved and measured with the exact Hardtanh",
        "hyperparameters": config.as_dict(),
        **stats,
    }
    judge = quality_classifier(dataset, root)
    if judge is not None:
        info.update(quality_fields(generator, judge, digit))
    info = save(generator, path, info)
    quality = info.get("quality")
    log(f"  quality {quality if quality is None else round(quality, 4)} ({stats['train_seconds']} s) -> {path}")


def quality_fields(generator, judge, digit) -> dict:
    return {"quality": generator_quality(generator, judge, digit, QUALITY_SAMPLES, QUALITY_SEED),
            "quality_definition": f"fraction of {QUALITY_SAMPLES} samples (latent seed {QUALITY_SEED}) that the "
                                  "medium standard classifier labels as the digit"}


def refresh_quality(dataset: str, root: Path) -> None:
    """Add the quality number to generator sidecars written before the judge existed (or after it changed)."""
    judge = quality_classifier(dataset, root)
    if judge is None:
        return
    judge_sha = gm.classifier_info("medium", False, dataset, root)["weights_sha256"]
    for digit in range(10):
        path = root / gm.generator_file(digit, dataset)
        if not path.is_file():
            continue
        info = json.loads(path.with_suffix(".json").read_text())
        if info.get("quality_judge_sha256") == judge_sha and "quality" in info:
            continue
        info.update(quality_fields(gm.load_generator(digit, dataset, root), judge, digit))
        info["quality_judge_sha256"] = judge_sha
        path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def sample_grid(dataset: str, root: Path, out: Path, per_digit: int = 64) -> bool:
    """One PNG, one row of ``per_digit`` samples per digit (rows of missing generators left blank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = gm.IMAGE_SIDE[dataset]
    canvas = np.ones((10 * (side + 1), per_digit * (side + 1)))
    found = False
    for digit in range(10):
        try:
            generator = gm.load_generator(digit, dataset, root)
        except FileNotFoundError:
            continue
        found = True
        images = sample_images(generator, per_digit, GRID_SEED).numpy().reshape(-1, side, side)
        for col, image in enumerate(images):
            r, c = digit * (side + 1), col * (side + 1)
            canvas[r:r + side, c:c + side] = 1.0 - image  # dark digits on white
    if not found:
        return False
    scale = 2 if side < 16 else 1  # one canvas pixel per screen pixel at least (8x8 digits: 2)
    title_px = 24
    height, width = canvas.shape[0] * scale + title_px, canvas.shape[1] * scale
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1 - title_px / height])
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(f"{dataset}: {per_digit} samples per digit (rows 0-9), latent seed {GRID_SEED}", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return True


def collect(dataset: str, root: Path) -> dict:
    gens, clss = [], []
    for digit in range(10):
        try:
            gens.append(gm.generator_info(digit, dataset, root))
        except FileNotFoundError:
            pass
    for augmented in (False, True):
        for capacity in gm.CAPACITIES:
            try:
                clss.append(gm.classifier_info(capacity, augmented, dataset, root))
            except FileNotFoundError:
                pass
    return {"generators": gens, "classifiers": clss}


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    lines = ["# Generators and classifiers for global robustness", "",
             "Written by `benchmarks/train_generative.py`. Quality of a generator = fraction of "
             f"{QUALITY_SAMPLES} samples that the medium standard classifier labels as its digit "
             f"(aim > {QUALITY_GATE:.0%}). Augmented test set: the test images each distorted once "
             f"(seed {AUG_TEST_SEED}) by the same random rotation/shear/shift as augmented training.", ""]
    for dataset, block in results["datasets"].items():
        where = "benchmarks/models/ (git-ignored)" if dataset == "mnist" else "exactverify/data/ (committed)"
        lines += [f"## {dataset} — weights in {where}", "", "### Generators", "",
                  "| digit | train images | quality | train s | SHA-256 (first 12) |", "|---|---|---|---|---|"]
        for g in block["generators"]:
            lines.append(f"| {g['digit']} | {g['train_images']} | {fmt(g.get('quality'))} | {g['train_seconds']} "
                         f"| `{g['weights_sha256'][:12]}` |")
        lines += ["", "### Classifiers", "",
                  "| capacity | training | widths | test acc | augmented test acc | train s |",
                  "|---|---|---|---|---|---|"]
        for c in block["classifiers"]:
            lines.append(f"| {c['capacity']} | {'augmented' if c['augmented'] else 'standard'} | "
                         f"{'-'.join(map(str, c['widths']))} | {fmt(c['test_accuracy'])} | "
                         f"{fmt(c['augmented_test_accuracy'])} | {c['train_seconds']} |")
        lines.append("")
    lines += [f"Samples: `benchmarks/results/{SAMPLES_PNG}`.", ""]
    return "\n".join(lines)


def write_report(mnist_root: Path) -> None:
    results = {"machine": {**versions(), "platform": platform.platform()}, "datasets": {}}
    for dataset, root in (("mnist", mnist_root), ("digits8", gm.PACKAGE_DATA_DIR)):
        refresh_quality(dataset, root)
        block = collect(dataset, root)
        if block["generators"] or block["classifiers"]:
            results["datasets"][dataset] = block
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{REPORT_NAME}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"{REPORT_NAME}.md").write_text(markdown(results))
    if sample_grid("mnist", mnist_root, RESULTS_DIR / SAMPLES_PNG):
        log(f"wrote {RESULTS_DIR / SAMPLES_PNG}")
    sample_grid("digits8", gm.PACKAGE_DATA_DIR, RESULTS_DIR / "generators_samples_digits8.png")
    log(f"wrote {RESULTS_DIR / REPORT_NAME}.md/.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["generators", "classifiers", "digits8", "all", "report"])
    parser.add_argument("--digits", type=int, nargs="+", default=None, help="generators to train (default: all)")
    parser.add_argument("--capacities", nargs="+", choices=gm.CAPACITIES, default=list(gm.CAPACITIES))
    parser.add_argument("--std-only", action="store_true", help="classifiers: skip the augmented ones")
    parser.add_argument("--force", action="store_true", help="retrain models whose files exist")
    parser.add_argument("--root", type=Path, default=gm.DEFAULT_MODELS_DIR, help="folder of the MNIST weights")
    parser.add_argument("--mnist", default=None, help="path of mnist.npz (default: shared data folder)")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite the report at the end")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    digits = list(range(10)) if args.digits is None else args.digits
    if any(not 0 <= d <= 9 for d in digits):
        parser.error(f"--digits must lie in 0..9, got {digits}")
    augmented_choices = (False,) if args.std_only else (False, True)

    if args.what == "digits8":
        data = load_data("digits8", None)
        root = gm.PACKAGE_DATA_DIR
        for augmented in (False, True):
            for capacity in gm.CAPACITIES:
                train_one_classifier("digits8", capacity, augmented, data, root, args.force)
        for digit in digits:
            train_one_generator("digits8", digit, data, root, args.force)
    elif args.what != "report":
        data = load_data("mnist", args.mnist)
        if args.what == "classifiers":
            for augmented in augmented_choices:
                for capacity in args.capacities:
                    train_one_classifier("mnist", capacity, augmented, data, args.root, args.force)
        elif args.what == "generators":
            for digit in digits:
                train_one_generator("mnist", digit, data, args.root, args.force)
        else:  # all: what others wait for first
            for capacity in ("small", "medium"):
                train_one_classifier("mnist", capacity, False, data, args.root, args.force)
            first = [3] if 3 in digits else []
            for digit in first + [d for d in digits if d != 3]:
                train_one_generator("mnist", digit, data, args.root, args.force)
            train_one_classifier("mnist", "large", False, data, args.root, args.force)
            for capacity in gm.CAPACITIES:
                train_one_classifier("mnist", capacity, True, data, args.root, args.force)
    if not args.no_report:
        write_report(args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
