"""Which unstable ReLU to split next, and the two sub-domains a split makes.

Shared by the ReLU-phase branch and bound of :mod:`exactverify.vnncomp.relu_split` and the
split MILPs of :mod:`exactverify.queries.split`. A sub-domain is a ``splits`` dict (the
format of :func:`~exactverify.bounds.crown.crown_bounds`): per value index entering a
ReLU, a tensor with a leading batch dimension holding +1 (neuron >= 0), -1 (neuron <= 0)
or 0 (free).

Score: BaBSR's intercept score. Back-substituting a spec row, an unstable neuron whose
coefficient ``lam`` is negative takes CROWN's upper chord, whose intercept
``-u l / (u - l)`` costs ``-lam * intercept`` in the bound; splitting it recovers that.
Scores are summed over the live rows.
"""

from __future__ import annotations

import torch

from ..ir import Dense, Network, ReLU

#: Weight of ``|lam| * (u - l)`` added to the intercept score, so that an unstable neuron
#: with only positive coefficients (no intercept paid) can still be chosen.
TIE_BREAK = 1e-3


def branch_scores(network: Network, lowers, uppers, live_rows: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per value index entering a ReLU: (B, n) branching scores (0 for stable or split neurons).

    ``live_rows`` (B, R) bool marks the output rows whose bounds still matter."""
    batch = live_rows.shape[0]
    coef = torch.diag_embed(live_rows.to(lowers[-1].dtype))  # (B, R, R)
    scores: dict[int, torch.Tensor] = {}
    for i in range(len(network.layers) - 1, -1, -1):
        layer = network.layers[i]
        if isinstance(layer, Dense):
            coef = coef @ layer.tensor("weight", coef)
        elif isinstance(layer, ReLU):
            low = lowers[i].reshape(batch, 1, -1)
            up = uppers[i].reshape(batch, 1, -1)
            unstable = (low < 0) & (up > 0)
            width = torch.where(unstable, up - low, torch.ones_like(up))
            chord = torch.where(unstable, up / width, (low >= 0).to(up.dtype))
            intercept = torch.where(unstable, -up * low / width, torch.zeros_like(up))
            tie_break = TIE_BREAK * (coef.abs() * torch.where(unstable, up - low, torch.zeros_like(up))).sum(1)
            scores[i] = ((-coef).clamp_min(0) * intercept).sum(1) + tie_break
            lower_slope = torch.where(unstable, (up > -low).to(up.dtype), (low >= 0).to(up.dtype))
            coef = coef * torch.where(coef >= 0, lower_slope, chord)
    return scores


def choose_branch(scores: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per domain: (value index, neuron, found) of the best-scoring neuron over all layers."""
    keys = sorted(scores)
    best = torch.stack([scores[k].max(1).values for k in keys], 1)  # (B, layers)
    arg = torch.stack([scores[k].argmax(1) for k in keys], 1)
    layer_pick = best.argmax(1)
    neuron = arg.gather(1, layer_pick[:, None])[:, 0]
    found = best.max(1).values > 0
    return torch.as_tensor(keys)[layer_pick], neuron, found


def split_children(splits: dict[int, torch.Tensor], value: torch.Tensor,
                   neuron: torch.Tensor) -> dict[int, torch.Tensor]:
    """The 2B children of B domains, each split on its ``(value, neuron)``: first every
    ``>= 0`` child, then every ``<= 0`` child (child ``k`` and ``k + B`` cover domain ``k``)."""
    count = len(value)
    children = {i: torch.cat([s, s]) for i, s in splits.items()}
    rows = torch.arange(count)
    for sign, offset in ((1, 0), (-1, count)):
        for i in children:
            chosen = rows[value == i]
            flat = children[i].reshape(2 * count, -1)
            flat[chosen + offset, neuron[chosen]] = sign
    return children
