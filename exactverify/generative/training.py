"""Training of the per-digit GANs and of the (optionally augmented) classifiers, plus quality numbers.

GAN recipe (stable on single-digit MNIST with MLPs): non-saturating generator loss, an MLP
discriminator with LeakyReLU(0.2) and dropout, Adam 2e-4 with betas (0.5, 0.999), one-sided
label smoothing (real targets 0.9), z ~ N(0, I).

The saved generator ends in ``Hardtanh(0, 1)`` so that C∘G stays piecewise linear. Its
gradient is zero outside [0, 1], which can stall pixels that start saturated, so training
uses a *surrogate* output ``clamp(x, 0, 1) + leak * (x - clamp(x, 0, 1))`` (slope ``leak``
outside the range). The discriminator sees the leak and pushes it back into range. The
model that is saved, and on which quality is measured, is the exact Hardtanh one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..zoo import weights_digest  # noqa: F401  (re-exported: the sidecars' SHA-256)
from .augment import random_affine
from .models import classifier_mlp, generator_mlp

Log = Callable[[str], None]


@dataclass(frozen=True)
class GanConfig:
    """Hyper-parameters of one GAN run (defaults: MNIST)."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    real_label: float = 0.9  # one-sided label smoothing
    disc_widths: tuple[int, ...] = (512, 256)
    disc_dropout: float = 0.3
    disc_slope: float = 0.2
    surrogate_leak: float = 0.01  # slope of the training surrogate outside [0, 1]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of one classifier run (defaults: MNIST); augmentation used only when asked."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_rotation_deg: float = 15.0
    max_shear: float = 0.2
    max_shift_px: float = 2.0
    extra: dict = field(default_factory=dict)

    def augmentation(self) -> dict:
        return {"max_rotation_deg": self.max_rotation_deg, "max_shear": self.max_shear,
                "max_shift_px": self.max_shift_px}

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("extra")
        return out


def _print(message: str) -> None:
    print(message, flush=True)


def discriminator_mlp(in_dim: int, widths=(512, 256), dropout: float = 0.3, slope: float = 0.2) -> nn.Sequential:
    """An MLP discriminator ``Linear, LeakyReLU, Dropout, ..., Linear(., 1)`` giving logits."""
    layers: list[nn.Module] = []
    fan_in = in_dim
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.LeakyReLU(slope), nn.Dropout(dropout)]
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    return nn.Sequential(*layers)


def surrogate_output(generator: nn.Sequential, z: torch.Tensor, leak: float) -> torch.Tensor:
    """The generator's output with its final Hardtanh(0, 1) replaced by a leaky clamp (training only)."""
    if not isinstance(generator[-1], nn.Hardtanh):
        raise InvalidInputError("generator must end in nn.Hardtanh for the training surrogate")
    pre = generator[:-1](z)
    clamped = pre.clamp(0.0, 1.0)
    return clamped + leak * (pre - clamped)


def train_gan(images: np.ndarray, latent_dim: int, widths, config: GanConfig, seed: int,
              log: Log = _print, log_every: int = 500) -> tuple[nn.Sequential, dict]:
    """Train an unconditional GAN on ``images`` (N, D) in [0, 1]; return the Hardtanh generator and stats."""
    if images.ndim != 2 or len(images) < 2:
        raise InvalidInputError(f"images must be a 2-d array of at least 2 rows, got shape {images.shape}")
    torch.manual_seed(seed)
    stream = torch.Generator().manual_seed(seed)
    data = torch.as_tensor(images, dtype=torch.float32)
    generator = generator_mlp(latent_dim, tuple(widths), data.shape[1])
    disc = discriminator_mlp(data.shape[1], config.disc_widths, config.disc_dropout, config.disc_slope)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=config.betas)
    bce = nn.BCEWithLogitsLoss()
    batch = min(config.batch_size, len(data))
    real_t = torch.full((batch, 1), config.real_label)
    fake_t = torch.zeros(batch, 1)
    ones = torch.ones(batch, 1)
    generator.train()
    disc.train()
    start = time.perf_counter()
    d_sum = g_sum = 0.0
    for step in range(1, config.steps + 1):
        real = data[torch.randint(len(data), (batch,), generator=stream)]
        z = torch.randn(batch, latent_dim, generator=stream)
        fake = surrogate_output(generator, z, config.surrogate_leak)
        opt_d.zero_grad()
        d_loss = bce(disc(real), real_t) + bce(disc(fake.detach()), fake_t)
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = bce(disc(fake), ones)  # non-saturating loss
        g_loss.backward()
        opt_g.step()
        d_sum += d_loss.item()
        g_sum += g_loss.item()
        if log_every and step % log_every == 0:
            log(f"    step {step:5d}  d_loss {d_sum / log_every:.3f}  g_loss {g_sum / log_every:.3f}"
                f"  ({time.perf_counter() - start:.0f} s)")
            d_sum = g_sum = 0.0
    generator.eval()
    stats = {"train_seconds": round(time.perf_counter() - start, 1), "final_d_loss": float(d_loss.item()),
             "final_g_loss": float(g_loss.item())}
    return generator, stats


def train_classifier(x: np.ndarray, y: np.ndarray, capacity: str, config: ClassifierConfig, seed: int,
                     augmented: bool = False, log: Log = _print) -> tuple[nn.Sequential, dict]:
    """Adam + cosine decay + cross-entropy; with ``augmented``, every batch is freshly distorted."""
    torch.manual_seed(seed)
    stream = torch.Generator().manual_seed(seed)
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.int64)
    model = classifier_mlp(capacity, xs.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(xs) // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(xs), generator=stream)
        total = 0.0
        for first in range(0, len(xs), config.batch_size):
            index = order[first:first + config.batch_size]
            inputs = xs[index]
            if augmented:
                inputs = random_affine(inputs, stream, **config.augmentation())
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), ys[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        log(f"    epoch {epoch + 1:3d}  loss {total / len(xs):.4f}  ({time.perf_counter() - start:.0f} s)")
    model.eval()
    return model, {"train_seconds": round(time.perf_counter() - start, 1)}


def predict(model: nn.Module, x, batch_size: int = 4096) -> np.ndarray:
    """Arg-max labels of ``model`` on the rows of ``x`` (array or tensor), batched, without gradients."""
    xs = torch.as_tensor(x, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for first in range(0, len(xs), batch_size):
            out.append(model(xs[first:first + batch_size]).argmax(1))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, x, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on inputs ``x`` and integer labels ``y``."""
    return float((predict(model, x) == np.asarray(y)).mean())


def augmented_copy(x: np.ndarray, seed: int, **augmentation) -> torch.Tensor:
    """A fixed, seeded randomly distorted copy of the images ``x`` (an augmented test set)."""
    stream = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return random_affine(torch.as_tensor(x, dtype=torch.float32), stream, **augmentation)


def sample_images(generator: nn.Module, count: int, seed: int) -> torch.Tensor:
    """``count`` generated images from seeded latent draws z ~ N(0, I)."""
    latent = next(m for m in generator.modules() if isinstance(m, nn.Linear)).in_features
    z = torch.randn(count, latent, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator(z)


def generator_quality(generator: nn.Module, classifier: nn.Module, digit: int, samples: int = 2000,
                      seed: int = 1234) -> float:
    """Fraction of ``samples`` generated images that ``classifier`` labels as ``digit``."""
    if not (isinstance(samples, int) and samples >= 1):
        raise InvalidInputError(f"samples must be a positive int, got {samples!r}")
    return float((predict(classifier, sample_images(generator, samples, seed)) == digit).mean())
