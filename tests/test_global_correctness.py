"""Global correctness Monte Carlo: exact counts against an independent recount, interval
coverage where the probability is known in closed form, paired latents, input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracles import identity_generator
from torch import nn

from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.globalrob.correctness import correctness_table, global_correctness
from exactverify.globalrob.latent import latent_stream, sample_latent


def threshold_classifier(t: float, dim: int = 2) -> nn.Sequential:
    """Logits (t - x_1, 0): class 0 iff x_1 < t, so P(class 0 | x ~ N(0, I)) = Phi(t)."""
    c = nn.Sequential(nn.Linear(dim, 2))
    with torch.no_grad():
        c[0].weight.zero_()
        c[0].weight[0, 0] = -1.0
        c[0].bias.copy_(torch.tensor([t, 0.0]))
    return c.eval()


def phi(t: float) -> float:
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))


def test_counts_match_an_independent_recount_of_the_same_latents():
    samples, batch, seed, t = 1000, 300, 7, 0.3
    res = global_correctness(identity_generator(), threshold_classifier(t), 0, samples, batch_size=batch, seed=seed,
                             dtype=torch.float64)
    stream = latent_stream(seed)
    z = torch.cat([sample_latent(min(batch, samples - i), 2, stream, dtype=torch.float64)
                   for i in range(0, samples, batch)]).numpy()
    assert res.correct == int(np.sum(z[:, 0] < t))
    assert res.total == samples and res.estimate == res.correct / samples
    # misclassified latents are the first failures in draw order, images are G(z) = z
    bad = z[z[:, 0] >= t][:16]
    assert np.array_equal(res.misclassified_latents.numpy(), bad)
    assert np.array_equal(res.misclassified_images.numpy(), bad)
    assert (res.misclassified_predictions == 1).all()
    assert res.interval.low <= res.estimate <= res.interval.high


def test_interval_contains_one_half_for_a_symmetric_threshold():
    res = global_correctness(identity_generator(), threshold_classifier(0.0), 0, 20000, seed=3)
    assert res.interval.contains(0.5)
    assert res.interval.width < 0.03
    assert res.samples_per_second > 0 and res.device == "cpu"


def test_interval_covers_phi_t_in_at_least_90_percent_of_repetitions():
    t = 0.8
    truth = phi(t)
    g, c = identity_generator(), threshold_classifier(t)
    hits = [global_correctness(g, c, 0, 300, seed=s, keep_misclassified=0).interval.contains(truth)
            for s in range(200)]
    assert np.mean(hits) >= 0.90  # nominal 95%, Clopper-Pearson is conservative


def test_ties_count_as_misclassified():
    c = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        c[0].weight.zero_()
        c[0].bias.zero_()
    res = global_correctness(identity_generator(), c, 0, 50)
    assert res.correct == 0  # every logit ties; argmax would have said "0" every time


def test_table_scores_every_classifier_on_the_same_latents():
    gens = {0: identity_generator(), 1: identity_generator()}
    below = threshold_classifier(0.0)  # class 0 iff x_1 < 0
    above = nn.Sequential(nn.Linear(2, 2))  # class 0 iff x_1 > 0
    with torch.no_grad():
        above[0].weight.copy_(-below[0].weight)
        above[0].bias.zero_()
    table = correctness_table(gens, {"below": below, "above": above}, 500, test_accuracy={"below": 0.99},
                              batch_size=128)
    # paired latents: for generator 0, exactly one of the two classifiers is right on each sample
    assert table.results["below"][0].correct + table.results["above"][0].correct == 500
    assert table.digits == [0, 1] and table.classifiers == ["below", "above"]
    md = table.markdown()
    assert "GAN 0" in md and "GAN 1" in md and "99.00" in md and md.count("\n") == 4
    assert len(table.rows()) == 4


def test_original_models_are_not_moved_or_switched_to_train_mode():
    g, c = identity_generator(), threshold_classifier(0.0)
    global_correctness(g, c, 0, 10, dtype=torch.float64)
    assert g[0].weight.dtype == torch.float32 and not g.training


@pytest.mark.parametrize("kwargs, match", [
    (dict(label=2), "label"),
    (dict(label=-1), "label"),
    (dict(label=1.0), "label"),
    (dict(samples=0), "samples"),
    (dict(batch_size=0), "batch_size"),
    (dict(confidence=1.0), "confidence"),
    (dict(seed=1.5), "seed"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    args = dict(label=0, samples=10)
    args.update(kwargs)
    label, samples = args.pop("label"), args.pop("samples")
    with pytest.raises(InvalidInputError, match=match):
        global_correctness(identity_generator(), threshold_classifier(0.0), label, samples, **args)


def test_shape_mismatch_between_generator_and_classifier():
    with pytest.raises(ShapeMismatchError, match="3 values per sample.*expects 2"):
        global_correctness(identity_generator(3), threshold_classifier(0.0), 0, 10)


def test_table_rejects_non_integer_generator_keys():
    with pytest.raises(InvalidInputError, match="keyed by their class"):
        correctness_table({"3": identity_generator()}, {"c": threshold_classifier(0.0)}, 10)
