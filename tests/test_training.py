"""PGD adversarial training: the attack respects its region, and training makes a network more robust.

The robustness claims are checked against two oracles that do not share code with the
training loop: the exact minimal L-inf distortion from the MILP engine, and, for a linear
model, the closed-form distance ``margin / ||w||_1`` to its decision boundary.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import exactverify as ev
from exactverify import training, zoo
from exactverify.errors import InvalidInputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_NPZ = SHARED / "mnist" / "mnist.npz"
EPS = 0.1


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D data with a robust feature x0 (margin 0.3, but 15% of labels point the other way) and a
    non-robust feature x1 (perfectly predictive, margin 0.06 < EPS): standard training leans on x1,
    training at EPS can only use x0 (Tsipras et al.'s construction in two dimensions)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2 * y - 1
    flip = np.where(rng.random(n) < 0.15, -1, 1)
    x0 = 0.5 + 0.3 * sign * flip + 0.05 * rng.standard_normal(n)
    x1 = 0.5 + 0.06 * sign + 0.01 * rng.standard_normal(n)
    return np.clip(np.stack([x0, x1], 1), 0.0, 1.0), y


def _train(eps: float) -> nn.Sequential:
    torch.manual_seed(0)
    model = zoo.mlp((2, 16, 16, 2))
    x, y = _toy(256, seed=0)
    history = training.adversarial_training(model, x, y, eps, 5, epochs=20, batch_size=32, lr=2e-2, seed=0)
    assert len(history.loss) == 20 and history.eps[-1] == pytest.approx(eps)
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Sequential]:
    torch.set_num_threads(1)
    return {"standard": _train(0.0), "madry": _train(EPS)}


def test_adversarial_training_raises_pgd_accuracy(models):
    x, y = _toy(500, seed=1)
    standard = training.robust_accuracy(models["standard"], x, y, EPS, steps=20, restarts=2)
    madry = training.robust_accuracy(models["madry"], x, y, EPS, steps=20, restarts=2)
    assert madry >= standard + 0.2, (standard, madry)
    assert madry >= 0.75  # the robust feature alone gives 85%


def test_adversarial_training_raises_provable_minimal_distortion(models):
    """Exact oracle: the MILP engine's proved minimal L-inf distortion grows on most test points."""
    x, y = _toy(12, seed=2)
    nets = {name: ev.load(model.double(), input_shape=(2,)) for name, model in models.items()}
    grew = 0
    counted = 0
    for point, label in zip(x, y, strict=True):
        if any(int(np.argmax(net.forward(torch.as_tensor(point[None])).numpy())) != label for net in nets.values()):
            continue  # both must classify the point correctly for distortions to compare
        exact = {name: ev.minimal_distortion(net, point, norm="linf", domain=(0.0, 1.0), method="direct",
                                             time_limit=30) for name, net in nets.items()}
        assert all(r.status == "optimal" for r in exact.values())
        counted += 1
        grew += exact["madry"].lower > exact["standard"].upper
    assert counted >= 6 and grew >= counted - 1, (grew, counted)


def test_pgd_linf_stays_in_ball_and_domain():
    torch.manual_seed(0)
    model = zoo.mlp((5, 8, 3))
    x = torch.rand(64, 5)
    y = torch.randint(0, 3, (64,))
    adv = training.pgd_linf(model, x, y, 0.2, steps=7, generator=torch.Generator().manual_seed(1))
    assert (adv - x).abs().max() <= 0.2 + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert not adv.requires_grad and all(p.grad is None for p in model.parameters())
    assert torch.equal(training.pgd_linf(model, x, y, 0.0), x)


def test_pgd_linf_matches_linear_closed_form():
    """A linear 2-class model: the closest L-inf flip is at margin / ||w||_1; PGD reaches it just above."""
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        model.bias.zero_()
    x = torch.full((1, 4), 0.5)
    y = torch.tensor([1])  # logits (w.x, 0) = (-0.25, 0): class 1 wins by 0.25
    distance = 0.25 / 3.5
    below = training.pgd_linf(model, x, y, distance * 0.99, steps=20, domain=None, random_start=False)
    above = training.pgd_linf(model, x, y, distance * 1.01, steps=20, domain=None, random_start=False)
    assert int(model(below).argmax()) == 1
    assert int(model(above).argmax()) == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"eps": -0.1}, "eps"),
    ({"steps": -1}, "steps"),
    ({"step_size": 0.0}, "step_size"),
    ({"domain": (1.0, 0.0)}, "domain"),
    ({"epochs": 0}, "epochs"),
    ({"warmup_epochs": -1}, "warmup_epochs"),
])
def test_invalid_arguments_name_the_parameter(kwargs, match):
    args = {"eps": 0.1, "steps": 2, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        training.adversarial_training(zoo.mlp((2, 3, 2)), np.zeros((4, 2)), np.zeros(4, dtype=int), **args)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(InvalidInputError, match="same number"):
        training.adversarial_training(zoo.mlp((2, 3, 2)), np.zeros((4, 2)), np.zeros(3, dtype=int), 0.1)


@pytest.mark.shared_data
@pytest.mark.skipif(not MNIST_NPZ.is_file(), reason=f"shared MNIST data absent at {MNIST_NPZ}")
def test_madry_network_matches_its_record_and_is_more_robust():
    path = zoo.DATA_DIR / zoo.MADRY_WEIGHT_FILE
    if not path.is_file():
        pytest.skip(f"N̄ weights not trained yet at {path}")
    info = json.loads(path.with_suffix(".json").read_text())
    madry, standard = zoo.mnist_madry_network(), zoo.mnist_network()
    digest = hashlib.sha256()
    for key, tensor in madry.state_dict().items():  # the digest benchmarks/train.py records
        digest.update(key.encode())
        digest.update(tensor.to(torch.float32).contiguous().numpy().tobytes())
    assert digest.hexdigest() == info["weights_sha256"]
    _, _, x_test, y_test = zoo.load_mnist()
    x, y = x_test[:500], y_test[:500]
    with torch.no_grad():
        clean = float((madry(torch.as_tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean())
    assert abs(clean - info["test_accuracy"]) < 0.05  # 500 of the 10000 images the record used
    eps = info["hyperparameters"]["eps"]
    assert training.robust_accuracy(madry, x, y, eps, 20) > training.robust_accuracy(standard, x, y, eps, 20) + 0.3
