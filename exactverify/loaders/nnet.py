"""The ``.nnet`` text format (Reluplex / Marabou, Kyle Julian 2016) -> IR.

Layout after ``//`` comment lines: sizes header (numLayers, inputSize, outputSize,
maxLayerSize), layer sizes, an unused flag, input minimums, input maximums, means (inputs
then one output mean), ranges (likewise), then per layer the weight rows (one per output
neuron) followed by one bias per line. Hidden layers are ReLU, the output is linear.
Inputs are normalised as ``(x - mean) / range`` and outputs de-normalised as
``y * range_out + mean_out``.

Reluplex and Marabou also clip raw inputs to [min, max] before normalising; here those
bounds become the network's ``input_domain`` instead, so queries stay inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from ..ir import Dense, ElementwiseAffine, Network, ReLU


@dataclass(frozen=True)
class NNetFile:
    """The parsed contents of a .nnet file (float64 arrays)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    input_min: np.ndarray
    input_max: np.ndarray
    means: np.ndarray
    ranges: np.ndarray


class _Lines:
    """Numeric lines of the file with their line numbers, for precise error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.rows: list[tuple[int, str]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("//"):
                self.rows.append((number, stripped))
        self.index = 0

    def next(self, what: str, count: int | None = None) -> list[float]:
        if self.index >= len(self.rows):
            raise InvalidInputError(f"{self.source}: file ends early; expected {what}")
        number, line = self.rows[self.index]
        self.index += 1
        try:
            values = [float(v) for v in line.split(",") if v.strip()]
        except ValueError as exc:
            raise InvalidInputError(f"{self.source}: line {number} ({what}) is not comma-separated numbers: "
                                    f"{line[:60]!r}") from exc
        if count is not None and len(values) != count:
            raise InvalidInputError(f"{self.source}: line {number} ({what}) has {len(values)} values, "
                                    f"expected {count}")
        if not np.all(np.isfinite(values)):
            raise InvalidInputError(f"{self.source}: line {number} ({what}) contains NaN or infinite values")
        return values

    def finish(self) -> None:
        if self.index < len(self.rows):
            number, line = self.rows[self.index]
            raise InvalidInputError(f"{self.source}: unexpected data after the last layer at line {number}: "
                                    f"{line[:60]!r}")


def parse_nnet(path) -> NNetFile:
    """Parse a .nnet file strictly: every count is checked; errors name the line."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"could not read .nnet file {source!r}: {exc}") from exc
    lines = _Lines(text, source)
    header = lines.next("header numLayers,inputSize,outputSize,maxLayerSize")
    if len(header) < 3 or any(v != int(v) or v <= 0 for v in header[:3]):
        raise InvalidInputError(f"{source}: malformed header {header}")
    num_layers, n_in, n_out = (int(v) for v in header[:3])
    sizes = [int(v) for v in lines.next("layer sizes", num_layers + 1)]
    if sizes[0] != n_in or sizes[-1] != n_out or min(sizes) <= 0:
        raise InvalidInputError(f"{source}: layer sizes {sizes} disagree with inputSize={n_in}, outputSize={n_out}")
    lines.next("unused flag")
    input_min = np.array(lines.next("input minimums", n_in))
    input_max = np.array(lines.next("input maximums", n_in))
    means = np.array(lines.next("means", n_in + 1))
    ranges = np.array(lines.next("ranges", n_in + 1))
    if np.any(input_min > input_max):
        index = int(np.argmax(input_min > input_max))
        raise InvalidInputError(f"{source}: input {index} has minimum {input_min[index]:g} above its maximum "
                                f"{input_max[index]:g}")
    if np.any(ranges == 0):
        raise InvalidInputError(f"{source}: normalisation range {int(np.argmax(ranges == 0))} is zero "
                                f"(entries 0-{n_in - 1} are the inputs', {n_in} the outputs')")
    weights, biases = [], []
    for layer in range(num_layers):
        n_prev, n_next = sizes[layer], sizes[layer + 1]
        rows = [lines.next(f"layer {layer + 1} weight row {r + 1}", n_prev) for r in range(n_next)]
        bias = [lines.next(f"layer {layer + 1} bias {r + 1}", 1)[0] for r in range(n_next)]
        weights.append(np.array(rows, dtype=np.float64).reshape(n_next, n_prev))
        biases.append(np.array(bias, dtype=np.float64))
    lines.finish()
    return NNetFile(tuple(weights), tuple(biases), input_min, input_max, means, ranges)


def nnet_network(parsed: NNetFile, *, normalized: bool = False, name: str = "nnet") -> Network:
    """The IR network of a parsed file (raw units unless ``normalized``)."""
    n_in = parsed.input_min.shape[0]
    mean_in, range_in = parsed.means[:n_in], parsed.ranges[:n_in]
    layers: list = []
    for index, (weight, bias) in enumerate(zip(parsed.weights, parsed.biases, strict=True)):
        layers.append(Dense(weight, bias))
        if index < len(parsed.weights) - 1:
            layers.append(ReLU())
    if normalized:  # the image of [min, max] under x -> (x - mean) / range (a negative range swaps its ends)
        ends = ((parsed.input_min - mean_in) / range_in, (parsed.input_max - mean_in) / range_in)
        domain = (np.minimum(*ends), np.maximum(*ends))
    else:
        layers.insert(0, ElementwiseAffine(1.0 / range_in, -mean_in / range_in))
        layers.append(ElementwiseAffine(parsed.ranges[n_in], parsed.means[n_in]))
        domain = (parsed.input_min, parsed.input_max)
    return Network((n_in,), tuple(layers), domain, name)


def run_nnet(parsed: NNetFile, x: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Independent numpy forward pass of a parsed file (the loader's reference)."""
    n_in = parsed.input_min.shape[0]
    h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if not normalized:
        h = (h - parsed.means[:n_in]) / parsed.ranges[:n_in]
    for index, (weight, bias) in enumerate(zip(parsed.weights, parsed.biases, strict=True)):
        h = h @ weight.T + bias
        if index < len(parsed.weights) - 1:
            h = np.maximum(h, 0.0)
    if not normalized:
        h = h * parsed.ranges[n_in] + parsed.means[n_in]
    return h


def from_nnet(path, *, normalized: bool = False) -> tuple[Network, NNetFile]:
    """Parse and translate a .nnet file; returns the network and the parsed file."""
    parsed = parse_nnet(path)
    return nnet_network(parsed, normalized=normalized, name=Path(path).stem), parsed
