"""Train the project's zoo networks reproducibly (CPU, fixed seeds, one thread).

    python benchmarks/train.py digits          # 64-16-16-10 on sklearn's 8x8 digits
    python benchmarks/train.py mnist           # 784-24-24-24-10 on MNIST (shared npz)
    python benchmarks/train.py all
    python benchmarks/train.py mnist-madry     # N̄: PGD adversarially trained MNIST net (train_madry.py)

Writes ``exactverify/data/<name>.pt`` (a float32 state_dict) and a JSON sidecar with the
architecture, seed, hyper-parameters, test accuracy, torch version and a SHA-256 of the
weight values (the .pt file's bytes differ between runs; the weights do not).
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
from torch import nn

from exactverify import zoo
from exactverify.zoo import weights_digest  # noqa: F401  (re-exported for train_madry.py)

# Hyper-parameters per network: chosen once, kept fixed so that retraining reproduces.
CONFIGS = {
    "digits": {"epochs": 120, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4},
    "mnist": {"epochs": 40, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4},
}
DEFAULT_SEED = 0


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on float inputs ``x`` and integer labels ``y``."""
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32))
    return float((logits.argmax(1).numpy() == y).mean())


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, config: dict, seed: int, log_every: int) -> None:
    """Adam with cosine learning-rate decay and cross-entropy, shuffling with a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    steps_per_epoch = -(-len(xs) // config["batch_size"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config["epochs"] * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(config["epochs"]):
        model.train()
        order = torch.randperm(len(xs), generator=generator)
        total = 0.0
        for start in range(0, len(xs), config["batch_size"]):
            batch = order[start:start + config["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(model(xs[batch]), ys[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if log_every and (epoch + 1) % log_every == 0:
            print(f"  epoch {epoch + 1:3d}  loss {total / len(xs):.4f}", flush=True)
    model.eval()


def load_data(name: str, mnist_path: str | None):
    if name == "digits":
        return zoo.load_digits_data()
    return zoo.load_mnist(mnist_path)


def train(name: str, seed: int, out_dir: Path, mnist_path: str | None = None, log_every: int = 10) -> dict:
    """Train zoo network ``name``, save weights and sidecar under ``out_dir``, return the sidecar."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    config = CONFIGS[name]
    x_train, y_train, x_test, y_test = load_data(name, mnist_path)
    model = zoo.mlp(zoo.ARCHITECTURES[name])
    print(f"training {name}: widths {zoo.ARCHITECTURES[name]}, {len(x_train)} train / {len(x_test)} test", flush=True)
    start = time.perf_counter()
    fit(model, x_train, y_train, config, seed, log_every)
    seconds = time.perf_counter() - start
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / zoo.WEIGHT_FILES[name]
    torch.save(state, weights)
    info = {
        "name": name,
        "file": weights.name,
        "architecture": "ReLU MLP, Linear/ReLU alternating, flat input",
        "widths": list(zoo.ARCHITECTURES[name]),
        "input_scaling": "pixel / 16 in [0, 1]" if name == "digits" else "pixel / 255 in [0, 1]",
        "dataset": "sklearn.datasets.load_digits, stratified split" if name == "digits" else "MNIST npz",
        "train_size": int(len(x_train)),
        "test_size": int(len(x_test)),
        "train_accuracy": accuracy(model, x_train, y_train),
        "test_accuracy": accuracy(model, x_test, y_test),
        "seed": seed,
        "optimizer": "Adam, cosine LR decay, cross-entropy",
        "hyperparameters": config,
        "train_seconds": round(seconds, 1),
        "weights_sha256": weights_digest(state),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "trained_by": "benchmarks/train.py",
    }
    if name == "digits":
        info["split"] = {"test_size": zoo.DIGITS_TEST_SIZE, "random_state": zoo.DIGITS_SPLIT_SEED}
    weights.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"  test accuracy {info['test_accuracy']:.4f}  ({seconds:.1f} s) -> {weights}", flush=True)
    return info


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["mnist-madry"]:  # adversarial training has its own options: see train_madry.py
        from train_madry import main as madry_main

        return madry_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=["digits", "mnist", "all", "mnist-madry"], help="which zoo network to train")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for init and shuffling")
    parser.add_argument("--out-dir", type=Path, default=zoo.DATA_DIR, help="where to write .pt and .json")
    parser.add_argument("--mnist", default=None, help="path of mnist.npz (default: shared data folder)")
    parser.add_argument("--log-every", type=int, default=10, help="print the loss every N epochs (0: never)")
    args = parser.parse_args(argv)
    names = ["digits", "mnist"] if args.network == "all" else [args.network]
    for name in names:
        train(name, args.seed, args.out_dir, args.mnist, args.log_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
