"""The README's main job: provably minimal adversarial examples on the bundled 8x8 digits.

Loads the small committed digits network, and for a few correctly classified test images
and every target class computes the provably minimal L-inf and L1 adversarial distortion
(direct MILP), compares it with the smallest distortion PGD finds, prints a table, writes
the rows as JSON and draws original / minimal adversarial / difference as a PNG grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .attacks import pgd_min_distortion
from .errors import InvalidInputError
from .loaders import load
from .queries import minimal_distortion
from .specs import DEFAULT_MARGIN, class_wins
from .zoo import digits_network, load_digits_data

DIGITS_DOMAIN = (0.0, 1.0)


def _pgd_distortions(network, x: np.ndarray, label: int, targets: list[int], norm: str) -> list[float]:
    """PGD's smallest successful budget per target (inf when it never succeeds)."""
    n = network.output_size
    specs = [class_wins(t, n, DEFAULT_MARGIN) for t in targets]
    strict = [class_wins(t, n, 0.0) for t in targets]
    center = torch.as_tensor(x, dtype=torch.float64)[None].expand(len(targets), *x.shape).clone()

    def score(logits):
        return torch.stack([specs[k].slack(logits[k:k + 1])[0] for k in range(len(targets))])

    def success(logits):
        return torch.stack([strict[k].slack(logits[k:k + 1])[0] > 0 for k in range(len(targets))])

    eps_high = torch.full((len(targets),), 1.0 if norm == "linf" else float(x.size))
    domain = (torch.zeros_like(center), torch.ones_like(center))
    best, _, _ = pgd_min_distortion(network, center, score, success, eps_high, norm=norm, domain=domain)
    return best.tolist()


def correct_test_images(network=None) -> list[int]:
    """Indices of the bundled digits' test images the demo network classifies correctly."""
    network = load(digits_network(), input_shape=(64,)) if network is None else network
    _, _, x_test, y_test = load_digits_data()
    predictions = network.forward(torch.as_tensor(x_test)).argmax(1).numpy()
    return [i for i in range(len(x_test)) if predictions[i] == y_test[i]]


def check_images(images, name: str = "images", available: int | None = None) -> int:
    """``images`` must be an int in 1..``available`` (the correctly classified test images, counted
    here unless given); ``name`` is used in errors."""
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an int, got {images!r}")
    available = len(correct_test_images()) if available is None else available
    if not 1 <= images <= available:
        raise InvalidInputError(f"{name} must be in 1..{available} (the correctly classified test images), "
                                f"got {images}")
    return int(images)


def run_demo(images: int = 3, out: str | Path = "demo.png", json_path: str | Path | None = "demo.json",
             backend: str = "scip", time_limit: float = 60.0, tol: float = 1e-3, norms=("linf", "l1"),
             quiet: bool = False) -> list[dict]:
    """Run the demo; returns one row per (image, target, norm) query."""
    module = digits_network()
    network = load(module, input_shape=(64,))
    _, _, x_test, y_test = load_digits_data()
    correct = correct_test_images(network)
    chosen = correct[:check_images(images, available=len(correct))]
    rows: list[dict] = []
    jobs = [(i, t, norm) for i in chosen for norm in norms for t in range(10) if t != y_test[i]]
    pgd_cache = {}
    for index in chosen:
        for norm in norms:
            targets = [t for t in range(10) if t != y_test[index]]
            found = _pgd_distortions(network, x_test[index], int(y_test[index]), targets, norm)
            pgd_cache[index, norm] = dict(zip(targets, found, strict=True))
    points = {}
    for index, target, norm in tqdm(jobs, desc="minimal distortion", disable=quiet):
        result = minimal_distortion(network, x_test[index], norm=norm, target=target, domain=DIGITS_DOMAIN,
                                    method="direct", tol=tol, backend=backend, time_limit=time_limit,
                                    model=module)
        pgd_d = pgd_cache[index, norm][target]
        rows.append({
            "image": index, "label": int(y_test[index]), "target": target, "norm": norm,
            "pgd": pgd_d if math.isfinite(pgd_d) else None, "lower": result.lower,
            "upper": result.upper if math.isfinite(result.upper) else None, "status": result.status,
            "pgd_over_optimal_pct": (100.0 * (pgd_d - result.upper) / result.upper
                                     if math.isfinite(pgd_d) and 0 < result.upper < math.inf else None),
            "seconds": round(result.seconds, 3),
        })
        points[index, target, norm] = result.counterexample
    if not quiet:
        print(format_table(rows))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    if out:
        draw_grid(x_test, chosen, rows, points, out)
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the demo rows."""
    head = (f"{'img':>4} {'lab':>3} {'tgt':>3} {'norm':>4} {'PGD':>8} {'minimal':>17} {'PGD/opt-1':>9} "
            f"{'status':>8} {'s':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        fmt = (lambda v: "   inf" if v is None else f"{v:.4f}")  # noqa: E731
        minimal = f"[{r['lower']:.4f},{fmt(r['upper'])}]"
        pct = "" if r["pgd_over_optimal_pct"] is None else f"{r['pgd_over_optimal_pct']:+.1f}%"
        lines.append(f"{r['image']:>4} {r['label']:>3} {r['target']:>3} {r['norm']:>4} {fmt(r['pgd']):>8} "
                     f"{minimal:>17} {pct:>9} {r['status']:>8} {r['seconds']:>6.2f}")
    return "\n".join(lines)


def draw_grid(x_test, chosen, rows, points, out) -> None:
    """Per image and norm: original, minimal adversarial example (closest target), difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for index in chosen:
        for norm in sorted({r["norm"] for r in rows}):
            mine = [r for r in rows if r["image"] == index and r["norm"] == norm and r["upper"] is not None]
            if mine:
                best = min(mine, key=lambda r: r["upper"])
                panels.append((index, norm, best))
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 3, figsize=(6, 2 * len(panels)), squeeze=False)
    for row, (index, norm, best) in enumerate(panels):
        original = x_test[index].reshape(8, 8)
        adversarial = np.asarray(points[index, best["target"], norm]).reshape(8, 8)
        for col, (image, title, cmap, limits) in enumerate([
            (original, f"#{index}: label {best['label']}", "gray", (0, 1)),
            (adversarial, f"{norm} -> {best['target']}  d={best['upper']:.3f}", "gray", (0, 1)),
            (adversarial - original, "difference", "RdBu", (-1, 1)),
        ]):
            ax = axes[row, col]
            ax.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1])
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
