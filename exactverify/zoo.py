"""The project's own small trained networks and the data they were trained on.

Two ReLU MLPs ship as package data (state_dicts only; the architectures live here in
code, so nothing pickled is executed on load):

- ``digits``: 64-16-16-10 on scikit-learn's bundled 8x8 digits, small enough for
  fast exact MILP demos and tests.
- ``mnist``: 784-24-24-24-10 on MNIST, the size of Carlini et al.'s seed network
  (ground-truth adversarial examples, 2017).

Both take flat inputs with pixels scaled to [0, 1] (digits: /16, MNIST: /255).
``benchmarks/train.py`` retrains them reproducibly; each ``.pt`` has a JSON sidecar
recording architecture, seed, accuracy and torch version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Layer widths (input, hidden..., output) of each zoo network.
ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "digits": (64, 16, 16, 10),
    "mnist": (784, 24, 24, 24, 10),
}
WEIGHT_FILES = {"digits": "digits_fc.pt", "mnist": "mnist_fc_24x3.pt"}

#: Digits split: this many images (stratified by class) form the test set.
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0

#: Where ``load_mnist`` looks when no path is given: the developers' shared data folder
#: beside the repository, unless the environment variable ``EXACTVERIFY_MNIST`` names a file.
MNIST_ENV = "EXACTVERIFY_MNIST"
DEFAULT_MNIST_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "mnist.npz"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names and float32 values, in state_dict order: identifies trained
    weights in the JSON sidecars (the .pt file's bytes differ between runs; the weights do not)."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def mlp(widths: tuple[int, ...]) -> nn.Sequential:
    """A fresh ReLU MLP ``Linear, ReLU, ..., Linear`` with the given layer widths."""
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must list at least two positive layer sizes, got {widths!r}")
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(int(fan_in), int(fan_out)))
    return nn.Sequential(*layers)


def _load(name: str) -> nn.Sequential:
    path = DATA_DIR / WEIGHT_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"weights of the {name!r} zoo network are missing at {path}; run `python benchmarks/train.py {name}`"
        )
    model = mlp(ARCHITECTURES[name])
    model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return model.eval()


def digits_network() -> nn.Sequential:
    """The trained 64-16-16-10 ReLU MLP for 8x8 digits (flat input, pixels in [0, 1])."""
    return _load("digits")


def mnist_network() -> nn.Sequential:
    """The trained 784-24-24-24-10 ReLU MLP for MNIST (flat input, pixels in [0, 1])."""
    return _load("mnist")


#: Names the command line and campaign queries accept for the zoo networks.
BUILTIN_MODELS = ("digits", "mnist")


def resolve_model(name: str):
    """A built-in network name or a model path (.onnx / .nnet) as ``(network, model, domain)``:
    ``model`` is what counterexamples are re-checked on besides the IR (the zoo's torch module,
    or the model file's own evaluation), ``domain`` the built-in networks' pixel box [0, 1]."""
    from .loaders import load, load_source

    if name in BUILTIN_MODELS:
        module = _load(name)
        return load(module, input_shape=(ARCHITECTURES[name][0],)), module, (0.0, 1.0)
    network, source_model = load_source(name)
    return network, source_model, None


def network_info(name: str) -> dict:
    """The JSON sidecar of zoo network ``name`` ("digits" or "mnist"): accuracy, seed, versions."""
    if name not in WEIGHT_FILES:
        raise ValueError(f"name must be one of {sorted(WEIGHT_FILES)}, got {name!r}")
    path = (DATA_DIR / WEIGHT_FILES[name]).with_suffix(".json")
    return json.loads(path.read_text())


def load_digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of scikit-learn's 8x8 digits, the training split.

    Images are flat float64 rows in [0, 1] (pixel / 16); labels are int64. The split is
    stratified with a fixed seed, so it is the one the shipped network was trained on.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return x_train, y_train, x_test, y_test


def mnist_path(path: str | os.PathLike | None = None) -> Path:
    """The MNIST npz file to read: ``path``, else ``$EXACTVERIFY_MNIST``, else the shared data folder."""
    if path is None:
        path = os.environ.get(MNIST_ENV) or DEFAULT_MNIST_PATH
    return Path(path)


def load_mnist(
    path: str | os.PathLike | None = None, flatten: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of MNIST from an npz with uint8 images.

    Images become float64 in [0, 1] (pixel / 255), flat (N, 784) unless ``flatten`` is
    False (then (N, 28, 28)); labels are int64. The file is never downloaded: pass
    ``path`` or set ``$EXACTVERIFY_MNIST`` if it is not in the shared data folder.
    """
    file = mnist_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"MNIST npz not found at {file}; pass path= or set ${MNIST_ENV} "
            "(expected arrays x_train, y_train, x_test, y_test)"
        )
    with np.load(file) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise ValueError(f"MNIST npz at {file} lacks arrays {sorted(missing)}")
        arrays = [data[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    shape = (-1, 784) if flatten else (-1, 28, 28)
    return (
        x_train.reshape(shape).astype(np.float64) / 255.0,
        y_train.astype(np.int64),
        x_test.reshape(shape).astype(np.float64) / 255.0,
        y_test.astype(np.int64),
    )


#: N̄: the MNIST architecture after PGD adversarial training (``benchmarks/train.py mnist-madry``).
MADRY_WEIGHT_FILE = "mnist_fc_24x3_madry.pt"


def mnist_madry_network() -> nn.Sequential:
    """N̄: the 784-24-24-24-10 MNIST MLP trained with L-inf PGD (Madry et al., eps 0.1); flat input in [0, 1].

    Its sidecar ``mnist_fc_24x3_madry.json`` records clean and PGD accuracy and the training setup.
    """
    path = DATA_DIR / MADRY_WEIGHT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"weights of the adversarially trained MNIST network are missing at {path}; "
            "run `python benchmarks/train.py mnist-madry`"
        )
    model = mlp(ARCHITECTURES["mnist"])
    model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return model.eval()
