"""Image grids for the global-correctness and realistic-adversarial-example reports.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so
importing this module never changes matplotlib's global backend and nothing needs a display.
Images are flat vectors (as the generators produce them) reshaped to a square unless an
``image_shape`` is given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InvalidInputError, ShapeMismatchError


def _as_image(flat, image_shape: tuple[int, int] | None) -> np.ndarray:
    array = np.asarray(flat.detach().cpu() if hasattr(flat, "detach") else flat, dtype=np.float64).reshape(-1)
    if image_shape is None:
        side = math.isqrt(array.size)
        if side * side != array.size:
            raise ShapeMismatchError(f"an image of {array.size} values is not square; pass image_shape")
        image_shape = (side, side)
    if int(np.prod(image_shape)) != array.size:
        raise ShapeMismatchError(f"image_shape {tuple(image_shape)} does not hold {array.size} values")
    return array.reshape(image_shape)


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _show(ax, image: np.ndarray, title: str | None = None, cmap: str = "gray", vmin=0.0, vmax=1.0) -> None:
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def plot_misclassified(images, predictions, label: int, path, *, image_shape: tuple[int, int] | None = None,
                       max_images: int = 16, title: str | None = None) -> Path:
    """A square grid of generated images of class ``label`` that the classifier got wrong,
    each titled with the predicted label."""
    count = min(len(images), max_images)
    cols = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    fig = Figure(figsize=(1.2 * cols, 1.3 * rows + 0.4))
    for i in range(count):
        _show(fig.add_subplot(rows, cols, i + 1), _as_image(images[i], image_shape), f"pred {int(predictions[i])}")
    if count == 0:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified sample", ha="center", va="center")
    fig.suptitle(title or f"generated '{label}' images misclassified", fontsize=9)
    return _save(fig, path)


def plot_misclassified_table(results: Mapping[int, object], path, *, per_row: int = 8,
                             image_shape: tuple[int, int] | None = None, title: str | None = None) -> Path:
    """One row per generator (digit): up to ``per_row`` misclassified samples of one classifier,
    from :class:`~exactverify.globalrob.correctness.CorrectnessResult` objects keyed by digit."""
    if per_row < 1:
        raise InvalidInputError(f"per_row must be >= 1, got {per_row!r}")
    digits = sorted(results)
    rows = max(1, len(digits))
    fig = Figure(figsize=(1.1 * (per_row + 1), 1.2 * rows + 0.4))
    for r, digit in enumerate(digits):
        res = results[digit]
        label_ax = fig.add_subplot(rows, per_row + 1, r * (per_row + 1) + 1)
        label_ax.axis("off")
        label_ax.text(0.5, 0.5, f"GAN {digit}\n{100 * res.estimate:.2f}%", ha="center", va="center", fontsize=8)
        for i in range(min(per_row, len(res.misclassified_images))):
            ax = fig.add_subplot(rows, per_row + 1, r * (per_row + 1) + i + 2)
            _show(ax, _as_image(res.misclassified_images[i], image_shape),
                  f"pred {int(res.misclassified_predictions[i])}")
    fig.suptitle(title or "misclassified generated images (title: predicted label)", fontsize=9)
    return _save(fig, path)


def plot_realistic_pairs(pairs: Sequence, path, *, image_shape: tuple[int, int] | None = None, max_pairs: int = 8,
                         title: str | None = None) -> Path:
    """Three rows per figure: G(z) with its label, G(z') with its label and latent distance,
    and the difference G(z') - G(z) (red positive, blue negative)."""
    shown = list(pairs)[:max_pairs]
    cols = max(1, len(shown))
    fig = Figure(figsize=(1.3 * cols + 0.3, 4.3))
    for i, pair in enumerate(shown):
        a, b = _as_image(pair.image, image_shape), _as_image(pair.image_adv, image_shape)
        _show(fig.add_subplot(3, cols, i + 1), a, f"C: {pair.label}")
        mark = "" if pair.verified else " (unverified)"
        _show(fig.add_subplot(3, cols, cols + i + 1), b, f"C: {pair.label_adv}, d={pair.distance:.2f}{mark}")
        _show(fig.add_subplot(3, cols, 2 * cols + i + 1), b - a, "diff", cmap="bwr", vmin=-1.0, vmax=1.0)
    if not shown:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "no pair found", ha="center", va="center")
    fig.suptitle(title or "realistic adversarial pairs: G(z), G(z'), difference", fontsize=9)
    return _save(fig, path)


def plot_random_walk(walk, path, *, label: int | None = None, every: int = 1,
                     image_shape: tuple[int, int] | None = None, title: str | None = None) -> Path:
    """A strip of every ``every``-th image of a :class:`~exactverify.globalrob.realistic.RandomWalk`
    (titled with the predicted label), and below it the class probabilities along the walk."""
    if every < 1:
        raise InvalidInputError(f"every must be >= 1, got {every!r}")
    index = list(range(0, len(walk.images), every))
    cols = len(index)
    fig = Figure(figsize=(max(6.0, 0.9 * cols), 3.6))
    grid = fig.add_gridspec(2, cols, height_ratios=[1, 1.4])
    for k, t in enumerate(index):
        _show(fig.add_subplot(grid[0, k]), _as_image(walk.images[t], image_shape), f"{int(walk.predictions[t])}")
    ax = fig.add_subplot(grid[1, :])
    steps = np.arange(len(walk.probabilities))
    classes = walk.probabilities.shape[1]
    shown = {int(p) for p in walk.predictions} | ({label} if label is not None else set())
    for j in sorted(shown):
        ax.plot(steps, walk.probabilities[:, j], label=f"class {j}", linewidth=2.0 if j == label else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("softmax probability")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, ncol=min(classes, 5))
    fig.suptitle(title or f"latent random walk (step size {walk.step_size})", fontsize=9)
    return _save(fig, path)
