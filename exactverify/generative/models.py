"""Architectures and loaders of the generators and classifiers used for global robustness.

Fijalkow and Gupta (2019) specify a classifier's global robustness through one generator
per class. The models here keep that setup exactly encodable: every model is a plain
``nn.Sequential`` of Linear / ReLU / LeakyReLU / Hardtanh, so ``exactverify.load`` turns it
into the IR and ``exactverify.compose.compose(G, C)`` gives one piecewise-linear network.
The generator's last layer is ``Hardtanh(0, 1)`` (not a sigmoid/tanh) for that reason.

Two datasets:

- ``"mnist"``: latent 10 -> 256 -> 512 -> 1024 -> 784 generators (the paper's shape) and
  784-input classifiers; ~6 MB per generator, so the weights live in the git-ignored
  ``benchmarks/models/`` and are produced by ``python benchmarks/train_generative.py``.
- ``"digits8"``: tiny versions on scikit-learn's 8x8 digits (latent 4 -> 32 -> 64 -> 64),
  committed as package data in ``exactverify/data`` for tests.

Weights are state_dicts only, loaded with ``torch.load(..., weights_only=True)``; each has
a JSON sidecar (seed, hyper-parameters, quality numbers, versions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ExactVerifyError, InvalidInputError, LoadMismatchError

#: Latent dimension of the MNIST generators (z ~ N(0, I_10)).
LATENT_DIM = 10
#: Hidden widths of the MNIST generators, each followed by LeakyReLU(0.2).
GENERATOR_WIDTHS = (256, 512, 1024)
#: Negative slope of the generators' LeakyReLUs.
GENERATOR_SLOPE = 0.2
#: Classifier capacities, smallest first.
CAPACITIES = ("small", "medium", "large")
#: Hidden widths of the MNIST classifiers per capacity (ReLU after each).
MNIST_CLASSIFIER_WIDTHS = {"small": (32, 32), "medium": (128, 128), "large": (256, 256, 256)}

#: The 8x8-digits versions: latent dimension, generator hidden widths, classifier hidden widths.
DIGITS8_LATENT_DIM = 4
DIGITS8_GENERATOR_WIDTHS = (32, 64)
DIGITS8_CLASSIFIER_WIDTHS = {"small": (16,), "medium": (32, 32), "large": (64, 64)}

DATASETS = ("mnist", "digits8")
#: Flat input size and image side per dataset (pixels in [0, 1]: MNIST /255, digits /16).
IMAGE_SIDE = {"mnist": 28, "digits8": 8}
IMAGE_SIZE = {name: side * side for name, side in IMAGE_SIDE.items()}
LATENT_DIMS = {"mnist": LATENT_DIM, "digits8": DIGITS8_LATENT_DIM}
GENERATOR_HIDDEN = {"mnist": GENERATOR_WIDTHS, "digits8": DIGITS8_GENERATOR_WIDTHS}
CLASSIFIER_HIDDEN = {"mnist": MNIST_CLASSIFIER_WIDTHS, "digits8": DIGITS8_CLASSIFIER_WIDTHS}

#: Where the committed digits8 weights live (package data).
PACKAGE_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: Default folder of the MNIST weights: ``<repo>/benchmarks/models`` (git-ignored).
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
TRAIN_SCRIPT = "benchmarks/train_generative.py"


def generator_mlp(latent_dim: int = LATENT_DIM, widths=GENERATOR_WIDTHS, out_dim: int = 784,
                  slope: float = GENERATOR_SLOPE) -> nn.Sequential:
    """A fresh generator ``Linear, LeakyReLU, ..., Linear, Hardtanh(0, 1)``: flat images in [0, 1]."""
    sizes = (latent_dim, *tuple(widths), out_dim)
    if any(not isinstance(w, int) or w < 1 for w in sizes):
        raise InvalidInputError(f"generator_mlp: latent_dim, widths and out_dim must be positive ints, got {sizes!r}")
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if index:
            layers.append(nn.LeakyReLU(float(slope)))
        layers.append(nn.Linear(fan_in, fan_out))
    layers.append(nn.Hardtanh(0.0, 1.0))
    return nn.Sequential(*layers)


def _check_capacity(capacity: str) -> str:
    if capacity not in CAPACITIES:
        raise InvalidInputError(f"capacity must be one of {CAPACITIES}, got {capacity!r}")
    return capacity


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise InvalidInputError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dataset


def _check_digit(digit: int) -> int:
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
        raise InvalidInputError(f"digit must be an int in 0..9, got {digit!r}")
    return digit


def classifier_widths(capacity: str, in_dim: int = 784, classes: int = 10) -> tuple[int, ...]:
    """All layer widths (input, hidden..., classes) of a classifier of ``capacity``.

    The hidden widths are the MNIST ones unless ``in_dim`` is 64 (the 8x8 digits)."""
    _check_capacity(capacity)
    hidden = (DIGITS8_CLASSIFIER_WIDTHS if in_dim == IMAGE_SIZE["digits8"] else MNIST_CLASSIFIER_WIDTHS)[capacity]
    return (in_dim, *hidden, classes)


def classifier_mlp(capacity: str, in_dim: int = 784, classes: int = 10) -> nn.Sequential:
    """A fresh ReLU classifier ``Linear, ReLU, ..., Linear`` of ``capacity`` (logits out).

    MNIST (``in_dim`` 784): small 784-32-32-10, medium 784-128-128-10, large 784-256-256-256-10.
    8x8 digits (``in_dim`` 64): small 64-16-10, medium 64-32-32-10, large 64-64-64-10."""
    if not isinstance(in_dim, int) or in_dim < 1 or not isinstance(classes, int) or classes < 2:
        raise InvalidInputError(f"classifier_mlp: in_dim must be >= 1 and classes >= 2, got {in_dim!r}, {classes!r}")
    sizes = classifier_widths(capacity, in_dim, classes)
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def generator_file(digit: int, dataset: str = "mnist") -> str:
    """File name of the generator of ``digit``: ``<dataset>_gen_<digit>.pt``."""
    return f"{_check_dataset(dataset)}_gen_{_check_digit(digit)}.pt"


def classifier_file(capacity: str, augmented: bool = False, dataset: str = "mnist") -> str:
    """File name of a classifier: ``<dataset>_cls_<capacity>_<std|aug>.pt``."""
    return f"{_check_dataset(dataset)}_cls_{_check_capacity(capacity)}_{'aug' if augmented else 'std'}.pt"


def models_dir(dataset: str = "mnist", root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``dataset``'s weights: ``root`` if given, else the default for the dataset."""
    if root is not None:
        return Path(root)
    return PACKAGE_DATA_DIR if _check_dataset(dataset) == "digits8" else DEFAULT_MODELS_DIR


class MissingWeightsError(ExactVerifyError, FileNotFoundError):
    """The weights (or sidecar) of a built-in generative model are not there; says how to train them."""


def _weights_path(name: str, dataset: str, root, what: str, train_args: str) -> Path:
    path = models_dir(dataset, root) / name
    if not path.is_file():
        raise MissingWeightsError(
            f"weights of the {dataset} {what} are missing at {path}; "
            f"run `python {TRAIN_SCRIPT} {train_args}`"
        )
    return path


def _load_into(model: nn.Sequential, path: Path) -> nn.Sequential:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike: the file is refused
        raise LoadMismatchError(f"weights at {path} are not a state_dict that loads with weights_only=True "
                                f"(nothing in them is executed; retrain or replace the file): "
                                f"{type(exc).__name__}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise LoadMismatchError(f"weights at {path} do not fit the architecture in code: {exc}") from exc
    return model.to(torch.float32).eval()


def load_generator(digit: int, dataset: str = "mnist", root: str | os.PathLike | None = None) -> nn.Sequential:
    """The trained generator of ``digit`` (eval mode, float32): latent -> flat image in [0, 1]."""
    _check_dataset(dataset)
    args = "digits8" if dataset == "digits8" else f"generators --digits {_check_digit(digit)}"
    path = _weights_path(generator_file(digit, dataset), dataset, root, f"generator of digit {digit}", args)
    model = generator_mlp(LATENT_DIMS[dataset], GENERATOR_HIDDEN[dataset], IMAGE_SIZE[dataset])
    return _load_into(model, path)


def load_classifier(capacity: str, augmented: bool = False, dataset: str = "mnist",
                    root: str | os.PathLike | None = None) -> nn.Sequential:
    """The trained ``capacity`` classifier (standard or augmented training; eval mode, float32)."""
    name = classifier_file(capacity, augmented, dataset)
    args = "digits8" if dataset == "digits8" else "classifiers"
    kind = f"{'augmented' if augmented else 'standard'} {capacity} classifier"
    path = _weights_path(name, dataset, root, kind, args)
    return _load_into(classifier_mlp(capacity, IMAGE_SIZE[dataset]), path)


def _sidecar(name: str, dataset: str, root, what: str, train_args: str) -> dict:
    path = _weights_path(name, dataset, root, what, train_args).with_suffix(".json")
    if not path.is_file():
        raise MissingWeightsError(f"sidecar of the {dataset} {what} is missing at {path}")
    return json.loads(path.read_text())


def generator_info(digit: int, dataset: str = "mnist", root: str | os.PathLike | None = None) -> dict:
    """The JSON sidecar of the generator of ``digit``: seed, hyper-parameters, quality, versions."""
    args = "digits8" if dataset == "digits8" else f"generators --digits {digit}"
    return _sidecar(generator_file(digit, dataset), dataset, root, f"generator of digit {digit}", args)


def classifier_info(capacity: str, augmented: bool = False, dataset: str = "mnist",
                    root: str | os.PathLike | None = None) -> dict:
    """The JSON sidecar of a classifier: seed, hyper-parameters, test accuracies, versions."""
    args = "digits8" if dataset == "digits8" else "classifiers"
    return _sidecar(classifier_file(capacity, augmented, dataset), dataset, root, f"{capacity} classifier", args)
