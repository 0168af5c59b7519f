"""Alternatives to one SCIP MILP on the hardest closing probes of the MNIST minimal-distortion benchmark.

The minimal-distortion searches that do not end within 60 s spend their time proving one
decision MILP just below the optimum (a closing probe). This runs the probes of
``split_milp.py`` (``upper - 0.99 tol`` of the unknown queries of a journal closest to
ending) through the default engine and through three ways to make such a proof cheaper,
one probe at a time on one thread:

- ``milp``: the default engine (CROWN bounds, one SCIP MILP, ``solve_exact``).
- ``bab``: ReLU-phase branch and bound with beta-CROWN bounds on every sub-domain
  (:func:`exactverify.vnncomp.relu_split.relu_split_search`, torch on CPU); L-inf only (it
  takes a box).
- ``cuts-root`` / ``cuts-tree``: the default MILP plus the ideal-formulation cuts of
  Anderson et al. ("Strong mixed-integer programming formulations for trained neural
  networks") for every unstable ReLU, the most violated one per neuron, from a SCIP
  separator: at the root only (SCIP's 3 root rounds), or also one round at every node (with
  SCIP's other separators kept to the root, as the library's defaults keep them).
- ``tighten``: before the MILP, the bounds of the second hidden layer's unstable neurons are
  tightened by small MILPs over the first two layers (SCIP's dual bound, padded outward),
  CROWN recomputed on top, then the same MILP. The stored rows came from a prototype here
  (no time budget, no sampling check); it is now the library's ``bounds_method="milp"``
  (:mod:`exactverify.bounds.milp`), which this variant runs.
- ``tighten-2layers``: ``tighten`` with the third hidden layer's unstable neurons tightened
  too (``TIGHTEN_LAYERS = 2``; each of their MILPs carries the first two layers' binaries).
- ``priority`` / ``priority-tighten``: ``milp`` / ``tighten`` with SCIP's branching priorities
  ordered by layer (every binary of an earlier ReLU layer is branched on before any of a later
  one): fixing the first layers' phases lets SCIP's propagation tighten everything after them,
  the way a split of the input would.
- ``spec-lp``: ``tighten``, then every unstable neuron minimised and maximised by an LP over
  the region *and the spec* (the triangle relaxation of the whole network plus ``A y <= b``:
  bounds that need only hold where a counterexample could be, which is all a decision needs),
  repeated while a round still moves a bound (at most ``SPEC_LP_ROUNDS``), then the same MILP.
  Each LP bound is HiGHS's dual certificate (:func:`exactverify.bounds.lp.safe_minimum`). The
  row also counts the ReLU phase implications that one-neuron splits give under CROWN
  (``phase_implications``: fixing one unstable neuron's phase makes a later one stable), the
  material of dependency cuts (Venus, Botoeva et al. 2020).
- ``l1-lean``: ``tighten`` with the L1 ball written without an epigraph variable for the pixels
  whose box lets them move one way only (``|d| = d`` or ``-d``; most MNIST pixels are 0 or 1),
  which shrinks the LP by two rows and a column per such pixel; L1 probes only.

Answers must agree whenever two runs decide (a "robust" from any variant is a proof; the
cuts are valid for every point of the ReLU's graph over its input box, and the tightened
bounds are SCIP dual bounds widened by ``MILP_BOUND_PADDING``). The other variants live here,
not in the library (see the markdown written for what each gave). Writes
``benchmarks/results/NAME.{csv,json,md}`` and the resumable journal ``NAME.jsonl``; needs
``../shared/data``.

Usage: ``python benchmarks/closing_probes.py [--probes 5] [--time-limit 120] [--variants milp bab ...]
[--probe IMAGE:TARGET:NORM:EPS ...] [--name closing_probes]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine_info, markdown_table, solver_versions, write_results  # noqa: E402
from split_milp import decide, probes  # noqa: E402

VARIANTS = ("milp", "bab", "cuts-root", "cuts-tree", "tighten", "priority", "priority-tighten", "tighten-2layers",
            "spec-lp", "l1-lean")
#: A cut is added only if the LP point violates it by more than this.
CUT_MIN_VIOLATION = 1e-4
#: Rounds of the ``spec-lp`` tightening (a round re-solves every neuron still unstable).
SPEC_LP_ROUNDS = 3


# ------------------------------------------------------------------ Anderson et al. cuts
def relu_neurons(network, bounds, encoding, padding: float) -> list[tuple]:
    """Per unstable ReLU with a binary: (input vars, weights, bias, input lower, upper, y, z) as
    SCIP variables and float64 arrays; a dense layer must feed each ReLU layer."""
    from encoders.milp.network import padded_bounds
    from exactverify.ir import Dense, ReLU

    scip_vars = encoding.backend._vars
    by_name = {v.name: v for v in scip_vars}
    neurons = []
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, ReLU):
            continue
        dense = network.layers[i - 1]
        if not isinstance(dense, Dense):
            raise ValueError(f"layer {i - 1} feeding a ReLU is {dense.kind}, not Dense")
        inputs = encoding.values[i - 1]
        low, up = padded_bounds(bounds, i - 1, padding)
        for k in range(len(encoding.values[i])):
            z = by_name.get(f"r{i}_{k}_z")  # the binary of an unstable ReLU (encoders.milp.formulations)
            if z is None:
                continue
            w = np.asarray(dense.weight[k], dtype=np.float64)
            nz = np.flatnonzero(w)
            neurons.append(([scip_vars[j] for j in inputs[nz]], w[nz], float(dense.bias[k]), low[nz], up[nz],
                            scip_vars[encoding.values[i + 1][k]], z))
    return neurons


def most_violated_cut(x: np.ndarray, y: float, z: float, w, b, low, up) -> tuple[np.ndarray, float, float, float]:
    """Anderson et al.'s inequality ``y <= sum_{i in I} w_i (x_i - L_i (1 - z)) + (b + sum_{i not in I} w_i U_i) z``
    (``L_i``/``U_i``: the input bound that minimises/maximises ``w_i x_i``) for the subset ``I``
    that the point violates most; returns (mask of I, coefficient of z, right-hand side of
    ``y - sum_I w_i x_i - coef_z z <= rhs``, violation)."""
    small = np.where(w >= 0, low, up)
    large = np.where(w >= 0, up, low)
    inside = w * (x - small * (1 - z)) < w * large * z
    coef_z = b + np.sum(w[inside] * small[inside]) + np.sum(w[~inside] * large[~inside])
    rhs = -np.sum(w[inside] * small[inside])
    violation = y - np.sum(w[inside] * x[inside]) - coef_z * z - rhs
    return inside, float(coef_z), float(rhs), float(violation)


def install_cuts(in_tree: bool, stats: dict) -> None:
    """Wrap the MILP encoder so that every SCIP model it builds gets the cut separator."""
    import pyscipopt

    import encoders.milp as milp
    from encoders.backends import scip

    class ReluCuts(pyscipopt.Sepa):
        def __init__(self, neurons):
            self.neurons = neurons

        def sepaexeclp(self):
            model = self.model
            if not in_tree and model.getDepth() > 0:
                return {"result": pyscipopt.SCIP_RESULT.DIDNOTRUN}
            tick = time.perf_counter()
            values: dict[str, float] = {}

            def value(var) -> float:
                if var.name not in values:
                    values[var.name] = model.getSolVal(None, var)
                return values[var.name]

            added = 0
            for inputs, w, b, low, up, y, z in self.neurons:
                x = np.array([value(v) for v in inputs])
                inside, coef_z, rhs, violation = most_violated_cut(x, value(y), value(z), w, b, low, up)
                if violation <= CUT_MIN_VIOLATION:
                    continue
                row = model.createEmptyRowSepa(self, "relu_cut", lhs=None, rhs=rhs, local=False, removable=True)
                model.cacheRowExtensions(row)
                model.addVarToRow(row, y, 1.0)
                for j in np.flatnonzero(inside):
                    model.addVarToRow(row, inputs[j], float(-w[j]))
                model.addVarToRow(row, z, -coef_z)
                model.flushRowExtensions(row)
                model.addCut(row, forcecut=False)
                model.releaseRow(row)
                added += 1
            stats["rounds"] += 1
            stats["cuts"] += added
            stats["separator_s"] += time.perf_counter() - tick
            return {"result": pyscipopt.SCIP_RESULT.SEPARATED if added else pyscipopt.SCIP_RESULT.DIDNOTFIND}

    plain = milp.encode_query

    def encode_with_cuts(backend, network, region, spec, bounds, **options):
        encoding = plain(backend, network, region, spec, bounds, **options)
        neurons = relu_neurons(network, bounds, encoding, options.get("padding", milp.BOUND_PADDING))
        backend._model.includeSepa(ReluCuts(neurons), "relu_cuts", "Anderson et al. ReLU cuts", priority=100000,
                                   freq=1, maxbounddist=1.0, usessubscip=False, delay=False)
        return encoding

    milp.encode_query = encode_with_cuts
    if in_tree:  # one round at every node for these cuts only: SCIP's own separators stay at the root
        scip.DEFAULT_PARAMS["separating/maxrounds"] = 1
        for key in pyscipopt.Model().getParams():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "separating" and parts[2] == "freq" and parts[1] != "aggregation":
                scip.DEFAULT_PARAMS[key] = 0


# ------------------------------------------------------------------ branching priorities
def install_layer_priorities() -> None:
    """Wrap the MILP encoder so that each SCIP model branches on earlier ReLU layers first."""
    import re

    import encoders.milp as milp

    pattern = re.compile(r"^r(\d+)_\d+_z$")  # the ReLU binaries: r{layer}_{unit}_z
    plain = milp.encode_query

    def encode_with_priorities(backend, network, region, spec, bounds, **options):
        encoding = plain(backend, network, region, spec, bounds, **options)
        model = backend._model
        for var in backend._vars:
            match = pattern.match(var.name)
            if match:
                model.chgVarBranchPriority(var, len(network.layers) - int(match.group(1)))
        return encoding

    milp.encode_query = encode_with_priorities


# ------------------------------------------------------------------ bounds over the spec
def spec_lp_program(network, region, lows: list, ups: list, conj):
    """The LP relaxation of ``network`` on ``region`` (flat float64 bounds ``lows/ups`` per value)
    with the spec's conjunction ``A y <= b`` on the output; the program and each value's columns."""
    from exactverify.bounds.lp import _add_layer, _Program, input_columns

    prog = _Program()
    cols = input_columns(prog, region, lows[0], ups[0])
    columns = [cols]
    for index, layer in enumerate(network.layers):
        cols = _add_layer(prog, layer, network.shapes[index], cols, lows[index], ups[index], lows[index + 1],
                          ups[index + 1])
        columns.append(cols)
    rows, outs = np.nonzero(conj.A)
    prog.rows(rows, cols[outs], conj.A[rows, outs], conj.b, equal=False)
    return prog, columns


def spec_lp_tighten(network, region, net_bounds, conj, stats: dict):
    """``net_bounds`` with every unstable pre-activation tightened over region and spec (see docstring)."""
    import torch

    from exactverify.bounds import BoundsResult
    from exactverify.bounds.interval import interval_layer
    from exactverify.bounds.lp import safe_minimum
    from exactverify.ir import ReLU

    tick = time.perf_counter()
    lows = [t[0].reshape(-1).double().cpu().numpy().copy() for t in net_bounds.lower]
    ups = [t[0].reshape(-1).double().cpu().numpy().copy() for t in net_bounds.upper]
    relu_inputs = [i for i, layer in enumerate(network.layers) if isinstance(layer, ReLU)]
    moved = 0
    for _ in range(SPEC_LP_ROUNDS):
        moved_before = moved
        for i in relu_inputs:
            prog, columns = spec_lp_program(network, region, lows, ups, conj)
            matrices, c = prog.matrices(), np.zeros(prog.size)
            for k in np.flatnonzero((lows[i] < 0) & (ups[i] > 0)):
                for sign in (1.0, -1.0):
                    c[columns[i][k]] = sign
                    bound = safe_minimum(c, matrices, 10.0, "highs")
                    c[columns[i][k]] = 0.0
                    if bound is not None and sign > 0 and bound > lows[i][k]:
                        lows[i][k], moved = bound, moved + 1
                    elif bound is not None and sign < 0 and -bound < ups[i][k]:
                        ups[i][k], moved = -bound, moved + 1
            for j in range(i, len(network.layers)):  # carry the tighter bounds forward (interval image)
                shape = network.shapes[j]
                low, up = interval_layer(network.layers[j], torch.as_tensor(lows[j]).reshape(1, *shape),
                                         torch.as_tensor(ups[j]).reshape(1, *shape))
                lows[j + 1] = np.maximum(lows[j + 1], low.reshape(-1).numpy())
                ups[j + 1] = np.minimum(ups[j + 1], up.reshape(-1).numpy())
        if moved == moved_before:
            break
    def shaped(values, like):
        return tuple(torch.as_tensor(v).reshape(t.shape) for v, t in zip(values, like, strict=True))

    result = BoundsResult(network, net_bounds.method + "+spec-lp", shaped(lows, net_bounds.lower),
                          shaped(ups, net_bounds.upper), net_bounds.seconds)
    stats.update(spec_lp_s=round(time.perf_counter() - tick, 3), spec_lp_moved=moved,
                 unstable_before=sum(net_bounds.unstable_per_layer()), unstable_after=sum(result.unstable_per_layer()))
    return result


def phase_implications(region, spec_network, net_bounds) -> int:
    """How many (split neuron, phase, later neuron) triples CROWN makes stable by one split."""
    import torch

    from exactverify.bounds.crown import crown_bounds
    from exactverify.ir import ReLU
    from exactverify.queries.split import padded_known, repeat_region

    relus = [i for i, layer in enumerate(spec_network.layers) if isinstance(layer, ReLU)]
    unstable = {i: (net_bounds.lower[i][0] < 0) & (net_bounds.upper[i][0] > 0) for i in relus}
    candidates = [(i, int(k)) for i in relus for k in torch.nonzero(unstable[i].reshape(-1)).reshape(-1)]
    if not candidates:
        return 0
    count = 2 * len(candidates)
    splits = {i: torch.zeros(count, *spec_network.shapes[i], dtype=torch.float64) for i in relus}
    for c, (i, k) in enumerate(candidates):
        splits[i].reshape(count, -1)[2 * c, k] = 1.0
        splits[i].reshape(count, -1)[2 * c + 1, k] = -1.0
    known = [[t.expand(count, *t.shape[1:]) for t in side]
             for side in padded_known(spec_network, net_bounds.lower, net_bounds.upper)]
    lowers, uppers = crown_bounds(spec_network, repeat_region(region, count), splits=splits,
                                  known=known)
    total = 0
    for c, (i, _) in enumerate(candidates):
        for b in (2 * c, 2 * c + 1):
            for j in relus:
                if j > i:
                    stable = (lowers[j][b] >= 0) | (uppers[j][b] <= 0)
                    total += int((stable & unstable[j]).sum())
    return total


def install_spec_lp(stats: dict) -> None:
    """Wrap :func:`exactverify.queries.stages.spec_bounds` so that its bounds get ``spec_lp_tighten``."""
    from exactverify.queries import stages

    plain = stages.spec_bounds

    def with_spec_lp(query, spec, eps, method, *args, **kwargs):
        own, row_lower = plain(query, spec, eps, method, *args, **kwargs)
        live = stages.live_disjuncts(spec, row_lower)
        if live is None or len(live.disjuncts) != 1:
            return own, row_lower
        stats["phase_implications"] = phase_implications(query.region(eps), stages._with_spec_rows(query, spec), own)
        return spec_lp_tighten(query.network, query.region(eps), own, live.disjuncts[0], stats), row_lower

    stages.spec_bounds = with_spec_lp


# ------------------------------------------------------------------ a leaner L1 ball
def install_lean_l1() -> None:
    """Wrap the MILP encoder's region so that one-sided pixels of an L1 ball get no epigraph."""
    import encoders.milp as milp
    from encoders.milp import region as region_module

    plain = region_module.encode_region_counted

    def lean(backend, region, *, l1="epigraph", distortion=False):
        if region.norm != "l1" or l1 != "epigraph":
            return plain(backend, region, l1=l1, distortion=distortion)
        region_module.check_region(region)
        lower, upper = region_module._flat(region.lower), region_module._flat(region.upper)
        x = backend.add_vars(lower, upper, prefix="x")
        center, eps = region_module._flat(region.center), float(region.eps[0])
        index, coef, const = [], [], 0.0
        for i in range(len(x)):
            if lower[i] >= center[i] and upper[i] > lower[i]:  # |d| = d
                index.append(int(x[i]))
                coef.append(1.0)
                const -= center[i]
            elif upper[i] <= center[i] and upper[i] > lower[i]:  # |d| = -d
                index.append(int(x[i]))
                coef.append(-1.0)
                const += center[i]
            elif upper[i] > lower[i]:
                t = backend.add_var(0.0, max(center[i] - lower[i], upper[i] - center[i]), name=f"abs{i}")
                backend.add_constraint([t, x[i]], [1.0, -1.0], ">=", -center[i])
                backend.add_constraint([t, x[i]], [1.0, 1.0], ">=", center[i])
                index.append(t)
                coef.append(1.0)
        if distortion:
            raise NotImplementedError("l1-lean is for decisions only")
        if index:
            backend.add_constraint(index, coef, "<=", eps - const, name="l1_ball")
        return x, None, 0

    milp.encode_region_counted = lean


# ------------------------------------------------------------------ running
def run_bab(query, eps: float, time_limit: float) -> dict:
    from exactverify.queries.stages import _with_spec_rows
    from exactverify.vnncomp.relu_split import relu_split_search

    spec = query.spec()  # where the attack succeeds: every row of a disjunct <= 0
    owner = np.concatenate([np.full(c.A.shape[0], k) for k, c in enumerate(spec.disjuncts)])
    region = query.region(eps)  # an L-inf ball within the domain: a box
    low, up = region.lower[0].reshape(-1), region.upper[0].reshape(-1)
    tick = time.perf_counter()
    outcome = relu_split_search(_with_spec_rows(query, spec), owner, len(spec.disjuncts), low, up,
                                time.perf_counter() + time_limit)
    return {"answer": "robust" if outcome.proved else "unknown", "seconds": round(time.perf_counter() - tick, 3),
            "domains": outcome.domains, "open": outcome.open,
            "reason": "every sub-domain closed" if outcome.proved else
            ("time limit" if outcome.seconds >= time_limit else "stopped: a sub-domain with nothing left to split")}


def run_variant(variant: str, probe: dict, time_limit: float) -> dict:
    """One probe through one variant, in a fresh process (the variants patch the engine)."""
    import torch

    torch.set_num_threads(1)
    import exactverify as ev
    from exactverify import zoo
    from exactverify.queries.checks import make_query

    _, _, x_test, _ = zoo.load_mnist()
    network = ev.load(zoo.mnist_network(), input_shape=(784,))
    x = np.asarray(x_test[probe["image"]], dtype=np.float64).reshape(-1)
    query = make_query(network, x, probe["norm"], probe["target"], None, (0.0, 1.0), ev.DEFAULT_MARGIN)
    if variant == "bab":
        return run_bab(query, probe["eps"], time_limit)
    stats = {"rounds": 0, "cuts": 0, "separator_s": 0.0}
    if variant.startswith("cuts"):
        install_cuts(variant == "cuts-tree", stats)
    if variant.startswith("priority"):
        install_layer_priorities()
    if variant == "tighten-2layers":
        from exactverify.bounds import milp as milp_module
        milp_module.TIGHTEN_LAYERS = 2
    if variant == "spec-lp":
        install_spec_lp(stats)
    if variant == "l1-lean":
        install_lean_l1()
    tighten = variant in ("tighten", "priority-tighten", "tighten-2layers", "spec-lp", "l1-lean")
    row = decide(query, probe["eps"], 1, time_limit, bounds_method="milp" if tighten else "crown")
    row.update({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items() if v})
    return row


def given_probes(texts: list[str]) -> list[dict]:
    """``IMAGE:TARGET:NORM:EPS`` strings as probes (MNIST test index, target class, linf/l1, radius)."""
    out = []
    for text in texts:
        image, target, norm, eps = text.split(":")
        out.append({"image": int(image), "target": int(target), "norm": norm, "eps": float(eps)})
    return out


def summarise(rows: list[dict], args) -> str:
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    table = []
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        table.append({"variant": variant, "probes": len(mine),
                      "decided": sum(r["answer"] != "unknown" for r in mine),
                      "median s": round(statistics.median(r["seconds"] for r in mine), 1),
                      "sum s": round(sum(r["seconds"] for r in mine), 1)})
    by_probe: dict[tuple, dict] = {}
    for r in rows:
        by_probe.setdefault((r["image"], r["target"], r["norm"], r["eps"]), {})[r["variant"]] = r
    disagree = sum(len({r["answer"] for r in p.values() if r["answer"] != "unknown"}) > 1 for p in by_probe.values())
    lines = ["# Alternatives to one SCIP MILP on the hardest closing probes (MNIST 784-24-24-24-10)", "",
             ("Probes: as given on the command line (`--probe`); " if args.probe else
              f"Probes: `upper - 0.99 tol` of the {len(by_probe)} unknown queries of `{args.journal}` closest to "
              "ending (as `split_milp.md`); ") +
             f"one thread each, {args.time_limit:g} s limit, one probe at a time. "
             "Variants: see the script's docstring.", "", markdown_table(table, list(table[0])), "",
             f"Disagreements between decided runs: {disagree}", "",
             "| image | target | norm | eps | " + " | ".join(f"{v} | s | detail" for v in variants) + " |",
             "|---|---|---|---|" + "---|---|---|" * len(variants)]
    for (image, target, norm, eps), p in sorted(by_probe.items()):
        cells = []
        for variant in variants:
            r = p.get(variant, {})
            detail = {k: r[k] for k in ("nodes", "domains", "open", "cuts", "unstable_before", "unstable_after",
                                         "tighten_s", "spec_lp_s", "spec_lp_moved", "phase_implications",
                                         "milp_seconds") if k in r}
            cells += [str(r.get("answer", "")), str(r.get("seconds", "")),
                      ", ".join(f"{k} {v}" for k, v in detail.items())]
        lines.append(f"| {image} | {target} | {norm} | {eps:.6g} | " + " | ".join(cells) + " |")
    lines += ["", "Machine: " + json.dumps(machine_info()), "", "Solvers: " + json.dumps(solver_versions())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from concurrent.futures import ProcessPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--journal", default="minimal_distortion_lns60")
    parser.add_argument("--probe", action="append", default=None, metavar="IMAGE:TARGET:NORM:EPS",
                        help="decide this probe instead of those taken from --journal (repeatable)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--name", default="closing_probes")
    args = parser.parse_args(argv)
    journal = RESULTS_DIR / f"{args.name}.jsonl"  # one row per line as it is known; a rerun resumes
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()] if journal.exists() else []
    done = {(r["image"], r["target"], r["norm"], r["variant"]) for r in rows}
    with journal.open("a") as sink:
        for probe in given_probes(args.probe) if args.probe else probes(args.journal, args.probes):
            for variant in args.variants:
                if (probe["image"], probe["target"], probe["norm"], variant) in done:
                    continue
                if (variant == "bab" and probe["norm"] != "linf") or (variant == "l1-lean" and probe["norm"] != "l1"):
                    continue
                with ProcessPoolExecutor(1) as pool:  # a fresh process: the variants patch the engine
                    row = {**probe, "variant": variant,
                           **pool.submit(run_variant, variant, probe, args.time_limit).result()}
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_results(args.name, rows, summarise(rows, args))
    print(summarise(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
