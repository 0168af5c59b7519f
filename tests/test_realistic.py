"""Realistic adversarial examples: both algorithms find pairs where they must exist, every
reported pair passes the float64 re-check and an analytic oracle, none is reported where
none can exist; random walk; pictures; input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import identity_generator
from torch import nn

from exactverify.errors import InvalidInputError, ShapeMismatchError
from exactverify.globalrob import pictures
from exactverify.globalrob.realistic import _recheck, black_box_search, random_walk, white_box_search


def sign_classifier(scale: float = 2.0) -> nn.Sequential:
    """Logits (s x_1, -s x_1): class 0 iff x_1 > 0; the L-inf distance from x to class 1 is x_1."""
    c = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        c[0].weight.copy_(torch.tensor([[scale, 0.0], [-scale, 0.0]]))
        c[0].bias.zero_()
    return c.eval()


def constant_classifier() -> nn.Sequential:
    c = nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        c[0].weight.zero_()
        c[0].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    return c.eval()


def check_pairs_against_oracle(result, eps=None):
    for p in result.pairs:
        assert p.verified
        assert p.z[0] > 0 and p.z_adv[0] < 0  # analytic: class 0 at z, class 1 at z'
        assert p.label == 0 and p.label_adv == 1 and p.margin > 0
        assert p.distance == pytest.approx(np.abs(p.z - p.z_adv).max(), abs=0)
        assert p.distance > p.z[0]  # no point closer than x_1 crosses the boundary
        assert np.array_equal(p.image, p.z) and np.array_equal(p.image_adv, p.z_adv)
        if eps is not None:
            assert p.distance <= eps


@pytest.mark.parametrize("search, kwargs", [
    (black_box_search, dict(rounds=40)),
    (white_box_search, dict(steps=200, step_size=0.02)),
    (white_box_search, dict(steps=200, step_size=0.02, loss="margin")),
])
def test_attacks_find_verified_pairs_where_they_exist(search, kwargs):
    res = search(identity_generator(), sign_classifier(), 0, 40, min_confidence=0.6, seed=1, **kwargs)
    assert res.starts == 40 and res.found >= 30
    assert len(res.pairs) == res.found and len(res.verified) == res.found
    assert 0 < res.success_rate <= 1 and res.mean_distance > 0
    check_pairs_against_oracle(res)


@pytest.mark.parametrize("search", [black_box_search, white_box_search])
def test_budget_eps_is_respected(search):
    eps = 0.3
    res = search(identity_generator(), sign_classifier(), 0, 60, eps=eps, min_confidence=0.0, seed=2,
                 **({"rounds": 30} if search is black_box_search else {"steps": 60}))
    assert res.found > 0
    check_pairs_against_oracle(res, eps=eps)
    for p in res.pairs:
        assert p.z[0] < eps  # only starts within eps of the boundary can succeed


@pytest.mark.parametrize("search", [black_box_search, white_box_search])
def test_no_pair_where_none_can_exist(search):
    res = search(identity_generator(), constant_classifier(), 0, 20, min_confidence=0.0)
    assert res.starts == 20 and res.found == 0 and res.pairs == []
    none = search(identity_generator(), constant_classifier(), 1, 5, min_confidence=0.0)
    assert none.starts == 0 and none.pairs == [] and np.isnan(none.success_rate)


def test_targeted_search_reaches_the_target_strictly():
    c = nn.Sequential(nn.Linear(2, 3))  # three sectors around the origin
    with torch.no_grad():
        c[0].weight.copy_(torch.tensor([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]]))
        c[0].bias.zero_()
    res = white_box_search(identity_generator(), c.eval(), 0, 30, target=2, steps=300, step_size=0.02,
                           min_confidence=0.0, seed=3)
    assert res.found > 0
    for p in res.pairs:
        assert p.verified and p.label_adv == 2
        logits = c[0].weight.detach().double().numpy() @ p.z_adv
        assert logits[2] > max(logits[0], logits[1])


def test_recheck_flags_a_pair_that_is_not_adversarial_in_float64():
    z0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z_adv = torch.tensor([[0.5, 0.0], [-0.5, 0.0]])  # first stays in class 0
    pairs = _recheck(identity_generator(), sign_classifier(), z0, z_adv, torch.tensor([1, 1]), 0, None, None)
    assert [p.verified for p in pairs] == [False, True]
    over = _recheck(identity_generator(), sign_classifier(), z0[1:], z_adv[1:], torch.tensor([1]), 0, None, 1.0)
    assert not over[0].verified and over[0].distance == pytest.approx(1.0)  # pulled back to z0 - eps: on boundary


def test_random_walk_follows_its_seeded_increments():
    walk = random_walk(identity_generator(), sign_classifier(), [0.3, -0.2], 50, 0.1, seed=4)
    assert walk.latents.shape == (51, 2) and np.array_equal(walk.latents[0], [0.3, -0.2])
    steps = np.diff(walk.latents, axis=0)
    assert 0.05 < steps.std() < 0.2
    assert np.array_equal(walk.predictions, np.where(walk.latents[:, 0] > 0, 0, 1))
    assert np.allclose(walk.probabilities.sum(1), 1.0)
    again = random_walk(identity_generator(), sign_classifier(), [0.3, -0.2], 50, 0.1, seed=4)
    assert np.array_equal(again.latents, walk.latents)


def test_pictures_are_written(tmp_path):
    res = white_box_search(identity_generator(4), nn.Sequential(nn.Linear(4, 2)).eval(), 0, 8, min_confidence=0.0,
                           steps=100, step_size=0.05)
    pictures.plot_realistic_pairs(res.pairs, tmp_path / "pairs.png")
    walk = random_walk(identity_generator(4), nn.Sequential(nn.Linear(4, 2)).eval(), np.zeros(4), 12, 0.3)
    pictures.plot_random_walk(walk, tmp_path / "walk.png", label=0, every=3)
    pictures.plot_misclassified(torch.rand(5, 4), [1, 2, 3, 4, 5], 0, tmp_path / "mis.png")
    for name in ("pairs.png", "walk.png", "mis.png"):
        assert (tmp_path / name).stat().st_size > 1000
    with pytest.raises(ShapeMismatchError, match="not square"):
        pictures.plot_misclassified(torch.rand(1, 5), [1], 0, tmp_path / "bad.png")


@pytest.mark.parametrize("kwargs, match", [
    (dict(label=5), "label"),
    (dict(target=0), "target"),
    (dict(starts=0), "starts"),
    (dict(min_confidence=1.0), "min_confidence"),
    (dict(eps=0.0), "eps"),
    (dict(sigma=-1.0), "sigma"),
    (dict(rounds=0), "rounds"),
])
def test_black_box_bad_arguments(kwargs, match):
    args = dict(label=0, starts=3)
    args.update(kwargs)
    label, starts = args.pop("label"), args.pop("starts")
    with pytest.raises(InvalidInputError, match=match):
        black_box_search(identity_generator(), sign_classifier(), label, starts, **args)


def test_white_box_and_walk_bad_arguments():
    with pytest.raises(InvalidInputError, match="loss"):
        white_box_search(identity_generator(), sign_classifier(), 0, 3, loss="hinge")
    with pytest.raises(InvalidInputError, match="step_size"):
        white_box_search(identity_generator(), sign_classifier(), 0, 3, step_size=0)
    with pytest.raises(ShapeMismatchError, match="z0 has 3 values"):
        random_walk(identity_generator(), sign_classifier(), [0.0, 0.0, 0.0], 5, 0.1)
    with pytest.raises(ShapeMismatchError):
        black_box_search(identity_generator(3), sign_classifier(), 0, 3)
